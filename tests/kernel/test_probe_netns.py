"""Two paths between a prober namespace and a target namespace, for the probe tests.

::

    prober ns                                target ns
      pa 10.77.1.1/24  fd77:1::1/64  ──veth──  ta 10.77.1.2  fd77:1::2   (path A)
      pb 10.77.2.1/24  fd77:2::1/64  ──veth──  tb 10.77.2.2  fd77:2::2   (path B)
                                               lo 192.0.2.77/32  2001:db8:77::1/128 (the target)

The prober's main table sends the target over path A; tests pin probes to path B (or A)
and look at which veth carried them. Interface names are fixed (they live inside the
namespaces); namespace names are unique per test. The finalizer kills every process the
test started and deletes both namespaces, whatever happened.

Other test modules import `two_paths` from here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
TARGET4, TARGET6 = "192.0.2.77", "2001:db8:77::1"
GW = {"a": ("10.77.1.2", "fd77:1::2"), "b": ("10.77.2.2", "fd77:2::2")}
LOCAL = {"a": ("10.77.1.1", "fd77:1::1"), "b": ("10.77.2.1", "fd77:2::1")}


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@dataclass
class TwoPaths:
    prober: str
    target: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def ns(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *args, check=check)

    def pathsteer(self, *args: str, ns: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        return subprocess.run(
            ["ip", "netns", "exec", ns or self.prober, PYTHON, "-m", "pathsteer", *args],
            capture_output=True, text=True, timeout=timeout, env=env,
        )

    def probe_json(self, *args: str) -> tuple[int, dict]:
        r = self.pathsteer("probe", *args, "--json")
        assert "Traceback" not in r.stderr, r.stderr
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {"stderr": r.stderr})

    def spawn(self, ns: str, *args: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.procs.append(p)
        return p

    def start_reflector(self, *args: str) -> subprocess.Popen:
        p = self.spawn(self.target, PYTHON, "-m", "pathsteer", "reflector", *args)
        line = p.stderr.readline()  # "pathsteer reflector: listening on ..."
        assert "listening on" in line, line + p.stderr.read()
        return p

    def tx_packets(self, ifname: str) -> int:
        out = self.ns(self.prober, "cat", f"/sys/class/net/{ifname}/statistics/tx_packets").stdout
        return int(out)

    def link(self, ns: str, ifname: str, up: bool) -> None:
        self.ns(ns, "ip", "link", "set", "dev", ifname, "up" if up else "down")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            try:
                p.communicate(timeout=5)
            except Exception:
                pass
        for ns in (self.prober, self.target):
            sh("ip", "netns", "del", ns, check=False)


def build(env: TwoPaths) -> None:
    prober, target = env.prober, env.target
    sh("ip", "netns", "add", prober)
    sh("ip", "netns", "add", target)
    for ns in (prober, target):
        # No duplicate address detection: a tentative link-local address delays the first
        # neighbour solicitation by a second, which would show up as late first probes.
        env.ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    for path in ("a", "b"):
        sh("ip", "link", "add", "name", f"p{path}", "netns", prober, "type", "veth",
           "peer", "name", f"t{path}", "netns", target)
        v4, v6 = LOCAL[path]
        g4, g6 = GW[path]
        env.ns(prober, "ip", "addr", "add", f"{v4}/24", "dev", f"p{path}")
        env.ns(prober, "ip", "addr", "add", f"{v6}/64", "dev", f"p{path}", "nodad")
        env.ns(target, "ip", "addr", "add", f"{g4}/24", "dev", f"t{path}")
        env.ns(target, "ip", "addr", "add", f"{g6}/64", "dev", f"t{path}", "nodad")
        env.link(prober, f"p{path}", True)
        env.link(target, f"t{path}", True)
    for ns in (prober, target):
        env.ns(ns, "ip", "link", "set", "dev", "lo", "up")
    env.ns(target, "ip", "addr", "add", f"{TARGET4}/32", "dev", "lo")
    env.ns(target, "ip", "addr", "add", f"{TARGET6}/128", "dev", "lo")
    # The prober's own routing sends the target over path A.
    env.ns(prober, "ip", "route", "add", f"{TARGET4}/32", "via", GW["a"][0], "dev", "pa")
    env.ns(prober, "ip", "-6", "route", "add", f"{TARGET6}/128", "via", GW["a"][1], "dev", "pa")
    # Warm the neighbour caches: on a link that has just come up the first IPv6 neighbour
    # solicitation waits about a second (RetransTimer), which tests would read as late probes.
    for path in ("a", "b"):
        for gw in GW[path]:
            env.ns(prober, "ping", "-c", "1", "-W", "5", "-I", f"p{path}", gw, check=False)


@pytest.fixture
def two_paths(unique_name):
    env = TwoPaths(unique_name("ptp"), unique_name("ptt"))
    try:
        build(env)
        yield env
    finally:
        env.close()  # also after a half-built setup: deleting a missing namespace is fine


def test_two_paths_main_table_uses_path_a(two_paths):
    r = two_paths.ns(two_paths.prober, "ip", "route", "get", TARGET4)
    assert "dev pa" in r.stdout
    before = two_paths.tx_packets("pa")
    two_paths.ns(two_paths.prober, "ping", "-c", "2", "-i", "0.2", "-W", "2", TARGET4)
    assert two_paths.tx_packets("pa") >= before + 2
