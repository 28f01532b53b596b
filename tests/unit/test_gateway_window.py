"""The usage window's figures, checked against a brute-force recomputation over the raw records."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from pathsteer.gateways.records import Record
from pathsteer.gateways.window import UsageWindow
from pathsteer.telemetry.window import percentile

T0 = 1_000.0


def rec(client="192.0.2.1", upstream="10.0.0.1:80", status=200, t=0.010, b_in=100, b_out=1000, **kw) -> Record:
    return Record(0.0, client, upstream, kw.pop("backend", "be"), kw.pop("server", "s1"), status, b_in, b_out, t,
                  None, None)


def brute(arrivals: list[tuple[float, Record]], now: float, window_s=10.0, bucket_s=1.0):
    """The records whose arrival bucket is one of the window's at ``now``."""
    n = round(window_s / bucket_s)
    index = int(now // bucket_s)
    return [r for at, r in arrivals if index - n < int(at // bucket_s) <= index]


def key(r: Record) -> str | None:
    return r.upstream if r.upstream is not None else (f"{r.backend}/{r.server}" if r.server is not None else None)


def status_class(s: int | None) -> str:
    return f"{s // 100}xx" if s is not None and 100 <= s < 600 else "other"


def close_to(got: float | None, exact: float) -> bool:
    """The histogram's answer: within half a 5% bin of the exact value (0 under 1 µs)."""
    if exact < 1e-6:
        return got == 0.0
    return abs(got - exact) <= exact * 0.0251


RECORDS = st.builds(
    lambda c, u, s, t, bi, bo: rec(client=f"198.51.100.{c}", upstream=None if u == 0 else f"10.0.0.{u}:80",
                                   server=None if u == 0 and c % 2 else "s1", status=s, t=t, b_in=bi, b_out=bo),
    st.integers(0, 6), st.integers(0, 3), st.sampled_from([None, 99, 200, 204, 301, 401, 403, 404, 429, 500, 503, 600]),
    st.one_of(st.none(), st.just(0.0), st.floats(1e-7, 30.0)), st.one_of(st.none(), st.integers(0, 10_000)),
    st.integers(0, 100_000))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 25), RECORDS), max_size=120), st.floats(0, 30))
def test_figures_match_a_brute_force_recomputation(steps, query_after):
    w = UsageWindow()
    arrivals, now = [], T0
    for dt, r in sorted(steps, key=lambda s: s[0]):
        now = T0 + dt
        w.add(r, now)
        arrivals.append((now, r))
    now = now + query_after
    live = brute(arrivals, now)

    def check(figures, records):
        assert figures.requests == len(records)
        assert figures.requests_per_s == pytest.approx(len(records) / 10.0)
        assert figures.bytes_in_per_s == pytest.approx(sum(r.bytes_in or 0 for r in records) / 10.0)
        assert figures.bytes_out_per_s == pytest.approx(sum(r.bytes_out for r in records) / 10.0)
        for cls in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"):
            assert figures.statuses[cls] == sum(1 for r in records if status_class(r.status) == cls)
        times = sorted(r.upstream_time_s for r in records if r.upstream_time_s is not None)
        assert figures.samples == len(times)
        if times:
            assert close_to(figures.upstream_p50_s, percentile(times, 50))
            assert close_to(figures.upstream_p95_s, percentile(times, 95))
        else:
            assert figures.upstream_p50_s is None and figures.upstream_p95_s is None

    check(w.totals(now), live)
    ups = w.upstreams(now)
    assert set(ups) == {key(r) for r in live if key(r) is not None}
    for k, fig in ups.items():
        check(fig, [r for r in live if key(r) == k])
    clients = w.clients(now)
    assert set(clients) == {r.client for r in live}
    for c, fig in clients.items():
        mine = [r for r in live if r.client == c]
        assert fig.requests == len(mine)
        assert fig.bytes_out_per_s == pytest.approx(sum(r.bytes_out for r in mine) / 10.0)
        assert fig.watched == {s: sum(1 for r in mine if r.status == s) for s in (401, 403, 429)}
    for threshold in (1, 2, 5):
        expected = []
        for c in sorted({r.client for r in live}):
            n = sum(1 for r in live if r.client == c and r.status in (401, 429))
            if n >= threshold:
                expected.append((c, n))
        got = w.offenders(threshold, (401, 429), now=now)
        assert sorted((c, n) for c, n, _ in got) == expected
        assert [n for _, n, _ in got] == sorted((n for _, n, _ in got), reverse=True)


def test_a_record_leaves_the_window_after_window_s():
    w = UsageWindow()
    w.add(rec(), T0 + 0.5)
    assert w.totals(T0 + 9.99).requests == 1
    assert w.totals(T0 + 10.0).requests == 0
    w.add(rec(), T0 + 30)  # the old bucket is dropped on the way
    assert len(w._buckets) == 1


