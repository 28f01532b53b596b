"""Per-target accounting: which replies are answers, RTT/jitter/loss, failing or not.

Pure and clock-free: every method takes the time it should use. The prober (the
imperative shell) reports what happened; this module decides what it means.
"""

from __future__ import annotations

from array import array
from enum import Enum

from pathsteer.telemetry.config import AdaptiveTimeout, Thresholds, WindowConfig
from pathsteer.telemetry.histogram import RttHistogram
from pathsteer.telemetry.snapshot import Counters, RttStats, TargetSnapshot, TargetState
from pathsteer.telemetry.window import ProbeWindow, median, rtt_stats_sorted

SEQ_MEMORY = 1024  # resolved sequence numbers remembered to spot duplicates and late replies


class ReplyKind(Enum):
    ANSWER = "answer"
    LATE = "late"  # after the probe's timeout: the probe stays lost
    DUPLICATE = "duplicate"  # the probe was already answered
    FOREIGN = "foreign"  # no probe of ours has this sequence number


_ANSWERED, _EXPIRED = 1, 2


class _SeqMemory:
    """What became of the last ``size`` resolved sequence numbers (answered or expired, and
    when each was sent): a ring indexed by seq mod size, so memory is fixed and lookups are
    O(1). A number older than the ring is forgotten (its reply is then foreign)."""

    __slots__ = ("_seqs", "_states", "_sent", "_size")

    def __init__(self, size: int) -> None:
        self._seqs = array("q", [-(1 << 62)]) * size
        self._states = bytearray(size)
        self._sent = array("d", [0.0]) * size
        self._size = size

    def put(self, seq: int, state: int, sent_at: float) -> None:
        i = seq % self._size
        self._seqs[i] = seq
        self._states[i] = state
        self._sent[i] = sent_at

    def get(self, seq: int) -> int:
        i = seq % self._size
        return self._states[i] if self._seqs[i] == seq else 0

    def sent_at(self, seq: int) -> float:
        return self._sent[seq % self._size]


class ProbeTimeout:
    """How long a probe is waited for: fixed, or adaptive per target like TCP's RTO
    (RFC 6298 §2) from the smoothed round trip and its variation.

    Adaptive: ``initial`` until the first sample; then SRTT/RTTVAR with gains 1/8 and 1/4
    (the first sample R gives SRTT = R, RTTVAR = R/2), and the timeout is
    ``SRTT + max(4 × RTTVAR, min_slack)`` clamped to ``max``. Every reply feeds it, a late
    one too (a probe is never sent twice, so Karn's ambiguity does not arise): after a
    path slows down, the first late reply stretches the wait for the probes still in
    flight. There is no back-off on a loss, which would slow the detection of a dead path.
    """

    __slots__ = ("fixed_s", "_cfg", "srtt_s", "rttvar_s", "value", "max_s")

    def __init__(self, fixed_s: float | None, adaptive: AdaptiveTimeout) -> None:
        self.fixed_s = fixed_s
        self._cfg = adaptive
        self.srtt_s: float | None = None
        self.rttvar_s: float | None = None
        self.value = fixed_s if fixed_s is not None else min(adaptive.initial_s, adaptive.max_s)
        self.max_s = fixed_s if fixed_s is not None else adaptive.max_s  # the longest a probe is waited for

    @property
    def adaptive(self) -> bool:
        return self.fixed_s is None

    def sample(self, elapsed_s: float) -> None:
        """A reply came ``elapsed_s`` after its probe was sent (answer or late)."""
        if self.fixed_s is not None:
            return
        r = max(0.0, elapsed_s)
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = r, r / 2
        else:
            self.rttvar_s += (abs(self.srtt_s - r) - self.rttvar_s) / 4
            self.srtt_s += (r - self.srtt_s) / 8
        cfg = self._cfg
        self.value = min(cfg.max_s, self.srtt_s + max(4 * self.rttvar_s, cfg.min_slack_s))


