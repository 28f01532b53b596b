"""BPF objects and programs: open a compiled object by name, load it, find programs and maps.

``BpfObject.open("counters")`` reads ``objects/counters.bpf.o`` (built by ``make bpf``) without
touching the kernel, which is enough for BTF and layout checks; ``load()`` creates the maps
and runs the verifier. A `Program` is also what the kernel gives back for an id
(`Program.from_id`), so a process can pick up programs another process attached.
"""

from __future__ import annotations

import ctypes
import os
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from pathsteer.bpf import libbpf as lb
from pathsteer.bpf.btf import Btf, check_type
from pathsteer.bpf.maps import Map, map_info
from pathsteer.errors import BpfError, UnsupportedError

if TYPE_CHECKING:
    from pathsteer.bpf.testrun import RunResult

OBJECTS_DIR = Path(__file__).resolve().parent / "objects"


class ProgType(IntEnum):
    """``enum bpf_prog_type`` (uapi linux/bpf.h), the ones pathsteer uses."""
    UNSPEC = 0
    SOCKET_FILTER = 1
    SCHED_CLS = 3  # TC (cls_bpf direct-action)
    XDP = 6
    LWT_XMIT = 12
    SOCK_OPS = 13


def object_path(name: str) -> Path:
    """``objects/NAME.bpf.o`` inside the package; UnsupportedError naming ``make bpf`` if absent."""
    path = OBJECTS_DIR / f"{name}.bpf.o"
    if not path.is_file():
        have = sorted(p.name.removesuffix(".bpf.o") for p in OBJECTS_DIR.glob("*.bpf.o")) if OBJECTS_DIR.is_dir() else []
        raise UnsupportedError(
            f"BPF object {name!r} not found at {path}: run `make bpf` to compile bpf/*.bpf.c"
            + (f" (compiled objects: {', '.join(have)})" if have else " (no object is compiled yet)")
        )
    return path


class Program:
    """A BPF program: from a loaded `BpfObject` (fd owned by the object) or from the kernel by
    id or pin (fd owned by this Program; close it)."""

    def __init__(self, fd: int, name: str, *, owns_fd: bool, owner: object = None, section: str = "") -> None:
        self.fd = fd
        self.name = name
        self.section = section
        self._owns_fd = owns_fd
        self._owner = owner

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """``bpf_prog_get_fd_by_id``: the program the kernel knows as ``prog_id``."""
        fd = lb.check_int(lb.bpf_prog_get_fd_by_id(prog_id), f"opening program id {prog_id}")
        try:
            return cls(fd, prog_info(fd).name.decode(), owns_fd=True)
        except BaseException:
            os.close(fd)
            raise

    def info(self) -> lb.bpf_prog_info:
        return prog_info(self.fd)

    @property
    def id(self) -> int:
        return self.info().id

    @property
    def type(self) -> int:
        return self.info().type

    def map_ids(self) -> list[int]:
        """The ids of the maps this program uses (``bpf_prog_info.map_ids``)."""
        count = self.info().nr_map_ids
        ids = (ctypes.c_uint32 * max(count, 1))()
        info = lb.bpf_prog_info(nr_map_ids=count, map_ids=ctypes.addressof(ids))
        size = ctypes.c_uint32(ctypes.sizeof(info))
        lb.check_int(lb.bpf_obj_get_info_by_fd(self.fd, ctypes.byref(info), ctypes.byref(size)),
                     f"program {self.name}: map ids")
        return list(ids[: min(count, info.nr_map_ids)])

    def map_fd(self, name: str) -> int:
        """A new fd of one of this program's maps, by name (the kernel keeps 15 characters of
        it); the caller closes it. BpfError names the maps the program does have."""
        seen = []
        for map_id in self.map_ids():
            fd = lb.bpf_map_get_fd_by_id(map_id)
            if fd < 0:
                continue  # freed meanwhile
            try:
                map_name = map_info(fd).name.decode()
            except BaseException:
                os.close(fd)
                raise
            if map_name == name[:15]:
                return fd
            os.close(fd)
            seen.append(map_name)
        raise BpfError(f"program {self.name} (id {self.id}) uses no map {name!r} (it uses: {', '.join(seen) or 'none'})")

    def map(self, name: str, key_type: type, value_type: type) -> Map:
        """One of this program's maps by name, typed and checked against the map's BTF."""
        return Map.from_fd(self.map_fd(name), key_type, value_type)

    def test_run(self, data: bytes, *, repeat: int = 1, ctx: bytes | ctypes.Structure | None = None) -> RunResult:
        """BPF_PROG_TEST_RUN: see `pathsteer.bpf.testrun.prog_test_run`."""
        from pathsteer.bpf.testrun import prog_test_run
        return prog_test_run(self, data, repeat=repeat, ctx=ctx)

    def pin(self, path: str) -> str:
        from pathsteer.bpf.pins import pin_fd
        return pin_fd(self.fd, path, f"program {self.name}")

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Program {self.name} fd={self.fd}>"


def prog_info(fd: int) -> lb.bpf_prog_info:
    """``bpf_obj_get_info_by_fd`` for a program fd (1.1 has no bpf_prog_get_info_by_fd)."""
    info = lb.bpf_prog_info()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    lb.check_int(lb.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), f"program info of fd {fd}")
    return info


