"""The history's SQLite file: schema, writes, queries, pruning, and setting a damaged file aside.

One `HistoryStore` (one connection) writes, from one thread (the history's writer); queries
open their own short connection (`query_events`, `query_rollups`, `counts`), which WAL lets run
beside the writer. Nothing here touches the asyncio loop.

Schema (version `SCHEMA_VERSION`, in ``meta``):

- ``events``: one row per bus event: ``at`` (wall clock), ``seq`` (the bus's, per process),
  ``name``, ``fields`` (JSON text, the event's fields as published), and for filtering
  ``prefix`` (the ``prefix`` field, or a guard event's ``cidr``, as a normalised CIDR) and
  ``path`` (the ``path`` field).
- ``event_paths``: (path, event id) for every path an event names in ``path``, ``from`` or
  ``to`` (``steer.change from=p1 to=p2:1,p3:1`` names p1, p2 and p3).
- ``rollups``: one row per path per window (`pathsteer.history.rollup.Rollup`).

Pruning (`HistoryStore.prune`): rows older than the retention go; then, while the file's pages
(``page_count * page_size``) exceed ``max_size``, the oldest tenth of the events and of the
rollups, until under 90 % of it (so that the next batches do not prune again at once); freed
pages go back to the file system (``auto_vacuum=INCREMENTAL``). The WAL beside it is kept
under `WAL_LIMIT` after each checkpoint.

A file SQLite calls "not a database" or "malformed" (at open or during a write) is renamed
``history.sqlite.corrupt-<UTC time>`` (with its -wal and -shm), one ``history.set-aside`` line
is logged, and a fresh file starts; the newest `KEEP_SET_ASIDE` such files are kept.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import ipaddress
import json
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pathsteer import logs
from pathsteer.events import Event
from pathsteer.history.rollup import Rollup

log = logging.getLogger("pathsteer.history")

SCHEMA_VERSION = 1
WAL_LIMIT = 4 << 20          # bytes the WAL is truncated to after a checkpoint
KEEP_SET_ASIDE = 3           # set-aside files kept (the oldest beyond are removed)
SIZE_TARGET = 0.9            # a prune by size goes down to this share of max_size
SIZE_STEP = 0.1              # each round deletes this share of the oldest rows

_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL,
    prefix TEXT, path TEXT, fields TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE INDEX IF NOT EXISTS events_prefix ON events (prefix, at) WHERE prefix IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_path ON events (path, at) WHERE path IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_name ON events (name, at);
CREATE TABLE IF NOT EXISTS event_paths (
    path TEXT NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (path, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_paths_event ON event_paths (event_id);
CREATE TABLE IF NOT EXISTS rollups (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
    state TEXT NOT NULL, worst_state TEXT NOT NULL, samples INTEGER NOT NULL,
    rtt_p50_ms REAL, rtt_p95_ms REAL, rtt_max_ms REAL, jitter_ms REAL, loss_pct REAL,
    utilization_mean REAL, utilization_max REAL, in_bps REAL, out_bps REAL);
CREATE INDEX IF NOT EXISTS rollups_path ON rollups (path, "end");
CREATE INDEX IF NOT EXISTS rollups_end ON rollups ("end");
"""

ROLLUP_COLUMNS = ("path", "start", "end", "state", "worst_state", "samples", "rtt_p50_ms", "rtt_p95_ms",
                  "rtt_max_ms", "jitter_ms", "loss_pct", "utilization_mean", "utilization_max", "in_bps",
                  "out_bps")
_ROLLUP_SQL = ", ".join(f'"{c}"' for c in ROLLUP_COLUMNS)


class SchemaError(sqlite3.DatabaseError):
    """The file is SQLite but not a history this version can use (a newer schema)."""


# --- error kinds ----------------------------------------------------------------------------

