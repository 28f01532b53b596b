"""The managed synproxy setup in a namespace of its own: the table and nf_conntrack_tcp_loose
set up, replaced, torn down; a crashed run's record restores the original value."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pathsteer.errors import UnsupportedError
from pathsteer.guard import synproxy


def nft_tables(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True,
                          check=True).stdout


def test_setup_replace_teardown_and_crash_record(netns, tmp_path):
    loose = Path(synproxy.TCP_LOOSE)
    assert loose.read_text().strip() == "1"  # the kernel's default in a fresh namespace
    nf = synproxy.Netfilter(tmp_path)
    nf.setup(["lo"], [(80, 80)], mss=1460, mss6=1440, wscale=7)
    try:
        assert f"table inet {synproxy.TABLE}" in nft_tables(netns.ns)
        assert loose.read_text().strip() == "0"
        assert json.loads((tmp_path / synproxy.STATE_FILE).read_text())["tcp_loose"] == 1
        nf.setup(["lo"], [(80, 80), (443, 443)], mss=1460, mss6=1440, wscale=7)  # a reload: replaced
        rules = subprocess.run(["ip", "netns", "exec", netns.ns, "nft", "list", "table", "inet", synproxy.TABLE],
                               capture_output=True, text=True, check=True).stdout
        assert "{ 80, 443 }" in rules and rules.count("synproxy mss") == 4

        # a crash: the table and the sysctl stay; a new daemon's setup takes the recorded original
        restarted = synproxy.Netfilter(tmp_path)
        restarted.setup(["lo"], [(80, 80)], mss=1460, mss6=1440, wscale=7)
        restarted.teardown()
    finally:
        nf.teardown()  # idempotent: a missing table is fine
    assert synproxy.TABLE not in nft_tables(netns.ns)
    assert loose.read_text().strip() == "1"
    assert not (tmp_path / synproxy.STATE_FILE).exists()


def test_refused_ruleset_leaves_nothing(netns, tmp_path):
    nf = synproxy.Netfilter(tmp_path)
    with pytest.raises(Exception, match="nft refused"):
        nf.setup(['lo"x'], [(80, 80)], mss=1460, mss6=1440, wscale=7)  # not a name nft parses
    assert Path(synproxy.TCP_LOOSE).read_text().strip() == "1"
    assert synproxy.TABLE not in nft_tables(netns.ns)
    assert not (tmp_path / synproxy.STATE_FILE).exists()


def test_external_mode_checks(netns, tmp_path):
    with pytest.raises(UnsupportedError, match="nf_conntrack_tcp_loose=0"):
        synproxy.check_external()
    Path(synproxy.TCP_LOOSE).write_text("0\n")
    with pytest.raises(UnsupportedError, match="no synproxy statement"):
        synproxy.check_external()
    script = synproxy.ruleset(["lo"], [(80, 80)], mss=1460, mss6=1440, wscale=7, table="operators_own")
    subprocess.run(["ip", "netns", "exec", netns.ns, "nft", "-f", "-"], input=script, text=True, check=True)
    synproxy.check_external()  # passes
