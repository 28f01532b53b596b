"""User space's side of ``routes_v4_24`` (bpf/steer_maps.h): DIR-24-8's first level for IPv4.

One u16 entry per /24 (2^24 of them, four per array value): the longest match of length <= 24
for that /24 (``enum steer_v4_entry``: none, group slot + STEER_V4_SLOT_BASE, or local), plus
the STEER_V4_DEEPER flag where a prefix longer than /24 lies inside (the program then probes the
per-length hash for lengths 25..32 first). The table is derived from routes_v4, which stays the
record (adopt reads the hash back and repaints).

Painting keeps longest-prefix-match semantics with an owner byte per entry (the prefix length
+ 1 of the prefix the entry came from; 0: none): setting a /L writes only the entries whose
owner is not longer, removing it hands its entries to the longest remaining prefix that covers
it. Every entry is written as a whole (single aligned 2-byte stores, or runs copied by memcpy),
so a packet reads it as it was or as it becomes; a route's entries change after its hash entry
is written (a longer prefix's DEEPER flag after its length is announced).
"""

from __future__ import annotations

import bisect
import re
from array import array

ENTRIES = 1 << 24  # one per /24


def _runs(lo: int, hi: int) -> re.Pattern:
    """Runs of owner bytes in lo..hi."""
    return re.compile(b"[" + re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi])) + b"]+")


_UP_TO = [_runs(0, n) for n in range(26)]  # owner <= n (n = length + 1)
_EXACTLY = [_runs(n, n) for n in range(26)]


class V4Table:
    """``table``: the 2^24 entries as a writable ``memoryview`` of format ``H`` (the mmapped
    map, or any buffer for tests); ``none``/``local``/``deeper``/``slot_base``: the values of
    ``enum steer_v4_entry`` from the object's BTF."""

    def __init__(self, table: memoryview, *, none: int, local: int, deeper: int, slot_base: int) -> None:
        if len(table) != ENTRIES or table.format != "H":
            raise ValueError(f"routes_v4_24 view: {len(table)} entries of {table.format!r}, want {ENTRIES} of 'H'")
        self.t = table
        self.own = bytearray(ENTRIES)
        self.none, self.local, self.deeper, self.slot_base = none, local, deeper, slot_base
        self.deep: set[int] = set()  # integer keys (bpf_steer_abi.key_int) of the /25../32 entries
        self._deep_at: dict[int, int] = {}  # /24 index → how many of them lie inside
        self._deep_sorted: list[int] = []  # the /24 indexes of _deep_at, sorted

    def entry_of_slot(self, slot: int) -> int:
        return slot + self.slot_base

    # --- prefixes of length <= 24 -------------------------------------------------------

    def set(self, plen: int, net: int, entry: int) -> None:
        """The prefix ``net``/``plen`` (network number: the address >> (32 - plen)) now maps to
        ``entry``: written where no longer prefix owns the entry."""
        first, count, owner = net << (24 - plen), 1 << (24 - plen), plen + 1
        if count == 1:
            if self.own[first] <= owner:
                self.t[first] = (self.t[first] & self.deeper) | entry
                self.own[first] = owner
            return
        for m in _UP_TO[owner].finditer(self.own, first, first + count):
            self._write(m.start(), m.end(), entry)
            self.own[m.start():m.end()] = bytes([owner]) * (m.end() - m.start())

    def set_24s(self, nets: list[int], entry: int) -> None:
        """`set` of many /24s (network numbers) to one entry: the 1M-prefix case, inlined."""
        t, own, deeper = self.t, self.own, self.deeper
        for i in nets:
            if own[i] <= 25:
                t[i] = (t[i] & deeper) | entry
                own[i] = 25

    def unset(self, plen: int, net: int, cover: tuple[int, int] | None) -> None:
        """The prefix is gone: its entries go to ``cover`` = (length, entry) of the longest
        remaining prefix of length <= 24 that holds it, or to none."""
        first, count, owner = net << (24 - plen), 1 << (24 - plen), plen + 1
        entry, new_owner = (cover[1], cover[0] + 1) if cover is not None else (self.none, 0)
        for m in _EXACTLY[owner].finditer(self.own, first, first + count):
            self._write(m.start(), m.end(), entry)
            self.own[m.start():m.end()] = bytes([new_owner]) * (m.end() - m.start())

    def _write(self, start: int, end: int, entry: int) -> None:
        """Entries start..end-1 become ``entry``, each keeping its DEEPER flag."""
        t, deeper = self.t, self.deeper
        if end - start == 1:
            t[start] = (t[start] & deeper) | entry
            return
        at = bisect.bisect_left(self._deep_sorted, start)
        pos = start
        for d in self._deep_sorted[at:bisect.bisect_left(self._deep_sorted, end)]:
            if d > pos:
                t[pos:d] = array("H", [entry]) * (d - pos)
            t[d] = entry | deeper
            pos = d + 1
        if end > pos:
            t[pos:end] = array("H", [entry]) * (end - pos)

    # --- prefixes longer than /24 -------------------------------------------------------

    def add_deep(self, key: int, index: int) -> None:
        """A /25../32 entry (integer key) is in routes_v4 and its length announced: flag its /24."""
        if key in self.deep:
            return
        self.deep.add(key)
        n = self._deep_at.get(index, 0)
        self._deep_at[index] = n + 1
        if n == 0:
            bisect.insort(self._deep_sorted, index)
            self.t[index] = self.t[index] | self.deeper

    def remove_deep(self, key: int, index: int) -> None:
        if key not in self.deep:
            return
        self.deep.discard(key)
        n = self._deep_at[index] - 1
        if n:
            self._deep_at[index] = n
            return
        del self._deep_at[index]
        del self._deep_sorted[bisect.bisect_left(self._deep_sorted, index)]
        self.t[index] = self.t[index] & ~self.deeper & 0xFFFF

    # --- inspection ---------------------------------------------------------------------

    def lookup(self, address: int) -> int:
        """The entry of an IPv4 address (as an int) — what the program reads first."""
        return self.t[address >> 8]


__all__ = ["ENTRIES", "V4Table"]
