"""The configuration as pydantic models; every section forbids unknown keys.

Steering's sections (``dataplane``, ``paths``, ``destinations``, ``decision``) are in
`pathsteer.config.steering`; its cross-section checks run in `Config._check`. A config needs at
least one of guard or steering to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pathsteer.config.bgp import BgpConfig, check_bgp
from pathsteer.config.gateways import GatewayConfig, check_gateways
from pathsteer.config.operator import ApiConfig, HistoryConfig, MetricsConfig
from pathsteer.config.fields import AbsolutePath, Cidr, Duration, InterfaceName, PortRange, Pps, Protocol
from pathsteer.config.sections import Section
from pathsteer.config.steering import (DataplaneConfig, DestinationConfig, PathConfig, DecisionConfig,
                                       check_steering)

DEFAULT_SOCKET = "/run/pathsteer/pathsteer.sock"
DEFAULT_STATE_DIR = "/var/lib/pathsteer"


class ControlConfig(Section):
    """``control``: where the daemon listens for ``pathsteer`` client commands."""

    socket: str = DEFAULT_SOCKET

    @field_validator("socket")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or len(value.encode()) > 107:  # sun_path is 108 bytes
            raise ValueError("must be an absolute path of at most 107 bytes")
        return value


class RateLimitConfig(Section):
    """``guard.rate_limit``: a token bucket per source (IPv4 address, IPv6 /64)."""

    per_source_pps: Pps
    burst: Pps | None = None  # packets; default: one second's worth


class SynLimitConfig(Section):
    """``guard.syn_limit``: TCP SYNs per destination address."""

    per_destination_pps: Pps
    burst: Pps | None = None


class AutoBlockConfig(Section):
    """``guard.auto_block``: block sources running above ``threshold_pps`` for ``ttl``."""

    threshold_pps: Pps
    ttl: Duration = 600.0


class PortRuleConfig(Section):
    """One of ``guard.rules``: protocol and port ranges; ``action`` drop or pass."""

    proto: Protocol = 0
    sport: PortRange = (0, 65535)
    dport: PortRange = (0, 65535)
    action: Literal["drop", "pass"] = "drop"


class SynCookiesConfig(Section):
    """``guard.syn_cookies``: SYNs to ``ports`` answered in XDP with SYN-ACK cookies, netfilter's
    synproxy behind (see pathsteer.guard.synproxy). The SYN-ACK speaks for the servers, so
    ``mss``/``mss6``/``wscale`` must be what they would say."""

    ports: list[PortRange] = Field(min_length=1)  # TCP destination ports: 80, 8000-8080
    interfaces: list[InterfaceName] | None = None  # default: every guard interface
    mss: int = Field(default=1460, ge=536, le=65495)  # IPv4 (MTU 1500 - 40)
    mss6: int = Field(default=1440, ge=1220, le=65475)  # IPv6 (MTU 1500 - 60)
    wscale: int = Field(default=7, ge=0, le=14)  # RFC 7323 §2.3: at most 14
    ttl: int = Field(default=64, ge=1, le=255)
    netfilter: Literal["managed", "external"] = "managed"  # managed: pathsteer sets synproxy up and tears it down

    @field_validator("ports")
    @classmethod
    def _no_port_zero(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for lo, hi in value:
            if lo == 0:
                raise ValueError(f"includes port 0 ({lo}-{hi}): TCP port 0 is not a service")
        return value


class GuardConfig(Section):
    """``guard``: the XDP guard on ``interfaces``."""

    interfaces: list[InterfaceName] = Field(min_length=1)
    allow: list[Cidr] = []
    deny: list[Cidr] = []
    rules: list[PortRuleConfig] = []
    rate_limit: RateLimitConfig | None = None
    syn_limit: SynLimitConfig | None = None
    auto_block: AutoBlockConfig | None = None
    state_dir: AbsolutePath = DEFAULT_STATE_DIR
    xdp_mode: Literal["auto", "native", "generic"] = "auto"  # auto: native, generic on veth (see GuardProgram.attach)
    sample_drops: int = Field(default=1000, ge=0, le=1_000_000)  # one drop event per N drops per CPU; 0 = none
    syn_cookies: SynCookiesConfig | None = None  # off unless configured (see README, Guard: SYN cookies)

    @model_validator(mode="after")
    def _cookie_interfaces(self) -> GuardConfig:
        sc = self.syn_cookies
        for i, name in enumerate(sc.interfaces or [] if sc else []):
            if name in sc.interfaces[:i]:
                raise ValueError(f".syn_cookies.interfaces[{i}]: {name!r} is listed twice")
            if name not in self.interfaces:
                raise ValueError(f".syn_cookies.interfaces[{i}]: {name!r} is not one of guard.interfaces "
                                 f"({', '.join(self.interfaces)})")
        return self

    @field_validator("interfaces")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen = set()
        for name in value:
            if name in seen:
                raise ValueError(f"lists {name!r} twice")
            seen.add(name)
        return value


@dataclass(frozen=True)
class SteeringSection:
    """Steering's section of the file: its ``dataplane``, ``paths``, ``destinations`` and
    ``decision`` keys (top-level in the YAML, one section to the daemon), and the daemon's
    state dir (``history.state_dir``: where steering keeps its drains across restarts)."""

    dataplane: DataplaneConfig | None
    paths: list[PathConfig]
    destinations: list[DestinationConfig]
    decision: DecisionConfig | None
    state_dir: str = DEFAULT_STATE_DIR


class Config(Section):
    """The whole file. ``control`` always exists (defaults); the others are optional."""

    control: ControlConfig = ControlConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    history: HistoryConfig = HistoryConfig()
    guard: GuardConfig | None = None
    dataplane: DataplaneConfig | None = None
    paths: list[PathConfig] | None = None
    destinations: list[DestinationConfig] | None = None
    decision: DecisionConfig | None = None
    gateways: list[GatewayConfig] | None = None
    bgp: BgpConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> Config:
        if "history" not in self.model_fields_set and self.guard is not None \
                and self.guard.state_dir != DEFAULT_STATE_DIR:
            # one state dir per daemon: a file that moved the guard's keeps its history beside it
            object.__setattr__(self, "history", self.history.model_copy(update={"state_dir": self.guard.state_dir}))
        check_steering(self.dataplane, self.paths, self.destinations, self.decision)
        check_gateways(self.gateways, self.paths)
        check_bgp(self.bgp, self.paths, self.destinations)
        if self.guard is None and self.paths is None:
            raise ValueError("nothing to run: the config needs a 'guard' section or steering "
                             "('dataplane', 'paths', 'destinations')")
        return self

    @property
    def steers(self) -> bool:
        return self.paths is not None

    @property
    def steering(self) -> SteeringSection | None:
        """The steering component's section (None when the file does not steer)."""
        if self.paths is None:
            return None
        return SteeringSection(self.dataplane, self.paths, self.destinations, self.decision, self.history.state_dir)

    @property
    def sections(self) -> list[str]:
        """What the file runs (guard, steering's sections); the operator sections (control,
        api, metrics, history) are always there, with their defaults."""
        return [name for name in type(self).model_fields if name not in OPERATOR_SECTIONS
                and getattr(self, name) is not None]


OPERATOR_SECTIONS = ("control", "api", "metrics", "history")
