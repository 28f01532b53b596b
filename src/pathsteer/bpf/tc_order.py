"""Where each pathsteer TC program sits on a clsact hook: its (handle, priority), read from BTF.

The numbers live once, in ``bpf/common.h``: ``enum pathsteer_tc_prio`` (the order on a hook;
lower runs first) and ``enum pathsteer_tc_handle``, one enumerator per program named after its
object (``PATHSTEER_TC_PRIO_PASSIVE``, ``..._STEER``, ``..._COUNTERS``). Every object attached
at TC carries both enums in its BTF (its ``*_abi.h``), so the attach code asks the object::

    tc_slot(obj.btf, "counters")      # TcSlot(handle=0x7073, priority=0x10)
    compiled_slot("passive")          # the same from objects/passive.bpf.o, nothing loaded
    tc_order(btf)                     # ["passive", "steer", "counters"]: the order they run in

`compiled_slot` serves the code that looks for a program attached by an earlier run before it
has loaded anything (``Counters.find``, ``PassiveRtt.find``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pathsteer.bpf.btf import Btf
from pathsteer.bpf.object import object_path

PRIO_ENUM = "pathsteer_tc_prio"
HANDLE_ENUM = "pathsteer_tc_handle"
PRIO_PREFIX = "PATHSTEER_TC_PRIO_"
HANDLE_PREFIX = "PATHSTEER_TC_HANDLE_"
# The objects attached at TC, by the names of their enumerators (object name, upper case).
TC_OBJECTS = ("passive", "steer", "counters")


@dataclass(frozen=True)
class TcSlot:
    """A TC filter's place on a hook: ``bpf_tc_opts`` handle and priority."""

    handle: int
    priority: int


def tc_slot(btf: Btf, program: str) -> TcSlot:
    """The slot of ``program`` (an object name: counters, passive, steer) as ``btf`` has it;
    BpfError naming the enumerators there are when the object has none for it."""
    name = program.upper()
    return TcSlot(btf.constant(HANDLE_ENUM, HANDLE_PREFIX + name), btf.constant(PRIO_ENUM, PRIO_PREFIX + name))


def tc_order(btf: Btf) -> list[str]:
    """The programs of ``enum pathsteer_tc_prio`` (object names) in the order they run on a
    hook: lowest priority first."""
    prios = btf.enum_values(PRIO_ENUM)
    return [name.removeprefix(PRIO_PREFIX).lower() for name, _ in sorted(prios.items(), key=lambda kv: kv[1])]


@functools.cache
def compiled_slot(program: str) -> TcSlot:
    """``program``'s slot as ``objects/<program>.bpf.o`` was compiled (BTF read from the file:
    no root, nothing loaded). UnsupportedError naming ``make bpf`` when the object is missing."""
    with Btf.from_file(object_path(program)) as btf:
        return tc_slot(btf, program)
