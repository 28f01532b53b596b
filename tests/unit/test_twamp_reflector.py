"""The reflector's judgement of datagrams: pure, no socket."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.probe import twamp
from pathsteer.probe.reflector import Reflector

CLIENT = ("192.0.2.1", 40000)


def test_reflects_a_good_packet():
    r = Reflector(port=8620)
    req = twamp.encode_sender(twamp.SenderPacket(5, twamp.to_ntp(1000.0), 0x1601, bytes(27)))
    wire = r.handle(req, CLIENT, received_real=1000.25, ttl=254)
    rep = twamp.decode_reflector(wire)
    assert rep.sender_seq == 5 and rep.sender_ttl == 254 and rep.seq == 0
    assert rep.sender_timestamp == twamp.to_ntp(1000.0)
    assert rep.receive_timestamp == twamp.to_ntp(1000.25)
    assert len(wire) == len(req)
    again = twamp.decode_reflector(r.handle(req, CLIENT, 1000.5, 254))
    assert again.seq == 1  # the reflector's own per-sender sequence (RFC 5357 §4.2.1)
    assert r.stats.reflected == 0 and r.stats.received == 2  # reflected counts sends, done by the socket side


@pytest.mark.parametrize("size", [0, 1, 13])
def test_short_packets_are_malformed(size):
    r = Reflector()
    assert r.handle(bytes(size), CLIENT, 0.0, 64) is None
    assert r.stats.malformed == 1


@pytest.mark.parametrize(
    "addr",
    [("192.0.2.1", 0), ("192.0.2.1", 862), ("0.0.0.0", 4000), ("224.0.0.1", 4000),
     ("255.255.255.255", 4000), ("::ffff:224.0.0.5", 4000), ("ff02::1", 4000), ("::", 4000)],
)
def test_hostile_sources_get_no_reply(addr):
    r = Reflector()
    assert r.handle(bytes(41), addr, 0.0, 64) is None
    assert r.stats.hostile == 1


@settings(max_examples=300)
@given(st.binary(max_size=1500), st.integers(0, 65535))
def test_any_bytes_are_answered_or_counted(data, port):
    r = Reflector()
    out = r.handle(data, ("198.51.100.3", port), 0.0, 64)
    s = r.stats
    assert s.received == 1 and (out is not None) + s.malformed + s.hostile == 1
    if out is not None:
        assert len(out) <= max(41, len(data))
