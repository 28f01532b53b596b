"""Guard pure parts: rules, GCRA arithmetic, the model on crafted frames, rule ids, the
block store, the ABI mirrors against the compiled object's BTF, and CLI bad input."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from pathsteer.bpf import BpfObject
from pathsteer.cli.main import main
from pathsteer.errors import UsageError
from pathsteer.guard import abi, model
from pathsteer.guard.blocks import Block, BlockStore, Origin
from pathsteer.guard.model import GuardModel
from pathsteer.guard.rules import Limits, RuleSet, Verdict, gcra, lookup, parse_cidr, source_network
from pathsteer.guard.service import RuleIds

N = ipaddress.ip_network


def test_parse_cidr():
    assert parse_cidr("192.0.2.7", "x") == N("192.0.2.7/32")
    assert parse_cidr(" 2001:db8::/32 ", "x") == N("2001:db8::/32")
    for bad in ("10.0.0.0/33", "nonsense", "10.0.0.1/8", "", 5):
        with pytest.raises(UsageError, match="is not a CIDR"):
            parse_cidr(bad, "x")


def test_gcra_integer_ns():
    assert gcra(5000, 10000) == (200_000, 9999 * 200_000)
    assert gcra(3, 1) == (333_333_333, 0)
    assert gcra(2_000_000_000, 1) == (1, 0)  # never 0 ns


def test_lookup_longest_prefix():
    table = {N("10.0.0.0/8"): 1, N("10.1.0.0/16"): 2, N("2001:db8::/32"): 3}
    assert lookup(table, ipaddress.ip_address("10.1.2.3")) == 2
    assert lookup(table, ipaddress.ip_address("10.2.2.3")) == 1
    assert lookup(table, ipaddress.ip_address("11.0.0.1")) is None
    assert lookup(table, ipaddress.ip_address("2001:db8::1")) == 3
    assert source_network(ipaddress.ip_address("2001:db8:1:2:3::4")) == N("2001:db8:1:2::/64")


def udp(src="203.0.113.1", dst="198.51.100.10", **kw) -> bytes:
    return bytes(Ether() / IP(src=src, dst=dst) / UDP(**kw))


def test_model_token_bucket():
    m = GuardModel(RuleSet(limits=Limits.build(per_source_pps=1000, burst=2)))
    t = 10**12
    assert [m.decide(udp(), t).verdict for _ in range(3)] == [Verdict.PASS, Verdict.PASS, Verdict.DROP_RATE]
    assert m.decide(udp(), t + 1_000_000).verdict is Verdict.PASS
    assert m.decide(udp(src="203.0.113.2"), t).verdict is Verdict.PASS


def test_model_heavy_hitter_and_syn():
    m = GuardModel(RuleSet(limits=Limits.build(threshold_pps=50, syn_pps=10, syn_burst=1)))
    t = 10**12
    hh = [m.decide(udp(), t).heavy_hitter for _ in range(12)]
    assert hh.count(N("203.0.113.1/32")) == 1 and hh[10] == N("203.0.113.1/32")
    syn = bytes(Ether() / IP(src="203.0.113.9", dst="198.51.100.10") / TCP(flags="S"))
    assert [m.decide(syn, t).verdict for _ in range(2)] == [Verdict.PASS, Verdict.DROP_SYN]


def test_rule_ids_reuse_and_exhaustion():
    ids = RuleIds(limit=3)
    assert ids.get(("deny", 1)) == (1, True)
    assert ids.get(("deny", 1)) == (1, False)
    assert ids.get(("deny", 2)) == (2, True)
    assert ids.get(("deny", 3)) == (0, False)  # all taken: uncounted
    ids.release(("deny", 1))
    assert ids.get(("deny", 4)) == (1, True)


def test_block_store_roundtrip(tmp_path):
    store = BlockStore(str(tmp_path / "state"))
    b1 = Block(N("192.0.2.0/24"), Origin.MANUAL, "scanner", 100.0, None)
    b2 = Block(N("2001:db8:bad::/48"), Origin.AUTO, "above 20000 pps", 101.0, 701.0)
    store.put(b1)
    store.put(b2)
    store.close()
    store = BlockStore(str(tmp_path / "state"))
    assert store.load() == [b1, b2]
    assert store.delete(b1.cidr) and not store.delete(b1.cidr)
    assert store.load() == [b2]
    assert b2.expired(701.0) and not b2.expired(700.9) and not b1.expired(1e12)


@pytest.fixture(scope="module")
def guard_object():
    try:
        obj = BpfObject.open("guard")
    except UsageError as exc:
        pytest.skip(str(exc))
    yield obj
    obj.close()


def test_abi_mirrors_match_btf(guard_object):
    for name, (key, value) in abi.MAP_TYPES.items():
        guard_object.check_map_types(name, key, value)
    abi.check_layouts(guard_object.btf)
    assert set(abi.verdict_numbers(guard_object.btf)) == set(Verdict)


def test_model_defaults_are_the_compiled_limits(guard_object):
    limits = guard_object.constants("guard_limits")
    assert limits["GUARD_LIMIT_VLAN_TAGS"] == model.MAX_VLAN_TAGS
    assert limits["GUARD_LIMIT_EXT_HEADERS"] == model.MAX_EXT_HEADERS
    assert limits["GUARD_LIMIT_IPV6_SOURCE_PREFIX"] == 64


@pytest.mark.parametrize("argv, message", [
    (["guard", "block", "10.0.0.0/33"], "CIDR: '10.0.0.0/33' is not a CIDR"),
    (["guard", "block", "nonsense"], "CIDR: 'nonsense' is not a CIDR"),
    (["guard", "block", "10.0.0.0/8", "--ttl", "soon"], "--ttl: 'soon' is not a duration"),
    (["guard", "block", "10.0.0.0/8", "--ttl", "0"], "--ttl: '0' must be a duration above 0"),
    (["guard", "unblock", "1.2.3.4/40"], "is not a CIDR"),
    (["guard", "stats", "--top", "x"], "--top: 'x' is not a whole number"),
    (["guard", "frobnicate"], "invalid choice"),
])
def test_cli_bad_input_one_line_exit_2(capsys, argv, message, tmp_path):
    code = main([*argv, "--socket", str(tmp_path / "none.sock")] if argv[1] != "frobnicate" else argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("argv", [["guard", "block"], ["guard", "unblock"], ["guard", "list"], ["guard", "stats"],
                                  ["run"], ["reload"], ["guard"]])
def test_help_ends_with_examples(capsys, argv):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out.rstrip().splitlines()
    idx = max(i for i, line in enumerate(out) if line.startswith("examples:"))
    assert all(line.startswith("  pathsteer") or line.startswith("  kill") for line in out[idx + 1:])