class BpfObject:
    """A compiled BPF object (``struct bpf_object``): open, then load, then use; close frees
    the object and its fds (attachments made through netlink stay: the kernel holds them)."""

    def __init__(self, ptr: int, path: Path) -> None:
        self._ptr = ptr
        self.path = path
        self.name = path.name.removesuffix(".bpf.o").removesuffix(".o")
        self.loaded = False
        self._programs: dict[str, int] = {}
        self._maps: dict[str, int] = {}
        prog = lb.bpf_object__next_program(ptr, None)
        while prog:
            self._programs[lb.bpf_program__name(prog).decode()] = prog
            prog = lb.bpf_object__next_program(ptr, prog)
        m = lb.bpf_object__next_map(ptr, None)
        while m:
            self._maps[lb.bpf_map__name(m).decode()] = m
            m = lb.bpf_object__next_map(ptr, m)

    @classmethod
    def open(cls, name_or_path: str | Path) -> BpfObject:
        """Open ``objects/NAME.bpf.o`` (a bare name) or a path; nothing reaches the kernel yet."""
        path = Path(name_or_path)
        if path.suffix != ".o":
            path = object_path(str(name_or_path))
        elif not path.is_file():
            raise UnsupportedError(f"BPF object {path} not found (compile it with clang, or `make bpf`)")
        with lb.captured_log() as log:
            ptr = lb.bpf_object__open_file(str(path).encode(), None)
        return cls(lb.check_ptr(ptr, f"opening BPF object {path}", log), path)

    def load(self) -> BpfObject:
        """Create the maps and load every program (the verifier runs here). On failure the
        BpfError carries libbpf's output with the verifier log."""
        if self.loaded:
            return self
        with lb.captured_log() as log:
            ret = lb.bpf_object__load(self._ptr)
        lb.check_int(ret, f"loading BPF object {self.name}", log)
        self.loaded = True
        return self

    def close(self) -> None:
        if self._ptr:
            lb.bpf_object__close(self._ptr)
        self._ptr = 0

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BpfObject {self.name} loaded={self.loaded}>"

    # --- BTF --------------------------------------------------------------------------------

    @property
    def btf(self) -> Btf:
        """The object's BTF (owned by the object: valid until close)."""
        ptr = lb.bpf_object__btf(self._ptr)
        if not ptr:
            raise BpfError(f"BPF object {self.name} has no BTF (compile with -g)")
        return Btf(ptr, owned=False, origin=str(self.path))

    def constants(self, enum_name: str) -> dict[str, int]:
        """The enumerators of a shared enum (``bpf/*_common.h``, ``bpf/common.h``) as compiled."""
        return self.btf.enum_values(enum_name)

    # --- programs and maps ------------------------------------------------------------------

    @property
    def program_names(self) -> list[str]:
        return list(self._programs)

    @property
    def map_names(self) -> list[str]:
        return list(self._maps)

    def _need_loaded(self, what: str) -> None:
        if not self.loaded:
            raise BpfError(f"BPF object {self.name}: {what} needs load() first")

    def program(self, name: str) -> Program:
        """A loaded program by its C function name."""
        if name not in self._programs:
            raise BpfError(f"BPF object {self.name} has no program {name!r} (has: {', '.join(self._programs)})")
        self._need_loaded(f"program {name}")
        ptr = self._programs[name]
        return Program(lb.bpf_program__fd(ptr), name, owns_fd=False, owner=self,
                       section=lb.bpf_program__section_name(ptr).decode())

    def _map_ptr(self, name: str) -> int:
        if name not in self._maps:
            raise BpfError(f"BPF object {self.name} has no map {name!r} (has: {', '.join(self._maps) or 'none'})")
        return self._maps[name]

    def check_map_types(self, name: str, key_type: type, value_type: type) -> None:
        """Compare ctypes key/value types with the map's BTF; works before load (no root)."""
        ptr = self._map_ptr(name)
        btf = self.btf
        for role, ctype, size, type_id in (
            ("key", key_type, lb.bpf_map__key_size(ptr), lb.bpf_map__btf_key_type_id(ptr)),
            ("value", value_type, lb.bpf_map__value_size(ptr), lb.bpf_map__btf_value_type_id(ptr)),
        ):
            if type_id:
                check_type(btf, type_id, ctype, f"map {name} {role}")
            elif ctypes.sizeof(ctype) != size:
                raise BpfError(f"map {name}: {role} type {ctype.__name__} is {ctypes.sizeof(ctype)} bytes, "
                               f"the map's {role} is {size} bytes")

    def reuse_map(self, name: str, fd: int) -> None:
        """Before `load`: let map ``name`` be the existing map ``fd`` (bpf_map__reuse_fd; libbpf
        checks type, key and value sizes at load), e.g. a second build of a program run
        against the first one's maps."""
        if self.loaded:
            raise BpfError(f"BPF object {self.name}: reuse_map({name!r}) must come before load()")
        lb.check_int(lb.bpf_map__reuse_fd(self._map_ptr(name), fd), f"map {name}: reuse fd {fd}")

    def max_entries(self, name: str) -> int:
        return lb.bpf_map__max_entries(self._map_ptr(name))

    def map(self, name: str, key_type: type, value_type: type) -> Map:
        """A loaded map by name, typed, its layout checked against the object's BTF."""
        ptr = self._map_ptr(name)
        self._need_loaded(f"map {name}")
        return Map.from_fd(lb.bpf_map__fd(ptr), key_type, value_type, owns_fd=False, owner=self, btf=self.btf)

    def map_fd(self, name: str) -> int:
        """The raw fd of a loaded map (ring buffers have no key/value types to check)."""
        ptr = self._map_ptr(name)
        self._need_loaded(f"map {name}")
        return lb.bpf_map__fd(ptr)


def load_object(name_or_path: str | Path) -> BpfObject:
    """Open and load in one step: ``load_object("counters")``. Closes the object on failure."""
    obj = BpfObject.open(name_or_path)
    try:
        return obj.load()
    except BaseException:
        obj.close()
        raise
