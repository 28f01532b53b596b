"""Loader plumbing without root: option-struct sizes, names, error messages."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from pathsteer.bpf import libbpf as lb
from pathsteer.bpf.build import BPF_SOURCE_DIR, compile_object
from pathsteer.bpf.counters import Hook
from pathsteer.bpf.object import OBJECTS_DIR, BpfObject, object_path
from pathsteer.bpf.pins import PIN_ROOT, pin_path
from pathsteer.errors import BpfError, UnsupportedError, UsageError

HEADER_CHECK = r"""
#include <stdio.h>
#include <stddef.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#define S(t) printf(#t " %zu\n", sizeof(struct t));
int main(void) {
    S(bpf_xdp_attach_opts) S(bpf_xdp_query_opts) S(bpf_tc_hook) S(bpf_tc_opts)
    S(bpf_test_run_opts) S(bpf_map_batch_opts)
    printf("bpf_test_run_opts.retval %zu\n", offsetof(struct bpf_test_run_opts, retval));
    printf("bpf_tc_opts.priority %zu\n", offsetof(struct bpf_tc_opts, priority));
    return 0;
}
"""


def test_option_struct_sizes_are_libbpf_1_1():
    """The sizes docs/platform.md gives; a libbpf with other sizes needs new mirrors."""
    assert {cls.__name__: ctypes.sizeof(cls) for cls in lb.OPTS_SIZES} == {
        cls.__name__: size for cls, size in lb.OPTS_SIZES.items()}
    assert lb.OPTS_SIZES[lb.bpf_xdp_attach_opts] == 16
    assert lb.OPTS_SIZES[lb.bpf_tc_hook] == 24
    assert lb.OPTS_SIZES[lb.bpf_tc_opts] == 32
    assert lb.OPTS_SIZES[lb.bpf_test_run_opts] == 80
    assert lb.OPTS_SIZES[lb.bpf_map_batch_opts] == 24


def test_option_structs_match_installed_headers(tmp_path):
    if not Path("/usr/include/bpf/libbpf.h").exists() or shutil.which("cc") is None:
        pytest.skip("needs libbpf-dev headers and a C compiler (cc)")
    (tmp_path / "c.c").write_text(HEADER_CHECK)
    subprocess.run(["cc", "-o", str(tmp_path / "c"), str(tmp_path / "c.c")], check=True)
    out = subprocess.run([str(tmp_path / "c")], capture_output=True, text=True, check=True).stdout
    got = dict(line.rsplit(" ", 1) for line in out.splitlines())
    for cls in lb.OPTS_SIZES:
        assert int(got[cls.__name__]) == ctypes.sizeof(cls), cls.__name__
    assert int(got["bpf_test_run_opts.retval"]) == lb.bpf_test_run_opts.retval.offset
    assert int(got["bpf_tc_opts.priority"]) == lb.bpf_tc_opts.priority.offset


def test_missing_object_names_make_bpf():
    with pytest.raises(UnsupportedError, match=r"'no_such_program' not found .*make bpf"):
        object_path("no_such_program")


@pytest.fixture(scope="module")
def counters_path(tmp_path_factory) -> Path:
    packaged = OBJECTS_DIR / "counters.bpf.o"
    if packaged.is_file():
        return packaged
    return compile_object(BPF_SOURCE_DIR / "counters.bpf.c", tmp_path_factory.mktemp("bpf") / "counters.bpf.o")


def test_programs_and_maps_by_name(counters_path):
    with BpfObject.open(counters_path) as obj:
        assert set(obj.program_names) == {h.program for h in Hook}
        assert obj.map_names == ["iface_counters"]
        with pytest.raises(BpfError, match=r"no program 'nope' \(has: xdp_count, tc_count_in, tc_count_out\)"):
            obj.program("nope")
        with pytest.raises(BpfError, match=r"no map 'nope' \(has: iface_counters\)"):
            obj.map("nope", ctypes.c_uint32, ctypes.c_uint32)
        with pytest.raises(BpfError, match="needs load"):
            obj.program("xdp_count")


def test_names_survive_the_kernel(counters_path):
    """The kernel keeps BPF_OBJ_NAME_LEN - 1 = 15 characters of a program or map name; re-finding
    by id compares those, so every name must fit."""
    with BpfObject.open(counters_path) as obj:
        for name in obj.program_names + obj.map_names:
            assert len(name) <= 15, name


def test_unused_abi_anchor_is_not_a_program(counters_path):
    """counters_abi() only carries the enums into BTF; libbpf must not treat it as a program."""
    with BpfObject.open(counters_path) as obj:
        assert "counters_abi" not in obj.program_names


def test_not_an_object_is_a_bpf_error(tmp_path):
    bogus = tmp_path / "bogus.bpf.o"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(BpfError, match=r"opening BPF object .*bogus\.bpf\.o"):
        BpfObject.open(bogus)


def test_error_summary_prefers_the_verifier():
    log = ("libbpf: prog 'x': BPF program load failed: Permission denied\n"
           "libbpf: prog 'x': -- BEGIN PROG LOAD LOG --\n0: R1=ctx()\n"
           "invalid access to packet, off=0 size=4, R2(id=0,off=0,r=0)\n"
           "processed 3 insns (limit 1000000)\n-- END PROG LOAD LOG --\n"
           "libbpf: failed to load object 'x'\n")
    err = lb.error("loading BPF object x", 22, log)
    assert type(err) is BpfError
    assert str(err) == ("loading BPF object x: Invalid argument (errno 22): verifier in program x: "
                        "invalid access to packet, off=0 size=4, R2(id=0,off=0,r=0)")
    assert err.log == log and err.errno == 22


def test_error_without_verifier_log_uses_last_libbpf_line():
    err = lb.error("opening map id 9", 2, "libbpf: something\nlibbpf: map 'x': not found\n")
    assert str(err) == "opening map id 9: No such file or directory (errno 2): map 'x': not found"


def test_compile_error_is_a_bpf_error(tmp_path):
    src = tmp_path / "broken.bpf.c"
    src.write_text("int x(void) { return y; }\n")
    with pytest.raises(BpfError, match="compiling .*broken.bpf.c: .*error") as info:
        compile_object(src, tmp_path / "broken.bpf.o")
    assert "undeclared identifier" in info.value.log


def test_pin_paths():
    assert pin_path("lab1", "counters") == f"{PIN_ROOT}/lab1/counters"
    for bad in ("", "..", "a/b"):
        with pytest.raises(UsageError, match="pin name"):
            pin_path(bad)
