"""Destinations learned from BGP peers (pure, no I/O).

A prefix a peer announces is learned when it passes the filter (``learn.prefixes``, if
given, and one of ``learn.communities``, if given) and the peer has ``learn: true``; it
stays learned while at least one such peer announces it. A session that goes down takes its
prefixes with it (BGP's own rule). At most ``learn.max`` prefixes are learned; the others are
counted as refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pathsteer.bgp.messages import Update
from pathsteer.routes import Prefix


@dataclass
class Learner:
    filters: tuple = ()  # PrefixFilter (pathsteer.config.bgp): .matches(prefix)
    communities: frozenset = frozenset()
    max: int = 200_000
    by_peer: dict[str, set[Prefix]] = field(default_factory=dict)
    counts: dict[Prefix, int] = field(default_factory=dict)  # how many peers announce it
    refused_over_max: int = 0
    filtered: int = 0

    def matches(self, prefix: Prefix, communities: frozenset) -> bool:
        if self.filters and not any(f.matches(prefix) for f in self.filters):
            return False
        if self.communities and not (self.communities & communities):
            return False
        return True

    def update(self, u: Update) -> tuple[int, int]:
        """Take one update from a learning peer: (prefixes added, removed) to the learned set."""
        mine = self.by_peer.setdefault(u.peer, set())
        added = removed = 0
        for p in u.withdrawn:
            if p in mine:
                mine.discard(p)
                removed += self._drop(p)
        for p in u.announced:
            if not self.matches(p, u.communities):
                self.filtered += 1
                if p in mine:  # announced again without the community: no longer learned
                    mine.discard(p)
                    removed += self._drop(p)
                continue
            if p in mine:
                continue
            if p not in self.counts and len(self.counts) >= self.max:
                self.refused_over_max += 1
                continue
            mine.add(p)
            n = self.counts.get(p, 0)
            self.counts[p] = n + 1
            added += n == 0
        return added, removed

    def _drop(self, p: Prefix) -> int:
        n = self.counts.get(p, 0) - 1
        if n <= 0:
            self.counts.pop(p, None)
            return 1
        self.counts[p] = n
        return 0

    def peer_down(self, peer: str) -> int:
        return sum(self._drop(p) for p in self.by_peer.pop(peer, set()))

    def prefixes(self) -> list[Prefix]:
        return sorted(self.counts, key=lambda p: (p.version, p.network_address, p.prefixlen))
