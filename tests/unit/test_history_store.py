"""The history's SQLite file: events in and out (filters, limit, order), rollups, pruning by time
and by size, a reopen keeps the rows and the schema, a damaged file is set aside and a fresh
one starts, error kinds; a property: a query returns what a plain filter over the inserted
events says, in order."""

from __future__ import annotations

import logging
import os
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathsteer.events import Bus, Event
from pathsteer.history import store
from pathsteer.history.rollup import Rollup
from pathsteer.history.store import HistoryStore, query_events, query_rollups


def ev(seq: int, at: float, name: str, **fields) -> Event:
    return Event(seq, at, name, fields)


def rollup(path: str, start: float, end: float, **kw) -> Rollup:
    base = dict(state="up", worst_state="up", samples=10, rtt_p50_ms=10.0, rtt_p95_ms=12.0, rtt_max_ms=13.0,
                jitter_ms=0.5, loss_pct=0.0, utilization_mean=None, utilization_max=None, in_bps=None,
                out_bps=None)
    base.update(kw)
    return Rollup(path=path, start=start, end=end, **base)


@pytest.fixture
def db(tmp_path):
    s = HistoryStore(str(tmp_path / "history.sqlite"))
    s.open()
    yield s
    s.close()


CHANGES = [
    ev(1, 100.0, "steer.start", mode="fib", paths=3),
    ev(2, 101.0, "steer.change", prefix="198.51.100.0/24", policy="lowest-latency", kind="move",
       **{"from": "p1", "to": "p2"}, reason="p2 is 20 ms faster"),
    ev(3, 102.0, "path.state", path="p3", state="down", was="up"),
    ev(4, 103.0, "guard.block", cidr="192.0.2.0/24", origin="manual"),
    ev(5, 104.0, "steer.change", prefix="2001:db8::/48", policy="weighted", kind="weights",
       **{"from": "p1:1,p2:1", "to": "p2:2,p3:1"}, reason="load"),
    ev(6, 105.0, "steer.change", prefix="198.51.100.0/24", policy="lowest-latency", kind="move",
       **{"from": "p2", "to": "-"}, reason="all down"),
]


def names(rows):
    return [r["seq"] for r in rows]


def test_events_come_back_as_published_oldest_first(db):
    db.insert(CHANGES)
    rows = query_events(db.path)
    assert names(rows) == [1, 2, 3, 4, 5, 6]
    assert rows[1] == CHANGES[1].to_json()
    assert rows[1]["from"] == "p1" and rows[1]["reason"] == "p2 is 20 ms faster"


def test_filters(db):
    db.insert(CHANGES)
    p = db.path
    assert names(query_events(p, since=102.0)) == [3, 4, 5, 6]
    assert names(query_events(p, until=102.0)) == [1, 2, 3]
    assert names(query_events(p, since=101.5, until=104.0)) == [3, 4, 5]
    assert names(query_events(p, prefix="198.51.100.0/24")) == [2, 6]
    assert names(query_events(p, prefix="192.0.2.0/24")) == [4]  # a guard event's cidr
    assert names(query_events(p, path_name="p1")) == [2, 5]       # from=p1, from=p1:1,...
    assert names(query_events(p, path_name="p2")) == [2, 5, 6]
    assert names(query_events(p, path_name="p3")) == [3, 5]       # path=p3, to=...,p3:1
    assert names(query_events(p, name="steer.change")) == [2, 5, 6]
    assert names(query_events(p, name="steer.*")) == [1, 2, 5, 6]
    assert names(query_events(p, name="steer.change", path_name="p2", prefix="198.51.100.0/24")) == [2, 6]
    assert query_events(p, name="nothing.*") == []


def test_limit_keeps_the_newest_in_order(db):
    db.insert(CHANGES)
    assert names(query_events(db.path, limit=2)) == [5, 6]
    assert names(query_events(db.path, name="steer.change", limit=2)) == [5, 6]


def test_same_time_keeps_insertion_order(db):
    db.insert([ev(i, 50.0, "x.y", i=i) for i in range(1, 6)])
    assert names(query_events(db.path)) == [1, 2, 3, 4, 5]
    assert names(query_events(db.path, limit=3)) == [3, 4, 5]


def test_no_file_reads_as_empty_and_is_not_created(tmp_path):
    path = str(tmp_path / "none.sqlite")
    assert query_events(path) == []
    assert query_rollups(path, path_name="p1") == []
    assert store.counts(path)["events"] == 0
    assert not os.path.exists(path)


