import sys

from pathsteer.cli.main import main

sys.exit(main())
