"""The immutable view the decision logic reads: one timestamped `TelemetrySnapshot`.

Units are in the field names: seconds (``_s``), percent points (``_pct``). A metric with
no sample yet is None. Times (``taken_at``, ``since``, ``last_answer_at``) are on the
engine's monotonic clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum


class PathState(Enum):
    UNKNOWN = "unknown"  # no probe resolved yet
    UP = "up"
    DEGRADED = "degraded"  # reachable, but loss, RTT or jitter past the degraded threshold
    DOWN = "down"  # at least k of the n targets fail (quorum)


class TargetState(Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"  # failing: too many consecutive probes lost


@dataclass(frozen=True)
class RttStats:
    """RTT over the window: EWMA (RFC 6298 §2 style), and order statistics (nearest rank)."""

    ewma_s: float | None = None
    min_s: float | None = None
    avg_s: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None
    samples: int = 0
    # The median of the last RECENT_PROBES answered probes (a path: the median of its live
    # targets' ones): a lasting step shows after two probes, one spike never (the BGP MED).
    recent_s: float | None = None
    last_s: float | None = None  # the last answer (a late one too; a path: the median of its targets')


@dataclass(frozen=True)
class Counters:
    """Totals since the start (not windowed).

    ``late``: an answer that came after its probe's timeout (counted in ``lost`` too; with
    the adaptive timeout the window holds it as answered, see `TargetTracker`).
    ``duplicate``: a second answer to an already answered probe. ``foreign``: a reply that
    matches no probe we sent (unknown sequence number, wrong session token). None of the
    three is ever taken as an answer. ``errors``: sends the kernel refused and ICMP errors.
    """

    sent: int = 0
    answered: int = 0
    lost: int = 0
    pending: int = 0
    late: int = 0
    duplicate: int = 0
    foreign: int = 0
    errors: int = 0


@dataclass(frozen=True)
class TargetSnapshot:
    address: str
    state: TargetState
    since: float  # when ``state`` was entered
    rtt: RttStats
    jitter_s: float | None  # RFC 3550 §6.4.1 interarrival jitter of the RTT series
    loss_pct: float | None  # lost / resolved probes in the window
    window_probes: int  # resolved probes in the window
    consecutive_lost: int
    last_answer_at: float | None
    counters: Counters


@dataclass(frozen=True)
class PassiveSnapshot:
    """Passive RTT of the path's real TCP traffic (``paths[].passive``) over the last
    ``window_s``: figures of the samples taken then (None when there were none). When the path
    carried no traffic in the last window, the figures of its last busy window, ``age_s`` old
    (up to the memory of `pathsteer.telemetry.passive.PassiveWindow`, 30 s by default)."""

    window_s: float
    samples: int
    min_s: float | None = None
    mean_s: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None
    total_samples: int = 0  # since the program was attached
    age_s: float = 0.0  # how old these figures are (0: the last window had traffic)


class TargetSnapshots(Sequence[TargetSnapshot]):
    """A path's targets' snapshots, made the first time they are read: a path's snapshot is
    taken for every decision (ten times a second), its targets' are read by views and
    metrics only. Holds captures (anything with a ``snapshot`` attribute, made when first
    read: `pathsteer.telemetry.target.TargetCapture`); compares and hashes as the tuple."""

    __slots__ = ("captures", "_items")

    def __init__(self, captures: Sequence) -> None:
        self.captures = tuple(captures)
        self._items: tuple[TargetSnapshot, ...] | None = None

    def _all(self) -> tuple[TargetSnapshot, ...]:
        if self._items is None:
            self._items = tuple(c.snapshot for c in self.captures)
        return self._items

    def __getitem__(self, index):  # type: ignore[override]
        return self._all()[index]

    def __len__(self) -> int:
        return len(self.captures)

    def __iter__(self) -> Iterator[TargetSnapshot]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TargetSnapshots):
            return self.captures == other.captures or self._all() == other._all()
        return isinstance(other, tuple) and self._all() == other

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


@dataclass(frozen=True)
class PathSnapshot:
    """One path. ``rtt`` and ``loss_pct`` pool the targets that are not failing (all of
    them when every target fails); ``jitter_s`` is the median of their jitters; ``base_rtt_s``
    the lowest RTT over the last minutes. ``passive``:
    the RTT of real traffic, when the path is measured passively too (separate from the
    probes' figures; the policy's ``rtt`` setting says which it uses)."""

    name: str
    state: PathState
    since: float
    rtt: RttStats
    jitter_s: float | None
    loss_pct: float | None
    failing: int  # targets failing now
    quorum: int  # k: the path is down when failing >= k
    targets: Sequence[TargetSnapshot]  # a tuple, or `TargetSnapshots` (made when read)
    passive: PassiveSnapshot | None = None
    # The lowest RTT of the live targets over the last minutes (`path.BASE_RTT_HORIZON_S`):
    # the path's own latency without the queue that traffic builds on it (LEDBAT's base delay).
    base_rtt_s: float | None = None

    def target(self, address: str) -> TargetSnapshot:
        for t in self.targets:
            if t.address == address:
                return t
        raise KeyError(address)


@dataclass(frozen=True)
class TelemetrySnapshot:
    taken_at: float
    paths: tuple[PathSnapshot, ...]

    def plain(self) -> TelemetrySnapshot:
        """This snapshot with every path's targets made into a tuple (for `dataclasses.asdict`)."""
        return replace(self, paths=tuple(replace(p, targets=tuple(p.targets)) for p in self.paths))

    def path(self, name: str) -> PathSnapshot:
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(name)

    def __iter__(self) -> Iterator[PathSnapshot]:
        return iter(self.paths)
