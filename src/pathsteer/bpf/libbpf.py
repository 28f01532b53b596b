"""Raw ctypes prototypes for the system libbpf (``libbpf.so.1``, Debian's 1.1) and its errors.

Everything above this module speaks Python; this one speaks C. Rules it encodes:

* libbpf 1.x reports errors two ways: pointer-returning calls give NULL and set ``errno``,
  int-returning calls return ``-errno``. `check_int` and `check_ptr` turn both into one
  `BpfError` carrying the message, the errno and what libbpf printed meanwhile (for a failed
  program load that is the verifier log: libbpf prints it between ``-- BEGIN PROG LOAD LOG --``
  and ``-- END PROG LOAD LOG --``).
* Option structs (``struct bpf_*_opts``) carry their own size in ``sz``; libbpf rejects a larger
  size whose tail it does not know with -EINVAL. The ctypes mirrors below are exactly 1.1's
  layout, and `OPTS_SIZES` is what `tests/unit/test_bpf_loader.py` checks them against.
* Functions added after 1.1 are looked up with `optional` and may be None.
* A ctypes callback object must stay referenced for as long as C may call it: the print
  callback is a module global, ring buffer callbacks live on their RingBuffer.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import logging
import os
import threading
from ctypes import (
    CFUNCTYPE, POINTER, c_char_p, c_int, c_int64, c_size_t, c_uint8, c_uint32,
    c_uint64, c_void_p,
)

from pathsteer.errors import BpfError, UnsupportedError

LIBBPF_SONAME = "libbpf.so.1"

try:
    lib = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
except OSError as exc:  # pragma: no cover - depends on the machine
    raise UnsupportedError(
        f"cannot load {LIBBPF_SONAME} ({exc}); install the Debian package libbpf1 (make deps)"
    ) from None
_libc = ctypes.CDLL(None, use_errno=True)


def _fn(name: str, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def optional(name: str, restype, *argtypes):
    """A libbpf function newer than 1.1, or None when this libbpf lacks it."""
    try:
        return _fn(name, restype, *argtypes)
    except AttributeError:
        return None


# --- option structs, libbpf 1.1 layouts (bpf/libbpf.h, bpf/bpf.h) ---------------------------

class bpf_xdp_attach_opts(ctypes.Structure):
    """``struct bpf_xdp_attach_opts`` (libbpf.h): sz, old_prog_fd."""
    _fields_ = [("sz", c_size_t), ("old_prog_fd", c_int)]


class bpf_xdp_query_opts(ctypes.Structure):
    """``struct bpf_xdp_query_opts`` (libbpf.h), 1.1 layout (no feature_flags yet)."""
    _fields_ = [("sz", c_size_t), ("prog_id", c_uint32), ("drv_prog_id", c_uint32),
                ("hw_prog_id", c_uint32), ("skb_prog_id", c_uint32), ("attach_mode", c_uint8)]


class bpf_tc_hook(ctypes.Structure):
    """``struct bpf_tc_hook`` (libbpf.h): sz, ifindex, attach_point, parent."""
    _fields_ = [("sz", c_size_t), ("ifindex", c_int), ("attach_point", c_int), ("parent", c_uint32)]


class bpf_tc_opts(ctypes.Structure):
    """``struct bpf_tc_opts`` (libbpf.h): sz, prog_fd, flags, prog_id, handle, priority."""
    _fields_ = [("sz", c_size_t), ("prog_fd", c_int), ("flags", c_uint32), ("prog_id", c_uint32),
                ("handle", c_uint32), ("priority", c_uint32)]


class bpf_test_run_opts(ctypes.Structure):
    """``struct bpf_test_run_opts`` (bpf.h)."""
    _fields_ = [
        ("sz", c_size_t), ("data_in", c_void_p), ("data_out", c_void_p),
        ("data_size_in", c_uint32), ("data_size_out", c_uint32),
        ("ctx_in", c_void_p), ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32), ("ctx_size_out", c_uint32),
        ("retval", c_uint32), ("repeat", c_int), ("duration", c_uint32), ("flags", c_uint32),
        ("cpu", c_uint32), ("batch_size", c_uint32),
    ]


class bpf_map_batch_opts(ctypes.Structure):
    """``struct bpf_map_batch_opts`` (bpf.h): sz, elem_flags, flags."""
    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


# What libbpf 1.1 expects in ``sz`` (docs/platform.md; checked by a unit test against ctypes.sizeof).
OPTS_SIZES = {
    bpf_xdp_attach_opts: 16, bpf_xdp_query_opts: 32, bpf_tc_hook: 24, bpf_tc_opts: 32,
    bpf_test_run_opts: 80, bpf_map_batch_opts: 24,
}


def opts(cls, **fields):
    """An option struct with ``sz`` set to the size libbpf 1.1 knows."""
    return cls(sz=OPTS_SIZES[cls], **fields)


# --- kernel info structs (uapi linux/bpf.h), only the prefix we read -------------------------
# bpf_obj_get_info_by_fd() fills min(info_len, kernel's size) bytes, so a prefix is enough.

class bpf_prog_info(ctypes.Structure):
    """``struct bpf_prog_info`` (uapi linux/bpf.h) up to ``name``."""
    _fields_ = [
        ("type", c_uint32), ("id", c_uint32), ("tag", c_uint8 * 8),
        ("jited_prog_len", c_uint32), ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64), ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64), ("created_by_uid", c_uint32), ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64), ("name", ctypes.c_char * 16),
    ]


class bpf_map_info(ctypes.Structure):
    """``struct bpf_map_info`` (uapi linux/bpf.h) up to ``btf_value_type_id``."""
    _fields_ = [
        ("type", c_uint32), ("id", c_uint32), ("key_size", c_uint32), ("value_size", c_uint32),
        ("max_entries", c_uint32), ("map_flags", c_uint32), ("name", ctypes.c_char * 16),
        ("ifindex", c_uint32), ("btf_vmlinux_value_type_id", c_uint32),
        ("netns_dev", c_uint64), ("netns_ino", c_uint64),
        ("btf_id", c_uint32), ("btf_key_type_id", c_uint32), ("btf_value_type_id", c_uint32),
    ]


# --- prototypes -------------------------------------------------------------------------------

PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)  # (level, fmt, va_list)
SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)  # ring_buffer_sample_fn

libbpf_set_print = _fn("libbpf_set_print", c_void_p, PRINT_FN)
libbpf_strerror = _fn("libbpf_strerror", c_int, c_int, c_char_p, c_size_t)
libbpf_num_possible_cpus = _fn("libbpf_num_possible_cpus", c_int)

bpf_object__open_file = _fn("bpf_object__open_file", c_void_p, c_char_p, c_void_p)
bpf_object__load = _fn("bpf_object__load", c_int, c_void_p)
bpf_object__close = _fn("bpf_object__close", None, c_void_p)
bpf_object__btf = _fn("bpf_object__btf", c_void_p, c_void_p)
bpf_object__next_program = _fn("bpf_object__next_program", c_void_p, c_void_p, c_void_p)
bpf_object__next_map = _fn("bpf_object__next_map", c_void_p, c_void_p, c_void_p)

bpf_program__name = _fn("bpf_program__name", c_char_p, c_void_p)
bpf_program__section_name = _fn("bpf_program__section_name", c_char_p, c_void_p)
bpf_program__fd = _fn("bpf_program__fd", c_int, c_void_p)
bpf_program__type = _fn("bpf_program__type", c_int, c_void_p)

bpf_map__name = _fn("bpf_map__name", c_char_p, c_void_p)
bpf_map__fd = _fn("bpf_map__fd", c_int, c_void_p)
bpf_map__reuse_fd = _fn("bpf_map__reuse_fd", c_int, c_void_p, c_int)
bpf_map__type = _fn("bpf_map__type", c_int, c_void_p)
bpf_map__key_size = _fn("bpf_map__key_size", c_uint32, c_void_p)
bpf_map__value_size = _fn("bpf_map__value_size", c_uint32, c_void_p)
bpf_map__max_entries = _fn("bpf_map__max_entries", c_uint32, c_void_p)
bpf_map__btf_key_type_id = _fn("bpf_map__btf_key_type_id", c_uint32, c_void_p)
bpf_map__btf_value_type_id = _fn("bpf_map__btf_value_type_id", c_uint32, c_void_p)

bpf_map_lookup_elem = _fn("bpf_map_lookup_elem", c_int, c_int, c_void_p, c_void_p)
bpf_map_update_elem = _fn("bpf_map_update_elem", c_int, c_int, c_void_p, c_void_p, c_uint64)
bpf_map_delete_elem = _fn("bpf_map_delete_elem", c_int, c_int, c_void_p)
bpf_map_get_next_key = _fn("bpf_map_get_next_key", c_int, c_int, c_void_p, c_void_p)
bpf_map_lookup_batch = _fn("bpf_map_lookup_batch", c_int, c_int, c_void_p, c_void_p, c_void_p,
                           c_void_p, POINTER(c_uint32), POINTER(bpf_map_batch_opts))
bpf_map_update_batch = _fn("bpf_map_update_batch", c_int, c_int, c_void_p, c_void_p,
                           POINTER(c_uint32), POINTER(bpf_map_batch_opts))
bpf_map_delete_batch = _fn("bpf_map_delete_batch", c_int, c_int, c_void_p,
                           POINTER(c_uint32), POINTER(bpf_map_batch_opts))

bpf_obj_pin = _fn("bpf_obj_pin", c_int, c_int, c_char_p)
bpf_obj_get = _fn("bpf_obj_get", c_int, c_char_p)
bpf_prog_get_fd_by_id = _fn("bpf_prog_get_fd_by_id", c_int, c_uint32)
bpf_map_get_fd_by_id = _fn("bpf_map_get_fd_by_id", c_int, c_uint32)
bpf_obj_get_info_by_fd = _fn("bpf_obj_get_info_by_fd", c_int, c_int, c_void_p, POINTER(c_uint32))
bpf_prog_test_run_opts = _fn("bpf_prog_test_run_opts", c_int, c_int, POINTER(bpf_test_run_opts))

bpf_xdp_attach = _fn("bpf_xdp_attach", c_int, c_int, c_int, c_uint32, POINTER(bpf_xdp_attach_opts))
bpf_xdp_detach = _fn("bpf_xdp_detach", c_int, c_int, c_uint32, POINTER(bpf_xdp_attach_opts))
bpf_xdp_query = _fn("bpf_xdp_query", c_int, c_int, c_int, POINTER(bpf_xdp_query_opts))
bpf_tc_hook_create = _fn("bpf_tc_hook_create", c_int, POINTER(bpf_tc_hook))
bpf_tc_attach = _fn("bpf_tc_attach", c_int, POINTER(bpf_tc_hook), POINTER(bpf_tc_opts))
bpf_tc_detach = _fn("bpf_tc_detach", c_int, POINTER(bpf_tc_hook), POINTER(bpf_tc_opts))
bpf_tc_query = _fn("bpf_tc_query", c_int, POINTER(bpf_tc_hook), POINTER(bpf_tc_opts))
# bpf_tc_hook_destroy is deliberately not bound: on INGRESS it removes every ingress filter,
# other tools' too (docs/platform.md). Detach our own filter with bpf_tc_detach instead.

ring_buffer__new = _fn("ring_buffer__new", c_void_p, c_int, SAMPLE_FN, c_void_p, c_void_p)
ring_buffer__poll = _fn("ring_buffer__poll", c_int, c_void_p, c_int)
ring_buffer__consume = _fn("ring_buffer__consume", c_int, c_void_p)
ring_buffer__free = _fn("ring_buffer__free", None, c_void_p)

btf__parse = _fn("btf__parse", c_void_p, c_char_p, c_void_p)
btf__load_from_kernel_by_id = _fn("btf__load_from_kernel_by_id", c_void_p, c_uint32)
btf__free = _fn("btf__free", None, c_void_p)
btf__type_cnt = _fn("btf__type_cnt", c_uint32, c_void_p)
btf__find_by_name_kind = _fn("btf__find_by_name_kind", c_int, c_void_p, c_char_p, c_uint32)
btf__type_by_id = _fn("btf__type_by_id", c_void_p, c_void_p, c_uint32)
btf__name_by_offset = _fn("btf__name_by_offset", c_char_p, c_void_p, c_uint32)
btf__resolve_size = _fn("btf__resolve_size", c_int64, c_void_p, c_uint32)
btf__resolve_type = _fn("btf__resolve_type", c_int, c_void_p, c_uint32)

# Newer than 1.1: present only on a newer libbpf.
bpf_prog_get_info_by_fd = optional("bpf_prog_get_info_by_fd", c_int, c_int, c_void_p, POINTER(c_uint32))
ring_buffer__consume_n = optional("ring_buffer__consume_n", c_int, c_void_p, c_size_t)

_vsnprintf = _libc.vsnprintf
_vsnprintf.restype = c_int
_vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]


# --- libbpf's print output: captured, so errors can carry it ---------------------------------

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
_capture = threading.local()
logger = logging.getLogger("pathsteer.bpf.libbpf")  # every line libbpf prints, at DEBUG


@PRINT_FN
def _print_cb(level: int, fmt: bytes, va_list: int) -> int:
    # Must not raise: an exception here cannot cross the C frame.
    try:
        if level == LIBBPF_DEBUG:
            return 0
        buf = ctypes.create_string_buffer(8192)
        # va_list is an array type on x86-64 (and passed by reference on arm64), so the
        # callback receives a pointer that vsnprintf accepts as it is.
        _vsnprintf(buf, len(buf), fmt, va_list)
        text = buf.value.decode("utf-8", "replace")
        sink = getattr(_capture, "lines", None)
        if sink is not None:
            sink.append(text)
        logger.debug("%s", text.rstrip())
    except BaseException:  # noqa: BLE001 - see above
        pass
    return 0


libbpf_set_print(_print_cb)


class captured_log:
    """Collect what libbpf prints during a block (this thread): ``with captured_log() as lines``.
    The print callback is process-wide (``libbpf_set_print``): other modules must not replace it."""

    def __enter__(self) -> list[str]:
        self._outer = getattr(_capture, "lines", None)
        self.lines: list[str] = []
        _capture.lines = self.lines
        return self.lines

    def __exit__(self, *exc) -> None:
        _capture.lines = self._outer
        if self._outer is not None:
            self._outer.extend(self.lines)


def strerror(err: int) -> str:
    buf = ctypes.create_string_buffer(256)
    libbpf_strerror(err, buf, len(buf))
    return buf.value.decode() or os.strerror(err)


def error(what: str, err: int, log: list[str] | str = "") -> BpfError:
    """One BpfError: what failed, libbpf's words for the errno, the log; or UnsupportedError
    when the reason is a missing privilege or a kernel without BPF."""
    err = abs(err)
    text = "".join(log) if isinstance(log, list) else log
    if err in (errno_mod.EPERM, errno_mod.EACCES) and os.geteuid() != 0:
        return UnsupportedError(f"{what}: BPF needs root (CAP_BPF, CAP_NET_ADMIN): {strerror(err)}")
    if err == errno_mod.ENOSYS:
        return UnsupportedError(f"{what}: this kernel has no BPF support (bpf() gives ENOSYS)")
    detail = _summary(text)
    message = f"{what}: {strerror(err)} (errno {err})" + (f": {detail}" if detail else "")
    return BpfError(message, err, text)


def _summary(text: str) -> str:
    """The most telling words of a libbpf/verifier log: the verifier's verdict (the lines after
    its last instruction or source line), else the last libbpf line."""
    import re

    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "-- END PROG LOAD LOG --" in text:
        head, rest = text.rsplit("-- BEGIN PROG LOAD LOG --", 1)
        prog = re.findall(r"prog '([^']+)'", head)
        body = [ln.strip() for ln in rest.split("-- END PROG LOAD LOG --", 1)[0].splitlines()
                if ln.strip() and not ln.startswith(("processed ", "verification time", "stack depth"))]
        last_insn = max((i for i, ln in enumerate(body) if re.match(r"^(\d+:|;)", ln)), default=-1)
        verdict = body[last_insn + 1:] or body[-1:]
        if verdict:
            where = f" in program {prog[-1]}" if prog else ""
            return f"verifier{where}: " + "; ".join(verdict)
    return lines[-1].removeprefix("libbpf: ") if lines else ""


def check_int(ret: int, what: str, log: list[str] | str = "") -> int:
    """Pass a non-negative int result through; raise for -errno."""
    if ret < 0:
        raise error(what, -ret, log)
    return ret


def check_ptr(ptr: int | None, what: str, log: list[str] | str = "") -> int:
    """Pass a non-NULL pointer through; raise for NULL with errno."""
    if not ptr:
        raise error(what, ctypes.get_errno() or errno_mod.EINVAL, log)
    return ptr


def possible_cpus() -> int:
    """``libbpf_num_possible_cpus()``: the number of slots in a per-CPU map value."""
    return check_int(libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")

