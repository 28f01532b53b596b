"""syncookie: clients' TCP handshakes under a spoofed SYN flood, guard SYN cookies on vs the SYN limit alone.

One lab (one path); the daemon (``pathsteer run``) runs the guard in the router namespace on
r-a (attacker) and r-c (client). The client is *not* in ``allow``. The server runs a small echo
service on PORT (IPv4 and IPv6). The attacker floods the server's port with hping3
(``-S --rand-source``, every SYN from another spoofed address); meanwhile WORKERS client threads
(half IPv4, half IPv6) connect to the server again and again: an attempt succeeds when the
connection is open and one byte came back from the server within DEADLINE_S (so the handshake
reached the server through synproxy, not only the guard's SYN-ACK). hping3 speaks IPv4 only;
the same pair of runs is repeated with an IPv6 SYN flood from trafgen (random source in
2001:db8::/32 and random port per packet, full speed) and the worker counts swapped (one IPv4,
WORKERS IPv6).

Two runs under the same flood, each with a fresh daemon:

* ``on``: ``guard.syn_cookies: {ports: [PORT]}`` (netfilter managed) plus the same SYN limit;
* ``off`` (the anchor): the SYN limit alone, ``syn_limit: {per_destination_pps: 2000}`` — what
  the guard offered before: without an allow list, a client's SYN competes with the flood for
  the destination's 2000 SYNs/s.

Figures, per flooded family: connect success (%) on, with off as the anchor; the flood rate
the guard absorbed (SYNs/s that met step 7: ``tx-syncookie`` on, ``drop-syn`` off, from the
guard's counters over the measured window); for IPv4 also the median handshake time of the
successful attempts; an established flow's iperf3 throughput (no flood) to a protected port,
anchor the same port unprotected; and BPF_PROG_TEST_RUN ns/packet of a SYN answered with a SYN-ACK cookie,
anchor a SYN dropped by the SYN limit — the median of single runs (timer included: ``repeat``
would run the program again on the SYN-ACK the first run left). ``BENCH_SYNCOOKIE_SECONDS``
(default 10) sets the window; ``BENCH_SYNCOOKIE_FLOOD`` (default ``flood``) is the IPv4 flood:
``flood`` (hping3 --flood) or a fixed interval in µs (``u10``).

`run` is also what tests/lab/test_guard_syncookie_lab.py asserts on.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.harness import Figure
import pathsteer_lab as lab

PORT = 8080
SERVER, SERVER6 = "198.51.100.10", "2001:db8:100::10"
WORKERS = 4  # IPv4 client threads
WORKERS6 = 1  # IPv6
DEADLINE_S = 2.0

# The server's echo service: one byte back per connection, then close (threads: the flood
# must not starve it of accept() calls).
ECHO_SERVER = r"""
import socket, sys, threading
def serve(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, int(sys.argv[1])))
    s.listen(4096)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    try:
        c.settimeout(5)
        b = c.recv(1)
        if b:
            c.sendall(b)
    except OSError:
        pass
    finally:
        c.close()
threading.Thread(target=serve, args=(socket.AF_INET6, "::"), daemon=True).start()
print("ready", flush=True)
serve(socket.AF_INET, "0.0.0.0")
"""

# The clients: WORKERS threads, each connecting again and again until the end time.
CLIENT = r"""
import json, socket, sys, threading, time
port, seconds, deadline = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
targets = [addr for arg in sys.argv[4:] for n, addr in [arg.split("*")] for _ in range(int(n))]
end = time.monotonic() + seconds
results = []
lock = threading.Lock()
def work(addr):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    while time.monotonic() < end:
        t0 = time.monotonic()
        ok, stage = False, "connect"
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(deadline)
                s.connect((addr, port))
                stage = "echo"  # the SYN-ACK came: what is left is synproxy's leg to the server
                s.settimeout(max(0.01, deadline - (time.monotonic() - t0)))
                s.sendall(b"x")
                ok = s.recv(1) == b"x"
        except OSError:
            pass
        took = time.monotonic() - t0
        with lock:
            results.append((addr, ok, took, "" if ok else stage))
        time.sleep(0.02)