def test_percentiles_and_rates_of_a_known_mix():
    w = UsageWindow()
    for i in range(1000):
        w.add(rec(t=0.001 * (i % 100 + 1), status=500 if i % 10 == 0 else 200), T0 + i * 0.009)
    fig = w.upstreams(T0 + 9)["10.0.0.1:80"]
    assert fig.requests == 1000 and fig.requests_per_s == 100.0
    assert fig.statuses["5xx"] == 100 and fig.statuses["2xx"] == 900
    assert fig.upstream_p50_s == pytest.approx(0.050, rel=0.026)
    assert fig.upstream_p95_s == pytest.approx(0.095, rel=0.026)


def test_haproxy_zero_ms_and_names_without_an_address():
    w = UsageWindow()
    w.add(rec(upstream=None, backend="static", server="srv1", t=0.0), T0)
    w.add(rec(upstream=None, server=None, t=None, status=503), T0)  # <NOSRV>: totals only
    assert set(w.upstreams(T0)) == {"static/srv1"}
    assert w.upstreams(T0)["static/srv1"].upstream_p50_s == 0.0
    assert w.totals(T0).requests == 2 and w.totals(T0).statuses["5xx"] == 1


def test_offenders_reason_text():
    w = UsageWindow()
    for i in range(120):
        w.add(rec(client="203.0.113.5", status=401), T0 + i * 0.05)
    for i in range(30):
        w.add(rec(client="203.0.113.6", status=429), T0 + i * 0.05)
        w.add(rec(client="203.0.113.6", status=401), T0 + i * 0.05)
    w.add(rec(client="203.0.113.7", status=403), T0)
    assert w.offenders(50, now=T0 + 6) == [("203.0.113.5", 120, "401×120/10s"),
                                           ("203.0.113.6", 60, "401×30 429×30/10s")]
    assert w.offenders(1, [403], now=T0 + 6) == [("203.0.113.7", 1, "403×1/10s")]
    with pytest.raises(ValueError, match=r"^offenders: status 500 is not watched \(watch: 401, 403, 429\)$"):
        w.offenders(1, [500], now=T0)
    with pytest.raises(ValueError, match="threshold 0"):
        w.offenders(0, now=T0)


def test_clients_top():
    w = UsageWindow()
    for i in range(10):
        for _ in range(i + 1):
            w.add(rec(client=f"198.51.100.{i}"), T0)
    top = w.clients(T0, top=3)
    assert list(top) == ["198.51.100.9", "198.51.100.8", "198.51.100.7"]
    assert top["198.51.100.9"].requests == 10 and top["198.51.100.9"].requests_per_s == 1.0


def test_a_full_bucket_drops_new_clients_but_counts_their_requests():
    w = UsageWindow(max_clients=3, max_client_entries=6)
    for i in range(5):
        w.add(rec(client=f"198.51.100.{i}", status=401), T0)
    w.add(rec(client="198.51.100.0", status=401), T0)  # a known client still counts
    assert w.dropped_clients == 2
    assert w.totals(T0).requests == 6
    assert w.clients(T0)["198.51.100.0"].requests == 2 and len(w.clients(T0)) == 3


def test_too_many_entries_evict_the_oldest_client_tables_and_say_the_span():
    w = UsageWindow(max_clients=2, max_client_entries=4)
    for second in range(3):
        for c in range(2):
            w.add(rec(client=f"198.51.100.{second}{c}", status=429), T0 + second)
    assert w.evicted_client_buckets == 1
    assert w.totals(T0 + 2).requests == 6  # the upstream figures keep the whole window
    clients = w.clients(T0 + 2)
    assert set(clients) == {"198.51.100.10", "198.51.100.11", "198.51.100.20", "198.51.100.21"}
    assert {f.span_s for f in clients.values()} == {2.0}
    assert w.offenders(1, now=T0 + 2)[0][2] == "429×1/2s"


def test_memory_is_bounded_for_a_flood_of_distinct_clients():
    w = UsageWindow()
    n = 0
    for second in range(12):
        for i in range(40_000):
            w.add(rec(client=f"10.{second}.{i >> 8}.{i & 255}"), T0 + second + i / 40_000)
            n += 1
    entries = sum(len(b.clients) for b in w._buckets if b.clients is not None)
    assert entries <= w.max_client_entries
    assert w.evicted_client_buckets > 0 and w.totals(T0 + 11.5).requests == 400_000


@pytest.mark.parametrize(("kw", "words"), [
    ({"window_s": 0}, "window_s=0"), ({"window_s": 1, "bucket_s": 2}, "at least bucket_s=2"),
    ({"max_clients": 10, "max_client_entries": 5}, "max_client_entries=5"),
])
def test_bad_parameters(kw, words):
    with pytest.raises(ValueError, match=words):
        UsageWindow(**kw)


def test_a_clock_step_back_counts_in_the_current_bucket():
    w = UsageWindow()
    w.add(rec(), T0 + 5)
    w.add(rec(), T0 + 2)
    assert w.totals(T0 + 5).requests == 2 and len(w._buckets) == 1
    assert not math.isnan(w.totals(T0 + 5).requests_per_s)
