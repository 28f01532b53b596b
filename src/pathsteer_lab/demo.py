"""``python -m pathsteer_lab.demo`` (``make demo``): the whole story in about 40 seconds.

A lab with three paths (p1 5 ms, p2 10 ms, p3 20 ms one way), ``pathsteer run`` in the router
namespace steering 198.51.100.0/24 (lowest-latency, probes every 20 ms, hold_down 1 s), and the
client pinging 198.51.100.10 all along. Then: p1 slows to 40 ms → traffic moves to p2 after
hold_down; p2 is cut → traffic moves to p3 at once; p1 recovers → traffic fails back to p1.
The terminal shows, live, the paths' figures, each route's choice and reason, the client's
ping and the changes. Everything is torn down at the end, also on Ctrl-C or an error.
Exit code 0 when every reroute happened and the client's ping followed it.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time

from pathsteer.errors import PathsteerError
from pathsteer.steering.cli import PATH_HEADER, ROUTE_HEADER, path_rows, route_rows, table
import pathsteer_lab as lab
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

SERVER = "198.51.100.10"
PREFIX = "198.51.100.0/24"
DELAYS_MS = {"p1": 5, "p2": 10, "p3": 20}
_RTT_RE = re.compile(r"icmp_seq=(\d+) .*time=([0-9.]+) ms")


class Pinger:
    """``ping -i 0.02`` from the client, read line by line in a thread: the last RTTs and losses."""

    def __init__(self, t) -> None:
        self.proc = t.popen("client", ["ping", "-n", "-i", "0.02", "-W", "1", SERVER],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.replies: list[tuple[float, int, float]] = []  # (received, seq, rtt ms)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            m = _RTT_RE.search(line)
            if m:
                self.replies.append((time.time(), int(m.group(1)), float(m.group(2))))

    def path_now(self) -> tuple[str, float | None]:
        """The path the last reply took, told by its RTT (closest 2 × delay)."""
        if not self.replies:
            return "-", None
        rtt = self.replies[-1][2]
        return min(DELAYS_MS, key=lambda p: abs(2 * DELAYS_MS[p] - rtt)), rtt

    def lost_last(self, seconds: float) -> int:
        now = time.time()
        seqs = [s for at, s, _ in self.replies if at >= now - seconds]
        return (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def render(phase: str, elapsed: float, status: dict, pinger: Pinger, events: list[dict]) -> str:
    via, rtt = pinger.path_now()
    out = [f"\x1b[H\x1b[2J pathsteer demo  t={elapsed:5.1f} s   {phase}", "",
           " client: ping 198.51.100.10 every 20 ms  →  last reply "
           + (f"{rtt:.1f} ms, i.e. over {via}" if rtt is not None else "(none yet)")
           + f"; lost in the last 2 s: {pinger.lost_last(2.0)}", "",
           " paths (router's probes, every 20 ms)", *("   " + line for line in table(path_rows(status), PATH_HEADER)
                                                   .splitlines()), "",
           " routes", *("   " + line for line in table(route_rows(status, 70), ROUTE_HEADER).splitlines()), "",
           " changes"]
    for e in [e for e in events if e["prefix"] == PREFIX][-6:]:
        out.append(f"   {time.strftime('%H:%M:%S', time.localtime(e['at']))}  {e['from']:>3} → {e['to']:<3} "
                   f"{e['kind']:<9} {e['reason'][:90]}")
    return "\n".join(out)


def show(d: LabDaemon, pinger: Pinger, phase: str, t0: float, seconds: float, live: bool) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            status, events = d.call("steer.status"), d.changes()
        except PathsteerError:
            time.sleep(0.2)
            continue
        if live:
            print(render(phase, time.time() - t0, status, pinger, events), flush=True)
        time.sleep(0.25)
    if not live:
        via, rtt = pinger.path_now()
        print(f"t={time.time() - t0:5.1f} s  {phase:<48} route via {d.via(PREFIX):<3} client ping over {via}"
              f" ({rtt} ms)", flush=True)


def run(mode: str, live: bool) -> int:
    name = f"demo{secrets.token_hex(2)}"
    print(f"bringing up lab {name} with 3 paths ...", flush=True)
    t = lab.up(name, 3)
    d = pinger = None
    try:
        for p, ms in DELAYS_MS.items():
            lab.set_path(name, p, delay=f"{ms}ms")
        cfg = lab_config(t, mode=mode, socket=f"/run/pathsteer/{name}.sock", interval="20ms", hold_down="1s",
                         timeouts={"p1": "200ms", "p2": "60ms", "p3": "100ms"}, prefixes=[PREFIX])
        workdir = tempfile.mkdtemp(prefix="pathsteer-demo-")
        print(f"starting pathsteer run (mode {mode}) in {t.router}; log: {workdir}/steer.log", flush=True)
        d = LabDaemon(t, cfg, workdir).start()
        pinger = Pinger(t)
        t0 = time.time()
        show(d, pinger, "all paths healthy: p1 (5 ms) is the fastest", t0, 6, live)
        lab.set_path(name, "p1", delay="40ms")
        show(d, pinger, "p1 slowed to 40 ms one way → p2 after hold_down (1 s)", t0, 7, live)
        moved_slow = (d.via(PREFIX), pinger.path_now()[0])
        lab.set_path(name, "p2", down=True)
        show(d, pinger, "p2 cut → left at once, for p3", t0, 6, live)
        moved_cut = (d.via(PREFIX), pinger.path_now()[0])
        lab.set_path(name, "p1", delay="5ms")
        show(d, pinger, "p1 back to 5 ms → failback after hold_down", t0, 7, live)
        moved_back = (d.via(PREFIX), pinger.path_now()[0])
        events = [e for e in d.changes() if e["prefix"] == PREFIX]
        ok = moved_slow == ("p2", "p2") and moved_cut == ("p3", "p3") and moved_back == ("p1", "p1")
        print("\nchanges (pathsteer events):")
        for e in events:
            print(f"  {e['from']:>3} → {e['to']:<3} {e['kind']:<9} {e['reason']}")
        print(f"\nslowed: route {moved_slow[0]}, ping over {moved_slow[1]};  cut: route {moved_cut[0]}, ping over "
              f"{moved_cut[1]};  recovered: route {moved_back[0]}, ping over {moved_back[1]}")
        print("every reroute happened and the client's traffic followed" if ok else "a reroute did NOT happen")
        return 0 if ok else 1
    finally:
        # Ignore a second Ctrl-C while tearing down, so the lab never stays half removed.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if pinger is not None:
                pinger.stop()
            if d is not None:
                d.stop()
            lab.down(name)
            print(f"pathsteer stopped, lab {name} removed")
        finally:
            signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathsteer_lab.demo", description=__doc__.split("\n\n")[0],
                                     epilog="examples:\n  make demo\n  python -m pathsteer_lab.demo --mode bpf\n"
                                            "  python -m pathsteer_lab.demo --plain     # one line per phase",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["fib", "bpf"], default="fib", help="data plane (default fib)")
    parser.add_argument("--plain", action="store_true", help="no live screen: one line per phase")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("pathsteer demo: error: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return 2

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args.mode, live=not args.plain and sys.stdout.isatty())
    except PathsteerError as exc:
        print(f"pathsteer demo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pathsteer demo: interrupted; everything removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
