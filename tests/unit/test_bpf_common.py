"""bpf/ as a whole, without root: the shared header (common.h) and the per-program header
families, the guard's first-drop rule as the object compiled it, the TC order in every TC
object's BTF, and which objects the package ships."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from pathsteer.bpf.btf import Btf
from pathsteer.bpf.build import BPF_SOURCE_DIR, compile_object
from pathsteer.bpf.object import OBJECTS_DIR
from pathsteer.bpf.tc_order import TC_OBJECTS, tc_order, tc_slot
from pathsteer.errors import BpfError
from pathsteer.guard import abi
from pathsteer.guard.rules import Verdict

REPO = BPF_SOURCE_DIR.parent
SHIPPED = ("counters", "guard", "passive", "steer")  # the daemon's programs
TEST_ONLY = ("baseline", "xdpgen")  # benchmark anchors and the frame generator
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, Path]:
    """The packaged objects when `make bpf` built them, else fresh compiles of the sources."""
    out = {}
    for name in SHIPPED:
        packaged = OBJECTS_DIR / f"{name}.bpf.o"
        out[name] = packaged if packaged.is_file() else compile_object(
            BPF_SOURCE_DIR / f"{name}.bpf.c", tmp_path_factory.mktemp("bpf") / f"{name}.bpf.o")
    return out


def includes(path: Path) -> list[str]:
    return INCLUDE.findall(path.read_text())


# --- headers -----------------------------------------------------------------------------------

def test_the_counters_headers_are_named_for_their_program():
    assert not sorted(BPF_SOURCE_DIR.glob("pathsteer_*.h"))
    sources = [*BPF_SOURCE_DIR.glob("*.[ch]"), *(REPO / "tests" / "kernel" / "bpf").glob("*.[ch]")]
    offenders = [f"{p.name}: {h}" for p in sources for h in includes(p) if h.startswith("pathsteer_")]
    assert offenders == []
    assert [h for h in includes(BPF_SOURCE_DIR / "counters.bpf.c") if h != "common.h"] == [
        "counters_common.h", "counters_structs.h", "counters_maps.h", "counters_abi.h"]


@pytest.mark.parametrize("program", SHIPPED)
def test_every_program_includes_common_and_only_its_own_family(program):
    """common.h first, then the program's own headers: no program borrows another's."""
    own = includes(BPF_SOURCE_DIR / f"{program}.bpf.c")
    assert own[0] == "common.h"
    assert all(h == "common.h" or h.startswith(f"{program}_") for h in own), own


def test_each_header_has_its_own_include_guard():
    guards = {}
    for header in sorted(BPF_SOURCE_DIR.glob("*.h")):
        m = re.search(r"^#ifndef (\w+)\n#define \1$", header.read_text(), re.M)
        assert m, f"{header.name} has no include guard"
        guards.setdefault(m.group(1), []).append(header.name)
    assert all(len(names) == 1 for names in guards.values()), guards


def test_no_program_redefines_what_common_h_holds():
    """The helpers and constants moved to common.h are not written again in a program."""
    moved = ("struct vlan_tag {", "#define TCPOPT_", "#define IP_MF", "#define AF_INET", "struct guard_counter",
             "struct steer_counter", "struct counter_value", "enum steer_tc {")
    for source in sorted(BPF_SOURCE_DIR.glob("*")):
        if source.name == "common.h" or source.suffix not in (".c", ".h"):
            continue
        text = source.read_text()
        assert not [m for m in moved if m in text], source.name


# --- guard verdicts ----------------------------------------------------------------------------

def test_drops_are_exactly_the_verdicts_from_the_first_drop_on(objects):
    """guard.bpf.c drops a packet iff its verdict >= GUARD_FIRST_DROP: every enumerator from
    there on is a DROP, none before is, and Verdict.drops (by name) agrees."""
    with Btf.from_file(objects["guard"]) as btf:
        values = btf.enum_values("guard_verdict")
        first = abi.first_drop(btf)
        numbers = abi.verdict_numbers(btf)  # raises if the object disagrees with the names
    verdicts = {n: v for n, v in values.items() if n not in ("GUARD_FIRST_DROP", "GUARD_VERDICT_COUNT")}
    assert first == values["GUARD_DROP_MALFORMED"]  # the first drop is a real verdict
    assert sorted(n for n, v in verdicts.items() if v >= first) == sorted(n for n in verdicts if n.startswith("GUARD_DROP_"))
    assert not [n for n, v in verdicts.items() if v < first and "DROP" in n]
    assert max(verdicts.values()) < values["GUARD_VERDICT_COUNT"]
    assert {v for v, n in numbers.items() if n >= first} == {v for v in Verdict if v.drops}
    assert len(set(numbers.values())) == len(Verdict)


class FakeBtf:
    """Just enough of Btf for verdict_numbers: one enum guard_verdict."""

    origin = "fake.bpf.o"

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values

    def enum_values(self, name: str) -> dict[str, int]:
        assert name == "guard_verdict"
        return self.values

    def constant(self, enum_name: str, member: str) -> int:
        return self.enum_values(enum_name)[member]


def test_a_verdict_on_the_wrong_side_of_the_first_drop_is_refused(objects):
    with Btf.from_file(objects["guard"]) as btf:
        values = btf.enum_values("guard_verdict")
    swapped = dict(values)  # a pass after the first drop, a drop before it
    swapped["GUARD_PASS_COOKIE"], swapped["GUARD_DROP_COOKIE"] = values["GUARD_DROP_COOKIE"], values["GUARD_PASS_COOKIE"]
    with pytest.raises(BpfError, match=r"GUARD_DROP_COOKIE, GUARD_PASS_COOKIE on the wrong side of GUARD_FIRST_DROP"):
        abi.verdict_numbers(FakeBtf(swapped))


# --- TC order ----------------------------------------------------------------------------------

def test_tc_objects_carry_the_tc_order(objects):
    orders, slots = [], {}
    for name in TC_OBJECTS:
        with Btf.from_file(objects[name]) as btf:
            orders.append(tc_order(btf))
            slots[name] = tc_slot(btf, name)
    assert all(order == orders[0] for order in orders)
    assert sorted(orders[0]) == sorted(TC_OBJECTS)
    assert [slots[n].priority for n in orders[0]] == sorted(s.priority for s in slots.values())
    assert len({(s.handle, s.priority) for s in slots.values()}) == len(slots)  # no two in one slot
    with Btf.from_file(objects["guard"]) as btf, pytest.raises(BpfError, match="no enum 'pathsteer_tc_prio'"):
        tc_order(btf)  # XDP only: the guard has no TC slot


# --- packaging ---------------------------------------------------------------------------------

def test_test_only_programs_are_not_shipped():
    """The wheel takes objects/*.o but neither the benchmark anchors nor the frame generator."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-data"]["pathsteer.bpf"] == ["objects/*.o"]
    excluded = config["exclude-package-data"]["pathsteer.bpf"]
    assert sorted(excluded) == [f"objects/{name}.bpf.o" for name in TEST_ONLY]
    programs = sorted(p.name.removesuffix(".bpf.c") for p in BPF_SOURCE_DIR.glob("*.bpf.c"))
    assert programs == sorted(SHIPPED + TEST_ONLY)  # a new program must be put on one side
