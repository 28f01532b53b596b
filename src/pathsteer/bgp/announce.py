"""What a router announces for each destination it steers, and when (pure, no I/O).

For a destination announced over BGP, the **best eligible path** here is, among the paths
steering chose for it (its next hops), the eligible one with the lowest RTT (the statistic
the destination compares), provided it is measured (``decision.min_samples`` answered
probes). Then:

* **MED** = min(``med_max``, round(RTT / ``med_per``) + round(loss % × ``loss_med``)):
  1 per 100 µs of RTT and 100 per percent of loss by default, capped at 65535. The RTT is the
  path's recent one (the median of its last 3 probes: `wanted`), or the real traffic's when
  the destination compares that (``rtt: passive|best``).
* **Large communities** ``(local_as, kind, value)`` (`COMMUNITY_KINDS`): 1 the path (its
  number: its place in ``paths``, from 1), 2 its RTT in µs, 3 its loss in parts per million,
  4 its state (1 up, 2 degraded); then the configured ones.

No eligible measured path here: the prefix is **withdrawn** at once (the fleet routes around
this router); it is announced again when a path is back. Damping (`Announcer.step`): a new
path is announced at most every ``min_interval``; a MED change is announced only when it is
at least ``min_change`` of the announced MED (and at least 1 ms worth) and has held for the
destination's ``hysteresis.hold_down`` — so BGP never changes faster than steering does; while
it goes on the same way (an RTT still climbing after a slow-down: the RTT statistic follows a
step over several probes), it is announced again every ``min_interval`` without a new hold.
"""

from __future__ import annotations

import dataclasses
import math
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
    # The MED of the path's last answer: it moves at the first probe of a step (the recent
    # RTT at the second), so a change's hold counts from then.
    early_med: int | None = field(default=None, compare=False)

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
    """min(med_max, round(RTT / med_per) + round(loss % × loss_med)); med_max for a figure that
    is not finite."""
    if not math.isfinite(rtt_s) or not math.isfinite(loss_pct):
        return s.med_max
    med = round(max(0.0, rtt_s) / s.med_per_s) + round(max(0.0, loss_pct) * s.loss_med)
    return int(min(s.med_max, med))


def wanted(route: RouteStatus, path_numbers: Mapping[str, int], s: AnnounceSettings,
           recent: Mapping[str, tuple[float | None, float | None]] | None = None) -> tuple[Advert | None, str]:
    """What ``route`` should be announced with here, or None and why not. ``recent``: each
    path's (recent RTT, last answer) (`RttStats.recent_s`: the median of its last 3 probes;
    `RttStats.last_s`): the MED and the RTT community carry the recent RTT when the destination
    compares the probes' RTT (a lasting step shows in it after two probes, where the policy's
    statistic takes several: by design, it is slow to move a route; a spike never does), and
    the last answer starts a change's hold (`Advert.early_med`)."""
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
    rtt = early = best.rtt_s
    if best.rtt_source == "active" and recent and best.path in recent:
        level, last = recent[best.path]
        rtt = level if level is not None else rtt
        early = last if last is not None else early
    large = ((s.local_as, 1, number), (s.local_as, 2, min(2**32 - 1, round(rtt * 1e6))),
             (s.local_as, 3, min(1_000_000, round(loss * 10_000))), (s.local_as, 4, 2 if degraded else 1),
             *s.large_communities)
    return Advert(route.prefix, med_of(rtt, loss, s), best.path, number, rtt, loss, degraded,
                  s.communities, large, med_of(early, loss, s)), ""


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
    trend: dict[Prefix, tuple[int, float]] = field(default_factory=dict)  # last MED change: direction, when

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
            level = self.significant(old, advert)
            early = advert.early_med is not None and self.significant(old, dataclasses.replace(
                advert, med=advert.early_med)) and (not level or (advert.early_med > old.med) == (advert.med > old.med))
            if not level and not early:
                self.pending.pop(prefix, None)
                continue
            since = self.pending.setdefault(prefix, now)
            if not level:
                continue
            hold = hold_down.get(prefix, 1.0)
            direction = 1 if advert.med > old.med else -1
            # A change that goes on the way the last one went (the RTT still climbing after a
            # slow-down) was held already: it follows every min_interval, not every hold_down.
            trend = self.trend.get(prefix)
            going_on = trend is not None and trend[0] == direction and now - trend[1] <= hold + 2 * s.min_interval_s
            if (now - since >= hold or going_on) and quiet:
                self.pending.pop(prefix, None)
                self.trend[prefix] = (direction, now)
                held = f"held {now - since:.1f} s" if not going_on else "going on"
                self._announce(now, advert, actions, f"MED {old.med} -> {advert.med} ({held}): {advert.why()}")
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
