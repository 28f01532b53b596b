"""The passive RTT programs through BPF_PROG_TEST_RUN, as a fixture table.

Each row: description, frames run through the egress program, frames then run through the
ingress program, and what must change in the interface's aggregate: (RTT samples, of which
handshake samples, egress entries recorded). Every frame must come out unchanged with the
verdict TC_ACT_UNSPEC (we only look; see bpf/passive.bpf.c on why not TC_ACT_OK). The context
names the test's veth, so the rows also check the key: the sample lands on that ifindex.

Flow of the table: our side 192.0.2.1:40000 / 2001:db8::1 sends to 192.0.2.2:5201 /
2001:db8::2 (egress); the peer's replies come back (ingress).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from pathsteer.bpf import Btf, TcDirection, ifindex_of
from pathsteer.bpf.passive import PassiveRtt
from pathsteer.telemetry.passive import bucket_of
from pathsteer.bpf.testrun import skb_context

TC_ACT_UNSPEC = 0xFFFFFFFF  # -1 (uapi linux/pkt_cls.h) as test_run's __u32 retval
OUT = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
IN = {"src": "02:00:00:00:00:02", "dst": "02:00:00:00:00:01"}
A4, B4, A6, B6 = "192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"
SPORT, DPORT = 40000, 5201
DATA = Raw(b"x" * 100)


def ts(val: int, ecr: int) -> list:
    return [("NOP", None), ("NOP", None), ("Timestamp", (val, ecr))]


def out4(flags="PA", options=None, payload=DATA, **tcp) -> bytes:
    return bytes(Ether(**OUT) / IP(src=A4, dst=B4) / TCP(sport=SPORT, dport=DPORT, flags=flags, seq=1000,
                                                          options=options or [], **tcp) / payload)


def in4(flags="A", options=None, payload=b"", sport=DPORT, dport=SPORT, **tcp) -> bytes:
    return bytes(Ether(**IN) / IP(src=B4, dst=A4) / TCP(sport=sport, dport=dport, flags=flags, seq=5000,
                                                         options=options or [], **tcp) / payload)


def out6(flags="PA", options=None, payload=DATA, ext=None) -> bytes:
    ip = IPv6(src=A6, dst=B6) if ext is None else IPv6(src=A6, dst=B6) / ext
    return bytes(Ether(**OUT) / ip / TCP(sport=SPORT, dport=DPORT, flags=flags, seq=1000, options=options or []) / payload)


def in6(flags="A", options=None, payload=b"", ext=None, **tcp) -> bytes:
    ip = IPv6(src=B6, dst=A6) if ext is None else IPv6(src=B6, dst=A6) / ext
    return bytes(Ether(**IN) / ip / TCP(sport=DPORT, dport=SPORT, flags=flags, seq=5000, options=options or [],
                                        **tcp) / payload)


def truncate_tcp_options(frame: bytes) -> bytes:
    """An IPv4 frame whose TCP header claims 60 bytes (doff 15) while the IP packet ends after 32."""
    pkt = Ether(frame)
    pkt[TCP].dataofs = 15
    raw = bytes(pkt)
    return raw[:14 + 20 + 32]


def fix_ip_len(frame: bytes) -> bytes:
    """Set the IPv4 total length to what the frame holds (so only TCP's data offset lies)."""
    pkt = Ether(frame)
    pkt[IP].len = len(frame) - 14
    del pkt[IP].chksum
    return bytes(pkt)


def with_raw_options(options: bytes, flags="PA") -> bytes:
    """IPv4 data whose TCP options are exactly ``options`` (a multiple of 4 bytes), unchecked by scapy."""
    assert len(options) % 4 == 0
    tcp = TCP(sport=SPORT, dport=DPORT, flags=flags, seq=1000, dataofs=5 + len(options) // 4)
    return bytes(Ether(**OUT) / IP(src=A4, dst=B4) / tcp / Raw(options) / DATA)


# description, egress frames, ingress frames, (samples, handshake samples, recorded)
TABLE = [
    ("IPv4 data with TSval, ACK echoing it", [out4(options=ts(1000, 7))], [in4(options=ts(9, 1000))], (1, 0, 1)),
    ("IPv6 data with TSval, ACK echoing it", [out6(options=ts(1000, 7))], [in6(options=ts(9, 1000))], (1, 0, 1)),
    ("same TSval twice: recorded once", [out4(options=ts(1000, 7))] * 2, [in4(options=ts(9, 1000))], (1, 0, 1)),
    ("echo twice: one sample", [out4(options=ts(1000, 7))], [in4(options=ts(9, 1000))] * 2, (1, 0, 1)),
    ("two TSvals, two echoes", [out4(options=ts(1000, 7)), out4(options=ts(1001, 7))],
     [in4(options=ts(9, 1000)), in4(options=ts(9, 1001))], (2, 0, 2)),
    ("pure ACK with TSval is not recorded", [out4(flags="A", options=ts(1000, 7), payload=b"")],
     [in4(flags="PA", options=ts(9, 1000), payload=DATA)], (0, 0, 0)),
    ("FIN without data is recorded", [out4(flags="FA", options=ts(1000, 7), payload=b"")],
     [in4(options=ts(9, 1000))], (1, 0, 1)),
    ("SYN without timestamps: handshake timing", [out4(flags="S", payload=b"")],
     [in4(flags="SA", ack=1001)], (1, 1, 1)),
    ("SYN-ACK acknowledging another seq: no sample", [out4(flags="S", payload=b"")],
     [in4(flags="SA", ack=1002)], (0, 0, 1)),
    ("SYN sent twice (retransmitted): ambiguous, no sample", [out4(flags="S", payload=b"")] * 2,
     [in4(flags="SA", ack=1001)], (0, 0, 1)),
    ("SYN with timestamps: matched by TSecr, not as a handshake", [out4(flags="S", options=ts(1000, 0), payload=b"")],
     [in4(flags="SA", options=ts(9, 1000), ack=1001)], (1, 0, 1)),
    ("IPv6 SYN without timestamps", [out6(flags="S", payload=b"")], [in6(flags="SA", ack=1001)], (1, 1, 1)),
    ("echo with TSecr 0 does not match", [out4(options=ts(0, 7))], [in4(options=ts(9, 0))], (0, 0, 1)),
    ("echo from another port: another flow", [out4(options=ts(1000, 7))],
     [in4(options=ts(9, 1000), sport=5202)], (0, 0, 1)),
    ("echo in the same direction (not reversed): no match", [out4(options=ts(1000, 7))],
     [out4(options=ts(1000, 1000))], (0, 0, 1)),
    ("data without timestamps: nothing to record", [out4()], [in4()], (0, 0, 0)),
    ("802.1Q-tagged IPv4", [bytes(Ether(**OUT) / Dot1Q(vlan=7) / Ether(out4(options=ts(1000, 7)))[IP])],
     [bytes(Ether(**IN) / Dot1Q(vlan=7) / Ether(in4(options=ts(9, 1000)))[IP])], (1, 0, 1)),
    ("IPv6 hop-by-hop + destination options before TCP", [out6(options=ts(1000, 7), ext=IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt())],
     [in6(options=ts(9, 1000), ext=IPv6ExtHdrHopByHop())], (1, 0, 1)),
    ("IPv6 fragment header: not parsed", [out6(options=ts(1000, 7), ext=IPv6ExtHdrFragment())],
     [in6(options=ts(9, 1000))], (0, 0, 0)),
    ("IPv4 fragment (MF set): not parsed", [bytes(Ether(**OUT) / IP(src=A4, dst=B4, flags="MF") / TCP(
        sport=SPORT, dport=DPORT, options=ts(1000, 7)) / DATA)], [in4(options=ts(9, 1000))], (0, 0, 0)),
    ("UDP: not TCP", [bytes(Ether(**OUT) / IP(src=A4, dst=B4) / UDP(sport=SPORT, dport=DPORT) / DATA)],
     [bytes(Ether(**IN) / IP(src=B4, dst=A4) / UDP(sport=DPORT, dport=SPORT) / DATA)], (0, 0, 0)),
    ("ICMP echo: not TCP", [bytes(Ether(**OUT) / IP(src=A4, dst=B4) / ICMP())],
     [bytes(Ether(**IN) / IP(src=B4, dst=A4) / ICMP(type=0))], (0, 0, 0)),
    ("truncated TCP header (IPv4 says 20 + 10)", [out4(options=ts(1000, 7))[:14 + 20 + 10]],
     [in4(options=ts(9, 1000))], (0, 0, 0)),
    ("TCP data offset past the packet (60 claimed, 32 present)",
     [fix_ip_len(truncate_tcp_options(out4(options=ts(1000, 7))))], [in4(options=ts(9, 1000))], (0, 0, 0)),
    ("timestamp option with length 12: malformed, ignored", [with_raw_options(b"\x01\x01\x08\x0c" + bytes(8))],
     [in4(options=ts(9, 0))], (0, 0, 0)),
    ("option length 0: malformed, ignored", [with_raw_options(b"\x05\x00\x01\x01" + b"\x08\x0a" + (1000).to_bytes(4, "big") + bytes(4) + b"\x00\x00")],
     [in4(options=ts(9, 1000))], (0, 0, 0)),
    ("timestamp after a SACK-permitted and window scale", [with_raw_options(
        b"\x04\x02\x03\x03\x07\x01" + b"\x08\x0a" + (1000).to_bytes(4, "big") + bytes(4) + bytes(4))],
     [in4(options=ts(9, 1000))], (1, 0, 1)),
    ("IPv4 header length 4 (< 5): malformed", [bytes(Ether(**OUT)) + b"\x44" + bytes(Ether(out4(options=ts(1000, 7)))[IP])[1:]],
     [in4(options=ts(9, 1000))], (0, 0, 0)),
]


@dataclass
class Rig:
    rtt: PassiveRtt
    ctx: bytes
    ifindex: int

    def run(self, direction: TcDirection, frame: bytes, ctx: bytes | None = None):
        return self.rtt.programs[direction].test_run(frame, ctx=ctx or self.ctx)


@pytest.fixture
def rig(netns):
    rtt = PassiveRtt.load()
    ifindex = ifindex_of(netns.name)
    with Btf.from_file(Path(rtt._obj.path)) as btf:
        ctx = skb_context(btf, ifindex)
    yield Rig(rtt, ctx, ifindex)
    rtt.close()


@pytest.mark.parametrize("description, egress, ingress, change", TABLE, ids=[row[0] for row in TABLE])
def test_table(rig, description, egress, ingress, change):
    before = rig.rtt.aggregate(rig.ifindex)
    for direction, frames in ((TcDirection.EGRESS, egress), (TcDirection.INGRESS, ingress)):
        for frame in frames:
            result = rig.run(direction, frame)
            assert result.retval == TC_ACT_UNSPEC, description
            assert result.data_out == frame, description
    after = rig.rtt.aggregate(rig.ifindex)
    moved = (after.samples - before.samples, after.handshake_samples - before.handshake_samples,
             after.recorded - before.recorded)
    assert moved == change, description
    assert after.record_failed == 0
    assert set(rig.rtt.read()) <= {rig.ifindex}  # nothing keyed on another interface


def test_sample_is_the_time_between_send_and_echo(rig):
    """The first-seen time stands: a repeat of the TSval 50 ms later does not move it."""
    t0 = time.monotonic_ns()
    rig.run(TcDirection.EGRESS, out4(options=ts(77, 1)))
    time.sleep(0.05)
    rig.run(TcDirection.EGRESS, out4(options=ts(77, 1)))
    time.sleep(0.02)
    rig.run(TcDirection.INGRESS, in4(options=ts(5, 77)))
    elapsed = time.monotonic_ns() - t0
    agg = rig.rtt.aggregate(rig.ifindex)
    assert agg.samples == 1
    assert 70e6 <= agg.sum_ns <= elapsed
    assert agg.min_ns == agg.max_ns == agg.sum_ns
    nonzero = {i: c for i, c in enumerate(agg.hist) if c}
    assert nonzero == {bucket_of(agg.sum_ns, rig.rtt.sub_bits, rig.rtt.buckets): 1}  # C and Python agree


def test_tsval_matched_then_seen_again_is_not_stored_again(rig):
    """Segments later in the same ms carry the matched TSval again; storing it anew would time
    the next echo of it (triggered by an earlier segment) from a later one: too short."""
    rig.run(TcDirection.EGRESS, out4(options=ts(1000, 7)))
    rig.run(TcDirection.INGRESS, in4(options=ts(9, 1000)))
    rig.run(TcDirection.EGRESS, out4(options=ts(1000, 7)))
    rig.run(TcDirection.INGRESS, in4(options=ts(9, 1000)))
    agg = rig.rtt.aggregate(rig.ifindex)
    assert (agg.samples, agg.recorded) == (1, 1)
    rig.run(TcDirection.EGRESS, out4(options=ts(1001, 7)))  # the next TSval is stored again
    assert rig.rtt.aggregate(rig.ifindex).recorded == 2


def test_echo_on_another_interface_does_not_match(rig):
    rig.run(TcDirection.EGRESS, out4(options=ts(1000, 7)))
    with Btf.from_file(Path(rig.rtt._obj.path)) as btf:
        lo = skb_context(btf, ifindex_of("lo"))
    rig.run(TcDirection.INGRESS, in4(options=ts(9, 1000)), ctx=lo)
    assert rig.rtt.aggregate("lo").samples == 0
    assert rig.rtt.pending() == 1  # still waiting for its echo on our interface
    rig.run(TcDirection.INGRESS, in4(options=ts(9, 1000)))
    assert rig.rtt.aggregate(rig.ifindex).samples == 1
    assert rig.rtt.pending() == 0  # matched entries are deleted


def test_timestamp_table_is_bounded(rig):
    """More distinct TSvals than the LRU holds: the oldest go, storing never fails."""
    limit = rig.rtt.limits["PASSIVE_LIMIT_TIMESTAMPS"]
    assert rig.rtt.timestamps_map.max_entries == limit
    for tsval in range(limit + 500):
        rig.run(TcDirection.EGRESS, out4(options=ts(tsval + 1, 7), payload=b"y"))
    agg = rig.rtt.aggregate(rig.ifindex)
    assert agg.recorded == limit + 500 and agg.record_failed == 0
    assert rig.rtt.pending() <= limit
    rig.run(TcDirection.INGRESS, in4(options=ts(9, limit + 500)))  # the newest is still there
    assert rig.rtt.aggregate(rig.ifindex).samples == 1


def test_pure_acks_are_timestamped_by_the_acks_program(rig):
    """tc_passive_acks: a download's pure ACK leaves with a TSval, the sender's data echoes it."""
    ack = out4(flags="A", options=ts(1000, 7), payload=b"")
    data = in4(flags="PA", options=ts(9, 1000), payload=DATA)
    rig.run(TcDirection.EGRESS, ack)  # the default egress program: not recorded
    assert rig.rtt.aggregate(rig.ifindex).recorded == 0
    result = rig.rtt.egress_with_acks.test_run(ack, ctx=rig.ctx)
    assert result.retval == TC_ACT_UNSPEC and result.data_out == ack
    rig.run(TcDirection.INGRESS, data)
    agg = rig.rtt.aggregate(rig.ifindex)
    assert (agg.samples, agg.recorded) == (1, 1)
