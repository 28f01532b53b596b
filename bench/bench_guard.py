"""guard: test_run ns/packet at 10/10k/1M deny prefixes; flood CPU XDP vs nftables (live frames, trafgen); client under flood.

Parts, each measured in one run against its anchor (``BENCH_GUARD_PARTS=testrun,live,flood,client``
in the environment picks some):

1. ``testrun``: ``BPF_PROG_TEST_RUN`` ns/packet of ``xdp_guard`` for a passed and a denied
   packet with 10, 10k and 1M deny prefixes (/24s) — anchor: the foundation's ``xdp_count``.
2. Cost of dropping a flood of the same 64-byte UDP frames from the lab's attacker at the
   router's r-a, dropped either by the guard (XDP, deny list of 10k prefixes) or by nftables
   on a set of the same prefixes (netdev ingress, or ip prerouting at raw priority). Figures:
   the guard's CPU per million dropped frames with the nftables figure as the anchor
   (goal: ratio <= 0.2, i.e. XDP at least 5x cheaper). Two ways of delivering the flood:

   ``live`` — as a NIC delivers it. A tiny XDP generator (bpf/xdpgen.bpf.c) runs through
   BPF_PROG_TEST_RUN in live-frames mode in this thread, pinned to LIVE_CPU, in the attacker's
   namespace: the kernel puts the frame in a page-pool page and the generator's
   ``bpf_redirect(a-r)`` sends it as an xdp_frame through veth's ndo_xdp_xmit into r-a's ring;
   no skb exists on the sending side. r-a then polls the ring in NAPI: with the guard attached
   in NATIVE mode the frame meets XDP as an xdp_frame and is dropped with no skb ever built;
   without an XDP program r-a needs GRO on (veth takes redirected frames only while it runs
   NAPI: an XDP program or GRO; set here by ioctl and restored after) and builds an skb per
   frame that goes through GRO and the stack to the nftables hook.
   Where the work runs: test_run sends 64 frames per batch with bottom halves disabled; the
   flush at the end of a batch schedules r-a's NAPI on this CPU and re-enabling bottom halves
   runs that poll right here, in this thread. This kernel accounts CPU time by tick without
   IRQ_TIME_ACCOUNTING, so softirq work served in a thread is in its CPU time: the figure is
   the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) plus whatever ksoftirqd/LIVE_CPU ran
   meanwhile (its schedstat), per million frames the filter counted as dropped (guard verdict
   counter, nft rule counter; a warning is printed if fewer than 99% were). Softirq time on
   the other CPU is printed as a check and not counted (it is other tenants' work: a run of
   1M frames left CPU 0's softirq jiffies unmoved on an idle machine). Both figures include
   what producing the frames costs (the "NIC"); the generator alone (its XDP_DROP, target 0)
   is measured too and a second pair of figures subtracts it: the receive side only.

   ``flood`` — trafgen (``-P 1``, pinned to CPU 0) writes the frames to a-r through a packet
   socket. On veth that builds an skb per frame on the sender whatever the receiver's filter
   (and native veth XDP then converts each skb into an xdp_buff, a copy), so XDP cannot skip
   the allocation it skips on a NIC; the figure is CPU 0's softirq time (veth's backlog/NAPI,
   where both filters run) per million dropped packets, and the sender CPU's busy time.
   Honest numbers of a different setup, kept beside the live ones.
3. ``client``: a client's iperf3 throughput and ping RTT during an hping3 UDP flood from the
   attacker, with the guard (the attacker denied) and without any guard.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from bench.harness import Figure
from pathsteer.bpf import XdpMode
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.guard.program import GuardProgram
from pathsteer.guard.rules import Limits, RuleSet, Verdict
import pathsteer_lab as lab
from pathsteer_lab import measure, netns

REPEAT = 200_000
ROUNDS = 5
FLOOD_PACKETS = 2_000_000
SERVER = "198.51.100.10"
ATTACKER_NET = ipaddress.ip_network("10.250.0.0/24")


def deny_prefixes(n: int, must_include: ipaddress.IPv4Network | None = None,
                  avoid: ipaddress.IPv4Address | None = None) -> list[ipaddress.IPv4Network]:
    """``n`` distinct /24s spread over the address space (i * odd mod 2^24 is a bijection)."""
    out = [must_include] if must_include else []
    i = 0
    while len(out) < n:
        base = ((i * 7919) % (1 << 24)) << 8
        i += 1
        net = ipaddress.IPv4Network((base, 24))
        if net == must_include or (avoid is not None and avoid in net):
            continue
        out.append(net)
    return out


def frame(src: str) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return bytes(Ether() / IP(src=src, dst=SERVER) / UDP(sport=1234, dport=9) / (b"x" * 18))


def ns_per_packet(program, data: bytes) -> float:
    return statistics.median(program.test_run(data, repeat=REPEAT).duration_ns for _ in range(ROUNDS))


# --- 1: test_run ----------------------------------------------------------------------------

def bench_testrun() -> list[Figure]:
    figures = []
    pass_src = "240.0.0.1"
    with Counters.load() as counters:
        anchor = ns_per_packet(counters.programs[Hook.XDP], frame(pass_src))
    for n in (10, 10_000, 1_000_000):
        nets = deny_prefixes(n, avoid=ipaddress.ip_address(pass_src))
        drop_src = str(nets[0].network_address + 1)
        with GuardProgram.load() as prog:
            t0 = time.perf_counter()
            prog.apply(RuleSet(deny={net: 1 for net in nets}))
            programmed = time.perf_counter() - t0
            passed = ns_per_packet(prog.program, frame(pass_src))
            dropped = ns_per_packet(prog.program, frame(drop_src))
            totals = prog.verdict_totals()
            assert totals[Verdict.DROP_DENY].packets >= REPEAT and totals[Verdict.PASS].packets >= REPEAT
        label = {10: "10", 10_000: "10k", 1_000_000: "1M"}[n]
        figures.append(Figure(f"guard test_run pass, {label} deny prefixes", passed, "ns/packet",
                              "counters xdp_count", anchor))
        figures.append(Figure(f"guard test_run drop, {label} deny prefixes", dropped, "ns/packet",
                              "counters xdp_count", anchor))
        print(f"# {label} deny prefixes programmed in {programmed:.2f} s", flush=True)
    # everything on: allow + deny misses, source meter + token bucket, port rules, SYN check
    with GuardProgram.load() as prog:
        from pathsteer.guard.rules import Action, PortRule
        prog.apply(RuleSet(allow={ipaddress.ip_network("10.200.0.0/24"): 2},
                           deny={net: 1 for net in deny_prefixes(10_000, avoid=ipaddress.ip_address(pass_src))},
                           port_rules=(PortRule(17, Action.DROP, dport=(11211, 11211), rule_id=3),),
                           limits=Limits.build(per_source_pps=10**9, burst=10**9, threshold_pps=10**9,
                                               syn_pps=2000)))
        full = ns_per_packet(prog.program, frame(pass_src))
    figures.append(Figure("guard test_run pass, every check on (10k deny)", full, "ns/packet",
                          "counters xdp_count", anchor))
    return figures


# --- 2: flood CPU, XDP vs nftables ----------------------------------------------------------

GEN_CPU = 0  # trafgen pins its one worker (-P 1) to CPU 0; veth receive work runs there too


def _cpu_jiffies(cpu: int = GEN_CPU) -> tuple[int, int]:
    """(softirq, busy) jiffies of ``cpu`` from /proc/stat: the sender's CPU, where veth's
    backlog / NAPI processing (and so both filters) runs; other CPUs' noise stays out."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                fields = [int(x) for x in line.split()[1:]]
                break
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return softirq, user + nice + system + irq + softirq + steal


