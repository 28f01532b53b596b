"""What a path's probes are: targets, method, cadence, windows, thresholds, pinning.

Plain frozen dataclasses. User input is validated where it is read — the config
(`pathsteer.config`, errors naming the field path) and `pathsteer probe`'s arguments
(`pathsteer.probe.cli`) — so construction only asserts invariants: a violation raises
`ValueError`, a bug in the caller, never an operator's mistake.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from enum import Enum


MIN_INTERVAL_S = 0.010  # 10 ms: below this a Python prober spends its time on timers, not packets
TWAMP_PORT = 862  # RFC 5357 §8 (IANA "twamp-control"); TWAMP-light reflectors use it by convention


class ProbeMethod(Enum):
    """How a target is probed."""

    ICMP = "icmp"  # ICMP / ICMPv6 echo (RFC 792, RFC 4443 §4.1)
    UDP = "udp"  # TWAMP-light test packets (RFC 5357 §4.1.2, unauthenticated mode)


def _address(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IPv4 or IPv6 address") from None


@dataclass(frozen=True)
class WindowConfig:
    """The sliding window metrics are computed over: the last ``count`` resolved probes
    that were sent within the last ``seconds`` (both limits apply)."""

    count: int = 100
    seconds: float = 60.0
    ewma_alpha: float = 1 / 8  # RFC 6298 §2: SRTT gain 1/8

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"window count: {self.count!r} must be 1 or more")
        if not self.seconds > 0:
            raise ValueError(f"window seconds: {self.seconds!r} must be more than 0")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"ewma alpha: {self.ewma_alpha!r} must be in (0, 1]")


DEFAULT_TIMEOUT_MIN_SLACK_S = 0.040
DEFAULT_TIMEOUT_MAX_S = 2.0
DEFAULT_TIMEOUT_INITIAL_S = 1.0


@dataclass(frozen=True)
class AdaptiveTimeout:
    """The adaptive probe timeout (when no fixed timeout is given): ``initial_s`` before the
    first answer, then SRTT + max(4 × RTTVAR, ``min_slack_s``), at most ``max_s``.

    ``min_slack_s`` is the least a probe is waited for beyond the smoothed round trip. It
    sets the trade-off at the heart of failure detection: a path is down after 3 lost probes,
    the last one sent 2 intervals after the first, so a dead path is noticed
    ``2 × interval + SRTT + slack`` after its first lost probe leaves (within the
    3 × interval + 50 ms budget at a 20 ms interval, with room for the decision), while a
    path whose round trip grows by less than ``2 × interval + slack`` answers (late) before
    the third loss: it is seen slow, not down."""

    min_slack_s: float = DEFAULT_TIMEOUT_MIN_SLACK_S
    max_s: float = DEFAULT_TIMEOUT_MAX_S
    initial_s: float = DEFAULT_TIMEOUT_INITIAL_S

    def __post_init__(self) -> None:
        for name in ("min_slack_s", "max_s", "initial_s"):
            v = getattr(self, name)
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"timeout {name.removesuffix('_s').replace('_', ' ')}: {v!r} must be more than 0")
        if self.min_slack_s > self.max_s:
            raise ValueError(f"timeout min slack: {self.min_slack_s!r} s is above the maximum ({self.max_s!r} s)")


@dataclass(frozen=True)
class Thresholds:
    """When a target fails, when a path is degraded, and how long a state is held.

    A target fails after ``target_down_after_lost`` consecutive lost probes and comes back
    after ``target_up_after_answered`` consecutive answers (separate thresholds: hysteresis).
    A path is degraded when its window loss reaches ``degraded_loss_pct`` (or RTT EWMA or
    jitter reach theirs, when set) and is up again only when they fall to the ``recover_*``
    values. Every path state is held at least ``hold_s`` before it may change.
    """

    target_down_after_lost: int = 3
    target_up_after_answered: int = 5
    degraded_loss_pct: float = 5.0
    recover_loss_pct: float = 2.0
    degraded_rtt_s: float | None = None
    recover_rtt_s: float | None = None
    degraded_jitter_s: float | None = None
    recover_jitter_s: float | None = None
    hold_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("target_down_after_lost", "target_up_after_answered"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)!r} must be 1 or more")
        if not 0 <= self.recover_loss_pct <= self.degraded_loss_pct <= 100:
            raise ValueError(
                f"loss thresholds: need 0 <= recover ({self.recover_loss_pct!r}) "
                f"<= degraded ({self.degraded_loss_pct!r}) <= 100"
            )
        for kind in ("rtt", "jitter"):
            enter, leave = getattr(self, f"degraded_{kind}_s"), getattr(self, f"recover_{kind}_s")
            if enter is None:
                continue
            if leave is None or not 0 <= leave <= enter:
                raise ValueError(f"{kind} thresholds: need 0 <= recover ({leave!r}) <= degraded ({enter!r})")
        if self.hold_s < 0:
            raise ValueError(f"hold: {self.hold_s!r} must be 0 or more")


@dataclass(frozen=True)
class PathProbeConfig:
    """The probes of one path: pinned to ``interface`` (and ``gateway``), aimed at ``targets``.

    ``quorum`` is k of "down when at least k of the n targets fail" (default: all of them
    when n ≤ 2, else a majority). ``table``/``mark`` choose the per-path routing table and
    socket mark used for pinning through ``gateway``; None picks free ones at start.
    ``timeout_s`` None (the default) makes each target's timeout adapt to its round trip
    (`AdaptiveTimeout`); a number fixes it.
    """

    name: str
    interface: str
    targets: tuple[str, ...]
    gateway: str | None = None
    method: ProbeMethod = ProbeMethod.ICMP
    port: int = TWAMP_PORT
    interval_s: float = 1.0
    timeout_s: float | None = None
    adaptive_timeout: AdaptiveTimeout = field(default_factory=AdaptiveTimeout)
    quorum: int | None = None
    window: WindowConfig = field(default_factory=WindowConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    table: int | None = None
    mark: int | None = None
    payload_size: int = 0  # extra bytes of padding per probe

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("path name: must not be empty")
        if not self.targets:
            raise ValueError(f"path {self.name}: needs at least one target")
        object.__setattr__(self, "targets", tuple(self.targets))
        families = {_address(t, f"path {self.name} target").version for t in self.targets}
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"path {self.name}: a target is listed twice")
        if self.gateway is not None:
            gw = _address(self.gateway, f"path {self.name} gateway")
            if families != {gw.version}:
                raise ValueError(
                    f"path {self.name}: gateway {self.gateway} is IPv{gw.version}; "
                    f"the targets must be too"
                )
        if not math.isfinite(self.interval_s) or self.interval_s < MIN_INTERVAL_S:
            raise ValueError(f"path {self.name} interval: {self.interval_s!r} s is below the 10 ms minimum")
        if self.timeout_s is not None and (not math.isfinite(self.timeout_s) or self.timeout_s <= 0):
            raise ValueError(f"path {self.name} timeout: {self.timeout_s!r} must be more than 0")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"path {self.name} port: {self.port!r} is not a port (1-65535)")
        if self.quorum is not None and not 1 <= self.quorum <= len(self.targets):
            raise ValueError(
                f"path {self.name} quorum: {self.quorum!r} must be between 1 and {len(self.targets)}"
            )
        if not 0 <= self.payload_size <= 1400:
            raise ValueError(f"path {self.name} payload size: {self.payload_size!r} must be 0-1400")

    @property
    def quorum_k(self) -> int:
        """k: how many targets must fail for the path to be down."""
        if self.quorum is not None:
            return self.quorum
        n = len(self.targets)
        return n if n <= 2 else n // 2 + 1

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_address(self.targets[0]).version