threads = [threading.Thread(target=work, args=(addr,)) for addr in targets]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"""


@dataclass(frozen=True)
class Result:
    """One run: the clients' attempts and what the guard counted meanwhile."""

    cookies: bool
    attempts: int  # IPv4 (flooded)
    succeeded: int
    attempts_v6: int
    succeeded_v6: int
    handshake_median_s: float  # the flooded family's successful attempts
    seconds: float
    verdicts: dict[str, int]  # packets per verdict during the window
    backlog_drops: int = 0  # packets the kernel dropped on full per-CPU backlogs meanwhile (softnet_stat)
    failed_connect: int = 0  # the flooded family's attempts that got no SYN-ACK within the deadline
    failed_echo: int = 0  # ... connected, but no byte back from the server in time

    @property
    def success_pct(self) -> float:
        return 100.0 * self.succeeded / self.attempts if self.attempts else 0.0

    @property
    def success6_pct(self) -> float:
        return 100.0 * self.succeeded_v6 / self.attempts_v6 if self.attempts_v6 else 0.0

    @property
    def flood_pps(self) -> float:
        """SYNs per second the guard's step 7 dealt with (cookies sent, or SYNs limited)."""
        v = self.verdicts
        n = v.get("tx-syncookie", 0) if self.cookies else v.get("drop-syn", 0)
        return n / self.seconds


