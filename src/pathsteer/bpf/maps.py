"""Typed access to a BPF map: keys and values are ctypes types checked against the map's BTF.

A `Map` wraps a map fd with its key type ``K`` and value type ``V``. When it is opened the
sizes are compared with the kernel's (``bpf_map_info``) and, when the map has BTF, the ctypes
layouts with the BTF types (`pathsteer.bpf.btf.check_type`): a drifted struct raises
`BpfError` naming the struct and field, before any byte is misread.

Per-CPU maps (``BPF_MAP_TYPE_PERCPU_*``) hold one value per possible CPU, each slot
``roundup(value_size, 8)`` bytes (kernel/bpf/syscall.c, ``bpf_map_value_size``); their
lookups return ``list[V]`` and `Map.sum` adds the CPUs up field by field.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable, Iterator, Sequence
from enum import IntEnum
from typing import Any, Generic, TypeVar

from pathsteer.bpf import libbpf as lb
from pathsteer.bpf.btf import Btf, check_type
from pathsteer.errors import BpfError

K = TypeVar("K")
V = TypeVar("V")


class MapType(IntEnum):
    """``enum bpf_map_type`` (uapi linux/bpf.h), the ones pathsteer meets."""
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    HASH_OF_MAPS = 13
    DEVMAP = 14
    QUEUE = 22
    RINGBUF = 27


PER_CPU_TYPES = {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, 21}  # 21: PERCPU_CGROUP_STORAGE


class UpdateFlag(IntEnum):
    """Flags of ``bpf_map_update_elem`` (uapi linux/bpf.h ``BPF_ANY`` ...)."""
    ANY = 0  # create or replace
    NOEXIST = 1  # create only (EEXIST if present)
    EXIST = 2  # replace only (ENOENT if absent)
    LOCK = 4  # BPF_F_LOCK: update under the value's bpf_spin_lock


def _roundup8(n: int) -> int:
    return (n + 7) & ~7


def _to_c(value: Any, ctype: type) -> Any:
    if isinstance(value, ctype):
        return value
    if isinstance(value, tuple):
        return ctype(*value)
    return ctype(value)


def _to_py(obj: Any) -> Any:
    """Plain ints for scalar ctypes (c_uint32 keys read back as int); structs stay structs."""
    return obj.value if isinstance(obj, ctypes._SimpleCData) else obj


def sum_values(values: Sequence[Any], ctype: type) -> Any:
    """Add per-CPU values: field by field for a struct, as numbers for a scalar type."""
    if issubclass(ctype, ctypes.Structure):
        total = ctype()
        for name, *_ in ctype._fields_:
            setattr(total, name, sum(getattr(v, name) for v in values))
        return total
    return sum(_to_py(v) for v in values)


class Map(Generic[K, V]):
    """A BPF map with typed keys ``K`` and values ``V`` (ctypes types, e.g. a Structure)."""

    def __init__(self, fd: int, info: lb.bpf_map_info, key_type: type, value_type: type, *,
                 btf: Btf | None = None, owns_fd: bool, owner: object = None) -> None:
        self.fd = fd
        self.name = info.name.decode()
        self.id = info.id
        self.type = info.type
        self.max_entries = info.max_entries
        self.key_type = key_type
        self.value_type = value_type
        self.per_cpu = info.type in PER_CPU_TYPES
        self._owns_fd = owns_fd
        self._owner = owner  # keeps the BpfObject (and so this fd) alive
        self._ncpus = lb.possible_cpus() if self.per_cpu else 1
        self._stride = _roundup8(info.value_size) if self.per_cpu else info.value_size
        self._check(info, btf)

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def from_fd(cls, fd: int, key_type: type, value_type: type, *, owns_fd: bool = True,
                owner: object = None, btf: Btf | None = None) -> Map:
        """Wrap a map fd (from a pin, an id, an object). Its BTF comes from the kernel unless given."""
        info = map_info(fd)
        own_btf = None
        try:
            if btf is None and info.btf_id:
                btf = own_btf = Btf.from_kernel(info.btf_id)
            return cls(fd, info, key_type, value_type, btf=btf, owns_fd=owns_fd, owner=owner)
        except BaseException:
            if owns_fd:
                os.close(fd)
            raise
        finally:
            if own_btf is not None:
                own_btf.close()

    @classmethod
    def from_id(cls, map_id: int, key_type: type, value_type: type) -> Map:
        """Open the map the kernel knows by ``map_id`` (e.g. one of a program's map ids)."""
        fd = lb.check_int(lb.bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}")
        return cls.from_fd(fd, key_type, value_type)

    def _check(self, info: lb.bpf_map_info, btf: Btf | None) -> None:
        what = f"map {self.name}"
        for role, ctype, size in (("key", self.key_type, info.key_size), ("value", self.value_type, info.value_size)):
            if ctypes.sizeof(ctype) != size:
                raise BpfError(f"{what}: {role} type {ctype.__name__} is {ctypes.sizeof(ctype)} bytes, "
                               f"the map's {role} is {size} bytes")
        if btf is not None and info.btf_key_type_id:
            check_type(btf, info.btf_key_type_id, self.key_type, f"{what} key")
        if btf is not None and info.btf_value_type_id:
            check_type(btf, info.btf_value_type_id, self.value_type, f"{what} value")

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Map[K, V]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Map {self.name} id={self.id} fd={self.fd}>"

    # --- single elements --------------------------------------------------------------------

    def _value_buffer(self, count: int = 1) -> ctypes.Array:
        return (ctypes.c_uint8 * (self._stride * self._ncpus * count))()

    def _decode_value(self, buf: ctypes.Array, offset: int = 0) -> Any:
        if not self.per_cpu:
            return _to_py(self.value_type.from_buffer_copy(buf, offset))
        return [_to_py(self.value_type.from_buffer_copy(buf, offset + cpu * self._stride))
                for cpu in range(self._ncpus)]

    def _encode_value(self, value: Any, buf: ctypes.Array, offset: int = 0) -> None:
        if not self.per_cpu:
            values = [value]
        elif isinstance(value, list):  # a list is one value per CPU (a tuple initialises a struct)
            if len(value) != self._ncpus:
                raise BpfError(f"map {self.name}: per-CPU update needs {self._ncpus} values, got {len(value)}")
            values = list(value)
        else:
            values = [value] * self._ncpus  # one value: the same in every CPU's slot
        for cpu, v in enumerate(values):
            c = _to_c(v, self.value_type)
            ctypes.memmove(ctypes.addressof(buf) + offset + cpu * self._stride, ctypes.addressof(c), ctypes.sizeof(c))

    def lookup(self, key: K | Any) -> V | list[V] | None:
        """The value under ``key`` (per-CPU maps: a list, one per possible CPU), or None."""
        k = _to_c(key, self.key_type)
        buf = self._value_buffer()
        ret = lb.bpf_map_lookup_elem(self.fd, ctypes.byref(k), buf)
        if ret == -errno.ENOENT:
            return None
        lb.check_int(ret, f"map {self.name}: lookup")
        return self._decode_value(buf)

    def sum(self, key: K | Any) -> V | None:
        """For a per-CPU map: the value under ``key`` added up over all CPUs; None if absent."""
        values = self.lookup(key)
        if values is None:
            return None
        return sum_values(values, self.value_type) if self.per_cpu else values

    def update(self, key: K | Any, value: V | Sequence[V] | Any, flags: UpdateFlag = UpdateFlag.ANY) -> None:
        """Store ``value`` under ``key``. For a per-CPU map pass a list (one value per CPU), or
        one value to store in every CPU's slot."""
        k = _to_c(key, self.key_type)
        buf = self._value_buffer()
        self._encode_value(value, buf)
        lb.check_int(lb.bpf_map_update_elem(self.fd, ctypes.byref(k), buf, int(flags)),
                     f"map {self.name}: update ({UpdateFlag(flags).name})")

    def delete(self, key: K | Any) -> bool:
        """Remove ``key``; False if it was not there."""
        k = _to_c(key, self.key_type)
        ret = lb.bpf_map_delete_elem(self.fd, ctypes.byref(k))
        if ret == -errno.ENOENT:
            return False
        lb.check_int(ret, f"map {self.name}: delete")
        return True

    # --- iteration --------------------------------------------------------------------------

    def keys(self) -> Iterator[K]:
        """Every key, by ``bpf_map_get_next_key`` (a key deleted meanwhile restarts the walk at
        the map's first key for hash maps: the kernel's rule; use lookup_batch for a snapshot)."""
        prev = None
        nxt = self.key_type()
        while True:
            ret = lb.bpf_map_get_next_key(self.fd, ctypes.byref(prev) if prev is not None else None, ctypes.byref(nxt))
            if ret == -errno.ENOENT:
                return
            lb.check_int(ret, f"map {self.name}: get_next_key")
            yield _to_py(self.key_type.from_buffer_copy(nxt))
            prev = self.key_type.from_buffer_copy(nxt)

    def items(self) -> Iterator[tuple[K, V | list[V]]]:
        """(key, value) pairs; a key deleted between the two calls is skipped."""
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value

    def __iter__(self) -> Iterator[K]:
        return self.keys()

    # --- batches ----------------------------------------------------------------------------

    def update_batch(self, items: Iterable[tuple[K, V]], flags: UpdateFlag = UpdateFlag.ANY) -> int:
        """``bpf_map_update_batch``: store many entries in one syscall; returns how many."""
        pairs = list(items)
        if not pairs:
            return 0
        ksize = ctypes.sizeof(self.key_type)
        keys = (ctypes.c_uint8 * (ksize * len(pairs)))()
        values = self._value_buffer(len(pairs))
        for i, (key, value) in enumerate(pairs):
            k = _to_c(key, self.key_type)
            ctypes.memmove(ctypes.addressof(keys) + i * ksize, ctypes.addressof(k), ksize)
            self._encode_value(value, values, i * self._stride * self._ncpus)
        count = ctypes.c_uint32(len(pairs))
        opts = lb.opts(lb.bpf_map_batch_opts, elem_flags=int(flags))
        ret = lb.bpf_map_update_batch(self.fd, keys, values, ctypes.byref(count), ctypes.byref(opts))
        lb.check_int(ret, f"map {self.name}: update_batch ({count.value} of {len(pairs)} stored)")
        return count.value

    def delete_batch(self, keys: Iterable[K | Any] | bytes, *, missing_ok: bool = False,
                     batch_size: int = 65536) -> int:
        """``bpf_map_delete_batch``: remove many keys, ``batch_size`` per syscall; returns how many
        were removed. ``keys`` are keys (ctypes or what initialises one) or, for bulk callers,
        the keys already packed back to back as bytes.

        The kernel (``generic_map_delete_batch``) deletes in order and stops at the first key it
        cannot delete, reporting in ``count`` how many went before it: a missing key is skipped
        and the rest deleted when ``missing_ok``, else BpfError (ENOENT) saying how many of the
        keys were removed before it (those stay removed)."""
        ksize = ctypes.sizeof(self.key_type)
        if isinstance(keys, (bytes, bytearray, memoryview)):
            packed = bytes(keys)
            if len(packed) % ksize:
                raise BpfError(f"map {self.name}: delete_batch: {len(packed)} bytes of keys is not a "
                               f"multiple of the key size {ksize}")
        else:
            packed = b"".join(bytes(_to_c(k, self.key_type)) for k in keys)
        total = len(packed) // ksize
        buf = ctypes.create_string_buffer(packed, len(packed) or 1)
        base = ctypes.addressof(buf)
        opts = lb.opts(lb.bpf_map_batch_opts)
        done = deleted = 0
        while done < total:
            n = min(batch_size, total - done)
            count = ctypes.c_uint32(n)
            ret = lb.bpf_map_delete_batch(self.fd, ctypes.c_void_p(base + done * ksize), ctypes.byref(count),
                                          ctypes.byref(opts))
            if ret == 0:
                done, deleted = done + n, deleted + n
                continue
            gone = min(count.value, n) if ret != -errno.EFAULT else 0
            done, deleted = done + gone, deleted + gone
            if ret == -errno.ENOENT and missing_ok:
                done += 1  # the key at ``done`` is not in the map: skip it
                continue
            lb.check_int(ret, f"map {self.name}: delete_batch ({deleted} of {total} keys removed, "
                              f"stopped at key #{done})")
        return deleted

    def lookup_batch(self, batch_size: int = 256) -> list[tuple[K, V | list[V]]]:
        """Every entry through ``bpf_map_lookup_batch``, ``batch_size`` per syscall. The call
        returns -ENOENT at the end of the map with ``count`` still filled in (docs/platform.md)."""
        ksize = ctypes.sizeof(self.key_type)
        token_size = max(ksize, 8)  # hash maps use a u32 bucket cursor, arrays the key
        tokens = [(ctypes.c_uint8 * token_size)(), (ctypes.c_uint8 * token_size)()]
        out: list[tuple[Any, Any]] = []
        first = True
        opts = lb.opts(lb.bpf_map_batch_opts)
        while True:
            keys = (ctypes.c_uint8 * (ksize * batch_size))()
            values = self._value_buffer(batch_size)
            count = ctypes.c_uint32(batch_size)
            ret = lb.bpf_map_lookup_batch(self.fd, None if first else tokens[0], tokens[1], keys, values,
                                          ctypes.byref(count), ctypes.byref(opts))
            if ret == -errno.ENOSPC and count.value == 0:
                batch_size *= 2  # one hash bucket holds more entries than a batch: grow
                continue
            if ret < 0 and ret != -errno.ENOENT:
                lb.check_int(ret, f"map {self.name}: lookup_batch")
            for i in range(count.value):
                key = _to_py(self.key_type.from_buffer_copy(keys, i * ksize))
                out.append((key, self._decode_value(values, i * self._stride * self._ncpus)))
            if ret == -errno.ENOENT:
                return out
            tokens.reverse()
            first = False

    # --- pinning ----------------------------------------------------------------------------

    def pin(self, path: str) -> str:
        """Pin under bpffs (see pathsteer.bpf.pins for where pathsteer's pins live)."""
        from pathsteer.bpf.pins import pin_fd
        return pin_fd(self.fd, path, f"map {self.name}")


def map_info(fd: int) -> lb.bpf_map_info:
    """``bpf_obj_get_info_by_fd`` for a map fd."""
    info = lb.bpf_map_info()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    lb.check_int(lb.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), f"map info of fd {fd}")
    return info
