"""The API's request and response models: the OpenAPI document is generated from these, and
the handlers build their answers through them (so a response cannot drift from the schema).

Views of the daemon's state carry more than the fields named here at times (a field added to
a view appears in the API at once): the models allow extra keys, and name every key the
dashboard, the CLI and the docs rely on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A response part: the named fields, and whatever else the view has."""

    model_config = ConfigDict(extra="allow")


class Strict(BaseModel):
    """A request body: unknown keys are refused, by name."""

    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    error: str = Field(description="one line: what was wrong, naming the field and the value")
    field: str | None = Field(default=None, description="the request field at fault, when there is one")


# --- daemon --------------------------------------------------------------------------------

class Status(Open):
    version: str
    pid: int
    ready: bool
    started: float = Field(description="epoch seconds")
    components: list[str]
    config: str = Field(description="the config file's path")


class Health(Open):
    ok: bool


class Ready(Open):
    ready: bool
    why: str | None = None


class Reloaded(Open):
    sections: list[str]
    components: list[str]


# --- paths ---------------------------------------------------------------------------------

class TargetView(Open):
    address: str
    state: str
    since: float | None = None
    rtt_ms: float | None = None
    rtt_p50_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    sent: int | None = None
    lost: int | None = None
    last_answer_age_s: float | None = None


class LoadView(Open):
    in_bps: float
    out_bps: float


class DrainView(Open):
    since: float | None = None
    until: float | None = None
    reason: str | None = None


class UpstreamTimeView(Open):
    p50: float | None = Field(default=None, description="the upstreams' median response time, ms")
    p95: float | None = Field(default=None, description="their 95th percentile, ms (what sla.max_upstream_time judges)")
    requests: int | None = Field(default=None, description="requests timed in the gateway's window")
    age_s: float | None = Field(default=None, description="since the figure was seen (a path that no longer "
                                "carries the destination brings no new one; it counts for sla.upstream_hold)")
    addresses: int | None = Field(default=None, description="upstream addresses combined (the slowest speaks)")


class PathView(Open):
    name: str
    state: str = Field(description="up, degraded, down, unknown or drained")
    since: float | None = None
    interface: str
    gateway: str | None = None
    rtt_ms: float | None = Field(default=None, description="the RTT the policy uses (robust: the lower of the "
                                 "EWMA and the window's p95)")
    rtt_p50_ms: float | None = None
    rtt_p95_ms: float | None = None
    rtt_min_ms: float | None = Field(default=None, description="the lowest RTT in the window")
    rtt_base_ms: float | None = Field(default=None, description="the lowest RTT over the last 5 minutes: the "
                                      "path's own latency, without its queue (weighted weighs loaded paths by it)")
    rtt_ewma_ms: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    failing_targets: int | None = None
    targets: int | None = None
    target_states: list[TargetView] = []
    capacity_bps: int | None = None
    utilization: float | None = Field(default=None, description="0..1 of capacity_bps")
    load: LoadView | None = None
    drained: DrainView | None = None
    upstream_time_ms: dict[str, UpstreamTimeView] | None = Field(
        default=None, description="the gateways' upstream response time per destination prefix the path carried")


class Paths(Open):
    paths: list[PathView]


class Rollup(Open):
    start: float
    end: float


class PathHistory(Open):
    path: str
    interval_s: float | None = None
    rollups: list[Rollup]


# --- routes --------------------------------------------------------------------------------

class NextHopView(Open):
    path: str
    weight: int
    share: float


class RouteView(Open):
    prefix: str
    policy: str
    nexthops: list[NextHopView]
    via: str
    since: float = Field(description="when the route took its current next hops (seconds since the epoch)")
    kind: str
    reason: str
    pending: str | None = None


class Routes(Open):
    routes: list[RouteView]
    total: int = Field(description="routes before limit/offset")


class CandidateView(Open):
    path: str
    state: str
    eligibility: str
    why_not: str | None = None
    upstream_time_ms: UpstreamTimeView | None = Field(
        default=None, description="the gateways' upstream response time for this destination over this path")
    upstream_breach: bool | None = Field(default=None, description="its p95 is over sla.max_upstream_time")


