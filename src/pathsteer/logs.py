"""The daemon's one log-line shape: ``name key=value ...`` (``steer.change prefix=198.51.100.0/24
from=p1 to=p2 reason='...'``), one line per event, greppable and parsed by the tests."""

from __future__ import annotations

import logging


def event(logger: logging.Logger, name: str, **fields: object) -> None:
    """Log ``name`` with ``fields`` as ``key=value`` pairs, in the order given."""
    logger.info("%s %s", name, " ".join(f"{k}={v}" for k, v in fields.items()))
