"""The IPv4 /24 table's painting (bpf_steer_v4table, no root): after any sequence of prefixes
set and removed, every /24 entry is the longest match up to /24 over what is left (a
pure-Python model), and DEEPER marks exactly the /24s holding a longer prefix."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.dataplane.bpf_steer_abi import key_int
from pathsteer.dataplane.bpf_steer_v4table import ENTRIES, V4Table

NONE, LOCAL, DEEPER, BASE = 0, 0x7FFF, 0x8000, 1
POOL = ["10.9.0.1", "10.9.1.130", "10.8.255.255", "10.9.0.200", "192.0.2.1", "0.0.0.0"]
SAMPLES = [ipaddress.ip_address(a) for a in POOL + ["10.9.0.0", "10.9.255.1", "10.0.0.1", "11.0.0.1", "255.255.255.255"]]

prefixes = st.builds(lambda a, plen: ipaddress.ip_network(f"{a}/{plen}", strict=False),
                     st.sampled_from(POOL), st.integers(0, 32))
ops = st.lists(st.tuples(st.booleans(), prefixes, st.integers(0, 5)), max_size=12)


def cover(table: dict, net) -> tuple[int, int] | None:
    best = None
    for n, entry in table.items():
        if n.prefixlen <= 24 and n.prefixlen < net.prefixlen and net.subnet_of(n):
            if best is None or n.prefixlen > best[0]:
                best = (n.prefixlen, entry)
    return best


@settings(max_examples=150, deadline=None)
@given(ops=ops)
def test_entries_are_the_longest_match_up_to_24(ops):
    t = V4Table(memoryview(bytearray(2 * ENTRIES)).cast("H"), none=NONE, local=LOCAL, deeper=DEEPER, slot_base=BASE)
    table: dict = {}
    for add, net, slot in ops:
        k, plen = key_int(net), net.prefixlen
        number = int(net.network_address) >> (32 - plen) if plen else 0
        entry = LOCAL if slot == 5 else t.entry_of_slot(slot)
        if add:
            table[net] = entry
            if plen <= 24:
                t.set(plen, number, entry)
            else:
                t.add_deep(k, number >> (plen - 24))
        elif net in table:
            del table[net]
            if plen <= 24:
                t.unset(plen, number, cover(table, net))
            else:
                t.remove_deep(k, number >> (plen - 24))
    for a in SAMPLES:
        short = [(n.prefixlen, e) for n, e in table.items() if n.prefixlen <= 24 and a in n]
        want = max(short)[1] if short else NONE
        deep = any(n.prefixlen > 24 and int(n.network_address) >> 8 == int(a) >> 8 for n in table)
        got = t.lookup(int(a))
        assert got & ~DEEPER == want, (str(a), {str(n): e for n, e in table.items()})
        assert bool(got & DEEPER) == deep, str(a)
