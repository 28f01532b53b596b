"""XDP and TC attach/detach on a veth in the test's own namespace, without disturbing others."""

from __future__ import annotations

import pytest

from pathsteer.bpf import (
    TcDirection, XdpMode, attach_tc, attach_xdp, detach_tc, detach_xdp, load_object, tc_program_id,
    xdp_program_id, xdp_query,
)
from pathsteer.bpf.counters import Counters, Hook, tc_place
from pathsteer.errors import BpfError


def slot() -> dict[str, int]:
    """Our TC filter's place as the compiled object has it (bpf/common.h): handle=, priority=."""
    place = tc_place()
    return {"handle": place.handle, "priority": place.priority}


@pytest.fixture
def counters(netns):
    c = Counters.load()
    yield c
    c.close()


@pytest.fixture
def baseline(netns):
    """Stands in for another tool's program."""
    obj = load_object("baseline")
    yield obj
    obj.close()


def test_xdp_native_on_veth(counters, netns):
    prog = counters.programs[Hook.XDP]
    att = attach_xdp(prog, netns.name)
    assert att.mode is XdpMode.NATIVE and att.prog_id == prog.id
    assert xdp_query(netns.name) == (prog.id, XdpMode.NATIVE)
    assert attach_xdp(prog, netns.name) == att  # the same program again: a no-op
    assert detach_xdp(netns.name, prog.id) is True
    assert xdp_program_id(netns.name) is None
    assert detach_xdp(netns.name) is False


def test_xdp_falls_back_to_generic(counters, netns):
    """Loopback has no native XDP (no ndo_bpf): the attach says it got generic mode."""
    att = attach_xdp(counters.programs[Hook.XDP], "lo")
    assert att.mode is XdpMode.GENERIC
    assert xdp_query("lo") == (att.prog_id, XdpMode.GENERIC)
    assert detach_xdp("lo", att.prog_id)


def test_xdp_native_only_fails_clearly(counters, netns):
    with pytest.raises(BpfError, match=r"attaching xdp_count at XDP \(native\) on ifindex 1"):
        attach_xdp(counters.programs[Hook.XDP], "lo", XdpMode.NATIVE)


def test_xdp_never_replaces_another_program(counters, baseline, netns):
    other = baseline.program("xdp_pass")
    attach_xdp(other, netns.name)
    with pytest.raises(BpfError, match=rf"already has an XDP program \(id {other.id}, native mode\)"):
        attach_xdp(counters.programs[Hook.XDP], netns.name)
    with pytest.raises(BpfError, match="left in place"):
        detach_xdp(netns.name, counters.programs[Hook.XDP].id)
    assert counters.detach(netns.name) == []  # not ours: untouched
    assert xdp_program_id(netns.name) == other.id


def _filters(netns, direction: str) -> str:
    return netns.in_ns("tc", "filter", "show", "dev", netns.name, direction).stdout


def test_tc_leaves_other_filters_alone(counters, netns):
    netns.in_ns("tc", "qdisc", "add", "dev", netns.name, "clsact")
    netns.in_ns("tc", "filter", "add", "dev", netns.name, "ingress", "protocol", "all", "prio", "1",
                "u32", "match", "u32", "0", "0")
    before = _filters(netns, "ingress")
    atts = counters.attach(netns.name, [Hook.TC_INGRESS, Hook.TC_EGRESS])
    assert [a.direction for a in atts] == [TcDirection.INGRESS, TcDirection.EGRESS]
    assert "tc_count_in" in _filters(netns, "ingress") and "u32" in _filters(netns, "ingress")
    assert tc_program_id(netns.name, TcDirection.EGRESS, **slot()) == atts[1].prog_id
    assert counters.attach(netns.name, [Hook.TC_INGRESS]) == atts[:1]  # again: a no-op
    assert counters.detach(netns.name) == [Hook.TC_INGRESS, Hook.TC_EGRESS]
    assert _filters(netns, "ingress") == before  # the other tool's filter is still there, unchanged
    assert "clsact" in netns.in_ns("tc", "qdisc", "show", "dev", netns.name).stdout
    assert tc_program_id(netns.name, TcDirection.INGRESS, **slot()) is None


def test_tc_slot_taken_is_refused_unless_replace(counters, baseline, netns):
    other = baseline.program("tc_pass")
    attach_tc(other, netns.name, TcDirection.INGRESS, **slot())
    place = tc_place()
    with pytest.raises(BpfError, match=rf"already sits at handle {place.handle:#x} priority {place.priority}"):
        counters.attach(netns.name, [Hook.TC_INGRESS])
    assert counters.detach(netns.name) == []  # someone else's program in our slot: left alone
    mine = counters.programs[Hook.TC_INGRESS]
    att = attach_tc(mine, netns.name, TcDirection.INGRESS, **slot(), replace=True)
    assert att.prog_id == mine.id
    with pytest.raises(BpfError, match="left in place"):
        detach_tc(netns.name, TcDirection.INGRESS, **slot(), prog_id=other.id)
    assert detach_tc(netns.name, TcDirection.INGRESS, **slot(), prog_id=mine.id)
    assert not detach_tc(netns.name, TcDirection.INGRESS, **slot())


def test_failed_attach_rolls_back(counters, baseline, netns):
    attach_xdp(baseline.program("xdp_pass"), netns.name)
    with pytest.raises(BpfError, match="already has an XDP program"):
        counters.attach(netns.name, [Hook.TC_INGRESS, Hook.XDP])
    assert tc_program_id(netns.name, TcDirection.INGRESS, **slot()) is None


def test_unknown_interface_is_named(counters, netns):
    from pathsteer.errors import UsageError
    with pytest.raises(UsageError, match="no interface 'nosuchif0'"):
        counters.attach("nosuchif0")


def test_one_counters_one_namespace(counters, netns):
    """ifindexes repeat across namespaces: a second namespace needs its own Counters."""
    from pathsteer.bpf import in_netns
    from pathsteer.errors import UsageError
    counters.attach(netns.name, [Hook.TC_INGRESS])
    with in_netns(netns.peer_ns), pytest.raises(UsageError, match="another network namespace"):
        counters.attach(netns.peer, [Hook.TC_INGRESS])
    assert counters.detach(netns.name) == [Hook.TC_INGRESS]


def test_counters_left_by_an_earlier_run_are_taken_over(counters, netns):
    """A killed run leaves its counter filters attached; the next run's Counters replaces
    them in the slot (the daemon's load figures work again after kill -9 and restart)."""
    counters.attach(netns.name, [Hook.TC_INGRESS, Hook.TC_EGRESS])
    old = tc_program_id(netns.name, TcDirection.INGRESS, **slot())
    with Counters.load() as again:
        again.attach(netns.name, [Hook.TC_INGRESS, Hook.TC_EGRESS])
        now = tc_program_id(netns.name, TcDirection.INGRESS, **slot())
        assert now == again.programs[Hook.TC_INGRESS].id != old
        assert again.detach(netns.name) == [Hook.TC_INGRESS, Hook.TC_EGRESS]
