"""The TC order of bpf/common.h (``enum pathsteer_tc_prio``, ``enum pathsteer_tc_handle``) as
the attach code reads it from BTF, against what the kernel then holds on a hook: every pathsteer
TC program attached to one interface, the filter chain listed by ``tc`` (the order the kernel
runs them in) is the order of the enum, each at the handle and priority its object says."""

from __future__ import annotations

import json

import pytest

from pathsteer.bpf import TcDirection
from pathsteer.bpf.btf import Btf
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.bpf.object import object_path
from pathsteer.bpf.passive import PassiveRtt
from pathsteer.bpf.tc_order import TC_OBJECTS, compiled_slot, tc_order, tc_slot
from pathsteer.dataplane.bpf_steer_program import SteerProgram

# What each TC object attaches at TC ingress.
INGRESS_PROGRAM = {"passive": "tc_passive_in", "steer": "tc_steer", "counters": "tc_count_in"}
EGRESS_PROGRAM = {"passive": "tc_passive_out", "counters": "tc_count_out"}


def chain(netns, direction: str) -> list[tuple[int, int, str, int]]:
    """(pref, handle, program name, program id) of every BPF filter on the hook, in the order
    tc lists them: the order tcf_classify runs them (ascending priority)."""
    out = json.loads(netns.in_ns("tc", "-j", "filter", "show", "dev", netns.name, direction).stdout or "[]")
    return [(f["pref"], int(f["options"]["handle"], 16), f["options"]["prog"]["name"], f["options"]["prog"]["id"])
            for f in out if f.get("kind") == "bpf" and "options" in f]


def test_every_tc_object_carries_the_same_order():
    """One header, so one order: each object's BTF has the same two enums, naming every TC object."""
    enums = []
    for name in TC_OBJECTS:
        with Btf.from_file(object_path(name)) as btf:
            enums.append((btf.enum_values("pathsteer_tc_prio"), btf.enum_values("pathsteer_tc_handle")))
            assert sorted(tc_order(btf)) == sorted(TC_OBJECTS)
            assert compiled_slot(name) == tc_slot(btf, name)
    assert all(e == enums[0] for e in enums)
    prios = enums[0][0]
    assert len(set(prios.values())) == len(prios)  # no two programs share a priority


@pytest.fixture
def everything(netns):
    """counters, passive and steer loaded and attached to the test veth, as the daemon does."""
    counters, passive, steer = Counters.load(), PassiveRtt.load(), SteerProgram.load()
    try:
        counters.attach(netns.name, [Hook.TC_INGRESS, Hook.TC_EGRESS])
        passive.attach(netns.name)
        steer.attach(netns.name)
        yield {"counters": counters, "passive": passive, "steer": steer}
    finally:
        steer.detach(netns.name)
        passive.detach(netns.name)
        counters.detach(netns.name)
        steer.close()
        passive.close()
        counters.close()


def test_attached_chain_is_the_btf_order(everything, netns):
    with Btf.from_file(object_path("counters")) as btf:
        order = tc_order(btf)
    slots = {name: compiled_slot(name) for name in order}
    ingress = chain(netns, "ingress")
    # what runs on ingress, first to last: the enum's order, each at its (handle, priority)
    assert [name for _, _, name, _ in ingress] == [INGRESS_PROGRAM[n] for n in order]
    assert [(pref, handle) for pref, handle, _, _ in ingress] == [(slots[n].priority, slots[n].handle) for n in order]
    # and they are the programs just loaded, not leftovers
    ids = {"counters": everything["counters"].programs[Hook.TC_INGRESS].id,
           "passive": everything["passive"].programs[TcDirection.INGRESS].id,
           "steer": everything["steer"].id}
    assert [prog_id for *_, prog_id in ingress] == [ids[n] for n in order]
    # egress: the programs that attach there, in the same order
    egress = chain(netns, "egress")
    assert [name for _, _, name, _ in egress] == [EGRESS_PROGRAM[n] for n in order if n in EGRESS_PROGRAM]
    assert [(pref, handle) for pref, handle, _, _ in egress] == [
        (slots[n].priority, slots[n].handle) for n in order if n in EGRESS_PROGRAM]


def test_each_object_attaches_where_its_btf_says(everything):
    """The slot each wrapper attaches at is the one its loaded object's BTF holds."""
    assert everything["counters"].tc == compiled_slot("counters")
    assert everything["passive"].tc == compiled_slot("passive")
    steer = everything["steer"].abi
    assert (steer.tc_handle, steer.tc_priority) == (compiled_slot("steer").handle, compiled_slot("steer").priority)
