"""Reading a ``BPF_MAP_TYPE_RINGBUF`` map (``ring_buffer__new/poll/consume/free``).

The callback gets each record as bytes. It runs inside libbpf's C frame, where a Python
exception cannot travel: we catch it, stop the poll, and re-raise it from `poll`/`consume`.
The CFUNCTYPE object lives on the RingBuffer so the garbage collector cannot free it while
libbpf still holds the pointer.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from pathsteer.bpf import libbpf as lb

_ring_buffer__epoll_fd = lb.optional("ring_buffer__epoll_fd", ctypes.c_int, ctypes.c_void_p)  # in 1.1, but optional costs nothing


class RingBuffer:
    """``RingBuffer(map_fd_or_map, callback)``; ``callback(record: bytes)`` is called once per
    record; its return value is ignored. An exception stops the poll and is re-raised."""

    def __init__(self, ring: int | object, callback: Callable[[bytes], object]) -> None:
        fd = ring if isinstance(ring, int) else ring.fd  # a Map, or anything with .fd
        self._callback = callback
        self._error: BaseException | None = None
        self._cb = lb.SAMPLE_FN(self._on_sample)  # referenced for the buffer's whole life
        with lb.captured_log() as log:
            ptr = lb.ring_buffer__new(fd, self._cb, None, None)
        self._ptr = lb.check_ptr(ptr, f"ring_buffer__new on map fd {fd}", log)

    def _on_sample(self, _ctx: int, data: int, size: int) -> int:
        try:
            self._callback(ctypes.string_at(data, size))
            return 0
        except BaseException as exc:  # noqa: BLE001 - cannot raise through C
            self._error = exc
            return -1

    def _finish(self, ret: int, what: str) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        return lb.check_int(ret, what)

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for records and hand them to the callback; returns how many."""
        return self._finish(lb.ring_buffer__poll(self._ptr, timeout_ms), "ring_buffer__poll")

    def consume(self) -> int:
        """Hand every available record to the callback without waiting."""
        return self._finish(lb.ring_buffer__consume(self._ptr), "ring_buffer__consume")

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records arrive (for asyncio's add_reader)."""
        return lb.check_int(_ring_buffer__epoll_fd(self._ptr), "ring_buffer__epoll_fd")

    def close(self) -> None:
        if self._ptr:
            lb.ring_buffer__free(self._ptr)
        self._ptr = 0

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