def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_corrupt(exc: BaseException) -> bool:
    """SQLite says the file is damaged or not a database: set it aside."""
    if isinstance(exc, SchemaError):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if _code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def is_full(exc: BaseException) -> bool:
    """The disk (or the file system's quota) is full: drop the batch, try the next."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.DatabaseError) and (
        _code(exc) == _SQLITE_FULL or "disk is full" in str(exc).lower())


# --- what an event's row holds ----------------------------------------------------------------

def normal_prefix(value: object) -> str | None:
    """A prefix field as stored and matched: a CIDR in its normal form (a bare address is
    its /32 or /128); any other text as it is; None for none."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def prefix_of(name: str, fields: dict[str, Any]) -> str | None:
    if fields.get("prefix") not in (None, ""):
        return normal_prefix(fields["prefix"])
    if name.startswith("guard.") and fields.get("cidr") not in (None, ""):
        return normal_prefix(fields["cidr"])
    return None


def hop_names(value: object) -> list[str]:
    """The paths in a ``path``/``from``/``to`` field: ``p1``, ``p1:2,p2:1`` (weighted, see
    steering.views.hops_text); ``-`` and empty are none."""
    if not isinstance(value, str):
        return []
    out = []
    for part in value.split(","):
        name = part.strip().rsplit(":", 1)[0] if ":" in part else part.strip()
        if name and name != "-" and name not in out:
            out.append(name)
    return out


