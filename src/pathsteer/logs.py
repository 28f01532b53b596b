"""The daemon's one log-line shape: ``name key=value ...`` (``steer.change prefix=198.51.100.0/24
from=p1 to=p2 reason='...'``), one line per event, greppable and parsed by the tests.

`event` also publishes the event on `pathsteer.events.BUS` with its raw field values (the
operator surface: SSE, history, metrics)."""

from __future__ import annotations

import logging

from pathsteer.events import BUS


def _text(value: object) -> str:
    """A value as it reads after ``key=``: quoted (repr) when it has spaces, quotes or '='."""
    s = str(value)
    if isinstance(value, str) and (not s or any(c.isspace() or c in "'\"=" for c in s)):
        return repr(s)
    return s


def event(logger: logging.Logger, name: str, **fields: object) -> None:
    """Log ``name`` with ``fields`` as ``key=value`` pairs, in the order given, and publish it."""
    logger.info("%s %s", name, " ".join(f"{k}={_text(v)}" for k, v in fields.items()))
    BUS.publish(name, **fields)