def jitter_step(jitter_s: float, previous_rtt_s: float, rtt_s: float) -> float:
    """RFC 3550 §6.4.1: J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16, where D is the change in
    transit time between consecutive packets; for round trips, the change in RTT."""
    return jitter_s + (abs(rtt_s - previous_rtt_s) - jitter_s) / 16.0


class _RttCell:
    """A window's RTT statistics at one version, made the first time they are read: what a
    target's snapshot holds until someone looks (a copy of the sorted RTTs and the recent
    ones). Captures of an unchanged window share one cell, so their `RttStats` is one object."""

    __slots__ = ("key", "_sorted", "_ewma", "_recent", "_stats")

    def __init__(self, key: tuple, window: ProbeWindow, ewma_s: float | None) -> None:
        self.key = key
        self._sorted = list(window.sorted_rtts())
        self._recent = window.recent()  # a new list at each version: never changed in place
        self._ewma = ewma_s
        self._stats: RttStats | None = None

    @property
    def stats(self) -> RttStats:
        if self._stats is None:
            recent = self._recent
            self._stats = rtt_stats_sorted(self._sorted, self._ewma, median(recent), recent[0] if recent else None)
            self._sorted = self._recent = ()  # type: ignore[assignment]
        return self._stats


class TargetCapture:
    """A target's figures at one moment, as values (cheap to take ten times a second for every
    target); its `TargetSnapshot` is made the first time `snapshot` is read. Decisions read
    the path's figures only, so most captures are never made into snapshots."""

    __slots__ = ("key", "_values", "_rtt", "_snap")

    def __init__(self, key: tuple, values: tuple, rtt: _RttCell) -> None:
        self.key = key  # what it was made of (the tracker's figures and its window's version)
        self._values = values
        self._rtt = rtt
        self._snap: TargetSnapshot | None = None

    @property
    def snapshot(self) -> TargetSnapshot:
        if self._snap is None:
            (address, state, since, ewma, jitter, consecutive_lost, last_answer_at, sent, answered, lost,
             pending, late, duplicate, foreign, errors, loss_pct, window_probes) = self._values
            self._snap = TargetSnapshot(
                address=address, state=state, since=since, rtt=self._rtt.stats, jitter_s=jitter,
                loss_pct=loss_pct, window_probes=window_probes, consecutive_lost=consecutive_lost,
                last_answer_at=last_answer_at,
                counters=Counters(sent=sent, answered=answered, lost=lost, pending=pending, late=late,
                                  duplicate=duplicate, foreign=foreign, errors=errors))
            self._values = ()
        return self._snap


