"""Map.delete_batch (``bpf_map_delete_batch``) on real kernel maps: a hash map and an LPM
trie, missing keys, packed keys, and the guard's bulk removal of 1M prefixes."""

from __future__ import annotations

import errno
import ipaddress
import time

import pytest

from pathsteer.errors import BpfError
from pathsteer.guard import abi
from pathsteer.guard.program import GuardProgram
from pathsteer.guard.rules import RuleSet

def test_lpm_trie_delete_batch(netns):
    """LPM tries delete in a batch too (generic_map_delete_batch): exact prefixes, not matches."""
    with GuardProgram.load() as prog:
        trie = prog.maps["deny_v4"]
        nets = [ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24") for i in range(1000)]
        wide = ipaddress.ip_network("10.0.0.0/8")
        trie.update_batch([(abi.lpm_key(n), abi.CidrRule(1)) for n in [*nets, wide]])
        assert trie.delete_batch([abi.lpm_key(n) for n in nets[:500]]) == 500
        left = {(k.prefixlen, bytes(k.addr)) for k, _ in trie.lookup_batch()}
        assert len(left) == 501 and (8, bytes([10, 0, 0, 0])) in left
        assert (24, bytes([10, 1, 244, 0])) in left and (24, bytes([10, 0, 0, 0])) not in left
        # a /24 that is not in the trie but lies under the /8 is missing, not "matched"
        with pytest.raises(BpfError) as info:
            trie.delete_batch([abi.lpm_key(nets[0])])
        assert info.value.errno == errno.ENOENT

def test_guard_removes_1m_prefixes_in_bulk(netns):
    """The guard's sync removes stale prefixes with delete_batch: 1M /24s, the whole sync (diff,
    keys, syscalls), in well under what one syscall per prefix takes for the deletes alone."""
    nets = [ipaddress.IPv4Network(((i * 7919 % (1 << 24)) << 8, 24)) for i in range(1_000_000)]
    keep = ipaddress.ip_network("198.51.100.0/24")
    with GuardProgram.load() as prog:
        prog.apply(RuleSet(deny={**{n: 1 for n in nets}, keep: 2}))
        t0 = time.perf_counter()
        added, removed = prog.sync_cidrs("deny", {keep: 2})
        elapsed = time.perf_counter() - t0
        assert (added, removed) == (0, 1_000_000)
        assert prog.installed["deny"] == {keep: 2}
        entries = prog.maps["deny_v4"].lookup_batch(batch_size=4096)
        assert [(k.prefixlen, bytes(k.addr)) for k, _ in entries] == [(24, keep.network_address.packed)]
        # The anchor, in the same run (the box is shared): one syscall per prefix, on 100k.
        sample = nets[:100_000]
        prog.apply(RuleSet(deny={**{n: 1 for n in sample}, keep: 2}))
        trie = prog.maps["deny_v4"]
        keys = [abi.lpm_key(n) for n in sample]
        t0 = time.perf_counter()
        for key in keys:
            trie.delete(key)
        one_by_one = (time.perf_counter() - t0) * len(nets) / len(sample)
    print(f"1M prefixes removed in {elapsed:.2f} s; one syscall per prefix would take {one_by_one:.2f} s "
          f"(100k timed, keys made beforehand): ratio {elapsed / one_by_one:.2f}")
    assert elapsed < 0.6 * one_by_one

def test_guard_remove_cidrs_in_a_batch(netns):
    """Expiry of a burst of auto-blocks: /32s and /64s leave the tries in one call; an absent
    one is no error; the others stay."""
    v4 = [ipaddress.ip_network(f"10.250.{i // 250}.{i % 250 + 1}/32") for i in range(500)]
    v6 = [ipaddress.ip_network(f"2001:db8:bad:{i:x}::/64") for i in range(20)]
    keep = ipaddress.ip_network("192.0.2.0/24")
    with GuardProgram.load() as prog:
        prog.apply(RuleSet(deny={**{n: 7 for n in v4 + v6}, keep: 1}))
        prog.remove_cidrs("deny", [*v4, *v6, ipaddress.ip_network("203.0.113.9/32")])
        assert prog.installed["deny"] == {keep: 1}
        assert [k.prefixlen for k, _ in prog.maps["deny_v4"].lookup_batch()] == [24]
        assert prog.maps["deny_v6"].lookup_batch() == []
