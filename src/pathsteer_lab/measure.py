"""Measuring inside a lab with the real tools: ping (per-packet RTTs) and iperf3 (throughput).

Used by the lab tests, the demo and the benchmarks; parsing is pure and unit-tested.
"""

from __future__ import annotations

import json
import re
import select
import statistics
import subprocess
import time
from dataclasses import dataclass, field

from pathsteer.errors import LabError
from pathsteer_lab.topology import Topology

_REPLY_RE = re.compile(r"^(?:\[(?P<ts>[0-9.]+)\] )?\d+ bytes from .*icmp_seq=(?P<seq>\d+).* time=(?P<rtt>[0-9.]+) ms")
_SENT_RE = re.compile(r"^(?P<sent>\d+) packets transmitted, (?P<recv>\d+) (?:packets )?received")


@dataclass
class PingResult:
    sent: int
    received: int
    rtts_ms: list[float] = field(default_factory=list)
    replies: list[tuple[float, int, float]] = field(default_factory=list)  # (receive time, seq, rtt ms)
    errors: int = 0            # ICMP errors (unreachable, ...) seen by ping

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 100.0

    @property
    def min(self) -> float:
        return min(self.rtts_ms)

    @property
    def avg(self) -> float:
        return statistics.fmean(self.rtts_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.rtts_ms)

    @property
    def max(self) -> float:
        return max(self.rtts_ms)

    @property
    def stdev(self) -> float:
        return statistics.pstdev(self.rtts_ms) if len(self.rtts_ms) > 1 else 0.0


def parse_ping(output: str) -> PingResult:
    """Parse ``ping -n [-D]`` output (iputils)."""
    result = PingResult(0, 0)
    for line in output.splitlines():
        m = _REPLY_RE.match(line)
        if m:
            rtt = float(m.group("rtt"))
            result.rtts_ms.append(rtt)
            result.replies.append((float(m.group("ts") or 0.0), int(m.group("seq")), rtt))
            continue
        m = _SENT_RE.match(line)
        if m:
            result.sent, result.received = int(m.group("sent")), int(m.group("recv"))
            continue
        if "Unreachable" in line or "Time to live exceeded" in line or "Redirect" in line:
            result.errors += 1
    return result


def ping_argv(destination: str, count: int, interval: float, *, timeout: float = 2.0,
              timestamps: bool = False, size: int | None = None,
              deadline: float | None = None) -> list[str]:
    """ping's argv; ``deadline`` (-w) stops it after that many seconds whatever the count."""
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", f"{timeout:g}"]
    if deadline is not None:
        argv += ["-w", str(max(1, round(deadline)))]   # iputils takes whole seconds
    if timestamps:
        argv.append("-D")
    if size is not None:
        argv += ["-s", str(size)]
    if ":" in destination:
        argv.append("-6")
    return [*argv, destination]


def ping(t: Topology, destination: str, count: int = 20, interval: float = 0.05, *,
         role: str = "client", timeout: float = 2.0, timestamps: bool = False) -> PingResult:
    """Ping ``destination`` from ``role``'s namespace; never raises for loss."""
    argv = ping_argv(destination, count, interval, timeout=timeout, timestamps=timestamps)
    budget = count * interval + timeout + 10
    proc = t.run(role, argv, check=False, timeout=budget)
    result = parse_ping(proc.stdout)
    if result.sent == 0:
        raise LabError(f"ping {destination} from {role} failed: {(proc.stderr or proc.stdout).strip()[-200:]}")
    return result


