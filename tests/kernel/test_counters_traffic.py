"""Real traffic through the counters, and picking them up from another `ip netns exec`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pathsteer.bpf import TcDirection, XdpMode, tc_program_id, xdp_program_id
from pathsteer.bpf.counters import Counters, Hook, tc_place
from pathsteer.errors import UsageError

PING_FRAME = 98  # 14 Ethernet + 20 IPv4 + 8 ICMP + 56 payload


def slot() -> dict[str, int]:
    """Our TC filter's place as the compiled object has it (bpf/common.h): handle=, priority=."""
    place = tc_place()
    return {"handle": place.handle, "priority": place.priority}


@pytest.fixture
def attached(netns):
    counters = Counters.load()
    atts = counters.attach(netns.name, list(Hook))
    yield counters, atts
    counters.detach(netns.name)
    counters.close()


def test_ping_is_counted_at_every_hook(attached, netns):
    counters, atts = attached
    assert atts[0].mode is XdpMode.NATIVE
    netns.ping_from_peer(count=5)
    got = {hook: counters.totals(netns.name, hook) for hook in Hook}
    for hook in Hook:  # requests in (XDP, TC ingress), replies out (TC egress); ND/ARP may add
        assert got[hook].packets >= 5, hook
        assert got[hook].bytes >= 5 * PING_FRAME, hook
    assert counters.read().keys() >= {(atts[0].ifindex, hook) for hook in Hook}
    # a path's load sample, read for every path in one batch: the same counts as one by one
    sample = counters.samples({"p": netns.name, "idle": "lo"}, now=5.0)
    assert (sample["p"].at_s, sample["p"].rx, sample["p"].tx) == (
        5.0, counters.totals(netns.name, Hook.TC_INGRESS), counters.totals(netns.name, Hook.TC_EGRESS))
    assert (sample["idle"].rx.packets, sample["idle"].tx.bytes) == (0, 0)  # no program there: zero
    with pytest.raises(UsageError, match="no interface 'nope0'"):
        counters.samples({"gone": "nope0"})


def run_in_other_invocation(netns, code: str) -> subprocess.CompletedProcess:
    """Python in a fresh `ip netns exec` (its own /sys: no pins from us are visible there)."""
    return netns.in_ns(sys.executable, "-c", textwrap.dedent(code), check=False)


def test_refind_by_kernel_ids_from_another_invocation(attached, netns):
    counters, _ = attached
    netns.ping_from_peer(count=3)
    proc = run_in_other_invocation(netns, f"""
        import json
        from pathsteer.bpf.counters import Counters, Hook
        with Counters.find({netns.name!r}) as found:
            print(json.dumps({{h.value: found.totals({netns.name!r}, h).__dict__ for h in Hook}}))
    """)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    ours = {hook.value: counters.totals(netns.name, hook).__dict__ for hook in Hook}
    for hook in Hook:  # same map: equal, or ahead by a background frame that arrived meanwhile
        assert ours[hook.value]["packets"] >= theirs[hook.value]["packets"] >= 3
        assert ours[hook.value]["packets"] - theirs[hook.value]["packets"] <= 2


def test_detach_from_another_invocation(attached, netns):
    proc = run_in_other_invocation(netns, f"""
        from pathsteer.bpf.counters import Counters, Hook
        with Counters.find({netns.name!r}, [Hook.TC_EGRESS]) as found:
            print(",".join(h.value for h in found.detach({netns.name!r})))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "xdp,tc-ingress,tc-egress"
    assert xdp_program_id(netns.name) is None
    for direction in TcDirection:
        assert tc_program_id(netns.name, direction, **slot()) is None


def test_find_without_counters_is_clear(netns):
    from pathsteer.errors import BpfError
    with pytest.raises(BpfError, match=f"no pathsteer counters attached to {netns.name}"):
        Counters.find(netns.name)
