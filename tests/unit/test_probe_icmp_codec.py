"""ICMP / ICMPv6 echo codecs: golden bytes, checksum, error quoting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.probe import icmp


def test_echo_request_v4_golden():
    wire = icmp.encode_echo_request(4, 0x1234, 1, icmp.echo_data(0xDEADBEEF))
    # type 8, code 0, checksum 0xa387 (checked against scapy), id, seq, "PSTR", token
    assert wire == bytes.fromhex("0800a387" "1234" "0001" "50535452" "deadbeef")
    assert icmp.checksum(wire) == 0


def test_echo_request_v6_leaves_checksum_to_kernel():
    wire = icmp.encode_echo_request(6, 0xABCD, 0x10001, b"")
    assert wire == bytes.fromhex("80000000" "abcd" "0001")  # seq wraps at 16 bits


def test_checksum_rfc1071_example():
    # RFC 1071 §3 example words 0001 f203 f4f5 f6f7: sum 0x2ddf0 -> 0xddf2, checksum 0x220d
    assert icmp.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_against_scapy():
    from scapy.layers.inet import ICMP

    data = icmp.echo_data(7, padding=5)
    wire = icmp.encode_echo_request(4, 42, 9, data)
    assert ICMP(bytes(ICMP(type=8, id=42, seq=9) / data)).chksum == int.from_bytes(wire[2:4], "big")


def test_decode_reply_v4_with_ip_header():
    reply = bytearray(icmp.encode_echo_request(4, 5, 6, icmp.echo_data(99)))
    reply[0] = 0
    ip = bytes.fromhex("45000024000000004001" "0000" "c0000201" "c0000202")
    msg = icmp.strip_ipv4_header(ip + bytes(reply))
    e = icmp.decode(4, msg)
    assert isinstance(e, icmp.Echo) and (e.ident, e.seq, e.token) == (5, 6, 99)


def test_decode_reply_v6_and_foreign_data():
    e = icmp.decode(6, bytes.fromhex("81000000" "0005" "0006") + b"other data")
    assert isinstance(e, icmp.Echo) and e.token is None


def test_decode_error_quoting_our_request():
    req = icmp.encode_echo_request(4, 5, 6, icmp.echo_data(1))
    ip = bytes.fromhex("45000024000000004001" "0000" "c0000201" "c0000202")
    err = bytes.fromhex("03010000" "00000000") + ip + req[:8]
    e = icmp.decode(4, err)
    assert e == icmp.Error(3, 1, 5, 6)


def test_other_icmp_is_ignored_and_short_is_malformed():
    assert icmp.decode(4, bytes.fromhex("0800f7ff00000000")) is None  # an echo request
    with pytest.raises(icmp.MalformedPacket):
        icmp.decode(4, b"\0\0\0")
    with pytest.raises(icmp.MalformedPacket):
        icmp.strip_ipv4_header(b"\x45" + bytes(5))


@given(st.binary(max_size=120), st.sampled_from([4, 6]))
def test_decode_never_raises_anything_else(data, version):
    try:
        icmp.decode(version, data)
    except icmp.MalformedPacket:
        pass


@pytest.mark.parametrize("version", [4, 6])
def test_echo_filter_jumps_stay_inside(version):
    from pathsteer.probe.sockets import echo_filter

    prog = echo_filter(version, 0x1234)
    assert prog[-1] == (0x06, 0, 0, 0) and prog[-2][0] == 0x06  # ends with accept, drop
    for i, (code, jt, jf, _k) in enumerate(prog):
        if code == 0x15:
            assert i + 1 + jt < len(prog) and i + 1 + jf < len(prog)
    assert any(insn[3] == 0x1234 for insn in prog)


@given(st.sampled_from([4, 6]), st.integers(0, 0xFFFF), st.integers(0, (1 << 32) - 1),
       st.integers(0, 64), st.integers(0, 1 << 40))
def test_an_echo_session_builds_what_the_codec_builds_and_knows_its_replies(version, ident, token, padding, seq):
    data = icmp.echo_data(token, padding)
    session = icmp.EchoSession(version, ident, data)
    request = session.request(seq)
    header = bytes([8 if version == 4 else 128, 0, 0, 0]) + bytes([ident >> 8, ident & 0xFF,
                                                                   (seq >> 8) & 0xFF, seq & 0xFF])
    assert request[4:] == header[4:] + data and request[:2] == header[:2]
    if version == 4:
        assert icmp.checksum(request) == 0  # a valid checksum sums to all ones
    else:
        assert request[2:4] == b"\0\0"  # the kernel fills it
    assert request == icmp.encode_echo_request(version, ident, seq, data)
    # the reply the target sends: type echo reply, the same identifier, sequence and data
    reply = bytes([0 if version == 4 else 129, 0]) + request[2:]
    wire = (bytes([0x45]) + bytes(19) + reply) if version == 4 else reply
    assert session.reply_seq(wire) == seq & 0xFFFF
    assert icmp.decode(version, icmp.strip_ipv4_header(wire) if version == 4 else wire).seq == seq & 0xFFFF
    # anything else is left to the decoder: another identifier, token, an echo request, cut short
    other = icmp.EchoSession(version, ident ^ 1, data)
    assert other.reply_seq(wire) is None
    assert icmp.EchoSession(version, ident, icmp.echo_data(token ^ 1, padding)).reply_seq(wire) is None
    assert session.reply_seq(wire[:-len(data) + 4 - 1] if data else wire[:-1]) is None
    assert session.reply_seq(request if version == 6 else bytes([0x45]) + bytes(19) + request) is None
    if version == 4:
        assert session.reply_seq(bytes([0x44]) + bytes(19) + reply) is None  # bad header length
