"""ExaBGP's configuration as pathsteer writes it, checked by the pinned ExaBGP itself
(``exabgp validate``); the daemon's ``--check`` refuses a missing ExaBGP or an unreadable key file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from pathsteer.bgp import exabgp
from pathsteer.bgp.service import BgpService
from pathsteer.config.load import parse_config

BASE = {
    "paths": [{"name": "p1", "interface": "lo", "gateway": "127.0.0.1", "probe": {"targets": ["127.0.0.9"]}}],
    "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"]}],
}


def config(bgp: dict):
    return parse_config({**BASE, "bgp": bgp}).bgp


BGP = {"local_as": 65001, "router_id": "10.100.1.2",
       "peers": [{"address": "10.100.1.1", "as": 65000, "name": "core", "password": "s3cr et;x", "hold_time": "6s"},
                 {"address": "2001:db8:100:1::1", "as": "65000", "passive": True, "port": 1179}]}


def test_rendered_config_is_valid_for_the_pinned_exabgp(tmp_path):
    cfg = config(BGP)
    text = exabgp.render(cfg, [sys.executable, "-m", "pathsteer.bgp.relay", "/run/x.sock"],
                         {"10.100.1.1": "10.100.1.2", "2001:db8:100:1::1": "2001:db8:100:1::2"}, BgpService._passwords(cfg))
    assert "md5-password \"s3cr et;x\";" in text and "hold-time 6;" in text and "hold-time 9;" in text
    assert "local-address 10.100.1.2;" in text and "listen 1179;" in text and "family { ipv6 unicast; }" in text and "passive true;" in text
    path = tmp_path / "exabgp.conf"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "pathsteer.bgp.exabgp", "validate", str(path)],
                         capture_output=True, text=True, timeout=60,
                         env=exabgp.environment(False))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_launcher_applies_its_two_speed_ups():
    out = subprocess.run([sys.executable, "-c", "from pathsteer.bgp import exabgp; print(exabgp.patch())"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['async-limit', 'no-copy-without-self']", out.stderr


def _check(tmp_path, bgp: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "bgp": bgp}))
    return subprocess.run([sys.executable, "-m", "pathsteer", "run", "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("exabgp_cfg,needle", [
    ({"command": "/nonexistent/exabgp"}, "bgp.exabgp.command: '/nonexistent/exabgp'"),
    ({"command": "no-such-exabgp-here"}, "bgp.exabgp.command: 'no-such-exabgp-here'"),
])
def test_check_refuses_a_missing_exabgp_in_one_line(tmp_path, exabgp_cfg, needle):
    out = _check(tmp_path, {**BGP, "exabgp": exabgp_cfg})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_check_refuses_an_unreadable_key_file(tmp_path):
    bgp = {**BGP, "peers": [{"address": "10.100.1.1", "as": 65000, "password_file": str(tmp_path / "nope.md5")}]}
    out = _check(tmp_path, bgp)
    assert out.returncode == 2 and "bgp.peers[0].password_file" in out.stderr and "Traceback" not in out.stderr


def test_check_passes_with_the_pinned_exabgp(tmp_path):
    key = tmp_path / "core.md5"
    key.write_text("k3y\n")
    os.chmod(key, 0o600)
    out = _check(tmp_path, {**BGP, "peers": [{"address": "10.100.1.1", "as": 65000, "password_file": str(key)}]})
    assert out.returncode == 0, out.stderr
    assert "bgp" in out.stdout


def test_local_address_is_the_kernels_choice():
    from pathsteer.bgp.service import local_address_for
    assert local_address_for("127.0.0.1") == "127.0.0.1"