class TargetTracker:
    """One target of one path."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float | None,
        window: WindowConfig,
        thresholds: Thresholds,
        now: float,
        adaptive: AdaptiveTimeout = AdaptiveTimeout(),
    ) -> None:
        """``timeout_s`` None: the timeout adapts to the target's round trip (`ProbeTimeout`)."""
        self.address = address
        self.timer = ProbeTimeout(timeout_s, adaptive)
        self._alpha = window.ewma_alpha
        self._th = thresholds
        self.window = ProbeWindow(window.count, window.seconds)
        self.histogram = RttHistogram()  # every RTT the window takes, since the start (metrics)
        self._pending: dict[int, float] = {}  # seq -> sent_at, in send order
        self._presumed: dict[int, float] = {}  # expired, not yet in the window (adaptive): seq -> sent_at
        self._resolved = _SeqMemory(SEQ_MEMORY)
        self.state = TargetState.UNKNOWN
        self.since = now
        self.ewma_s: float | None = None
        self.jitter_s: float | None = None
        self._last_rtt: float | None = None
        self.consecutive_lost = 0
        self.consecutive_answered = 0
        self.last_answer_at: float | None = None
        self.sent_count = self.answered = self.lost = 0
        self.late = self.duplicate = self.foreign = self.errors = 0
        self._rtt_cell: _RttCell | None = None  # the RTT statistics of the last capture
        self._capture: TargetCapture | None = None  # the last capture (its values are its key)

    # -- events -------------------------------------------------------------------------

    def on_sent(self, seq: int, now: float) -> None:
        self._pending[seq] = now
        self.sent_count += 1

    def on_reply(self, seq: int, received_at: float, rtt_s: float | None = None) -> ReplyKind:
        """Classify a reply carrying ``seq`` received at ``received_at``. ``rtt_s``, when
        given, replaces received_at - sent_at (e.g. TWAMP with the reflector's dwell time
        taken out, RFC 5357 §4.2.1 timestamps)."""
        sent_at = self._pending.get(seq)
        if sent_at is None:
            if not -(1 << 62) < seq < 1 << 62:  # not a number we could have sent
                self.foreign += 1
                return ReplyKind.FOREIGN
            was = self._resolved.get(seq)
            if was == _ANSWERED:
                self.duplicate += 1
                return ReplyKind.DUPLICATE
            if was == _EXPIRED:
                self._late(seq, self._resolved.sent_at(seq), received_at, rtt_s)
                return ReplyKind.LATE
            self.foreign += 1
            return ReplyKind.FOREIGN
        if received_at - sent_at > self.timer.value:
            # Past its deadline but not yet expired by the prober: lost, and the reply is late.
            del self._pending[seq]
            self._lose(seq, sent_at)
            self._late(seq, sent_at, received_at, rtt_s)
            return ReplyKind.LATE
        del self._pending[seq]
        self.timer.sample(received_at - sent_at)
        rtt = max(0.0, received_at - sent_at if rtt_s is None else rtt_s)
        self._answer(seq, sent_at, rtt, received_at)
        return ReplyKind.ANSWER

    def on_foreign(self) -> None:
        """A reply the prober could not attribute at all (wrong token or identifier)."""
        self.foreign += 1

    def on_error(self) -> None:
        """The kernel refused a send or reported an ICMP error; the probe will time out."""
        self.errors += 1

    def expire(self, now: float) -> int:
        """Count as lost every pending probe whose timeout has passed; returns how many.
        The timeout is the current one: a pending probe's deadline moves when it adapts."""
        n = 0
        deadline = now - self.timer.value
        while self._pending:
            seq, sent_at = next(iter(self._pending.items()))
            if sent_at > deadline:
                break
            del self._pending[seq]
            self._lose(seq, sent_at)
            n += 1
        if self._presumed:
            self._settle(now - self.timer.max_s)
        return n

    def handed_over(self) -> None:
        """A new prober takes over (a reload): forget the probes in flight and the sequence
        numbers seen; every figure, the timer and the state stay."""
        self._pending.clear()
        self._presumed.clear()
        self._resolved = _SeqMemory(SEQ_MEMORY)

    def expire_all(self) -> int:
        """Give up on every pending probe (the run is over)."""
        n = len(self._pending)
        for seq, sent_at in list(self._pending.items()):
            self._lose(seq, sent_at)
        self._pending.clear()
        self._settle(float("inf"))
        return n

    # -- accounting ---------------------------------------------------------------------

    def _late(self, seq: int, sent_at: float, received_at: float, rtt_s: float | None) -> None:
        """A reply after its probe was counted lost. With a fixed timeout it stays lost (the
        user's definition of loss). With the adaptive one the timeout was pathsteer's guess,
        and the reply proves it wrong: the timer learns the longer round trip, the run of
        losses ends (the target answers, only slowly), and the window holds the probe as
        answered with its RTT, so a slowed path shows as slow, not as lossy or down."""
        self.late += 1
        elapsed = received_at - sent_at
        self.timer.sample(elapsed)
        if not self.timer.adaptive:
            return
        self.consecutive_lost = 0
        if self._presumed.pop(seq, None) is not None:
            rtt = max(0.0, elapsed if rtt_s is None else rtt_s)
            self.window.add(sent_at, rtt)
            self.histogram.observe(rtt)

    def _settle(self, before: float) -> None:
        """Probes presumed lost (adaptive timeout: expired, but a late answer may still come)
        that were sent before ``before`` are lost for the window: a probe sent after them was
        answered (probes do not overtake each other), or they are older than the timer's
        ceiling. Until then the window's loss does not count them, so a path that slowed down
        is not DEGRADED by the probes its late answers are about to redeem."""
        presumed = self._presumed
        while presumed:
            seq, sent_at = next(iter(presumed.items()))
            if sent_at >= before:
                break
            del presumed[seq]
            self.window.add(sent_at, None)

    def _answer(self, seq: int, sent_at: float, rtt: float, now: float) -> None:
        self._resolved.put(seq, _ANSWERED, sent_at)
        self.answered += 1
        if self._presumed:
            self._settle(sent_at)
        self.window.add(sent_at, rtt)
        self.histogram.observe(rtt)
        self.ewma_s = rtt if self.ewma_s is None else self.ewma_s + self._alpha * (rtt - self.ewma_s)
        if self._last_rtt is not None:
            self.jitter_s = jitter_step(self.jitter_s or 0.0, self._last_rtt, rtt)
        self._last_rtt = rtt
        self.last_answer_at = now
        self.consecutive_lost = 0
        self.consecutive_answered += 1
        if self.state is TargetState.UNKNOWN:
            self._set_state(TargetState.UP, now)
        elif self.state is TargetState.DOWN and self.consecutive_answered >= self._th.target_up_after_answered:
            if self.timer.adaptive:
                # Back from an outage: its lost probes told of the outage (reported as down), not
                # of the path's loss now; kept, they would hold the path DEGRADED for a window.
                # (A fixed timeout keeps the user's literal loss accounting.)
                self._presumed.clear()
                self.window.forget_lost()
            self._set_state(TargetState.UP, now)

    def _lose(self, seq: int, sent_at: float) -> None:
        self._resolved.put(seq, _EXPIRED, sent_at)
        self.lost += 1
        if self.timer.adaptive:
            self._presumed[seq] = sent_at  # the window learns of it once it is surely lost
        else:
            self.window.add(sent_at, None)
        self.consecutive_answered = 0
        self.consecutive_lost += 1
        if self.state is not TargetState.DOWN and self.consecutive_lost >= self._th.target_down_after_lost:
            self._set_state(TargetState.DOWN, sent_at + self.timer.value)

    def _set_state(self, state: TargetState, now: float) -> None:
        self.state = state
        self.since = now

    @property
    def timeout_s(self) -> float:
        """How long a probe sent now would be waited for."""
        return self.timer.value

    @property
    def failing(self) -> bool:
        return self.state is TargetState.DOWN

    @property
    def pending(self) -> int:
        return len(self._pending)

    def sent_at(self, seq: int) -> float | None:
        """When pending probe ``seq`` was sent (None when it is not pending)."""
        return self._pending.get(seq)

    def next_deadline(self) -> float | None:
        """The earliest time a pending probe times out (None when nothing is pending)."""
        for sent_at in self._pending.values():
            return sent_at + self.timer.value
        return None

    def capture(self, now: float) -> TargetCapture:
        """The target's figures at ``now``, as values: the same object as the last call's while
        nothing changed (no probe sent, answered, lost or aged out), so a consumer can tell by
        identity. Its `TargetCapture.snapshot` is made when first read."""
        self.window.trim(now)
        w = self.window
        values = (self.address, self.state, self.since, self.ewma_s, self.jitter_s, self.consecutive_lost,
                  self.last_answer_at, self.sent_count, self.answered, self.lost, len(self._pending), self.late,
                  self.duplicate, self.foreign, self.errors, w.version, id(w))
        last = self._capture
        if last is not None and last.key == values:
            return last
        cell = self._rtt_cell
        rtt_key = (id(w), w.version, self.ewma_s)
        if cell is None or cell.key != rtt_key:
            cell = self._rtt_cell = _RttCell(rtt_key, w, self.ewma_s)
        capture = self._capture = TargetCapture(values, values[:15] + (w.loss_pct(), len(w)), cell)
        return capture

    def snapshot(self, now: float) -> TargetSnapshot:
        """The target's figures at ``now`` (`capture`'s snapshot): the same object as the last
        call's while nothing changed."""
        return self.capture(now).snapshot