def test_rollups_in_and_out(db):
    db.insert(rollups=[rollup("p1", 0, 10), rollup("p2", 0, 10, state="down"), rollup("p1", 10, 20),
                       rollup("p1", 20, 30)])
    rows = query_rollups(db.path, path_name="p1")
    assert [(r["start"], r["end"]) for r in rows] == [(0, 10), (10, 20), (20, 30)]
    assert rows[0] == rollup("p1", 0, 10).to_json()
    assert [r["end"] for r in query_rollups(db.path, path_name="p1", since=20, limit=5)] == [20, 30]
    assert [r["end"] for r in query_rollups(db.path, path_name="p1", limit=1)] == [30]
    assert query_rollups(db.path, path_name="p2")[0]["state"] == "down"
    assert store.has_rollups(db.path, "p2") and not store.has_rollups(db.path, "p9")


def test_reopen_keeps_rows_and_schema(tmp_path):
    path = str(tmp_path / "h.sqlite")
    s = HistoryStore(path)
    s.insert(CHANGES[:3])
    s.close()
    s = HistoryStore(path)
    s.open()
    s.insert(CHANGES[3:])
    s.close()
    assert names(query_events(path)) == [1, 2, 3, 4, 5, 6]
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        indices = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"events_at", "events_prefix", "events_path", "events_name", "event_paths_event"} <= indices
    finally:
        con.close()


def test_prune_by_retention(db):
    db.insert(CHANGES, [rollup("p1", 90, 100), rollup("p1", 100, 110)])
    p = db.prune(now=1000.0, retention=1000.0 - 102.5, max_size=256 << 20)
    assert (p.events, p.rollups) == (3, 1)
    assert names(query_events(db.path)) == [4, 5, 6]
    assert [r["end"] for r in query_rollups(db.path, path_name="p1")] == [110]
    assert query_events(db.path, path_name="p1") == [query_events(db.path)[1]]  # event_paths pruned with them
    with sqlite3.connect(db.path) as con:
        assert con.execute("SELECT count(*) FROM event_paths WHERE event_id NOT IN (SELECT id FROM events)"
                           ).fetchone()[0] == 0


def test_prune_by_size_deletes_the_oldest_until_under_the_bound(db):
    bound = 1 << 20
    pad = "x" * 400
    at = 0.0
    for batch in range(30):  # ~ 3 MiB of events and rollups
        events = [ev(i, at + i * 0.001, "steer.change", prefix="198.51.100.0/24", reason=pad,
                     **{"from": "p1", "to": "p2"}) for i in range(200)]
        db.insert(events, [rollup("p1", at, at + 1)])
        at += 1.0
    assert db.size() > 2 * bound
    newest = query_events(db.path, limit=1)[0]
    p = db.prune(now=at, retention=1e9, max_size=bound)
    assert db.size() <= bound * store.SIZE_TARGET
    assert p.events > 0 and p.size_after <= bound < p.size_before
    assert os.path.getsize(db.path) <= bound  # the pages went back to the file system
    assert query_events(db.path, limit=1)[0] == newest  # the oldest went, the newest stayed
    left = query_events(db.path, limit=100000)
    assert left and left[0]["at"] > 0.0
    assert os.path.getsize(db.path + "-wal") <= store.WAL_LIMIT