def _trafgen_conf(t: lab.Topology, workdir: str) -> str:
    router_mac = t.run("router", ["cat", "/sys/class/net/r-a/address"]).stdout.strip()
    own_mac = t.run("attacker", ["cat", "/sys/class/net/a-r/address"]).stdout.strip()
    path = os.path.join(workdir, "udp.cfg")
    with open(path, "w") as f:
        f.write(f"{{ eth(da={router_mac}, sa={own_mac}), ipv4(saddr={t.attacker_address}, daddr={SERVER}, ttl=64),"
                f" udp(sp=1234, dp=9), fill(0x41, 18) }}\n")
    return path


def _flood(t: lab.Topology, conf: str) -> tuple[float, float, float]:
    """Send FLOOD_PACKETS; (softirq s, busy s, wall s)."""
    hz = os.sysconf("SC_CLK_TCK")
    s0, b0 = _cpu_jiffies()
    w0 = time.perf_counter()
    t.run("attacker", ["trafgen", "-o", "a-r", "-i", conf, "-n", str(FLOOD_PACKETS), "-P", "1", "-C", "-Q"],
          timeout=120)
    time.sleep(0.3)  # let the receiver drain its queue
    s1, b1 = _cpu_jiffies()
    return (s1 - s0) / hz, (b1 - b0) / hz, time.perf_counter() - w0 - 0.3


