"""Drains: paths an operator took out for maintenance (``pathsteer drain PATH``), kept across
daemon restarts in ``<state_dir>/drains.json``.

A maintenance window must not end because the daemon restarted, so every change is written
at once, atomically (a temporary file renamed over the old one: a crash leaves the old file
or the new one, never half of one). Reading is forgiving: a file that cannot be read or
parsed is reported and ignored (no drains), a drain whose ttl ran out meanwhile, or of a path
no longer configured, is not restored. Times are wall-clock (seconds since the epoch): they
must mean the same after a restart. Pure apart from `load` and `save`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pathsteer.errors import UsageError

FILE_NAME = "drains.json"
VERSION = 1
MAX_REASON = 200  # characters of the operator's note kept


@dataclass(frozen=True)
class Drain:
    """One drained path: since when, until when (None: until ``undrain``), and why."""

    path: str
    since: float
    until: float | None = None
    reason: str | None = None

    def expired(self, wall: float) -> bool:
        return self.until is not None and wall >= self.until

    def view(self) -> dict:
        return {"since": self.since, "until": self.until, "reason": self.reason}


def file_path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE_NAME)


def clean_reason(value: str | None, field: str = "reason") -> str | None:
    """The operator's note on one line, at most `MAX_REASON` characters; empty → None."""
    if value is None:
        return None
    text = " ".join(value.split())
    if len(text) > MAX_REASON:
        raise UsageError(f"{field}: {len(text)} characters, at most {MAX_REASON}")
    return text or None


def encode(drains: Iterable[Drain]) -> str:
    entries = [{"path": d.path, "since": d.since, "until": d.until, "reason": d.reason}
               for d in sorted(drains, key=lambda d: d.path)]
    return json.dumps({"version": VERSION, "drains": entries}, indent=2) + "\n"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a time")
    return float(value)


def decode(text: str, *, wall: float, known: Iterable[str] | None = None) -> tuple[dict[str, Drain], list[str]]:
    """The drains in ``text`` still in force at ``wall``, and a line for each one left out
    (expired, unknown path). Raises ValueError when ``text`` is not a drains file."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("drains"), list):
        raise ValueError(f"not a version {VERSION} drains file")
    names = set(known) if known is not None else None
    out: dict[str, Drain] = {}
    dropped: list[str] = []
    for entry in data["drains"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ValueError(f"bad entry {entry!r}")
        reason = entry.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"bad reason {reason!r}")
        until = entry.get("until")
        d = Drain(entry["path"], _number(entry.get("since")), None if until is None else _number(until), reason)
        if d.expired(wall):
            dropped.append(f"{d.path}: its ttl ran out while the daemon was not running")
        elif names is not None and d.path not in names:
            dropped.append(f"{d.path}: no such path in the config")
        else:
            out[d.path] = d
    return out, dropped


def load(state_dir: str, *, wall: float, known: Iterable[str] | None = None
         ) -> tuple[dict[str, Drain], list[str]]:
    """The drains saved under ``state_dir`` (none when there is no file), and a line for each
    thing left out — the whole file when it cannot be read or parsed."""
    path = file_path(state_dir)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return decode(text, wall=wall, known=known)
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [f"{path}: cannot be read ({exc.strerror or exc}); starting with no drains"]
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, [f"{path}: not a drains file ({exc}); starting with no drains"]


def save(state_dir: str, drains: Mapping[str, Drain] | Iterable[Drain]) -> None:
    """Write the drains atomically (tmp + fsync + rename); raises OSError."""
    items = drains.values() if isinstance(drains, Mapping) else drains
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    path = file_path(state_dir)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(encode(items))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
