"""TWAMP-light codecs (RFC 5357 §4.1.2, §4.2.1): golden bytes and round trips."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.probe import twamp

T = 1_700_000_000.5  # 2023-11-14T22:13:20.5Z


def test_ntp_golden():
    # 1_700_000_000 + 2_208_988_800 = 3_908_988_800 = 0xE8FE6F80; .5 s = 0x80000000
    assert twamp.to_ntp(T) == 0xE8FE6F80_80000000
    assert twamp.from_ntp(0xE8FE6F80_80000000) == T
    assert twamp.ntp_delta_s(twamp.to_ntp(T + 0.25), twamp.to_ntp(T)) == pytest.approx(0.25)
    assert twamp.ntp_delta_s(0, 0xFFFFFFFF_FFFFFFFF) > 0  # across the wrap


def test_error_estimate_golden():
    # S=0 Z=0 Scale=22 Multiplier=1: 0x1601, 2^-10 s
    assert twamp.DEFAULT_ERROR_ESTIMATE == 0x1601
    assert twamp.error_estimate_s(0x1601) == 2.0**-10
    assert twamp.error_estimate(synchronized=True, scale=0, multiplier=255) == 0x80FF
    with pytest.raises(ValueError):
        twamp.error_estimate(synchronized=False, scale=0, multiplier=0)


def test_sender_golden_bytes():
    p = twamp.SenderPacket(seq=1, timestamp=twamp.to_ntp(T), error_estimate=0x1601, padding=bytes(27))
    wire = twamp.encode_sender(p)
    assert wire == bytes.fromhex("00000001" "e8fe6f8080000000" "1601") + bytes(27)
    assert len(wire) == 41
    assert twamp.decode_sender(wire) == p


def test_reflector_golden_bytes():
    req = twamp.SenderPacket(7, 0x0102030405060708, 0x1601, bytes(27) + b"xyz")
    rep = twamp.reflect(req, seq=0x0A0B0C0D, receive_timestamp=0x1111111111111111,
                        timestamp=0x2222222222222222, ttl=255, error_estimate_value=0x8001)
    wire = twamp.encode_reflector(rep)
    assert wire == bytes.fromhex(
        "0a0b0c0d"  # sequence number
        "2222222222222222"  # timestamp
        "8001"  # error estimate
        "0000"  # MBZ
        "1111111111111111"  # receive timestamp
        "00000007"  # sender sequence number
        "0102030405060708"  # sender timestamp
        "1601"  # sender error estimate
        "0000"  # MBZ
        "ff"  # sender TTL
    ) + b"xyz"
    assert len(wire) == len(twamp.encode_sender(req))  # symmetric size (RFC 6038 §4.2)
    assert twamp.decode_reflector(wire) == rep


@pytest.mark.parametrize("n", [0, 1, 13])
def test_short_sender_packets_are_malformed(n):
    with pytest.raises(twamp.MalformedPacket):
        twamp.decode_sender(bytes(n))


@pytest.mark.parametrize("n", [0, 14, 40])
def test_short_reflector_packets_are_malformed(n):
    with pytest.raises(twamp.MalformedPacket):
        twamp.decode_reflector(bytes(n))


@given(st.binary(max_size=200))
def test_decoders_never_raise_anything_else(data):
    for decode in (twamp.decode_sender, twamp.decode_reflector):
        try:
            decode(data)
        except twamp.MalformedPacket:
            pass


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**16 - 1), st.binary(max_size=64))
def test_sender_round_trip(seq, ts, err, pad):
    p = twamp.SenderPacket(seq, ts, err, pad)
    assert twamp.decode_sender(twamp.encode_sender(p)) == p


@given(st.integers(14, 1400))
def test_reply_never_larger_than_padded_request(size):
    req = twamp.decode_sender(bytes(size))
    rep = twamp.encode_reflector(twamp.reflect(req, seq=1, receive_timestamp=0, timestamp=0, ttl=64))
    assert len(rep) == max(41, size)
