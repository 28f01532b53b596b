"""Attaching the guard: auto mode picks generic XDP on veth, a guard left attached by an earlier
(crashed) run is replaced, anyone else's XDP program is refused and left in place, and a
failure part-way attaches nothing."""

from __future__ import annotations

import pytest

from pathsteer.bpf import XdpMode, load_object, xdp_query
from pathsteer.errors import BpfError
from pathsteer.guard.program import GuardProgram, find_attached, link_kind
from pathsteer.guard.rules import RuleSet


@pytest.fixture
def guard(netns):
    prog = GuardProgram.load()
    prog.apply(RuleSet())
    yield prog
    prog.detach_all()
    prog.close()


def test_auto_mode_is_generic_on_veth(guard, netns):
    assert link_kind(netns.name) == "veth"
    assert guard.attach([netns.name]) == [f"{netns.name}:generic"]
    prog_id, mode = xdp_query(netns.name)
    assert mode is XdpMode.GENERIC and find_attached(netns.name) == prog_id == guard.program.id
    guard.detach_all()
    assert xdp_query(netns.name) == (0, None)


def test_replaces_a_stale_guard(netns):
    old = GuardProgram.load()
    old.attach([netns.name], XdpMode.NATIVE)
    old_id = old.program.id
    old.close()  # "crashed": the netlink attachment outlives the object
    assert find_attached(netns.name) == old_id
    new = GuardProgram.load()
    try:
        new.attach([netns.name], XdpMode.NATIVE)
        assert find_attached(netns.name) == new.program.id != old_id
    finally:
        new.detach_all()
        new.close()


def test_refuses_someone_elses_program_and_attaches_nothing(guard, netns):
    with load_object("baseline") as other:
        from pathsteer.bpf import attach_xdp, detach_xdp
        att = attach_xdp(other.program("xdp_pass"), netns.name)
        try:
            with pytest.raises(BpfError, match="already has an XDP program \\(xdp_pass"):
                guard.attach(["lo", netns.name])  # lo first: rolled back when the veth refuses
            assert xdp_query("lo") == (0, None)
            assert xdp_query(netns.name)[0] == att.prog_id
            assert guard.attached == {}
        finally:
            detach_xdp(netns.name, att.prog_id)
