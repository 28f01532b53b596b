"""Attaching the guard: auto mode picks generic XDP on veth, a guard left attached by an earlier
(crashed) run is replaced, anyone else's XDP program is refused and left in place, and a
failure part-way attaches nothing, nor does a reload that fails after attaching."""

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


def test_failed_reload_detaches_the_interface_it_added(netns, tmp_path):
    """The real program: a reload that attaches ``lo`` and then cannot apply its rules (more
    port rules than the program holds) leaves ``lo`` without XDP and the veth with the old
    program and rules."""
    import asyncio
    import socket

    from pathsteer.config import parse_config
    from pathsteer.guard.service import GuardService

    def config(interfaces, rules):
        return parse_config({"guard": {"interfaces": interfaces, "deny": ["192.0.2.0/24"], "rules": rules,
                                       "state_dir": str(tmp_path)}}).guard

    svc = GuardService(config([netns.name], [{"proto": "udp", "dport": 11211}]))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(svc.start())
    try:
        prog_id = find_attached(netns.name)
        assert prog_id == svc.program.program.id
        limit = svc.program.limits["GUARD_LIMIT_PORT_RULES"]
        too_many = [{"proto": "udp", "dport": 1000 + i} for i in range(limit + 1)]
        with pytest.raises(BpfError, match="port rules"):
            loop.run_until_complete(svc.reload(config([netns.name, "lo"], too_many)))
        assert xdp_query("lo") == (0, None)
        assert find_attached(netns.name) == prog_id
        assert set(svc.program.attached) == {socket.if_nametoindex(netns.name)}
        assert svc.program.maps["guard_settings"].lookup(0).port_rule_count == 1
        assert len(svc.config.rules) == 1
    finally:
        loop.run_until_complete(svc.stop())
        loop.close()
    assert xdp_query(netns.name) == (0, None)
