"""Maglev consistent hashing with weights: the lookup table one steering group uses.

Pure functions, no I/O (unit-tested in tests/unit/test_maglev.py). A table of ``size``
entries (a prime, ``STEER_RING_SIZE`` in ``bpf/steer_common.h``) maps ``flow hash % size`` to
a member (a path id). Construction follows Eisenbud et al., "Maglev: A Fast and Reliable
Software Network Load Balancer" (NSDI 2016), §3.4: every member walks its own permutation of
the table positions (``offset + j * skip mod size``) and claims the first free one, in turns.

Weights: each member first gets an exact quota of positions (largest-remainder rounding of
``size * weight / total``), so the shares match the weights to within one position
(1/size: 0.024 % of the table at 4099); the turns are spread over rounds in proportion to the
quotas (Envoy's weighted Maglev does the same with its target weights), so that a member's
claims are not all at the end where only leftovers remain. Because preferences are fixed per
member, changing one weight or removing one member moves few other positions: the unit tests
measure it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def permutation(member: Hashable, size: int) -> tuple[int, int]:
    """(offset, skip) of ``member``'s preference list; stable across processes and runs
    (BLAKE2b of ``str(member)``, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(str(member).encode(), digest_size=16).digest()
    offset = int.from_bytes(digest[:8], "little") % size
    skip = int.from_bytes(digest[8:], "little") % (size - 1) + 1
    return offset, skip


def quotas(weights: Mapping[K, int], size: int) -> dict[K, int]:
    """Positions per member: ``size * w / sum(w)`` rounded by largest remainder (sums to size)."""
    if not weights:
        return {}
    if any(w <= 0 for w in weights.values()):
        raise ValueError(f"weights must be positive: {dict(weights)}")
    total = sum(weights.values())
    exact = {k: size * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    left = size - sum(out.values())
    for k in sorted(weights, key=lambda k: (-(exact[k] - out[k]), str(k)))[:left]:
        out[k] += 1
    return out


def build(weights: Mapping[K, int], size: int) -> list[K]:
    """The Maglev table: ``size`` entries, each a member of ``weights`` (member → weight > 0),
    member ``k`` holding exactly ``quotas(weights, size)[k]`` of them."""
    if not is_prime(size):
        raise ValueError(f"Maglev table size {size} is not a prime")
    if not weights:
        raise ValueError("a Maglev table needs at least one member")
    members = sorted(weights, key=str)
    quota = quotas(weights, size)
    perm = {k: permutation(k, size) for k in members}
    nxt = {k: 0 for k in members}
    count = {k: 0 for k in members}
    table: list = [None] * size
    filled = 0
    top = max(quota.values())
    rnd = 0
    while filled < size:
        rnd += 1
        for k in members:
            # By round r a member may hold quota * r / top positions: the largest claims one
            # per round, a member with a tenth of its quota one every tenth round.
            allowed = min(quota[k], -(-quota[k] * rnd // top))
            offset, skip = perm[k]
            while count[k] < allowed:
                j = nxt[k]
                pos = (offset + j * skip) % size
                while table[pos] is not None:
                    j += 1
                    pos = (offset + j * skip) % size
                table[pos] = k
                nxt[k] = j + 1
                count[k] += 1
                filled += 1
    return table


def moved(old: list, new: list) -> float:
    """Fraction of positions whose member differs between two tables of one size."""
    if len(old) != len(new):
        raise ValueError("tables of different sizes")
    return sum(a != b for a, b in zip(old, new)) / len(old)
