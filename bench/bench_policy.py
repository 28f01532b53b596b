"""How long one `decide` takes for many prefixes over many paths (the daemon calls it on every
telemetry snapshot): steady state (nothing moves) and a path failure (many prefixes move).

    .venv/bin/python bench/bench_policy.py [--prefixes 10000] [--paths 64] [--per-prefix 3] [--repeat 5]
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import time

from pathsteer.policy import (DestinationParams, PathParams, PolicyKind, PolicyParams, PolicyState, Sla,
                              decide)
from pathsteer.telemetry.snapshot import PathSnapshot, PathState, RttStats, TelemetrySnapshot


def _path(name: str, rtt_s: float, state: PathState = PathState.UP) -> PathSnapshot:
    rtt = RttStats(ewma_s=rtt_s, min_s=rtt_s, avg_s=rtt_s, p50_s=rtt_s, p95_s=rtt_s * 1.2, p99_s=rtt_s * 1.3,
                   max_s=rtt_s * 1.5, samples=100)
    return PathSnapshot(name, state, 0.0, rtt, 0.001, 0.0, 3 if state is PathState.DOWN else 0, 2, ())


def build(prefixes: int, paths: int, per_prefix: int) -> PolicyParams:
    names = [f"p{i}" for i in range(paths)]
    kinds = list(PolicyKind)
    dests = []
    for i in range(prefixes):
        net = ipaddress.ip_network((0x0A000000 + (i << 8), 24))
        chosen = tuple(names[(i + k) % paths] for k in range(per_prefix))
        dests.append(DestinationParams(net, kinds[i % len(kinds)], chosen, sla=Sla(max_rtt_s=0.2, max_loss_pct=5.0)))
    return PolicyParams(tuple(PathParams(n, 100_000_000) for n in names), tuple(dests))


def timed(prefixes: int, paths: int, per_prefix: int, repeat: int) -> tuple[list[float], list[float], int, int]:
    params = build(prefixes, paths, per_prefix)
    up = TelemetrySnapshot(0.0, tuple(_path(f"p{i}", 0.010 + 0.001 * i) for i in range(paths)))
    state = decide(0.0, up, None, params, PolicyState()).state
    steady, failure = [], []
    for r in range(repeat):
        t0 = time.perf_counter()
        d = decide(1.0 + r, up, None, params, state)
        steady.append(time.perf_counter() - t0)
        down = TelemetrySnapshot(0.0, (_path("p0", 0.010, PathState.DOWN),) + up.paths[1:])
        t0 = time.perf_counter()
        f = decide(1.5 + r, down, None, params, d.state)
        failure.append(time.perf_counter() - t0)
    return steady, failure, len(d.events), len(f.events)


def main(argv: list[str] | None = None):
    """From ``python -m bench policy``: figures (argv None: the defaults), anchored by the same
    decision over 100 prefixes, scaled to the count (a cost flat per prefix: ratio 1)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: bench_policy.py --prefixes 10000 --paths 64")
    ap.add_argument("--prefixes", type=int, default=10_000)
    ap.add_argument("--paths", type=int, default=64)
    ap.add_argument("--per-prefix", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args([] if argv is None else argv)
    steady, failure, n_steady, n_failure = timed(a.prefixes, a.paths, a.per_prefix, a.repeat)
    if argv is None:
        from bench.harness import Figure
        small, small_f, _, _ = timed(100, a.paths, a.per_prefix, 20)
        scale = a.prefixes / 100
        return [Figure(f"decide, {a.prefixes} prefixes over {a.paths} paths, steady: median",
                       statistics.median(steady) * 1e3, "ms", f"100 prefixes x {scale:g}",
                       statistics.median(small) * scale * 1e3),
                Figure(f"decide, {a.prefixes} prefixes, a path failure ({n_failure} moves): median",
                       statistics.median(failure) * 1e3, "ms", f"100 prefixes x {scale:g}",
                       statistics.median(small_f) * scale * 1e3)]
    print(f"{a.prefixes} prefixes, {a.paths} paths, {a.per_prefix} per prefix")
    print(f"steady:       median {statistics.median(steady) * 1e3:.1f} ms  ({n_steady} events)")
    print(f"path failure: median {statistics.median(failure) * 1e3:.1f} ms  ({n_failure} events)")
    return None


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
