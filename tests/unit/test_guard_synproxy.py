"""The managed synproxy ruleset (pure text) and the SYN-cookie port bitmap, without root."""

from __future__ import annotations

from pathsteer.guard.rules import SynCookies
from pathsteer.guard.synproxy import TABLE, ruleset


def test_ruleset_replaces_its_table_in_one_transaction():
    text = ruleset(["r-a", "wan0"], [(80, 80), (8000, 8080)], mss=1460, mss6=1440, wscale=7)
    lines = text.splitlines()
    # create-if-missing, delete, create: nft -f applies the three atomically, so a table left
    # by a crashed run is replaced and a fresh host gets one
    assert lines[:3] == [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    match = 'iifname { "r-a", "wan0" } tcp dport { 80, 8000-8080 }'
    assert "notrack" not in text  # a reused 4-tuple's SYN must meet conntrack (see pathsteer.guard.synproxy)
    for family, mss in (("ipv4", 1460), ("ipv6", 1440)):
        rule = f"\t\t{match} ct state invalid,untracked meta nfproto {family} synproxy mss {mss} wscale 7 timestamp sack-perm"
        assert lines.count(rule) == 2  # input and forward
    assert lines.count(f"\t\t{match} ct state invalid drop") == 2
    assert "type filter hook forward priority filter; policy accept;" in text


def test_ruleset_other_table_name():
    assert ruleset(["eth0"], [(443, 443)], mss=1400, mss6=1380, wscale=9, table="t2").startswith("table inet t2\n")


def test_port_words():
    sc = SynCookies(((80, 80), (30, 33), (65535, 65535)), frozenset({3}))
    assert sc.port_words() == {0: 0b11 << 30, 1: 0b11, 2: 1 << (80 - 64), 2047: 1 << 31}
    assert sc.protects(31, 3) and sc.protects(65535, 3) and not sc.protects(34, 3) and not sc.protects(80, 4)


def test_syn_cookies_refused_without_conntrack_kfuncs(monkeypatch, tmp_path):
    import pytest

    from pathsteer.config import parse_config
    from pathsteer.errors import UnsupportedError
    from pathsteer.guard import synproxy
    from pathsteer.guard.service import GuardService
    config = parse_config({"guard": {"interfaces": ["lo"], "state_dir": str(tmp_path),
                                     "syn_cookies": {"ports": [80]}}}).guard
    monkeypatch.setattr(synproxy, "conntrack_kfuncs_present", lambda: False)
    with pytest.raises(UnsupportedError, match="guard.syn_cookies: the kernel has no bpf_xdp_ct_lookup") as info:
        GuardService.validate(config)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    GuardService.validate(config.model_copy(update={"syn_cookies": None}))  # the guard without cookies: fine