def test_a_file_that_is_not_a_database_is_set_aside(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pathsteer")
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    (tmp_path / "history.sqlite-wal").write_bytes(b"junk")
    s = HistoryStore(str(path), clock=lambda: 1767225600.0)  # 2026-01-01T00:00:00Z
    s.open()
    s.insert(CHANGES[:1])
    s.close()
    aside = tmp_path / "history.sqlite.corrupt-20260101T000000Z"
    assert aside.read_bytes().startswith(b"this is not sqlite")
    assert names(query_events(str(path))) == [1]
    assert s.set_aside_count == 1
    lines = [r.getMessage() for r in caplog.records if "history.set-aside" in r.getMessage()]
    assert len(lines) == 1 and "error=" in lines[0] and str(path) in lines[0]


def _damage(path: str) -> None:
    """Overwrite every page after the first (the schema page) with garbage."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xa5" * (size - 4096))


def test_a_file_damaged_later_is_set_aside_at_the_next_write(tmp_path):
    path = str(tmp_path / "history.sqlite")
    s = HistoryStore(path)
    s.insert(CHANGES)
    s.close()  # checkpointed: every page in the main file
    _damage(path)
    s = HistoryStore(path)
    s.open()  # the schema page is fine: opens
    s.insert([ev(7, 200.0, "steer.change", prefix="198.51.100.0/24", **{"from": "p1", "to": "p2"})])
    s.close()
    assert s.set_aside_count == 1 and os.path.exists(s.set_aside_paths[0])
    assert names(query_events(path)) == [7]  # the batch went into the fresh file


def test_a_damaged_file_read_says_so(tmp_path):
    path = str(tmp_path / "history.sqlite")
    s = HistoryStore(path)
    s.insert(CHANGES)
    s.close()
    _damage(path)
    with pytest.raises(store.ReadError) as info:
        query_events(path)
    assert info.value.damaged


def test_a_newer_schema_is_set_aside(tmp_path):
    path = str(tmp_path / "history.sqlite")
    s = HistoryStore(path)
    s.open()
    s.db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    s.close()
    s = HistoryStore(path)
    s.open()
    s.close()
    assert s.set_aside_count == 1


def test_only_the_newest_set_aside_files_are_kept(tmp_path):
    path = tmp_path / "history.sqlite"
    clock = [1767225600.0]
    s = HistoryStore(str(path), clock=lambda: clock[0])
    for i in range(store.KEEP_SET_ASIDE + 2):
        path.write_bytes(b"garbage" * 10)
        os.utime(path, (clock[0], clock[0]))
        s.open()
        s.close()
        clock[0] += 60
    kept = sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert len(kept) == store.KEEP_SET_ASIDE
    assert kept[-1] == "history.sqlite.corrupt-20260101T000400Z"  # the newest stayed


def test_error_kinds():
    full = sqlite3.OperationalError("database or disk is full")
    assert store.is_full(full) and not store.is_corrupt(full)
    assert store.is_full(OSError(28, "No space left on device"))
    assert store.is_corrupt(sqlite3.DatabaseError("file is not a database"))
    assert store.is_corrupt(sqlite3.DatabaseError("database disk image is malformed"))
    assert not store.is_corrupt(sqlite3.OperationalError("database is locked"))


def test_path_and_prefix_extraction():
    assert store.hop_names("p1:2,p2:1") == ["p1", "p2"]
    assert store.hop_names("-") == [] and store.hop_names(3) == []
    assert store.paths_of({"path": "p3", "from": "p1", "to": "p1:1,p3:1"}) == ["p3", "p1"]
    assert store.prefix_of("guard.block", {"cidr": "192.0.2.7"}) == "192.0.2.7/32"
    assert store.prefix_of("steer.change", {"prefix": "2001:DB8::/48"}) == "2001:db8::/48"
    assert store.prefix_of("steer.start", {"paths": 3}) is None


# --- a property: the query is a filter over what was inserted --------------------------------------

PATHS = ["p1", "p2", "p3"]
PREFIXES = ["198.51.100.0/24", "203.0.113.0/24", None]
NAMES = ["steer.change", "steer.start", "path.state", "guard.block"]


@st.composite
def event_lists(draw):
    n = draw(st.integers(0, 40))
    out = []
    for seq in range(1, n + 1):
        name = draw(st.sampled_from(NAMES))
        at = draw(st.integers(0, 20)) * 1.0
        fields: dict = {}
        if name == "steer.change":
            fields = {"prefix": draw(st.sampled_from(PREFIXES[:2])), "from": draw(st.sampled_from(PATHS + ["-"])),
                      "to": draw(st.sampled_from(PATHS + ["p1:1,p2:1"]))}
        elif name == "path.state":
            fields = {"path": draw(st.sampled_from(PATHS))}
        elif name == "guard.block":
            fields = {"cidr": draw(st.sampled_from(PREFIXES[:2]))}
        out.append(Event(seq, at, name, fields))
    return out


def _matches(e: Event, since, until, prefix, path, name) -> bool:
    f = e.fields
    pfx = f.get("prefix") or (f.get("cidr") if e.name.startswith("guard.") else None)
    named = set(store.paths_of(f))
    return ((since is None or e.at >= since) and (until is None or e.at <= until)
            and (prefix is None or pfx == prefix) and (path is None or path in named)
            and (name is None or (e.name.startswith(name[:-1]) if name.endswith("*") else e.name == name)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_lists(), since=st.none() | st.integers(0, 20), until=st.none() | st.integers(0, 20),
       prefix=st.sampled_from(PREFIXES), path=st.sampled_from(PATHS + [None]),
       name=st.sampled_from(NAMES + ["steer.*", None]), limit=st.integers(1, 50))
def test_query_is_the_newest_matches_in_order(tmp_path_factory, events, since, until, prefix, path, name, limit):
    db = str(tmp_path_factory.mktemp("h") / "history.sqlite")
    s = HistoryStore(db)
    s.insert(events)
    s.close()
    want = sorted((e for e in events if _matches(e, since, until, prefix, path, name)), key=lambda e: (e.at, e.seq))
    got = query_events(db, since=since, until=until, prefix=prefix, path_name=path, name=name, limit=limit)
    assert got == [e.to_json() for e in want[-limit:]]


def test_events_from_a_real_bus_round_trip(db):
    bus = Bus()
    e = bus.publish("steer.change", prefix="198.51.100.0/24", to="p2", ok=True, n=None, rtt=1.5, **{"from": "p1"})
    db.insert([e])
    assert query_events(db.path) == [e.to_json()]