def paths_of(fields: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("path", "from", "to"):
        for name in hop_names(fields.get(key)):
            if name not in out:
                out.append(name)
    return out


def event_json(seq: int, at: float, name: str, fields_text: str) -> dict[str, Any]:
    """A stored event as `Event.to_json` gives it."""
    try:
        fields = json.loads(fields_text)
    except ValueError:
        fields = {}
    return Event(seq, at, name, fields if isinstance(fields, dict) else {}).to_json()


# --- the writer's connection ------------------------------------------------------------------

@dataclass(frozen=True)
class Pruned:
    events: int = 0
    rollups: int = 0
    size_before: int = 0
    size_after: int = 0


class HistoryStore:
    """The writer's side of the file (one thread). `open`, `insert` and `prune` set a damaged
    file aside and carry on with a fresh one; every other error (a full disk) is raised for
    the caller to count."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time,
                 announce: Callable[..., None] | None = None) -> None:
        self.path = path
        self.clock = clock
        self.announce = announce or (lambda name, **fields: logs.event(log, name, **fields))
        self.db: sqlite3.Connection | None = None
        self.set_aside_count = 0
        self.set_aside_paths: list[str] = []

    # --- open / close -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.db is not None

    def open(self) -> None:
        """Open (creating) the file; a damaged one is set aside and a fresh one made."""
        if self.db is not None:
            return
        self._guarded(self._open, reopen=False)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0, check_same_thread=False)
        try:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file only
            db.execute("PRAGMA journal_mode=WAL").fetchone()
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            row = None
            with contextlib.suppress(sqlite3.OperationalError):  # no meta table yet: a new file
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise SchemaError(f"schema version {row[0]} is newer than this pathsteer's {SCHEMA_VERSION}")
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            raise
        self.db = db

    def close(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    # --- damage ---------------------------------------------------------------------------------

    def _guarded(self, fn: Callable[[], Any], *, reopen: bool = True) -> Any:
        """``fn()``; when SQLite finds the file damaged: set it aside, open a fresh one and run
        ``fn`` once more there."""
        try:
            return fn()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            self.set_aside(str(exc))
        if reopen:
            self._open()
        return fn()

    def set_aside(self, error: str) -> str | None:
        """Rename the file (and its -wal, -shm) to ``<file>.corrupt-<UTC time>``; log it.
        Returns the new name (None if there was no file)."""
        self.close()
        if not os.path.exists(self.path):
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        target, n = f"{self.path}.corrupt-{stamp}", 1
        while os.path.exists(target):
            target, n = f"{self.path}.corrupt-{stamp}-{n}", n + 1
        os.rename(self.path, target)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.path + suffix, target + suffix)
        self.set_aside_count += 1
        self.set_aside_paths.append(target)
        removed = self._remove_old_set_aside()
        self.announce("history.set-aside", path=self.path, to=target, error=error,
                      **({"removed": ",".join(removed)} if removed else {}))
        return target

    def _remove_old_set_aside(self) -> list[str]:
        files = sorted((p for p in glob.glob(glob.escape(self.path) + ".corrupt-*")
                        if not p.endswith(("-wal", "-shm"))), key=os.path.getmtime)
        removed = []
        for old in files[:-KEEP_SET_ASIDE] if len(files) > KEEP_SET_ASIDE else []:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(old + suffix)
            removed.append(os.path.basename(old))
        return removed

    # --- writes ---------------------------------------------------------------------------------

    def insert(self, events: Sequence[Event] = (), rollups: Sequence[Rollup] = ()) -> None:
        """Events and rollup rows in one transaction (all or none)."""
        self.open()
        self._guarded(lambda: self._insert(events, rollups))

    def _insert(self, events: Sequence[Event], rollups: Sequence[Rollup]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            for e in events:
                path = e.fields.get("path")
                cur = db.execute(
                    "INSERT INTO events (at, seq, name, prefix, path, fields) VALUES (?, ?, ?, ?, ?, ?)",
                    (e.at, e.seq, e.name, prefix_of(e.name, e.fields), path if isinstance(path, str) else None,
                     json.dumps(e.fields, separators=(",", ":"))))
                for name in paths_of(e.fields):
                    db.execute("INSERT OR IGNORE INTO event_paths (path, event_id) VALUES (?, ?)",
                               (name, cur.lastrowid))
            if rollups:
                marks = ", ".join("?" * len(ROLLUP_COLUMNS))
                db.executemany(f"INSERT INTO rollups ({_ROLLUP_SQL}) VALUES ({marks})",
                               [tuple(getattr(r, c) for c in ROLLUP_COLUMNS) for r in rollups])
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")  # SQLite may have rolled back already (a full disk)
            raise

    # --- size and pruning -----------------------------------------------------------------------

    def size(self) -> int:
        """Bytes of the file's pages in use (``(page_count - freelist_count) * page_size``)."""
        self.open()
        db = self.db
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * db.execute("PRAGMA page_size").fetchone()[0]

    def prune(self, *, now: float, retention: float, max_size: int) -> Pruned:
        """Delete what is older than ``retention``, then the oldest rows while over
        ``max_size`` (see the module's docstring)."""
        self.open()
        return self._guarded(lambda: self._prune(now, retention, max_size))

    def _prune(self, now: float, retention: float, max_size: int) -> Pruned:
        before = self.size()
        events, rollups = self._delete_before(now - retention, now - retention)
        if self.size() > max_size:
            target = int(max_size * SIZE_TARGET)
            for _ in range(100):
                if self.size() <= target:
                    break
                e_cut = self._cutoff("events", "at")
                r_cut = self._cutoff("rollups", '"end"')
                if e_cut is None and r_cut is None:
                    break
                e, r = self._delete_before(e_cut, r_cut, inclusive=True)
                events, rollups = events + e, rollups + r
                self._vacuum()
            self._checkpoint()
        elif events or rollups:
            self._vacuum()
        return Pruned(events, rollups, before, self.size())

    def _cutoff(self, table: str, column: str) -> float | None:
        """The time at or before which the oldest `SIZE_STEP` of ``table``'s rows lie (None: empty)."""
        n = self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if n == 0:
            return None
        row = self.db.execute(f"SELECT {column} FROM {table} ORDER BY {column} LIMIT 1 OFFSET ?",
                              (max(0, int(n * SIZE_STEP) - 1),)).fetchone()
        return row[0]

    def _delete_before(self, events_cut: float | None, rollups_cut: float | None, *,
                       inclusive: bool = False) -> tuple[int, int]:
        op = "<=" if inclusive else "<"
        db = self.db
        e = r = 0
        db.execute("BEGIN")
        try:
            if events_cut is not None:
                db.execute(f"DELETE FROM event_paths WHERE event_id IN (SELECT id FROM events WHERE at {op} ?)",
                           (events_cut,))
                e = db.execute(f"DELETE FROM events WHERE at {op} ?", (events_cut,)).rowcount
            if rollups_cut is not None:
                r = db.execute(f'DELETE FROM rollups WHERE "end" {op} ?', (rollups_cut,)).rowcount
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return e, r

    def _vacuum(self) -> None:
        # executescript steps the pragma to its end (execute frees one page a call)
        self.db.executescript("PRAGMA incremental_vacuum;")

    def _checkpoint(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):  # a reader holds the WAL: next time
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


# --- queries (their own connection, any thread) -----------------------------------------------

class ReadError(Exception):
    """The file could not be read (``damaged`` when SQLite says so)."""

    def __init__(self, message: str, damaged: bool) -> None:
        super().__init__(message)
        self.damaged = damaged


@contextlib.contextmanager
def reader(path: str) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to ``path`` (None when there is no file: nothing stored yet);
    never creates the file."""
    if not os.path.exists(path):
        yield None
        return
    try:
        db = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=rw", uri=True, timeout=2.0,
                             isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ReadError(str(exc), is_corrupt(exc)) from None
    try:
        db.execute("PRAGMA query_only=1")
        yield db
    except sqlite3.Error as exc:
        raise ReadError(str(exc), is_corrupt(exc)) from None
    finally:
        db.close()


def _has_tables(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('events', 'rollups')").fetchone()[0] == 2


def name_clause(name: str) -> tuple[str, str]:
    """``steer.change`` → exact; ``steer.*`` (any name ending in ``*``) → a prefix match."""
    if name.endswith("*"):
        return "name GLOB ?", name  # the caller validated: no other GLOB characters
    return "name = ?", name


def query_events(path: str, *, since: float | None = None, until: float | None = None,
                 prefix: str | None = None, path_name: str | None = None, name: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` events matching every filter given, oldest first (as
    `Event.to_json`). ``since``/``until`` are inclusive; ``path_name`` matches the events
    that name that path in ``path``, ``from`` or ``to``."""
    where, params = [], []
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at <= ?")
        params.append(until)
    if prefix is not None:
        where.append("prefix = ?")
        params.append(normal_prefix(prefix))
    if path_name is not None:
        where.append("id IN (SELECT event_id FROM event_paths WHERE path = ?)")
        params.append(path_name)
    if name is not None:
        clause, value = name_clause(name)
        where.append(clause)
        params.append(value)
    sql = ("SELECT seq, at, name, fields FROM events" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY at DESC, id DESC LIMIT ?")
    with reader(path) as db:
        if db is None or not _has_tables(db):
            return []
        rows = db.execute(sql, (*params, limit)).fetchall()
    return [event_json(*row) for row in reversed(rows)]


def query_rollups(path: str, *, path_name: str, since: float | None = None, until: float | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` rollups of ``path_name`` whose window ends within
    [since, until], oldest first."""
    where, params = ["path = ?"], [path_name]
    if since is not None:
        where.append('"end" >= ?')
        params.append(since)
    if until is not None:
        where.append('"end" <= ?')
        params.append(until)
    sql = (f"SELECT {_ROLLUP_SQL} FROM rollups WHERE " + " AND ".join(where)
           + ' ORDER BY "end" DESC, id DESC LIMIT ?')
    with reader(path) as db:
        if db is None or not _has_tables(db):
            return []
        rows = db.execute(sql, (*params, limit)).fetchall()
    return [dict(zip(ROLLUP_COLUMNS, row)) for row in reversed(rows)]


def has_rollups(path: str, path_name: str) -> bool:
    with reader(path) as db:
        if db is None or not _has_tables(db):
            return False
        return db.execute("SELECT 1 FROM rollups WHERE path = ? LIMIT 1", (path_name,)).fetchone() is not None


def counts(path: str) -> dict[str, int]:
    """Rows and bytes: ``events``, ``rollups``, ``size_bytes`` (the file), ``wal_bytes``."""
    out = {"events": 0, "rollups": 0, "size_bytes": 0, "wal_bytes": 0}
    for key, name in (("size_bytes", path), ("wal_bytes", path + "-wal")):
        with contextlib.suppress(OSError):
            out[key] = os.path.getsize(name)
    with reader(path) as db:
        if db is not None and _has_tables(db):
            out["events"] = db.execute("SELECT count(*) FROM events").fetchone()[0]
            out["rollups"] = db.execute("SELECT count(*) FROM rollups").fetchone()[0]
    return out
