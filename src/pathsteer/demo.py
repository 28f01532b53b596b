"""``python -m pathsteer.demo`` (``make demo``): a lab with three paths, each path's RTT measured
next to its configured delay, then everything torn down (also on Ctrl-C or an error).

Until steering lands this is the whole story: it shows the lab works and its delays are what
they claim. Exit code 0 when every path is within ±1 ms or ±5% of 2·delay.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys

from pathsteer import lab
from pathsteer.errors import PathsteerError
from pathsteer.lab import measure

DELAYS_MS = (5, 20, 60)   # one-way, each direction, for p1, p2, p3


def tolerance_ms(two_d: float) -> float:
    return max(1.0, 0.05 * two_d)


def run(count: int, interval: float) -> int:
    name = f"demo{secrets.token_hex(2)}"
    print(f"bringing up lab {name} with {len(DELAYS_MS)} paths ...", flush=True)
    t = lab.up(name, len(DELAYS_MS))
    try:
        for p, d in zip(t.paths, DELAYS_MS):
            lab.set_path(name, p.name, delay=f"{d}ms")
        print(f"pinging each path's probe address from the client: {count} pings, {interval * 1e3:g} ms apart\n")
        print(f"{'path':<5} {'probe address':<14} {'2*delay':>8} {'min':>8} {'avg':>8} {'max':>8} {'loss':>6}  verdict")
        ok = True
        for p, d in zip(t.paths, DELAYS_MS):
            r = measure.ping(t, p.probe_address, count=count, interval=interval)
            want = 2 * d
            good = r.received == r.sent and abs(r.median - want) <= tolerance_ms(want)
            ok &= good
            if r.rtts_ms:
                figures = f"{r.min:>8.2f} {r.avg:>8.2f} {r.max:>8.2f}"
            else:
                figures = f"{'-':>8} {'-':>8} {'-':>8}"
            print(f"{p.name:<5} {p.probe_address:<14} {want:>6} ms {figures} {r.loss_pct:>5.0f}%  "
                  f"{'OK' if good else 'OFF'}", flush=True)
        print("\nRTTs in ms; OK = median within ±1 ms or ±5% of 2*delay (the larger), no loss.")
        return 0 if ok else 1
    finally:
        # Ignore a second Ctrl-C while tearing down, so the lab never stays half removed.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            lab.down(name)
            print(f"lab {name} removed")
        finally:
            signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathsteer.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="pings per path (default 20)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between pings (default 0.05)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("pathsteer demo: error: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return 2
    try:
        return run(args.count, args.interval)
    except PathsteerError as exc:
        print(f"pathsteer demo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pathsteer demo: interrupted; lab removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