class IperfServer:
    """``iperf3 -s`` in a namespace for one or more client runs; stop() ends it (also via `with`)."""

    def __init__(self, t: Topology, role: str = "server", port: int = 5201) -> None:
        self.port = port
        self.proc = t.popen(role, ["iperf3", "-s", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:   # until its socket listens (a loaded machine can take a while)
            out = t.run(role, ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
            if out.strip():
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabError(f"iperf3 -s -p {port} did not start listening in {t.resolve(role)}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "IperfServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def iperf3_bps(t: Topology, destination: str, *, seconds: float = 3.0, streams: int = 4,
               port: int = 5201, role: str = "client", reverse: bool = False) -> float:
    """TCP throughput in bit/s from ``role`` to ``destination`` (an `IperfServer` must listen)."""
    argv = ["iperf3", "-c", destination, "-p", str(port), "-t", f"{seconds:g}", "-P", str(streams),
            "-J", "--connect-timeout", "3000"]
    if reverse:
        argv.append("-R")
    proc = t.run(role, argv, check=False, timeout=seconds + 30)
    try:
        data = json.loads(proc.stdout)
        return float(data["end"]["sum_received"]["bits_per_second"])
    except (ValueError, KeyError) as exc:
        raise LabError(f"iperf3 to {destination} failed: {proc.stdout[-300:] or proc.stderr[-300:]} ({exc})") from None


# A UDP echo for fine-grained timing (ping sends at most every 10 ms while replies are pending).
_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print('ready', flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""
_STREAM = """
import json, select, socket, struct, sys, time
dst, port, seconds, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ':' in dst else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, port))
s.setblocking(False)
out, seq, nxt, end = [], 0, time.time(), time.time() + seconds
while True:
    now = time.time()
    if now >= end + 1.0:
        break
    if now >= nxt and now < end:
        s.send(struct.pack('!Id', seq, now)); seq += 1; nxt += interval
    r, _, _ = select.select([s], [], [], max(0.0, min(nxt - time.time(), 0.01)))
    if r:
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            n, sent = struct.unpack('!Id', data[:12])
            if not out:
                print('up', flush=True)
            out.append((sent, (time.time() - sent) * 1e3))
print(json.dumps({"sent": seq, "replies": out}))
"""


class UdpEcho:
    """A UDP echo server on ``address``:``port`` in ``role``'s namespace (``with`` stops it)."""

    def __init__(self, t: Topology, address: str, port: int = 7007, role: str = "server") -> None:
        self.proc = t.popen(role, ["python3", "-c", _ECHO, address, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise LabError(f"UDP echo on {address}:{port} did not start")

    def __enter__(self) -> "UdpEcho":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def udp_stream(t: Topology, destination: str, *, seconds: float, interval: float = 0.001,
               port: int = 7007, role: str = "client", wait_up: float | None = 10.0) -> subprocess.Popen:
    """Start a UDP stream to a `UdpEcho`; `udp_stream_result` collects (send time, RTT ms) pairs.

    Returns once the first reply is back (within ``wait_up`` seconds, else `LabError`; None: at
    once), so "sleep, then break something" measures a stream that is running: starting a Python
    in a namespace can take longer than a test's sleep on a loaded box."""
    proc = t.popen(role, ["python3", "-c", _STREAM, destination, str(port), str(seconds), str(interval)],
                   stdout=subprocess.PIPE, text=True)
    if wait_up is not None:
        ready, _, _ = select.select([proc.stdout], [], [], wait_up)
        line = proc.stdout.readline().strip() if ready else ""
        if line != "up":
            proc.kill()
            proc.communicate()
            raise LabError(f"UDP stream to {destination}:{port}: no reply within {wait_up:g} s")
    return proc


def udp_stream_result(proc: subprocess.Popen) -> tuple[int, list[tuple[float, float]]]:
    out, _ = proc.communicate(timeout=60)
    lines = [x for x in out.splitlines() if x.strip() and x.strip() != "up"]
    data = json.loads(lines[-1])
    return data["sent"], [tuple(x) for x in data["replies"]]


class PathPackets:
    """Counts UDP packets to ``port`` that enter each path from the router (``with``; `counts`).

    An nftables counter in every path namespace, on prerouting from the router-side interface
    (``p-r``): a packet is counted once per path it crosses, whatever its delay, so "did any of
    the stream take p1" is answered by the path itself and not guessed from RTTs (a stalled
    process on this 2-core box delays a p2 reply past p1's RTT)."""

    TABLE = "pslab_count"

    def __init__(self, t: Topology, port: int = 7007) -> None:
        self.t, self.port = t, port

    def __enter__(self) -> "PathPackets":
        from pathsteer_lab.topology import PATH_ROUTER_SIDE_IF
        script = (f"table inet {self.TABLE} {{\n chain pre {{\n  type filter hook prerouting priority -300;\n"
                  f'  iifname "{PATH_ROUTER_SIDE_IF}" udp dport {self.port} counter\n }}\n}}\n')
        try:
            for p in self.t.paths:
                self.t.run(p.name, ["nft", "-f", "-"], input=script)
        except BaseException:
            self.__exit__()
            raise
        return self

    def counts(self) -> dict[str, int]:
        out = {}
        for p in self.t.paths:
            r = self.t.run(p.name, ["nft", "-j", "list", "table", "inet", self.TABLE])
            out[p.name] = sum(item["rule"]["expr"][-1]["counter"]["packets"]
                              for item in json.loads(r.stdout)["nftables"] if "rule" in item)
        return out

    def __exit__(self, *exc) -> None:
        for p in self.t.paths:
            self.t.run(p.name, ["nft", "delete", "table", "inet", self.TABLE], check=False)
