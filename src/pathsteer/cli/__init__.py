"""Command-line interface: ``pathsteer COMMAND [options]``."""