NFT_HOOKS = {
    # name: (family, chain spec): the earliest hook nftables has, and the usual firewall place
    "netdev ingress": ("netdev", 'type filter hook ingress device "r-a" priority -500;'),
    "ip prerouting raw": ("ip", "type filter hook prerouting priority -300;"),
}


def _nft_ruleset(nets: list[ipaddress.IPv4Network], hook: str) -> str:
    family, chain = NFT_HOOKS[hook]
    elements = ", ".join(str(n) for n in nets)
    return (f"table {family} psbench {{\n"
            "  set deny4 { type ipv4_addr; flags interval; elements = { " + elements + " } }\n"
            f"  chain filter {{ {chain} policy accept;\n"
            '    iifname "r-a" ip saddr @deny4 counter drop\n  }\n}\n')


def _nft_dropped(t: lab.Topology, family: str) -> int:
    out = json.loads(t.run("router", ["nft", "-j", "list", "table", family, "psbench"]).stdout)
    for item in out["nftables"]:
        rule = item.get("rule")
        if rule:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return expr["counter"]["packets"]
    return 0


def bench_flood(t: lab.Topology) -> list[Figure]:
    nets = deny_prefixes(10_000, must_include=ATTACKER_NET)
    workdir = tempfile.mkdtemp(prefix="psbench-")
    conf = _trafgen_conf(t, workdir)
    nft_files = {}
    for hook in NFT_HOOKS:
        nft_files[hook] = os.path.join(workdir, f"nft-{NFT_HOOKS[hook][0]}.conf")
        with open(nft_files[hook], "w") as f:
            f.write(_nft_ruleset(nets, hook))
    xdp, generic = [], []
    nft: dict[str, list] = {hook: [] for hook in NFT_HOOKS}
    with netns.entered(t.router):
        prog = GuardProgram.load()
    try:
        with netns.entered(t.router):
            prog.apply(RuleSet(deny={net: 1 for net in nets}))
        for _ in range(3):
            for mode, rows in ((XdpMode.NATIVE, xdp), (XdpMode.GENERIC, generic)):
                with netns.entered(t.router):
                    prog.attach(["r-a"], mode)
                    before = prog.verdict_totals()[Verdict.DROP_DENY].packets
                soft, busy, wall = _flood(t, conf)
                with netns.entered(t.router):
                    dropped = prog.verdict_totals()[Verdict.DROP_DENY].packets - before
                    prog.detach_all()
                rows.append((soft, busy, dropped, wall))
            for hook, path in nft_files.items():
                family = NFT_HOOKS[hook][0]
                t.run("router", ["nft", "-f", path])
                try:
                    soft, busy, wall = _flood(t, conf)
                    nft[hook].append((soft, busy, _nft_dropped(t, family), wall))
                finally:
                    t.run("router", ["nft", "delete", "table", family, "psbench"], check=False)
    finally:
        with netns.entered(t.router):
            prog.detach_all()
            prog.close()

    def per_million(rows, index):
        return statistics.median(r[index] / max(r[2], 1) * 1e6 for r in rows)

    for name, rows in (("xdp native", xdp), ("xdp generic", generic), *nft.items()):
        r = sorted(rows)[len(rows) // 2]
        print(f"# {name}: dropped {r[2]} of {FLOOD_PACKETS} in {r[3]:.2f} s; softirq {r[0]:.2f} s, busy {r[1]:.2f} s",
              flush=True)
    figures = []
    label = "flood drop CPU, trafgen (sender builds an skb per frame)"
    for hook, rows in nft.items():
        figures += [
            Figure(f"{label}, guard XDP native (softirq)", per_million(xdp, 0), "s per Mpkt",
                   f"nftables {hook} set (softirq)", per_million(rows, 0), goal="ratio <= 0.2"),
            Figure(f"{label}, guard XDP generic (softirq)", per_million(generic, 0), "s per Mpkt",
                   f"nftables {hook} set (softirq)", per_million(rows, 0), goal="ratio <= 0.2"),
            Figure(f"{label}, guard XDP native (sender CPU busy)", per_million(xdp, 1), "s per Mpkt",
                   f"nftables {hook} set (sender CPU busy)", per_million(rows, 1), goal="ratio <= 0.2"),
        ]
    return figures


# --- 2b: flood CPU with live frames: delivered as a NIC delivers them ----------------------

LIVE_FRAMES = 2_000_000
LIVE_ROUNDS = int(os.environ.get("BENCH_GUARD_LIVE_ROUNDS", "3"))
LIVE_CPU = 1  # the generator thread's CPU; the receiver's NAPI poll runs there too


def _ksoftirqd_ns(cpu: int) -> int:
    """CPU time (ns, the scheduler's own sum) of ksoftirqd/``cpu``: softirq work deferred there."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != f"ksoftirqd/{cpu}":
                        continue
                with open(f"/proc/{pid}/schedstat") as f:
                    return int(f.read().split()[0])
            except OSError:
                continue
    return 0


def _softirq_jiffies() -> dict[int, int]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                fields = line.split()
                out[int(fields[0][3:])] = int(fields[7])
    return out


def _live_run(gen, frame_bytes: bytes, count: int) -> tuple[float, float, float]:
    """Send ``count`` frames by live-frames test_run from this thread (pinned to LIVE_CPU);
    (CPU s charged, of which in ksoftirqd, softirq s seen on the other CPUs)."""
    from pathsteer.bpf.testrun import prog_test_run_live
    hz = os.sysconf("SC_CLK_TCK")
    s0, k0 = _softirq_jiffies(), _ksoftirqd_ns(LIVE_CPU)
    c0 = time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)
    prog_test_run_live(gen, frame_bytes, count)
    c1 = time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)
    time.sleep(0.05)  # anything left in the peer's ring is polled meanwhile (by ksoftirqd)
    k1, s1 = _ksoftirqd_ns(LIVE_CPU), _softirq_jiffies()
    soft = (k1 - k0) / 1e9
    other = sum(s1[c] - s0[c] for c in s1 if c != LIVE_CPU) / hz
    return (c1 - c0) + soft, soft, other


def bench_flood_live(t: lab.Topology) -> list[Figure]:
    """Part 2 again, with the flood delivered the way a NIC delivers it (see the docstring)."""
    import ctypes

    from pathsteer.bpf import attach_xdp, detach_xdp, ifindex_of, load_object
    from pathsteer.bpf.testrun import gro as _gro
    nets = deny_prefixes(10_000, must_include=ATTACKER_NET)
    router_mac = t.run("router", ["cat", "/sys/class/net/r-a/address"]).stdout.strip()
    own_mac = t.run("attacker", ["cat", "/sys/class/net/a-r/address"]).stdout.strip()
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    flood = bytes(Ether(dst=router_mac, src=own_mac) / IP(src=t.attacker_address, dst=SERVER, ttl=64)
                  / UDP(sport=1234, dport=9) / (b"A" * 18))
    workdir = tempfile.mkdtemp(prefix="psbench-live-")
    nft_files = {}
    for hook in NFT_HOOKS:
        nft_files[hook] = os.path.join(workdir, f"nft-{NFT_HOOKS[hook][0]}.conf")
        with open(nft_files[hook], "w") as f:
            f.write(_nft_ruleset(nets, hook))
    rows: dict[str, list[tuple[float, float, float, int]]] = {}
    affinity = os.sched_getaffinity(0)
    with netns.entered(t.router):
        guard = GuardProgram.load()
        gro_was = _gro("r-a")
    try:
        with netns.entered(t.router):
            guard.apply(RuleSet(deny={net: 1 for net in nets}))
            _gro("r-a", True)  # without an XDP program veth polls (and takes frames) only with GRO on
        with netns.entered(t.attacker):
            gen_obj = load_object("xdpgen")
            gen = gen_obj.program("xdp_gen")
            target = gen_obj.map("xdpgen_target", ctypes.c_uint32, ctypes.c_uint32)
            a_r = ifindex_of("a-r")
            # the floor of XDP on r-a: a second generator instance (target 0: XDP_DROP, one
            # array lookup) as the receiver's program, to show what is the guard's own
            floor_obj = load_object("xdpgen")
        floor_prog = floor_obj.program("xdp_gen")
        os.sched_setaffinity(0, {LIVE_CPU})

        def run(name: str, target_ifindex: int, dropped: Callable[[], int] | None) -> None:
            """dropped: the filter's drop counter (None: the generator drops every frame itself)."""
            before = dropped() if dropped else 0
            with netns.entered(t.attacker):
                target.update(0, target_ifindex)
                cpu, soft, other = _live_run(gen, flood, LIVE_FRAMES)
            rows.setdefault(name, []).append((cpu, soft, other, dropped() - before if dropped else LIVE_FRAMES))

        def guard_drops() -> int:
            with netns.entered(t.router):
                return guard.verdict_totals()[Verdict.DROP_DENY].packets

        for _ in range(LIVE_ROUNDS):
            run("generator only", 0, None)  # XDP_DROP in the generator: what producing frames costs
            with netns.entered(t.router):
                guard.attach(["r-a"], XdpMode.NATIVE)
            try:
                run("guard XDP native", a_r, guard_drops)
            finally:
                with netns.entered(t.router):
                    guard.detach_all()
            with netns.entered(t.router):
                floor = attach_xdp(floor_prog, "r-a", XdpMode.NATIVE)
            try:
                run("minimal XDP_DROP program", a_r, None)
            finally:
                with netns.entered(t.router):
                    detach_xdp("r-a", floor.prog_id)
            for hook, path in nft_files.items():
                family = NFT_HOOKS[hook][0]
                t.run("router", ["nft", "-f", path])
                try:
                    run(f"nftables {hook} set", a_r, lambda family=family: _nft_dropped(t, family))
                finally:
                    t.run("router", ["nft", "delete", "table", family, "psbench"], check=False)
    finally:
        os.sched_setaffinity(0, affinity)
        with netns.entered(t.router):
            guard.detach_all()
            guard.close()
            _gro("r-a", gro_was)
        with contextlib.suppress(NameError):
            target.close()
            gen_obj.close()
            floor_obj.close()

    def per_million(name: str, minus: float = 0.0) -> float:
        return statistics.median(r[0] / max(r[3], 1) * 1e6 for r in rows[name]) - minus

    def dropped_by_filter(name: str) -> bool:
        return name not in ("generator only", "minimal XDP_DROP program")

    for name, rs in rows.items():
        r = sorted(rs)[len(rs) // 2]
        print(f"# live frames, {name}: dropped {r[3]} of {LIVE_FRAMES}; CPU {r[0]:.3f} s (ksoftirqd {r[1]:.3f} s);"
              f" softirq on other CPUs meanwhile {r[2]:.2f} s (not counted)", flush=True)
        if dropped_by_filter(name) and r[3] < LIVE_FRAMES * 0.99:
            print(f"# WARNING live frames, {name}: only {r[3]} of {LIVE_FRAMES} frames were dropped by the filter",
                  flush=True)
    gen_cost = per_million("generator only")
    xdp = per_million("guard XDP native")
    figures = []
    for hook in NFT_HOOKS:
        nft = per_million(f"nftables {hook} set")
        print(f"# live frames: nftables {hook} / guard XDP = {nft / xdp:.2f} with the generator,"
              f" {(nft - gen_cost) / max(xdp - gen_cost, 1e-9):.2f} receive side only", flush=True)
        figures += [
            Figure("flood drop CPU, live frames, guard XDP native (generator + receive)", xdp, "s per Mpkt",
                   f"nftables {hook} set, GRO on", nft, goal="ratio <= 0.2"),
            Figure("flood drop CPU, live frames, guard XDP native (receive side: minus generator)",
                   xdp - gen_cost, "s per Mpkt", f"nftables {hook} set, GRO on (minus generator)", nft - gen_cost,
                   goal="ratio <= 0.2"),
        ]
    floor_cost = per_million("minimal XDP_DROP program")
    print(f"# live frames: generator alone {gen_cost:.3f} s per Mpkt; with a minimal XDP_DROP program on r-a"
          f" {floor_cost:.3f} (so the guard's own share is {xdp - floor_cost:.3f})", flush=True)
    figures.append(Figure("flood drop CPU, live frames, minimal XDP_DROP program on r-a (generator + receive)",
                          floor_cost, "s per Mpkt", "guard XDP native (generator + receive)", xdp))
    return figures


# --- 3: the client during a flood -----------------------------------------------------------

def _client_under_flood(t: lab.Topology) -> tuple[float, float]:
    """(iperf3 Mbit/s, ping median ms) from the client while the attacker floods the server."""
    flood = t.popen("attacker", ["hping3", "--flood", "--udp", "-p", "9", "-d", "32", SERVER],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        pinger = t.popen("client", measure.ping_argv(SERVER, 100, 0.03, timeout=1), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        with measure.IperfServer(t):
            bps = measure.iperf3_bps(t, SERVER, seconds=3, streams=2)
        out, _ = pinger.communicate(timeout=30)
        p = measure.parse_ping(out)
        return bps / 1e6, (p.median if p.rtts_ms else float("nan"))
    finally:
        flood.send_signal(signal.SIGINT)
        try:
            flood.wait(timeout=3)
        except subprocess.TimeoutExpired:
            flood.kill()
            flood.wait()


def bench_client(t: lab.Topology) -> list[Figure]:
    bare_bps, bare_rtt = _client_under_flood(t)
    with netns.entered(t.router):
        prog = GuardProgram.load()
        try:
            prog.apply(RuleSet(deny={ATTACKER_NET: 1}))
            prog.attach(["r-a", "r-c"])
        except BaseException:
            prog.close()
            raise
    try:
        guard_bps, guard_rtt = _client_under_flood(t)
    finally:
        with netns.entered(t.router):
            prog.detach_all()
            prog.close()
    return [
        Figure("client iperf3 during UDP flood, with guard", guard_bps, "Mbit/s", "without guard", bare_bps),
        Figure("client ping median during UDP flood, with guard", guard_rtt, "ms", "without guard", bare_rtt),
    ]


def main(parts: tuple[str, ...] = ("testrun", "flood", "live", "client")) -> list[Figure]:
    """Every part; ``BENCH_GUARD_PARTS=live,flood`` (environment) picks some."""
    parts = tuple(os.environ.get("BENCH_GUARD_PARTS", ",".join(parts)).split(","))
    figures = bench_testrun() if "testrun" in parts else []
    if not {"flood", "live", "client"} & set(parts):
        return figures
    name = f"bg{secrets.token_hex(3)}"
    t = lab.up(name, 1)
    try:
        if "live" in parts:
            figures += bench_flood_live(t)
        if "flood" in parts:
            figures += bench_flood(t)
        if "client" in parts:
            figures += bench_client(t)
    finally:
        with contextlib.suppress(Exception):
            lab.down(name)
    return figures


if __name__ == "__main__":
    for fig in main():
        print(fig.line())
