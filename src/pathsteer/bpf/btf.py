"""BTF, read through libbpf's ``btf__*`` API: the object's own description of its types.

Two uses, both so that C and Python cannot drift apart silently:

* `Btf.enum_values` reads the shared constants of ``bpf/*_common.h`` and ``bpf/common.h``
  (enums, see ``bpf/counters_abi.h`` for how they get into the object) — Python never re-types a
  number;
* `check_type` compares a ctypes mirror of a map key or value with the BTF type (size, and for
  a struct every field's name, offset and size) and raises `BpfError` naming the struct and the
  field that differ.

The type records are read straight from libbpf's memory; their layout is the UAPI of
``include/uapi/linux/btf.h`` (``struct btf_type``, ``btf_member``, ``btf_enum``, ``btf_enum64``).
"""

from __future__ import annotations

import ctypes
from ctypes import c_int32, c_uint32
from dataclasses import dataclass
from pathlib import Path

from pathsteer.bpf import libbpf as lb
from pathsteer.errors import BpfError

# BTF_KIND_* (include/uapi/linux/btf.h)
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_TYPE_TAG, KIND_ENUM64 = 18, 19
_MODIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}
_KIND_NAMES = {1: "int", 2: "pointer", 3: "array", 4: "struct", 5: "union", 6: "enum", 7: "fwd",
               8: "typedef", 12: "func", 13: "func_proto", 14: "var", 15: "datasec", 16: "float",
               19: "enum64"}


class btf_type(ctypes.Structure):
    """``struct btf_type``: name_off, info (vlen 0..15, kind 24..28, kind_flag 31), size/type."""
    _fields_ = [("name_off", c_uint32), ("info", c_uint32), ("size_or_type", c_uint32)]


class btf_member(ctypes.Structure):
    """``struct btf_member``: offset is in bits (low 24 bits when the kind_flag is set)."""
    _fields_ = [("name_off", c_uint32), ("type", c_uint32), ("offset", c_uint32)]


class btf_enum(ctypes.Structure):
    """``struct btf_enum``."""
    _fields_ = [("name_off", c_uint32), ("val", c_int32)]


class btf_enum64(ctypes.Structure):
    """``struct btf_enum64``."""
    _fields_ = [("name_off", c_uint32), ("val_lo32", c_uint32), ("val_hi32", c_uint32)]


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    offset: int  # bytes
    size: int  # bytes
    bitfield: bool


