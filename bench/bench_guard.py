"""guard: test_run ns/packet at 10/10k/1M deny prefixes; flood CPU XDP vs nftables; client under flood.

Three parts, each measured in one run against its anchor:

1. ``BPF_PROG_TEST_RUN`` ns/packet of ``xdp_guard`` for a passed and a denied packet with 10,
   10k and 1M deny prefixes (/24s) — anchor: the foundation's ``xdp_count`` counter program.
2. Cost of dropping a flood: trafgen sends the same 64-byte UDP packets from the lab's
   attacker at the router's r-a, which drops them either with the guard (XDP, deny list of
   10k prefixes) or with an nftables netdev-ingress rule on a set of the same prefixes.
   Figure: CPU time in softirq (where both filters run: veth NAPI / the backlog, on the
   sender's CPU) per million dropped packets; the generator's own system time is not in it.
   Busy CPU (generator included) per million is given too. On veth the sender allocates an skb
   for every frame whatever the filter, so XDP cannot skip the allocation it skips on a NIC.
3. A client's iperf3 throughput and ping RTT during an hping3 UDP flood from the attacker,
   with the guard (the attacker denied) and without any guard.
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

from bench.harness import Figure
from pathsteer import lab
from pathsteer.bpf import XdpMode
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.guard.program import GuardProgram
from pathsteer.guard.rules import Limits, RuleSet, Verdict
from pathsteer.lab import measure, netns

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
    for hook, rows in nft.items():
        figures += [
            Figure(f"flood drop CPU, nftables {hook} set (softirq)", per_million(rows, 0), "s per Mpkt",
                   "guard XDP native (softirq)", per_million(xdp, 0), goal="ratio >= 5"),
            Figure(f"flood drop CPU, nftables {hook} set (softirq)", per_million(rows, 0), "s per Mpkt",
                   "guard XDP generic (softirq)", per_million(generic, 0), goal="ratio >= 5"),
            Figure(f"flood drop CPU, nftables {hook} set (sender CPU busy)", per_million(rows, 1), "s per Mpkt",
                   "guard XDP native (sender CPU busy)", per_million(xdp, 1), goal="ratio >= 5"),
        ]
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


def main() -> list[Figure]:
    figures = bench_testrun()
    name = f"bg{secrets.token_hex(3)}"
    t = lab.up(name, 1)
    try:
        figures += bench_flood(t)
        figures += bench_client(t)
    finally:
        with contextlib.suppress(Exception):
            lab.down(name)
    return figures


if __name__ == "__main__":
    for fig in main():
        print(fig.line())
