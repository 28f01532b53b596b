"""What a router announces for each destination it steers, and when (pure, no I/O).

For a destination announced over BGP, the **best eligible path** here is, among the paths
steering chose for it (its next hops), the eligible one with the lowest RTT (the statistic
the destination compares), provided it is measured (``decision.min_samples`` answered
probes). Then:

* **MED** = min(``med_max``, round(RTT / ``med_per``) + round(loss % × ``loss_med``)):
  1 per 100 µs of RTT and 100 per percent of loss by default, capped at 65535.
* **Large communities** ``(local_as, kind, value)`` (`COMMUNITY_KINDS`): 1 the path (its
  number: its place in ``paths``, from 1), 2 its RTT in µs, 3 its loss in parts per million,
  4 its state (1 up, 2 degraded); then the configured ones.

No eligible measured path here: the prefix is **withdrawn** at once (the fleet routes around
this router); it is announced again when a path is back. Damping (`Announcer.step`): a new
path is announced at most every ``min_interval``; a MED change is announced only when it is
at least ``min_change`` of the announced MED (and at least 1 ms worth) and has held for the
destination's ``hysteresis.hold_down`` — so BGP never changes faster than steering does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pathsteer.policy import RouteStatus
from pathsteer.routes import Prefix

COMMUNITY_KINDS = {1: "path number (its place in paths, from 1)", 2: "RTT in microseconds",
                   3: "loss in parts per million", 4: "state: 1 up, 2 degraded"}
MED_FLOOR_S = 0.001  # a MED change below 1 ms worth of RTT is never announced


@dataclass(frozen=True)
class AnnounceSettings:
    local_as: int
    med_per_s: float = 100e-6
    med_max: int = 65535
    loss_med: int = 100
    min_interval_s: float = 1.0
    min_change: float = 0.10
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class Advert:
    """One prefix as announced: its MED and communities, the path and figures behind them."""

    prefix: Prefix
    med: int
    path: str
    path_number: int
    rtt_s: float
    loss_pct: float
    degraded: bool
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()

    def attributes(self) -> tuple:
        """What goes on the wire besides the prefix (adverts with equal ones share an update)."""
        return (self.med, self.communities, self.large_communities)

    def why(self) -> str:
        state = "degraded" if self.degraded else "up"
        return (f"best eligible path {self.path} ({state}): RTT {self.rtt_s * 1e3:.3f} ms, "
                f"loss {self.loss_pct:g}% -> MED {self.med}")

    def view(self) -> dict:
        return {"med": self.med, "path": self.path, "path_number": self.path_number,
                "rtt_ms": round(self.rtt_s * 1e3, 3), "loss_pct": round(self.loss_pct, 4),
                "state": "degraded" if self.degraded else "up",
                "communities": [f"{a}:{b}" for a, b in self.communities],
                "large_communities": [f"{a}:{b}:{c}" for a, b, c in self.large_communities]}


def med_of(rtt_s: float, loss_pct: float, s: AnnounceSettings) -> int:
    med = round(max(0.0, rtt_s) / s.med_per_s) + round(max(0.0, loss_pct) * s.loss_med)
    return int(min(s.med_max, med))


def wanted(route: RouteStatus, path_numbers: Mapping[str, int], s: AnnounceSettings) -> tuple[Advert | None, str]:
    """What ``route`` should be announced with here, or None and why not."""
    chosen = {h.path for h in route.nexthops}
    best = None
    unmeasured = []
    for c in route.candidates:
        if c.path not in chosen or not c.eligibility.eligible:
            continue
        if c.rtt_s is None or not c.enough_samples:
            unmeasured.append(c.path)
            continue
        if best is None or c.rtt_s < best.rtt_s:
            best = c
    if best is None:
        if unmeasured:
            return None, f"not measured yet ({', '.join(unmeasured)})"
        states = ", ".join(f"{c.path} {c.why_not or c.eligibility.value}" for c in route.candidates) or "no path"
        return None, f"no eligible path here ({states})"
    loss = best.loss_pct or 0.0
    degraded = best.eligibility.value == "degraded"
    number = path_numbers.get(best.path, 0)
    large = ((s.local_as, 1, number), (s.local_as, 2, min(2**32 - 1, round(best.rtt_s * 1e6))),
             (s.local_as, 3, min(1_000_000, round(loss * 10_000))), (s.local_as, 4, 2 if degraded else 1),
             *s.large_communities)
    return Advert(route.prefix, med_of(best.rtt_s, loss, s), best.path, number, best.rtt_s, loss, degraded,
                  s.communities, large), ""


@dataclass(frozen=True)
class Action:
    kind: str  # "announce" | "withdraw"
    prefix: Prefix
    advert: Advert | None
    reason: str


@dataclass
class _Out:
    advert: Advert
    at: float


@dataclass
class Announcer:
    """The damping between what is wanted and what was announced (`step`)."""

    settings: AnnounceSettings
    out: dict[Prefix, _Out] = field(default_factory=dict)
    pending: dict[Prefix, float] = field(default_factory=dict)  # MED change seen since
    last_change: dict[Prefix, float] = field(default_factory=dict)  # announce/withdraw time
    why_not: dict[Prefix, str] = field(default_factory=dict)

    def significant(self, old: Advert, new: Advert) -> bool:
        floor = max(1, round(MED_FLOOR_S / self.settings.med_per_s))
        return abs(new.med - old.med) >= max(floor, self.settings.min_change * old.med)

    def step(self, now: float, wanted_now: Mapping[Prefix, tuple[Advert | None, str]],
             hold_down: Mapping[Prefix, float]) -> list[Action]:
        """``wanted_now``: per announced destination, its advert (or None and why not); a
        prefix announced and absent from it is withdrawn ("no longer announced here")."""
        s = self.settings
        actions: list[Action] = []
        for prefix in [p for p in self.out if p not in wanted_now]:
            del self.out[prefix]
            self.pending.pop(prefix, None)
            self.last_change[prefix] = now
            actions.append(Action("withdraw", prefix, None, "no longer announced here"))
        for prefix, (advert, why) in wanted_now.items():
            cur = self.out.get(prefix)
            if advert is None:
                self.why_not[prefix] = why
                self.pending.pop(prefix, None)
                if cur is not None:
                    del self.out[prefix]
                    self.last_change[prefix] = now
                    actions.append(Action("withdraw", prefix, None, why))
                continue
            self.why_not.pop(prefix, None)
            quiet = now - self.last_change.get(prefix, -1e18) >= s.min_interval_s
            if cur is None:
                if quiet:
                    self._announce(now, advert, actions, "measured: " + advert.why())
                continue
            old = cur.advert
            if advert.path != old.path:
                self.pending.pop(prefix, None)
                if quiet:
                    self._announce(now, advert, actions, f"path {old.path} -> {advert.path}: {advert.why()}")
                continue
            if not self.significant(old, advert):
                self.pending.pop(prefix, None)
                continue
            since = self.pending.setdefault(prefix, now)
            if now - since >= hold_down.get(prefix, 1.0) and quiet:
                self.pending.pop(prefix, None)
                self._announce(now, advert, actions,
                               f"MED {old.med} -> {advert.med} (held {now - since:.1f} s): {advert.why()}")
        return actions

    def _announce(self, now: float, advert: Advert, actions: list[Action], reason: str) -> None:
        self.out[advert.prefix] = _Out(advert, now)
        self.last_change[advert.prefix] = now
        actions.append(Action("announce", advert.prefix, advert, reason))

    def withdraw_all(self, reason: str, now: float) -> list[Action]:
        actions = [Action("withdraw", p, None, reason) for p in self.out]
        for p in self.out:
            self.last_change[p] = now
        self.out.clear()
        self.pending.clear()
        return actions

    def forget(self) -> None:
        """The sessions are new (ExaBGP restarted): nothing is announced any more."""
        self.out.clear()
        self.pending.clear()


def group(actions: Iterable[Action]) -> list[tuple[str, tuple, list[Prefix]]]:
    """Actions as (kind, attributes, prefixes): one ExaBGP command per group."""
    groups: dict[tuple[str, tuple, int], list[Prefix]] = {}
    for a in actions:
        attrs = a.advert.attributes() if a.advert is not None else ()
        groups.setdefault((a.kind, attrs, a.prefix.version), []).append(a.prefix)
    return [(kind, attrs, prefixes) for (kind, attrs, _v), prefixes in groups.items()]