def backlog_drops() -> int:
    """Packets dropped because a CPU's input backlog (netdev_max_backlog) was full, all CPUs
    (/proc/net/softnet_stat, second column). Every veth packet passes through such a backlog:
    a flood that fills it drops a client's packets before XDP sees them, a loss a NIC with its
    own receive queues would not have. Machine-wide: other tenants' drops count too."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f if line.strip())


def guard_config(state_dir: str, cookies: bool, ports: tuple[int, ...] = (PORT,)) -> dict:
    guard = {
        "interfaces": ["r-a", "r-c"],
        "syn_limit": {"per_destination_pps": 2000},
        "state_dir": state_dir,
        "sample_drops": 0,
    }
    if cookies:
        guard["syn_cookies"] = {"ports": list(ports)}
    return {"guard": guard}


class Daemon:
    """``pathsteer run`` in the router namespace; stopped (SIGTERM, then SIGKILL) by `stop`."""

    def __init__(self, t: lab.Topology, config: dict, workdir: Path, socket_path: str) -> None:
        self.t, self.socket, self.workdir = t, socket_path, workdir
        self.config_path = workdir / "pathsteer.yaml"
        self.log_path = workdir / "daemon.log"
        self.config_path.write_text(yaml.safe_dump({"control": {"socket": socket_path}, **config}))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log_path, "a") as log:
            self.proc = self.t.popen("router", [sys.executable, "-m", "pathsteer", "run", "--config",
                                                str(self.config_path)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()}")
            if os.path.exists(self.socket) and self.cli("guard", "list").returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout} s: {self.log()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pathsteer", *args, "--socket", self.socket],
                              capture_output=True, text=True, timeout=30)

    def stats(self) -> dict:
        proc = self.cli("guard", "stats", "--json", "--top", "0")
        if proc.returncode != 0:
            raise RuntimeError(f"guard stats: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def log(self) -> str:
        return self.log_path.read_text()[-2000:] if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def echo_server(t: lab.Topology):
    proc = t.popen("server", [sys.executable, "-c", ECHO_SERVER, str(PORT)], stdout=subprocess.PIPE,
                   stderr=subprocess.DEVNULL, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("echo server did not start")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _bytes(text: str) -> str:
    return ", ".join(f"0x{b:02x}" for b in bytes.fromhex(text))


def trafgen6_conf(t: lab.Topology, path: Path) -> Path:
    """An IPv6 SYN flood for trafgen (hping3 has no IPv6): to the server's PORT from a random
    address in 2001:db8::/32 and a random port every packet, TCP checksum computed per packet."""
    import ipaddress
    router_mac = t.run("router", ["cat", "/sys/class/net/r-a/address"]).stdout.strip().replace(":", "")
    own_mac = t.run("attacker", ["cat", "/sys/class/net/a-r/address"]).stdout.strip().replace(":", "")
    dst = ipaddress.IPv6Address(SERVER6).packed.hex()
    path.write_text(
        "{ " + ", ".join([
            _bytes(router_mac), _bytes(own_mac), "0x86, 0xdd",                   # Ethernet, 0..13
            "0x60, 0x00, 0x00, 0x00", "c16(20)", "0x06", "0x40",                 # IPv6, 14..21
            "0x20, 0x01, 0x0d, 0xb8", "drnd(12)", _bytes(dst),                   # 22..53
            "drnd(2)", f"c16({PORT})", "drnd(4)", "c32(0)", "0x50, 0x02",      # TCP SYN, 54..
            "c16(65535)", "csumtcp6(14, 54)", "c16(0)",
        ]) + " }\n")
    return path


def flood_argv(flood: str, conf6: Path | None = None) -> list[str]:
    """hping3 (IPv4: ``flood`` or an interval such as ``u10``) or trafgen (``ipv6``)."""
    if flood == "ipv6":
        return ["trafgen", "-o", "a-r", "-i", str(conf6), "-P", "1", "-C", "-Q"]
    rate = ["--flood"] if flood == "flood" else ["-i", flood]
    return ["hping3", "-S", "--rand-source", *rate, "-p", str(PORT), SERVER]


def run(t: lab.Topology, cookies: bool, workdir: Path, socket_path: str, *, seconds: float = 10.0,
        flood: str = "flood", workers: int = WORKERS, workers6: int = WORKERS6) -> Result:
    """One run: a fresh daemon, the flood, the clients for ``seconds``; everything stopped after.
    The echo server must be running (`echo_server`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    d = Daemon(t, guard_config(str(workdir / "state"), cookies), workdir, socket_path)
    gen = None
    try:
        d.start()
        conf6 = trafgen6_conf(t, workdir / "syn6.cfg") if flood == "ipv6" else None
        gen = t.popen("attacker", flood_argv(flood, conf6), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # the flood at full rate before the window opens
        before, t0, drops0 = d.stats()["verdicts"], time.monotonic(), backlog_drops()
        proc = t.run("client", [sys.executable, "-c", CLIENT, str(PORT), str(seconds), str(DEADLINE_S),
                                f"{workers}*{SERVER}", f"{workers6}*{SERVER6}"], timeout=seconds + 60)
        after, t1, drops1 = d.stats()["verdicts"], time.monotonic(), backlog_drops()
        if gen.poll() is not None:
            raise RuntimeError(f"{flood_argv(flood, conf6)[0]} exited early ({gen.returncode})")
    finally:
        if gen is not None:
            _kill(gen)
        d.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
    rows = json.loads(proc.stdout)
    v4 = [r for r in rows if ":" not in r[0]]
    v6 = [r for r in rows if ":" in r[0]]
    flooded = v6 if flood == "ipv6" else v4
    took = sorted(r[2] for r in flooded if r[1])
    return Result(cookies, len(v4), sum(1 for r in v4 if r[1]), len(v6), sum(1 for r in v6 if r[1]),
                  took[len(took) // 2] if took else float("nan"), t1 - t0,
                  {k: after[k]["packets"] - before[k]["packets"] for k in after}, drops1 - drops0,
                  sum(1 for r in flooded if r[3] == "connect"), sum(1 for r in flooded if r[3] == "echo"))


def throughput_mbps(t: lab.Topology, cookies: bool, workdir: Path, socket_path: str) -> float:
    """iperf3 (2 streams, 3 s, no flood) from the client to the server's 5201 with the guard on
    and that port protected or not: what the conntrack lookup per packet in XDP and synproxy's
    sequence-number translation cost an established flow."""
    from pathsteer_lab import measure
    workdir.mkdir(parents=True, exist_ok=True)
    d = Daemon(t, guard_config(str(workdir / "state"), cookies, ports=(5201,)), workdir, socket_path)
    try:
        d.start()
        with measure.IperfServer(t):
            return measure.iperf3_bps(t, SERVER, seconds=3, streams=2) / 1e6
    finally:
        d.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


def one_at_a_time(program, frame: bytes, runs: int = 20_000) -> float:
    """Median ns of single BPF_PROG_TEST_RUN runs: with ``repeat`` the kernel runs the program
    again on the frame the last run left, and a SYN turned into a SYN-ACK is no SYN any more."""
    return statistics.median(program.test_run(frame).duration_ns for _ in range(runs))


def testrun_ns() -> tuple[float, float]:
    """BPF_PROG_TEST_RUN ns/packet: (a SYN to a protected port answered with a SYN-ACK cookie,
    a SYN dropped by the SYN limit), in a namespace of their own."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from pathsteer.bpf.netns import in_netns
    from pathsteer.guard.program import GuardProgram
    from pathsteer.guard.rules import Limits, RuleSet, SynCookies

    syn = bytes(Ether() / IP(src="203.0.113.5", dst=SERVER) / TCP(sport=40000, dport=PORT, flags="S", options=[
        ("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]))
    ns = f"psbs{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with in_netns(ns):
            with GuardProgram.load() as prog:
                limit = Limits.build(syn_pps=1, syn_burst=1)
                prog.apply(RuleSet(limits=limit, syn_cookies=SynCookies(((PORT, PORT),), frozenset({1}))))
                cookie = one_at_a_time(prog.program, syn)
                prog.apply(RuleSet(limits=limit))
                prog.program.test_run(syn)
                limited = one_at_a_time(prog.program, syn)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return cookie, limited


def main() -> list[Figure]:
    seconds = float(os.environ.get("BENCH_SYNCOOKIE_SECONDS", "10"))
    flood = os.environ.get("BENCH_SYNCOOKIE_FLOOD", "flood")
    name = f"bs{secrets.token_hex(3)}"
    t = lab.up(name, 1)
    os.makedirs("/run/pathsteer/test", exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp, echo_server(t):
            off = run(t, False, Path(tmp) / "off", f"/run/pathsteer/test/{name}-off.sock", seconds=seconds, flood=flood)
            on = run(t, True, Path(tmp) / "on", f"/run/pathsteer/test/{name}-on.sock", seconds=seconds, flood=flood)
            six = dict(seconds=seconds, flood="ipv6", workers=1, workers6=WORKERS)
            off6 = run(t, False, Path(tmp) / "off6", f"/run/pathsteer/test/{name}-off6.sock", **six)
            on6 = run(t, True, Path(tmp) / "on6", f"/run/pathsteer/test/{name}-on6.sock", **six)
            tput_off = throughput_mbps(t, False, Path(tmp) / "tput-off", f"/run/pathsteer/test/{name}-t0.sock")
            tput_on = throughput_mbps(t, True, Path(tmp) / "tput-on", f"/run/pathsteer/test/{name}-t1.sock")
    finally:
        with contextlib.suppress(Exception):
            lab.down(name)
    cookie_ns, limited_ns = testrun_ns()
    for r, family in ((off, "IPv4"), (on, "IPv4"), (off6, "IPv6"), (on6, "IPv6")):
        hit = (r.succeeded, r.attempts) if family == "IPv4" else (r.succeeded_v6, r.attempts_v6)
        other = (r.succeeded_v6, r.attempts_v6) if family == "IPv4" else (r.succeeded, r.attempts)
        print(f"# {family} flood, cookies {'on' if r.cookies else 'off'}: {family} {hit[0]}/{hit[1]} handshakes "
              f"(failed: {r.failed_connect} no SYN-ACK, {r.failed_echo} no echo), median "
              f"{r.handshake_median_s * 1000:.1f} ms; the other family {other[0]}/{other[1]}; flood "
              f"{r.flood_pps:,.0f} SYN/s; backlog drops {r.backlog_drops:,}; verdicts "
              f"{json.dumps({k: v for k, v in r.verdicts.items() if v})}", flush=True)
    return [
        Figure("client IPv4 connect success under spoofed SYN flood, SYN cookies on", on.success_pct, "%",
               "SYN limit only (cookies off)", off.success_pct, goal="value >= 99"),
        Figure("spoofed SYN flood absorbed by the guard, cookies on (SYN-ACK cookies sent)", on.flood_pps, "SYN/s",
               "cookies off (SYNs dropped by the SYN limit)", off.flood_pps),
        Figure("client IPv4 handshake + echo median, cookies on", on.handshake_median_s * 1000, "ms",
               "cookies off (successful attempts only)", off.handshake_median_s * 1000),
        Figure("client IPv6 connect success under spoofed IPv6 SYN flood (trafgen), SYN cookies on", on6.success6_pct,
               "%", "SYN limit only (cookies off)", off6.success6_pct, goal="value >= 99"),
        Figure("spoofed IPv6 SYN flood absorbed by the guard, cookies on", on6.flood_pps, "SYN/s", "cookies off",
               off6.flood_pps),
        Figure("test_run SYN -> SYN-ACK cookie (XDP_TX)", cookie_ns, "ns/packet", "SYN dropped by the SYN limit",
               limited_ns),
        Figure("client iperf3 to a protected port (synproxy, conntrack lookup in XDP)", tput_on, "Mbit/s",
               "the port not protected", tput_off),
    ]


if __name__ == "__main__":
    for fig in main():
        print(fig.line())