class Btf:
    """A ``struct btf`` handle. ``owned`` handles are freed by `close` (others belong to a
    bpf_object and die with it)."""

    def __init__(self, ptr: int, *, owned: bool, origin: str) -> None:
        self._ptr = ptr
        self._owned = owned
        self.origin = origin

    @classmethod
    def from_file(cls, path: str | Path) -> Btf:
        """Parse the ``.BTF`` section of a compiled object (no root, no kernel needed)."""
        with lb.captured_log() as log:
            ptr = lb.btf__parse(str(path).encode(), None)
        return cls(lb.check_ptr(ptr, f"reading BTF of {path}", log), owned=True, origin=str(path))

    @classmethod
    def from_kernel(cls, btf_id: int) -> Btf:
        """The BTF the kernel holds under ``btf_id`` (a loaded object's, from its map info)."""
        with lb.captured_log() as log:
            ptr = lb.btf__load_from_kernel_by_id(btf_id)
        return cls(lb.check_ptr(ptr, f"loading BTF id {btf_id} from the kernel", log),
                   owned=True, origin=f"kernel BTF id {btf_id}")

    def close(self) -> None:
        if self._owned and self._ptr:
            lb.btf__free(self._ptr)
        self._ptr = 0

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # --- raw access -------------------------------------------------------------------------

    def _type(self, type_id: int) -> btf_type:
        ptr = lb.btf__type_by_id(self._ptr, type_id)
        if not ptr:
            raise BpfError(f"{self.origin}: no BTF type with id {type_id}")
        return btf_type.from_address(ptr)

    def _name(self, offset: int) -> str:
        return (lb.btf__name_by_offset(self._ptr, offset) or b"").decode()

    @staticmethod
    def kind(t: btf_type) -> int:
        return (t.info >> 24) & 0x1F

    def name_of(self, type_id: int) -> str:
        return self._name(self._type(type_id).name_off)

    def find(self, name: str, kind: int) -> int:
        """The id of the type ``name`` of ``kind``; BpfError when the object has none."""
        type_id = lb.btf__find_by_name_kind(self._ptr, name.encode(), kind)
        if type_id < 0:
            raise BpfError(f"{self.origin}: no {_KIND_NAMES.get(kind, kind)} {name!r} in its BTF")
        return type_id

    def skip_modifiers(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict to the underlying type."""
        while type_id and self.kind(self._type(type_id)) in _MODIFIERS:
            type_id = self._type(type_id).size_or_type
        return type_id

    def size_of(self, type_id: int) -> int:
        size = lb.btf__resolve_size(self._ptr, type_id)
        return lb.check_int(size, f"{self.origin}: size of BTF type {type_id}")

    def members(self, type_id: int) -> list[Member]:
        """The fields of a struct or union (``btf_member`` records follow the ``btf_type``)."""
        t = self._type(type_id)
        vlen, kflag = t.info & 0xFFFF, t.info >> 31
        base = ctypes.addressof(t) + ctypes.sizeof(btf_type)
        out = []
        for i in range(vlen):
            m = btf_member.from_address(base + i * ctypes.sizeof(btf_member))
            bit_off = m.offset & 0xFFFFFF if kflag else m.offset
            bitfield = bool(kflag and m.offset >> 24)
            out.append(Member(self._name(m.name_off), m.type, bit_off // 8, self.size_of(m.type),
                              bitfield or bit_off % 8 != 0))
        return out

    # --- what pathsteer reads ---------------------------------------------------------------

    def enum_values(self, name: str) -> dict[str, int]:
        """Enumerators of ``enum name`` as {C name: value}, e.g. ``enum_values("pathsteer_hook")``."""
        type_id = lb.btf__find_by_name_kind(self._ptr, name.encode(), KIND_ENUM)
        if type_id < 0:
            type_id = lb.btf__find_by_name_kind(self._ptr, name.encode(), KIND_ENUM64)
        if type_id < 0:
            raise BpfError(f"{self.origin}: no enum {name!r} in its BTF")
        t = self._type(type_id)
        base = ctypes.addressof(t) + ctypes.sizeof(btf_type)
        values = {}
        if self.kind(t) == KIND_ENUM:
            unsigned = bool(t.info >> 31)  # kind_flag set: unsigned enum
            for i in range(t.info & 0xFFFF):
                e = btf_enum.from_address(base + i * ctypes.sizeof(btf_enum))
                values[self._name(e.name_off)] = e.val & 0xFFFFFFFF if unsigned else e.val
        else:
            for i in range(t.info & 0xFFFF):
                e = btf_enum64.from_address(base + i * ctypes.sizeof(btf_enum64))
                values[self._name(e.name_off)] = e.val_hi32 << 32 | e.val_lo32
        return values

    def constant(self, enum_name: str, member: str) -> int:
        """One enumerator's value; BpfError naming the enumerators that do exist."""
        values = self.enum_values(enum_name)
        if member not in values:
            raise BpfError(f"{self.origin}: enum {enum_name} has no {member} (has: {', '.join(values)})")
        return values[member]


def check_type(btf: Btf, type_id: int, ctype: type, what: str) -> None:
    """Raise BpfError unless ``ctype`` has the size and (for a struct) the fields, offsets and
    field sizes of BTF type ``type_id``. ``what`` says where the type is used (``map X key``)."""
    type_id = btf.skip_modifiers(type_id)
    btf_name = btf.name_of(type_id) or "(anonymous)"
    t = btf._type(type_id)
    kind = btf.kind(t)
    label = f"{_KIND_NAMES.get(kind, 'type')} {btf_name}"
    py_size, c_size = ctypes.sizeof(ctype), btf.size_of(type_id)
    if py_size != c_size:
        raise BpfError(f"{what}: Python type {ctype.__name__} is {py_size} bytes, "
                       f"BTF {label} is {c_size} bytes ({btf.origin})")
    if kind not in (KIND_STRUCT, KIND_UNION):
        return
    if not issubclass(ctype, (ctypes.Structure, ctypes.Union)):
        raise BpfError(f"{what}: BTF {label} is a {_KIND_NAMES[kind]}, Python type {ctype.__name__} is not")
    py_fields = {name: getattr(ctype, name) for name, *_ in ctype._fields_}
    py_types = {name: ftype for name, ftype, *_ in ctype._fields_}
    members = btf.members(type_id)
    c_names = [m.name for m in members]
    for name in py_fields:
        if name not in c_names:
            raise BpfError(f"{what}: Python {ctype.__name__}.{name} has no counterpart in BTF {label} "
                           f"(fields: {', '.join(c_names)})")
    for m in members:
        if m.name not in py_fields:
            raise BpfError(f"{what}: BTF {label}.{m.name} is missing from Python {ctype.__name__}")
        field = py_fields[m.name]
        if m.bitfield:
            raise BpfError(f"{what}: BTF {label}.{m.name} is a bit field; mirror it by hand and check it")
        if field.offset != m.offset or field.size != m.size:
            raise BpfError(f"{what}: Python {ctype.__name__}.{m.name} is at offset {field.offset} "
                           f"(size {field.size}), BTF {label}.{m.name} at offset {m.offset} (size {m.size})")
        inner = btf.skip_modifiers(m.type_id)
        if btf.kind(btf._type(inner)) in (KIND_STRUCT, KIND_UNION):
            check_type(btf, inner, py_types[m.name], f"{what} field {m.name}")
