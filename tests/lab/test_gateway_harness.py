"""The gateway harness (pathsteer_lab.gateway) with a real HAProxy in the lab's router: the
client's load through HAProxy reaches both backends in the server namespace over the lab's
paths, the runtime API moves traffic (``set server ... weight 0``) and blocks a source (``add
acl``), the backends answer 401 without the token and slow down on demand, and HAProxy's log
lines reach a UDP listener in the router namespace and parse into records with the status and
upstream.

Addresses: HAProxy binds the router's r-c address 10.200.0.1:8000 (the client, 10.200.0.2,
reaches it) and its r-a address 10.250.0.1:8000 (the attacker, 10.250.0.2); the backends are
198.51.100.10:8080 and 203.0.113.10:8080 (one process in the server namespace bound to
0.0.0.0:8080), reached over p1 by the router's kernel routes (pathsteer is not running)."""

from __future__ import annotations

import contextlib
import shutil
import time

import pytest

from pathsteer_lab.gateway import Backends, Haproxy, LoadClient, SyslogListener

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (make deps)")]

S1, S2 = "198.51.100.10:8080", "203.0.113.10:8080"
PORT = 8000


class Gateway:
    def __init__(self, t, tmp, backends: Backends, logs: SyslogListener, hap: Haproxy) -> None:
        self.t, self.tmp, self.backends, self.logs, self.hap = t, tmp, backends, logs, hap
        self.url = f"http://{t.router_client_address}:{PORT}"
        self.attacker_url = f"http://{t.router_attacker_address}:{PORT}"

    def load(self, path: str = "/", *, ns: str = "client", name: str = "load", **kw) -> LoadClient:
        base = self.attacker_url if ns == "attacker" else self.url
        return LoadClient(self.t, base + path, str(self.tmp), ns=ns, name=name, **kw)

    def run(self, path: str = "/", seconds: float = 0.5, **kw) -> LoadClient:
        """A load run of ``seconds`` (finished requests only), waited for."""
        ld = self.load(path, duration=seconds, **kw).start()
        ld.wait(seconds + 10)
        return ld


@pytest.fixture
def gw(lab3, tmp_path):
    t = lab3
    with contextlib.ExitStack() as stack:  # unwound in reverse: HAProxy, the listener, the backends
        backends = stack.enter_context(Backends(t, str(tmp_path)))
        logs = stack.enter_context(SyslogListener(t, "router"))
        hap = Haproxy(t, str(tmp_path))
        stack.callback(hap.stop)
        hap.start(bind=[f"{t.router_client_address}:{PORT}", f"{t.router_attacker_address}:{PORT}"],
                  backends={"b": [("s1", S1), ("s2", S2)]}, log_target=logs.target)
        yield Gateway(t, tmp_path, backends, logs, hap)


def _records(gw: Gateway, want: int, timeout: float = 5.0):
    """HAProxy's log lines parsed (at least ``want`` of them, or what came within ``timeout``)."""
    parser = gw.hap.parser()
    lines = gw.logs.wait_for(lambda ls: len(ls) >= want, timeout)
    recs = [parser.parse(line) for line in lines]
    assert None not in recs, (parser.malformed, lines[:3])
    return recs


def test_load_through_haproxy_reaches_both_servers_and_the_logs_parse(gw):
    t = gw.t
    with gw.load(rate=300, concurrency=8) as ld:
        time.sleep(2.5)
    rs = ld.records
    counts = ld.backend_counts()
    assert len(rs) >= 600 and ld.request_rate() >= 250, ld.summary()
    assert ld.success_rate() >= 0.99, ld.summary()
    assert counts[S1] >= 0.4 * len(rs) and counts[S2] >= 0.4 * len(rs), ld.summary()
    assert max(r.duration for r in rs) < 1.0, ld.summary()
    # The backends saw the same (a request in flight when the client stopped is on their side only).
    seen = gw.backends.stats()["requests"]
    assert 0 <= seen[S1] - counts[S1] <= 8 and 0 <= seen[S2] - counts[S2] <= 8, (seen, ld.summary())

    recs = _records(gw, len(rs))
    ok = [r for r in recs if r.status == 200]
    assert len(ok) >= len(rs) and len(recs) - len(ok) <= 8, (len(recs), len(ok), ld.summary())  # 8 cut at stop
    assert {r.client for r in recs} == {t.client_address}
    assert {(r.backend, r.server, r.upstream) for r in ok} == {("b", "s1", S1), ("b", "s2", S2)}
    for u in (S1, S2):
        assert 0 <= seen[u] - sum(r.upstream == u for r in ok) <= 8, (u, seen)
    assert all(rs[0].t - 1.5 <= r.at_s <= rs[-1].t + 1.5 for r in recs)  # the host's clock


