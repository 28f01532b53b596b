"""Kernel-tier fixtures: a network namespace pair joined by a veth, entered by the test.

Every test gets its own two namespaces with unique names (two runs at once never share one);
the finalizer deletes them even when the test or the set-up failed half-way, which also
removes the veth, the clsact qdiscs and every XDP/TC attachment on them. Pins go under a
unique directory below /sys/fs/bpf/pathsteer/ and are removed by their own finalizers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pathsteer.bpf.build import compile_object
from pathsteer.bpf.netns import in_netns
from pathsteer.bpf.pins import PIN_ROOT
from pathsteer.guard.program import GuardProgram

TEST_BPF_DIR = Path(__file__).parent / "bpf"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class VethPair:
    """``ns``:``name`` (192.0.2.1, 2001:db8::1) ⇄ ``peer_ns``:``peer`` (192.0.2.2, 2001:db8::2)."""

    ns: str
    peer_ns: str
    name: str
    peer: str
    addr4: str = "192.0.2.1"
    peer_addr4: str = "192.0.2.2"
    addr6: str = "2001:db8::1"
    peer_addr6: str = "2001:db8::2"

    def in_ns(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns, *args, check=check)

    def in_peer(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.peer_ns, *args, check=check)

    def ping_from_peer(self, count: int = 5) -> None:
        self.in_peer("ping", "-c", str(count), "-i", "0.05", "-W", "1", "-q", self.addr4)


def create_veth_pair(ns: str, peer_ns: str, name: str, peer: str) -> VethPair:
    pair = VethPair(ns, peer_ns, name, peer)
    sh("ip", "netns", "add", ns)
    sh("ip", "netns", "add", peer_ns)
    sh("ip", "link", "add", "name", name, "netns", ns, "type", "veth", "peer", "name", peer, "netns", peer_ns)
    for namespace, dev, a4, a6 in ((ns, name, pair.addr4, pair.addr6), (peer_ns, peer, pair.peer_addr4, pair.peer_addr6)):
        sh("ip", "-n", namespace, "addr", "add", f"{a4}/24", "dev", dev)
        sh("ip", "-n", namespace, "addr", "add", f"{a6}/64", "dev", dev, "nodad")
        sh("ip", "-n", namespace, "link", "set", "dev", dev, "up")
        sh("ip", "-n", namespace, "link", "set", "dev", "lo", "up")
    return pair


def destroy_namespaces(*names: str) -> None:
    for name in names:
        sh("ip", "netns", "del", name, check=False)  # takes the veth and every hook on it along


@pytest.fixture
def veth(unique_name, request) -> VethPair:
    """A fresh namespace pair joined by a veth; deleted at teardown, even after a failure."""
    ns, peer_ns = unique_name("pstA"), unique_name("pstB")
    request.addfinalizer(lambda: destroy_namespaces(ns, peer_ns))
    return create_veth_pair(ns, peer_ns, unique_name("pva"), unique_name("pvb"))


@pytest.fixture
def netns(veth) -> Iterator[VethPair]:
    """The test's thread runs inside ``veth.ns`` (ifindexes, netlink, test_run's loopback)."""
    with in_netns(veth.ns):
        yield veth


@pytest.fixture
def pin_dir(unique_name) -> Iterator[str]:
    """A unique directory name under /sys/fs/bpf/pathsteer/; whatever is pinned there goes."""
    name = unique_name("test-")
    yield name
    root = Path(PIN_ROOT) / name
    if root.exists():
        for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        root.rmdir()
    with contextlib.suppress(OSError):  # another run's pins still there: leave the root
        os.rmdir(PIN_ROOT)


@pytest.fixture(scope="session")
def test_objects(tmp_path_factory) -> dict[str, Path]:
    """The test-only programs of tests/kernel/bpf/, compiled into a temporary directory."""
    out = tmp_path_factory.mktemp("bpf-objects")
    return {src.name.removesuffix(".bpf.c"): compile_object(src, out / src.name.replace(".c", ".o"))
            for src in sorted(TEST_BPF_DIR.glob("*.bpf.c"))}


@pytest.fixture
def guard(netns):
    """A fresh guard in the test's namespace, the test pinned to one CPU (per-CPU sampling)."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    prog = GuardProgram.load()
    try:
        yield prog
    finally:
        prog.close()
        os.sched_setaffinity(0, cpus)
