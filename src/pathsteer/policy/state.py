"""What the policy remembers between two decisions (`PolicyState`), and what it returns
(`Decision`: desired routes, per-prefix status with the figures behind it, change events)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from pathsteer.routes import Desired, NextHop, Prefix
from pathsteer.policy.candidates import Candidate
from pathsteer.policy.params import DestinationParams, PolicyKind, PolicyParams


class ChangeKind(Enum):
    """Why a prefix's next hops are what they are."""

    STARTUP = "startup"  # no telemetry yet: first configured path, or the previous/adopted choice
    ADOPTED = "adopted"  # taken over from what an earlier run left installed
    MEASURED = "measured"  # first choice made from telemetry (no hysteresis: nothing was chosen from data yet)
    LEFT = "left"  # the path was DOWN, broke its SLA or degraded: left at once
    BETTER = "better"  # a better path won by min_improvement for hold_down (lowest-latency)
    FAILBACK = "failback"  # an earlier path in the order was eligible for hold_down (failover)
    JOINED = "joined"  # a path joined the weighted set after being eligible for hold_down
    REBALANCED = "rebalanced"  # weighted shares moved by more than min_shift for hold_down
    LEAST_BAD = "least-bad"  # no path eligible: the least bad one is kept
    DRAIN = "drain"  # the path was drained by the operator (maintenance): left at once
    UNDRAIN = "undrain"  # an undrained path came back, under the policy's usual rules (hold_down)
    RECONFIGURED = "reconfigured"  # the destination's config changed on reload
    REMOVED = "removed"  # the destination left the config


@dataclass(frozen=True)
class Shift:
    """A load-driven weight change (weighted) that the measured load has not answered yet.

    ``anchor``: the shares the data plane was last seen to carry (the weights before the
    first unanswered change); ``utilization``: each path's measured utilization when that
    change was made. Until the load moves the way the change asked, spill-over may not take
    the weights further from ``anchor`` (see `pathsteer.policy.weighted`)."""

    at: float
    anchor: tuple[tuple[str, float], ...]
    utilization: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class PrefixState:
    """One prefix's memory. ``winning``: challengers (path, since when they have been winning
    without a break) — better paths (lowest-latency), earlier eligible paths (failover), paths
    waiting to join (weighted). ``rebalance_since``: since when the weighted shares have wanted
    to move by more than min_shift. ``shift``: the last weighted rebalance, while the measured
    load has not answered it (None once it has, or when there was none). ``drained``: the
    destination's paths drained at this decision, and those undrained since that are winning
    their way back (their return is labelled `ChangeKind.UNDRAIN`)."""

    config: DestinationParams
    nexthops: tuple[NextHop, ...]
    since: float
    reason: str
    kind: ChangeKind
    measured: bool  # the choice was made from telemetry (False: startup or adopted placeholder)
    winning: tuple[tuple[str, float], ...] = ()
    rebalance_since: float | None = None
    shift: Shift | None = None
    drained: frozenset[str] = frozenset()

    def winning_since(self, path: str) -> float | None:
        for name, since in self.winning:
            if name == path:
                return since
        return None


@dataclass(frozen=True)
class PolicyState:
    """Every prefix's memory; treat as immutable (a new one comes with every `Decision`).

    ``started_at``: when the first decision was made (the startup grace counts from it)."""

    prefixes: Mapping[Prefix, PrefixState] = field(default_factory=dict)
    started_at: float | None = None
    # How the decision that made this state grouped its destinations (`pathsteer.policy.decide`,
    # the incremental path); None: the next decision starts from the prefixes alone.
    memo: object = field(default=None, compare=False, repr=False)

    @classmethod
    def adopt(cls, desired: Desired, params: PolicyParams, now: float) -> PolicyState:
        """Start from what an earlier run left installed (`DataPlane.adopt`): each configured
        prefix keeps those next hops until telemetry has data, then the policy decides without
        hysteresis. Routes for prefixes no longer configured, or over paths the destination no
        longer lists, are not taken over."""
        prefixes = {}
        for dest in params.destinations:
            intent = desired.routes.get(dest.prefix)
            if intent is None or not intent.nexthops:
                continue
            if not all(nh.path in dest.paths and params.path(nh.path).carries(dest.prefix) for nh in intent.nexthops):
                continue
            nexthops = intent.nexthops if dest.policy is PolicyKind.WEIGHTED else intent.nexthops[:1]
            prefixes[dest.prefix] = PrefixState(dest, nexthops, now, "adopted from the running system",
                                                ChangeKind.ADOPTED, measured=False)
        return cls(prefixes, None)


