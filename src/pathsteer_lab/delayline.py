"""The lab's delay line: one user-space process per lab that delays and drops packets per path.

This kernel has no sch_netem, so delay, jitter and loss are applied here. Each path namespace
has two TUN devices, ``dl-out`` (traffic that arrived from the router, heading to the server)
and ``dl-in`` (the reverse). While a path is impaired, ip rules in its namespace send forwarded
packets to the TUN of their direction (`pathsteer_lab.impair`); this process reads them,
holds each one in a time-ordered heap and writes it back into the same TUN at its release time.
A packet written into a TUN is received with iif = the TUN, so the rules no longer match and
the path namespace's main table forwards it to its real next hop. Unimpaired paths have no
rules and use plain kernel forwarding.

Per packet and per direction: release = arrival + delay + U(-jitter, +jitter), never earlier
than the previous packet of the same direction (no reordering within a direction; the clamp
is reset when the settings change, so a new delay applies at once). Loss is per direction, so a
round trip over a path with loss p loses 1-(1-p)². Loss is random but evenly spread: each
packet adds p to a credit, and a packet is dropped when the credit reaches a threshold drawn
from U(0.5, 1.5) (then the threshold is taken off the credit and a new one drawn). The gap
between drops is thus 0.5-1.5x the mean 1/p, and over 1000 packets the loss is within a few
tenths of a point of p — where independent (Bernoulli) draws would stray by ±2 points about
one run in eighty at 5%, and a lab whose "5% loss" is really 7% makes every loss test a dice
roll.

One process serves every path of the lab (64 paths must not mean 64 processes): TUNs are opened
inside each path's namespace (setns, then back), then a single epoll loop waits on all of them,
a timerfd armed at the earliest release (absolute CLOCK_MONOTONIC, µs precision; epoll's own
timeout has ms granularity) and the control socket. Control: a unix stream socket taking one
JSON request per line: {"op": "set", "path": "p2", "delay": 0.01, "jitter": 0.0, "loss": 0.05}
(seconds, seconds, fraction), {"op": "stats"} (per path and direction: counters, settings and
``held_p50``, the median time the last packets were really held), {"op": "ping"}; the answer is
one JSON line.

Run as ``python -m pathsteer_lab.delayline STATE_DIR`` (started detached by `pathsteer_lab.up`).
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from pathsteer_lab import netns
from pathsteer_lab.topology import TUN_IN, TUN_OUT, Topology

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# <linux/timerfd.h>, <time.h>
CLOCK_MONOTONIC = 1
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1
PR_SET_TIMERSLACK = 29  # <linux/prctl.h>

READ_BURST = 64        # packets read from one TUN per wake-up before looking at the others
# The time from the timer's expiry to our write() is about 150 µs of wake-up and Python on this
# machine (measured: 5 ms each way gave 10.5 ms RTT with no compensation). Releasing packets
# that are due within that much corrects the bias; the cost is that a single packet may leave
# up to EARLY_NS early when the wake-up happens to be fast.
EARLY_NS = 150_000
HOLDS_KEPT = 4096      # per direction, for the median hold in "stats"

_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerFd:
    """A CLOCK_MONOTONIC timerfd armed at absolute times in nanoseconds (time.monotonic_ns)."""

    def __init__(self) -> None:
        self.fd = _libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.armed_ns = 0

    def arm(self, at_ns: int) -> None:
        if at_ns == self.armed_ns:
            return
        spec = _Itimerspec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(at_ns, 1), 1_000_000_000)
        if _libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")
        self.armed_ns = at_ns

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass
        self.armed_ns = 0


def open_tun(namespace: str, ifname: str) -> int:
    """Create TUN ``ifname`` inside ``namespace`` (IFF_NO_PI: raw IP packets); return its fd."""
    with netns.entered(namespace):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        ifr = struct.pack("16sH22x", ifname.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


@dataclass
class Direction:
    """One direction of one path: its TUN, its settings and its counters."""

    path: str
    name: str               # "out" (towards the server) or "in"
    fd: int
    delay_ns: int = 0
    jitter_ns: int = 0
    loss: float = 0.0       # fraction 0..1
    loss_credit: float = 0.0    # sum of `loss` over packets since the last drop, minus thresholds
    loss_threshold: float = 1.0  # the credit at which the next packet is dropped, U(0.5, 1.5)
    last_release_ns: int = 0
    received: int = 0
    sent: int = 0
    lost: int = 0
    errors: int = 0
    # How long the last packets were really held (found to written back, ns), since the last
    # "set": what the line applied, which a loaded box makes longer than what it was asked for.
    holds: deque = field(default_factory=lambda: deque(maxlen=HOLDS_KEPT))

    def held_p50(self) -> float | None:
        """The median hold of the last packets, in seconds (None: none since the last "set")."""
        if not self.holds:
            return None
        s = sorted(self.holds)
        return s[len(s) // 2] / 1e9

    def schedule(self, now_ns: int, rng: random.Random) -> int | None:
        """Release time of a packet arriving now, or None when it is lost."""
        self.received += 1
        if self.loss >= 1.0:
            self.lost += 1
            return None
        if self.loss:
            self.loss_credit += self.loss
            if self.loss_credit >= self.loss_threshold:
                self.loss_credit -= self.loss_threshold
                self.loss_threshold = rng.uniform(0.5, 1.5)
                self.lost += 1
                return None
        d = self.delay_ns
        if self.jitter_ns:
            d = max(0, d + int(rng.uniform(-self.jitter_ns, self.jitter_ns)))
        release = max(now_ns + d, self.last_release_ns)
        self.last_release_ns = release
        return release


@dataclass
class DelayLine:
    topology: Topology
    directions: dict[int, Direction] = field(default_factory=dict)    # by fd
    by_path: dict[str, tuple[Direction, Direction]] = field(default_factory=dict)
    heap: list = field(default_factory=list)
    seq: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def open(self) -> None:
        for p in self.topology.paths:
            out = Direction(p.name, "out", open_tun(p.namespace, TUN_OUT))
            inn = Direction(p.name, "in", open_tun(p.namespace, TUN_IN))
            self.directions[out.fd] = out
            self.directions[inn.fd] = inn
            self.by_path[p.name] = (out, inn)

    # -- control ------------------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "set":
            dirs = self.by_path.get(request.get("path"))
            if dirs is None:
                return {"ok": False, "error": f"unknown path {request.get('path')!r}"}
            for d in dirs:
                d.delay_ns = int(float(request.get("delay", 0.0)) * 1e9)
                d.jitter_ns = int(float(request.get("jitter", 0.0)) * 1e9)
                loss = float(request.get("loss", 0.0))
                if loss != d.loss:
                    d.loss, d.loss_credit = loss, 0.0
                    d.loss_threshold = self.rng.uniform(0.5, 1.5)
                d.last_release_ns = 0   # a new delay applies at once (see module docstring)
                d.holds.clear()
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "queued": len(self.heap), "paths": {
                name: {d.name: {"received": d.received, "sent": d.sent, "lost": d.lost,
                                "errors": d.errors, "delay": d.delay_ns / 1e9,
                                "jitter": d.jitter_ns / 1e9, "loss": d.loss, "held_p50": d.held_p50()}
                         for d in dirs}
                for name, dirs in self.by_path.items()}}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def serve_client(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        try:
            buf = b""
            while not buf.endswith(b"\n") and len(buf) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
            try:
                reply = self.handle(json.loads(buf or b"{}"))
            except (ValueError, TypeError, AttributeError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    # -- packets ------------------------------------------------------------------------------

    def read_from(self, d: Direction, woke_ns: int) -> None:
        """Read ``d``'s waiting packets. Each one's delay counts from ``woke_ns``, when the
        wake-up that found it began, not from when its turn to be read came: probes of several
        paths sent at once arrive together, and reading them one by one would otherwise add
        the reads before it to the last one's delay."""
        for _ in range(READ_BURST):
            try:
                pkt = os.read(d.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                d.errors += 1
                return
            release = d.schedule(woke_ns, self.rng)
            if release is not None:
                self.seq += 1
                heapq.heappush(self.heap, (release, self.seq, d, pkt, woke_ns))

    def release_due(self) -> None:
        heap = self.heap
        limit = time.monotonic_ns() + EARLY_NS
        while heap and heap[0][0] <= limit:
            _, _, d, pkt, read_ns = heapq.heappop(heap)
            try:
                os.write(d.fd, pkt)
                d.sent += 1
                d.holds.append(time.monotonic_ns() - read_ns)
            except OSError:
                d.errors += 1

    def run(self, control: socket.socket) -> None:
        timer = TimerFd()
        ep = select.epoll()
        for fd in self.directions:
            ep.register(fd, select.EPOLLIN)
        ep.register(timer.fd, select.EPOLLIN)
        ep.register(control.fileno(), select.EPOLLIN)
        control_fd = control.fileno()

        def stop(*_):
            # PEP 475 retries epoll_wait after a handler returns: leave by raising instead.
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while True:
            try:
                events = ep.poll(-1 if not self.heap else 1.0)
            except InterruptedError:
                continue
            woke_ns = time.monotonic_ns()
            for fd, _ in events:
                if fd == timer.fd:
                    timer.clear()
                elif fd == control_fd:
                    try:
                        conn, _ = control.accept()
                    except OSError:
                        continue
                    self.serve_client(conn)
                else:
                    self.read_from(self.directions[fd], woke_ns)
            self.release_due()
            if self.heap:
                timer.arm(self.heap[0][0] - EARLY_NS)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    state_dir = argv[0]
    with open(os.path.join(state_dir, "topology.json")) as f:
        topo = Topology.from_json(json.load(f))
    _libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)   # wake-ups at the armed time, not 50 µs later
    # A link is never descheduled; a Python process on a busy 2-core machine is, by tens of ms.
    # SCHED_FIFO at the lowest real-time priority puts the delay line ahead of every normal task
    # (it sleeps in epoll between packets, and the kernel's RT throttling — sched_rt_runtime_us —
    # still leaves the rest of the machine 5% of a saturated core). Fall back to nice -5.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -5)
        except OSError:
            pass
    line = DelayLine(topo)
    line.open()
    path = topo.control_socket
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(path + ".tmp")
    control.listen(16)
    os.rename(path + ".tmp", path)   # appears only once listening: the builder waits for it
    control.setblocking(False)
    with open(os.path.join(state_dir, "delayline.pid.tmp"), "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(os.path.join(state_dir, "delayline.pid.tmp"), os.path.join(state_dir, "delayline.pid"))
    line.run(control)
    return 0


def request(socket_path: str, message: dict, timeout: float = 2.0) -> dict:
    """Send one request to a running delay line and return its answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(socket_path)
        s.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return json.loads(buf)
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
