"""SYN cookies through BPF_PROG_TEST_RUN: a SYN to a protected port comes back as a SYN-ACK
cookie (XDP_TX) and an ACK passes only with a valid one, IPv4 and IPv6.

The cookie itself is the kernel's (its secret): a test cannot compute it, but it can hand the
SYN-ACK's sequence number back in an ACK, as a client does, and see the program's
bpf_tcp_raw_check_syncookie accept it — and refuse it for another flow or off by one.
What the SYN-ACK's timestamp carries is netfilter synproxy's encoding (enum guard_tscookie,
read from the object's BTF).
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Dot1Q, Ether

from pathsteer.bpf import Btf
from pathsteer.guard.model import LOOPBACK_IFINDEX, GuardModel
from pathsteer.guard.rules import Limits, RuleSet, SynCookies, Verdict

NOW = 1_000_000_000_000  # frozen clock: 1000 s, so the timestamp's time part is 1000000 ms
E = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
N = ipaddress.ip_network
V4 = dict(src="203.0.113.5", dst="198.51.100.10")
V6 = dict(src="2001:db8:1::5", dst="2001:db8:100::10")
LINUX_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None), ("WScale", 9)]
COOKIES = SynCookies(((80, 80), (8000, 8080)), frozenset({LOOPBACK_IFINDEX}))
RULES = RuleSet(allow={N("10.200.0.0/24"): 1}, deny={N("192.0.2.0/24"): 2},
                limits=Limits.build(syn_pps=100, syn_burst=2), syn_cookies=COOKIES)


@pytest.fixture(scope="module")
def xdp():
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        return {name: vmlinux.constant("xdp_action", name) for name in ("XDP_PASS", "XDP_DROP", "XDP_TX")}


@pytest.fixture
def cookies(guard):
    guard.apply(RULES, clock_ns=NOW)
    return guard


def run(guard, frame: bytes) -> tuple[int, bytes, Verdict]:
    """(retval, output frame, the one verdict whose counter moved)."""
    before = guard.verdict_totals()
    result = guard.program.test_run(bytes(frame))
    after = guard.verdict_totals()
    moved = [v for v in after if after[v] != before[v]]
    assert len(moved) == 1, moved
    return result.retval, result.data_out, moved[0]


def syn(ip, sport=40000, dport=80, options=LINUX_OPTIONS, flags="S", seq=1000):
    return bytes(E / ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq, options=options))


def ack_for(synack: bytes, ip, sport=40000, dport=80, seq=1001, delta=0):
    cookie = Ether(synack)[TCP].seq
    return bytes(E / ip / TCP(sport=sport, dport=dport, flags="A", seq=seq, ack=(cookie + 1 + delta) % 2**32))


def tscookie(guard) -> dict[str, int]:
    return guard._obj.btf.enum_values("guard_tscookie")


def assert_checksums(frame: bytes) -> None:
    pkt = Ether(frame)
    del pkt[TCP].chksum
    if IP in pkt:
        del pkt[IP].chksum
    assert bytes(pkt) == frame


@pytest.mark.parametrize("ip, mss", [(IP(**V4), 1460), (IPv6(**V6), 1440)], ids=["IPv4", "IPv6"])
def test_syn_answered_with_cookie_and_its_ack_passes(cookies, xdp, ip, mss):
    frame = syn(ip)
    ret, out, verdict = run(cookies, frame)
    assert (ret, verdict) == (xdp["XDP_TX"], Verdict.TX_SYNCOOKIE)
    assert GuardModel.for_limits(RULES, cookies.limits).decide(frame, NOW).verdict is Verdict.TX_SYNCOOKIE
    reply = Ether(out)
    rip = reply[IP] if IP in reply else reply[IPv6]
    assert (reply.src, reply.dst) == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert (rip.src, rip.dst) == (ip.dst, ip.src)
    th = reply[TCP]
    assert (th.sport, th.dport, th.flags, th.ack, th.window) == (80, 40000, "SA", 1001, 0)
    t = tscookie(cookies)
    tsval = (NOW // 1_000_000) & ~((1 << t["GUARD_TSCOOKIE_BITS"]) - 1) | 9 | t["GUARD_TSCOOKIE_SACK"]
    assert th.options == [("MSS", mss), ("SAckOK", b""), ("Timestamp", (tsval, 12345)), ("NOP", None), ("WScale", 7)]
    if IP in reply:
        assert (rip.ihl, rip.flags, rip.ttl, rip.len) == (5, "DF", 64, 20 + 40)
    else:
        assert (rip.nh, rip.hlim, rip.plen) == (6, 64, 40)
    assert len(out) == 14 + (20 if IP in reply else 40) + 40
    assert_checksums(out)

    ret, _, verdict = run(cookies, ack_for(out, ip))
    assert (ret, verdict) == (xdp["XDP_PASS"], Verdict.PASS_COOKIE)
    # The cookie's low bits are the MSS index (net/ipv4/syncookies.c): +1 may still name an MSS
    # (the kernel accepts that too); +4 names none; +2^24 moves the minute counter
    for bad in (ack_for(out, ip, delta=4), ack_for(out, ip, delta=1 << 24), ack_for(out, ip, sport=40001)):
        ret, _, verdict = run(cookies, bad)
        assert (ret, verdict) == (xdp["XDP_DROP"], Verdict.DROP_COOKIE)


@pytest.mark.parametrize("ip", [IP(**V4), IPv6(**V6)], ids=["IPv4", "IPv6"])
def test_syn_without_timestamp_gets_mss_only(cookies, xdp, ip):
    """No timestamp: nowhere to keep window scale and SACK, so they are not offered (as synproxy)."""
    ret, out, verdict = run(cookies, syn(ip, options=[("MSS", 536), ("WScale", 3), ("SAckOK", b"")]))
    assert verdict is Verdict.TX_SYNCOOKIE
    assert Ether(out)[TCP].options == [("MSS", 1460 if IP in Ether(out) else 1440)]
    assert_checksums(out)
    ret, _, verdict = run(cookies, ack_for(out, ip))
    assert verdict is Verdict.PASS_COOKIE


def test_syn_with_no_options_and_ecn(cookies):
    """A SYN with no options still gets a cookie (the kernel's MSS default, 536); an ECN SYN
    (ECE+CWR) with a timestamp gets ECE back and the ECN bit in the timestamp; without window
    scale the timestamp says 0xf and no window scale is offered."""
    ret, out, verdict = run(cookies, syn(IP(**V4), options=[]))
    assert verdict is Verdict.TX_SYNCOOKIE and Ether(out)[TCP].options == [("MSS", 1460)]
    ret, out, verdict = run(cookies, syn(IP(**V4), flags="SEC", options=[("Timestamp", (5, 0))]))
    t = tscookie(cookies)
    th = Ether(out)[TCP]
    assert th.flags == "SAE"
    tsval, tsecr = dict(th.options)["Timestamp"]
    assert tsecr == 5 and tsval & 0x3f == t["GUARD_TSCOOKIE_ECN"] | t["GUARD_TSCOOKIE_WSCALE_MASK"]
    assert [k for k, _ in th.options] == ["MSS", "NOP", "NOP", "Timestamp"]
    ret, out, verdict = run(cookies, syn(IP(**V4), options=[("Timestamp", (5, 0)), ("WScale", 200)]))
    tsval, _ = dict(Ether(out)[TCP].options)["Timestamp"]
    assert tsval & t["GUARD_TSCOOKIE_WSCALE_MASK"] == t["GUARD_TSCOOKIE_MAX_WSCALE"]  # clamped (RFC 7323 §2.3)


def test_configured_mss_wscale_ttl(guard):
    sc = SynCookies(((443, 443),), frozenset({LOOPBACK_IFINDEX}), mss4=1400, mss6=1380, wscale=11, ttl=200)
    guard.apply(RuleSet(syn_cookies=sc), clock_ns=NOW)
    _, out, _ = run(guard, syn(IP(**V4), dport=443))
    reply = Ether(out)
    assert reply[IP].ttl == 200 and dict(reply[TCP].options)["MSS"] == 1400 and dict(reply[TCP].options)["WScale"] == 11
    _, out, _ = run(guard, syn(IPv6(**V6), dport=443))
    reply = Ether(out)
    assert reply[IPv6].hlim == 200 and dict(reply[TCP].options)["MSS"] == 1380


def test_ip_options_extension_headers_and_vlan(cookies, xdp):
    """The reply is rebuilt without IPv4 options or IPv6 extension headers; a VLAN tag stays."""
    _, out, verdict = run(cookies, syn(IP(**V4, options=[b"\x01\x01\x01\x00"])))
    assert verdict is Verdict.TX_SYNCOOKIE and Ether(out)[IP].ihl == 5
    assert_checksums(out)
    _, out, verdict = run(cookies, syn(IPv6(**V6) / IPv6ExtHdrDestOpt()))
    reply = Ether(out)
    assert verdict is Verdict.TX_SYNCOOKIE and reply[IPv6].nh == 6 and reply[IPv6].plen == 40
    assert_checksums(out)
    frame = bytes(E / Dot1Q(vlan=7) / IP(**V4) / TCP(sport=1, dport=8080, flags="S", seq=0, options=LINUX_OPTIONS))
    ret, out, verdict = run(cookies, frame)
    reply = Ether(out)
    assert verdict is Verdict.TX_SYNCOOKIE and reply[Dot1Q].vlan == 7 and reply[TCP].sport == 8080
    ret, _, verdict = run(cookies, bytes(E / Dot1Q(vlan=7) / IP(**V4) / TCP(
        sport=1, dport=8080, flags="A", seq=1, ack=reply[TCP].seq + 1)))
    assert verdict is Verdict.PASS_COOKIE


TABLE = [
    # description, frame, verdict
    ("SYN to an unprotected port: the SYN limit's business", syn(IP(**V4), dport=81), Verdict.PASS),
    ("ACK to an unprotected port", bytes(E / IP(**V4) / TCP(dport=22, flags="A")), Verdict.PASS),
    ("RST to a protected port, no connection", bytes(E / IP(**V4) / TCP(dport=80, flags="R")), Verdict.DROP_COOKIE),
    ("FIN+ACK to a protected port, no connection", bytes(E / IP(**V4) / TCP(dport=80, flags="FA")), Verdict.DROP_COOKIE),
    ("SYN-ACK to a protected port (backscatter)", bytes(E / IPv6(**V6) / TCP(dport=80, flags="SA")), Verdict.DROP_COOKIE),
    ("SYN+RST", bytes(E / IP(**V4) / TCP(dport=80, flags="SR")), Verdict.DROP_COOKIE),
    ("no flags at all", bytes(E / IP(**V4) / TCP(dport=8000, flags="")), Verdict.DROP_COOKIE),
    ("ACK with data and a made-up cookie", bytes(E / IP(**V4) / TCP(dport=8080, flags="PA", ack=12345) / b"GET /"),
     Verdict.DROP_COOKIE),
    ("SYN from an allowed source: not answered, the stack's synproxy does",
     syn(IP(src="10.200.0.2", dst="198.51.100.10")), Verdict.PASS_ALLOW),
    ("SYN from a denied source", syn(IP(src="192.0.2.9", dst="198.51.100.10")), Verdict.DROP_DENY),
    ("UDP to port 80: not TCP", bytes(E / IP(**V4) / UDP(dport=80)), Verdict.PASS),
]


@pytest.mark.parametrize("description, frame, verdict", TABLE, ids=[row[0] for row in TABLE])
def test_table(cookies, xdp, description, frame, verdict):
    assert GuardModel.for_limits(RULES, cookies.limits).decide(frame, NOW).verdict is verdict, f"model: {description}"
    ret, _, got = run(cookies, frame)
    assert got is verdict, description
    assert ret == xdp["XDP_DROP" if verdict.drops else "XDP_PASS"]


def test_other_interface_is_not_protected(guard, xdp):
    """Cookies on another interface only: a SYN to the port here meets the SYN limit instead."""
    guard.apply(RuleSet(limits=Limits.build(syn_pps=100, syn_burst=1),
                        syn_cookies=SynCookies(((80, 80),), frozenset({999}))), clock_ns=NOW)
    assert [run(guard, syn(IP(**V4), sport=p))[2] for p in (1, 2)] == [Verdict.PASS, Verdict.DROP_SYN]


def test_cookies_off_again(guard, xdp):
    guard.apply(RULES, clock_ns=NOW)
    assert run(guard, syn(IP(**V4)))[2] is Verdict.TX_SYNCOOKIE
    guard.apply(RuleSet(), clock_ns=NOW)
    assert run(guard, syn(IP(**V4)))[2] is Verdict.PASS
    assert [guard.maps["syncookie_ports"].lookup(w) for w in (80 >> 5, 8000 >> 5, 8080 >> 5)] == [0, 0, 0]
    assert list(guard.maps["syncookie_ifaces"].keys()) == []


def test_flow_conntrack_knows_passes(cookies, netns, xdp):
    """A connection conntrack holds (a real one over lo in the test's namespace, tracked because
    an nftables rule uses conntrack) passes on a protected port whatever its flags; a packet of
    the same shape from another port does not."""
    proc = subprocess.run(["ip", "netns", "exec", netns.ns, "nft", "-f", "-"], capture_output=True, text=True, input=(
        "table inet cttest { chain out { type filter hook output priority 0; ct state new accept; }; }\n"))
    assert proc.returncode == 0, proc.stderr
    listener = socket.create_server(("127.0.0.1", 8080))
    client = socket.create_connection(("127.0.0.1", 8080), timeout=5)
    try:
        port = client.getsockname()[1]
        frame = bytes(E / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=port, dport=8080, flags="PA", seq=5, ack=7))
        ret, _, verdict = run(cookies, frame)
        assert (ret, verdict) == (xdp["XDP_PASS"], Verdict.PASS)
        other = bytes(E / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=port + 1 if port < 65535 else 1024,
                                                                      dport=8080, flags="PA"))
        assert run(cookies, other)[2] is Verdict.DROP_COOKIE
    finally:
        client.close()
        listener.close()


def test_kernel_without_conntrack_kfuncs(netns, tmp_path, xdp):
    """The guard compiled against kfunc names no kernel has (what a kernel without conntrack's
    BPF kfuncs looks like to libbpf): it still loads and filters, and a SYN to a "protected"
    port meets the SYN limit rather than a cookie (step 7's cookie part is off)."""
    from pathsteer.bpf.build import BPF_SOURCE_DIR, compile_object
    from pathsteer.bpf.object import load_object
    from pathsteer.guard.program import GuardProgram
    path = compile_object(BPF_SOURCE_DIR / "guard.bpf.c", tmp_path / "guard.bpf.o", defines={
        "bpf_xdp_ct_lookup": "pathsteer_test_absent_ct_lookup", "bpf_ct_release": "pathsteer_test_absent_ct_release"})
    prog = GuardProgram(load_object(path))
    try:
        prog.apply(RULES, clock_ns=NOW)
        assert [run(prog, syn(IP(**V4), sport=p))[2] for p in (1, 2, 3)] == [Verdict.PASS, Verdict.PASS, Verdict.DROP_SYN]
        assert run(prog, syn(IP(src="192.0.2.9", dst="198.51.100.10")))[2] is Verdict.DROP_DENY
    finally:
        prog.close()