class Explain(Open):
    address: str
    prefix: str | None
    steered: bool
    why: str
    candidates: list[CandidateView] | None = None


# --- events --------------------------------------------------------------------------------

class EventView(Open):
    seq: int | None = Field(default=None, description="order in the daemon that recorded it")
    at: float = Field(description="epoch seconds")
    name: str = Field(description="steer.change, path.state, guard.block, ...")


class Events(Open):
    events: list[EventView]


# --- guard ---------------------------------------------------------------------------------

class BlockView(Open):
    cidr: str
    origin: str
    reason: str
    created: float
    expires: float | None = None
    expires_in: float | None = None
    hits: int


class Blocks(Open):
    blocks: list[BlockView]


class GatewayUpstream(Open):
    upstream: str
    requests_per_s: float
    upstream_p50_ms: float | None = None
    upstream_p95_ms: float | None = None
    prefix: str | None = None
    paths: list[str]


class GatewayServer(Open):
    backend: str
    server: str
    address: str | None = None
    found_weight: int
    weight: int | None = None
    health: str
    path: str | None = None
    why: str


class GatewayAction(Open):
    at: float
    action: str
    detail: str


class GatewayView(Open):
    name: str
    kind: str
    connected: bool | None = None
    via: str | None = None
    lines: int
    records: int
    lines_per_s: float
    parse_errors: int
    upstreams: list[GatewayUpstream]
    servers: list[GatewayServer]
    mirrored: int | None = None
    errors: dict[str, int]
    actions: list[GatewayAction]


class Gateways(Open):
    gateways: list[GatewayView]


class BgpSession(Open):
    name: str
    address: str
    as_: int = Field(alias="as")
    state: str = Field(description="idle, connected, up or down")
    since: float | None = None
    reason: str | None = None
    ups: int
    downs: int
    updates: int
    received: int = Field(description="prefixes the peer announces now")
    announced: int = Field(description="prefixes announced to it")
    learned: int = Field(description="its prefixes learned as steered destinations")


class BgpExabgp(Open):
    running: bool
    pid: int | None = None
    since: float | None = None
    connected: bool
    restarts: int
    exits: list[dict]
    commands_sent: int
    acked: int
    errors: int
    garbage: int


class Bgp(Open):
    configured: bool = Field(description="false: no 'bgp' section in the config (the rest is then empty)")
    local_as: int | None = None
    router_id: str | None = None
    exabgp: BgpExabgp | None = None
    sessions: list[BgpSession] = []
    announced: int = 0
    withdrawn_here: int = 0
    learned: int = 0
    learned_applied: int = 0
    learn_error: str | None = None
    learn_filtered: int = 0
    learn_over_max: int = 0


class BgpPrefix(Open):
    prefix: str
    announced: bool
    learned: bool
    learned_from: list[str]
    why: str = Field(description="why it is announced with this MED, or why it is not announced")
    med: int | None = None
    path: str | None = None
    path_number: int | None = None
    rtt_ms: float | None = None
    loss_pct: float | None = None
    state: str | None = None
    communities: list[str] = []
    large_communities: list[str] = Field(default=[], description="(local AS, kind, value): kind 1 path number, "
                                         "2 RTT in µs, 3 loss in ppm, 4 state (1 up, 2 degraded)")
    announced_age_s: float | None = None
    pending: str | None = None
    last_action: dict | None = None
    peers: list[str]


class BlockRequest(Strict):
    cidr: str = Field(description="an address or CIDR: 192.0.2.0/24, 2001:db8::/48")
    ttl: float | str | None = Field(default=None, description="seconds or a duration (10m, 1h); null = until unblocked")
    comment: str = Field(default="", max_length=200)


class Unblocked(Open):
    cidr: str
    unblocked: bool


class GuardStats(Open):
    verdicts: dict[str, Any]
    dropped: int
    passed: int
    rules: list[dict[str, Any]]
    blocks: int


# --- drain ---------------------------------------------------------------------------------

class DrainRequest(Strict):
    ttl: float | str | None = Field(default=None, description="seconds or a duration (30m); null = until undrained")
    reason: str = Field(default="", max_length=200)


class Drained(Open):
    path: str


class ConfigView(Open):
    """The running config (what `pathsteer run` loaded), secrets redacted."""