def test_weight_zero_moves_new_requests_and_acl_blocks_one_source(gw):
    t, hap = gw.t, gw.hap
    with gw.load(rate=200) as ld:
        time.sleep(0.8)
        hap.set_weight("b", "s1", 0)
        moved = time.time()
        time.sleep(1.2)
    assert hap.servers_state("b")[("b", "s1")].weight == 0
    before, after = ld.backend_counts(until=moved - 0.05), ld.backend_counts(since=moved)
    assert before[S1] > 40 and before[S2] > 40, ld.summary()
    assert set(after) == {S2} and after[S2] > 150, ld.summary(since=moved)
    assert ld.success_rate() >= 0.99, ld.summary()
    hap.set_weight("b", "s1", 100)

    # The client's address in the deny ACL: its requests get HAProxy's 403, the attacker's do not.
    hap.add_acl(t.client_address)
    assert hap.acl_entries() == [t.client_address]
    blocked = gw.run(seconds=0.5, rate=100, name="blocked")
    other = gw.run(seconds=0.5, rate=100, ns="attacker", name="other")
    assert blocked.outcomes() == {403: len(blocked.records)} and len(blocked.records) >= 40, blocked.summary()
    assert set(blocked.backend_counts()) == {None}
    assert other.success_rate() == 1.0 and len(other.records) >= 40, other.summary()
    hap.del_acl(t.client_address)
    again = gw.run(seconds=0.3, rate=100, name="again")
    assert again.success_rate() == 1.0, again.summary()

    recs = _records(gw, len(ld.records) + len(blocked.records) + len(other.records) + len(again.records))
    denied = [r for r in recs if r.status == 403]
    assert len(denied) == len(blocked.records)
    assert {(r.client, r.server, r.upstream) for r in denied} == {(t.client_address, None, None)}
    assert {r.client for r in recs if r.status == 200} == {t.client_address, t.attacker_address}


def test_protected_needs_the_token_and_a_backend_slows_down_on_demand(gw):
    t = gw.t
    anonymous = gw.run("/protected", seconds=0.4, rate=50, name="anon")
    authorized = gw.run("/protected", seconds=0.4, rate=50, name="auth", headers={"Authorization": "Bearer good"},
                        keepalive=True)
    assert anonymous.outcomes() == {401: len(anonymous.records)} and len(anonymous.records) >= 15, anonymous.summary()
    assert set(anonymous.backend_counts()) == {S1, S2}
    assert authorized.success_rate() == 1.0 and len(authorized.records) >= 15, authorized.summary()

    recs = _records(gw, len(anonymous.records) + len(authorized.records))
    unauthorized = [r for r in recs if r.status == 401]
    assert len(unauthorized) == len(anonymous.records)
    assert {r.upstream for r in unauthorized} == {S1, S2}
    assert {r.client for r in recs} == {t.client_address}

    # The slow upstream: 300 ms on 198.51.100.10 only.
    gw.backends.set_delay("198.51.100.10", 300)
    slow = gw.run(seconds=1.0, rate=40, concurrency=16, name="slow")
    gw.backends.set_delay("198.51.100.10", 0)
    by = {b: [r.duration for r in slow.records if r.backend == b] for b in (S1, S2)}
    assert slow.success_rate() == 1.0 and by[S1] and by[S2], slow.summary()
    assert min(by[S1]) >= 0.29, slow.summary()
    assert sorted(by[S2])[len(by[S2]) // 2] < 0.1, by[S2]
    fast = gw.run(seconds=0.3, rate=40, name="fast")
    assert fast.success_rate() == 1.0 and max(r.duration for r in fast.records) < 0.2, fast.summary()