@dataclass(frozen=True)
class Event:
    """A change of a prefix's next hops. ``before`` is () for a prefix's first decision;
    ``after`` is () when the prefix left the config."""

    at: float
    prefix: Prefix
    policy: PolicyKind
    before: tuple[NextHop, ...]
    after: tuple[NextHop, ...]
    kind: ChangeKind
    reason: str


@dataclass(frozen=True)
class RouteStatus:
    """What `status` and `explain` show for one prefix: the next hops and why (``reason`` of the
    last change, at ``since``), what may change next (``pending``), and every candidate path."""

    prefix: Prefix
    policy: PolicyKind
    nexthops: tuple[NextHop, ...]
    since: float
    kind: ChangeKind
    reason: str
    pending: str | None
    candidates: tuple[Candidate, ...]

    def shares(self) -> dict[str, float]:
        """Each next hop's share of flows (0..1)."""
        total = sum(nh.weight for nh in self.nexthops)
        return {nh.path: nh.weight / total for nh in self.nexthops}


class RouteTable(Sequence[RouteStatus]):
    """A decision's `RouteStatus` per destination, in config order, made when asked for: a
    decision over 1M prefixes where nothing moved costs what its groups cost, not a million
    objects nobody reads. ``results``: per group of the decision, its (pending, candidates), or
    an object whose ``value`` is that pair, made when first read; ``of``: each destination's
    group; ``alone``: the destinations decided on their own (upstream figures), with their own.
    Treat as immutable, like the rest of a `Decision`."""

    __slots__ = ("_dests", "_params", "_states", "_of", "_results", "_alone")

    def __init__(self, params: PolicyParams, states: Mapping[Prefix, PrefixState], of: Sequence[int],
                 results: Mapping[int, tuple[str | None, tuple[Candidate, ...]]],
                 alone: Mapping[int, tuple[str | None, tuple[Candidate, ...]]]) -> None:
        self._dests = params.destinations
        self._params = params
        self._states, self._of, self._results, self._alone = states, of, results, alone

    def __len__(self) -> int:
        return len(self._dests)

    def _make(self, i: int) -> RouteStatus:
        d = self._dests[i]
        st = self._states[d.prefix]
        got = self._alone.get(i) if self._alone else None
        if got is None:
            got = self._results[self._of[i]]
            if not isinstance(got, tuple):
                got = got.value  # made when first read (`decide`)
        pending, candidates = got
        return RouteStatus(d.prefix, d.policy, st.nexthops, st.since, st.kind, st.reason, pending, candidates)

    def __getitem__(self, index):  # int or slice, as a tuple's
        if isinstance(index, slice):
            return tuple(self._make(i) for i in range(*index.indices(len(self._dests))))
        n = len(self._dests)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("route index out of range")
        return self._make(index)

    def __iter__(self) -> Iterator[RouteStatus]:
        return (self._make(i) for i in range(len(self._dests)))

    def get(self, prefix: Prefix) -> RouteStatus | None:
        i = self._params.positions.get(prefix)
        return None if i is None else self._make(i)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RouteTable({len(self)} routes)"


@dataclass(frozen=True)
class Decision:
    desired: Desired
    state: PolicyState
    routes: Sequence[RouteStatus]  # in config order (a `RouteTable` from `decide`)
    events: tuple[Event, ...]

    def route(self, prefix: Prefix) -> RouteStatus:
        if isinstance(self.routes, RouteTable):
            r = self.routes.get(prefix)
            if r is None:
                raise KeyError(prefix)
            return r
        for r in self.routes:
            if r.prefix == prefix:
                return r
        raise KeyError(prefix)
