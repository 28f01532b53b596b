"""``gateways``: the API gateways pathsteer works with, one entry per gateway (issue 9).

    gateways:
      - name: edge
        kind: haproxy                      # haproxy | apipark | apinto | jsonlines
        logs: ["unix:/run/pathsteer/edge-log.sock"]   # HAProxy: "log /run/pathsteer/edge-log.sock local0"
        runtime: /run/haproxy/admin.sock   # HAProxy's stats socket (level admin)
        acl: /etc/haproxy/pathsteer-blocked.acl       # HAProxy: the ACL file pathsteer owns
        abuse: {threshold: 100, ttl: 10m}  # 401/403/429 answers in 10 s -> an XDP block

What each entry does (see README, Gateways): its ``logs`` are read into a 10 s usage window
(per upstream, per client); its backends' weights follow the health of the paths reaching them
(``health``); its clients answered the watched statuses too often are blocked in XDP
(``abuse``) and the guard's blocks are mirrored into the gateway (``abuse.mirror``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from pathsteer.config.fields import AbsolutePath, Cidr, Duration, Fraction
from pathsteer.config.sections import Section
from pathsteer.config.steering import DestinationTemplate

KINDS = ("haproxy", "apipark", "apinto", "jsonlines", "webhook")
WEBHOOK_EVENTS = ("path.state", "steer.change", "steer.drain", "steer.undrain", "gateway.weight",
                  "guard.block", "guard.unblock", "guard.expire")
FORMATS = ("haproxy", "haproxy-json", "apinto", "nginx", "envoy")
DEFAULT_FORMAT = {"haproxy": "haproxy", "apipark": "apinto", "apinto": "apinto", "jsonlines": None, "webhook": None}
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


def _listen(value: str) -> str:
    from pathsteer.gateways.receivers import parse_listen
    try:
        parse_listen(value, "x")
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix(f"x: {value!r}: ").removeprefix("x: ")) from None
    return value


def _status(value: int) -> int:
    if not 100 <= value <= 599:
        raise ValueError("is not an HTTP status (100-599)")
    return value


def _event(value: str) -> str:
    if value not in WEBHOOK_EVENTS:
        raise ValueError(f"is not an event sent out (have: {', '.join(WEBHOOK_EVENTS)})")
    return value


Listen = Annotated[str, AfterValidator(_listen)]
Status = Annotated[int, AfterValidator(_status)]


class GatewayHealthConfig(Section):
    """``gateways[].health``: path health out (backend weights follow their paths)."""

    enabled: bool = True
    degraded_factor: Fraction = 0.5   # a degraded path's servers keep this share of their weight
    backends: list[str] | None = None  # HAProxy backends / APIPark services / Apinto services (None: all)

    @field_validator("degraded_factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be above 0 (a degraded path is not a dead one: drain is for down)")
        return value


class GatewayAbuseConfig(Section):
    """``gateways[].abuse``: abuse signals in (clients blocked in XDP) and out (mirrored)."""

    enabled: bool = True
    statuses: list[Status] = [401, 403, 429]
    threshold: int = Field(default=100, ge=1)   # watched answers to one client in the window
    window: Duration = 10.0
    max_rps: float | None = None                # also block a client above this request rate
    ttl: Duration = 600.0
    prefix_v4: int = Field(default=32, ge=8, le=32)
    prefix_v6: int = Field(default=64, ge=16, le=128)
    mirror: bool = True                          # the guard's blocks into the gateway (ACL, visit strategy)

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("must list at least one status")
        return list(dict.fromkeys(value))

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if not 1.0 <= value <= 600.0:
            raise ValueError("must be between 1s and 10m")
        return value

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float) -> float:
        if not 1.0 <= value <= 30 * 86400:
            raise ValueError("must be between 1s and 30d")
        return value

    @field_validator("max_rps")
    @classmethod
    def _rps(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError("must be above 0")
        return value


class WebhookConfig(Section):
    """``gateways[].webhook``: path health and route changes POSTed as signed JSON (any gateway,
    chat bot or script can follow them; see pathsteer.gateways.webhook for the wire format)."""

    url: str
    secret_file: AbsolutePath | None = None   # HMAC-SHA256 key: X-Pathsteer-Signature: sha256=...
    events: list[Annotated[str, AfterValidator(_event)]] = list(WEBHOOK_EVENTS)
    timeout: Duration = 2.0
    retries: int = Field(default=5, ge=0, le=100)
    queue: int = Field(default=1000, ge=1, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from pathsteer.gateways.webhook import WebhookSender
        try:
            WebhookSender(value)
        except ValueError as exc:
            raise ValueError(str(exc).replace(f"webhook url {value!r} ", "")) from None
        return value



class AutoDestinationsConfig(DestinationTemplate):
    """``gateways[].auto_destinations``: an upstream whose address is in no configured
    destination is steered once it carries traffic (``min_requests`` in the usage window), as
    its ``/prefix_len`` (``/prefix_len6``) under this template, and left to the kernel's routing
    again after ``idle`` without a request. ``paths`` default: every path."""

    prefix_len: int = Field(default=32, ge=8, le=32)
    prefix_len6: int = Field(default=128, ge=16, le=128)
    idle: Duration = 600.0
    min_requests: int = Field(default=1, ge=1)
    max: int = Field(default=256, ge=1, le=100_000)
    paths: list[str] | None = None

    @field_validator("idle")
    @classmethod
    def _idle(cls, value: float) -> float:
        if not 10.0 <= value <= 7 * 86400:
            raise ValueError("must be between 10s and 7d")
        return value



class GatewayConfig(Section):
    """One gateway. ``logs``: where its access log arrives (``udp:HOST:PORT``,
    ``unix:/path`` — syslog datagrams —, ``file:/path`` — tailed —, ``http:HOST:PORT`` —
    Apinto's ``http_output`` posts and Loki pushes); ``format``: how to read it (default by
    kind: haproxy → ``haproxy``, apipark/apinto → ``apinto``; jsonlines needs ``format`` or
    ``fields``); ``runtime``/``acl`` (HAProxy), ``admin`` (APIPark/Apinto) say where to act."""

    name: str
    kind: Literal["haproxy", "apipark", "apinto", "jsonlines", "webhook"]
    logs: list[Listen] = []
    format: Literal["haproxy", "haproxy-json", "apinto", "nginx", "envoy"] | None = None
    fields: dict[str, str | list[str] | None] | None = None   # jsonlines: record field -> JSON key
    units: dict[str, str] | None = None                      # jsonlines: time field -> s|ms|us|ns
    utc_offset: Duration | None = None                       # HAProxy's clock zone (None: this host's)
    runtime: str | None = None        # HAProxy: stats socket, "/path", "unix:/path" or "HOST:PORT"
    acl: AbsolutePath | None = None   # HAProxy: the ACL file (loaded with -f) pathsteer owns
    admin: str | None = None          # APIPark: its console URL; Apinto: its admin API URL
    username: str | None = None       # APIPark: the console user
    password_file: AbsolutePath | None = None  # APIPark: a file holding the password
    services: list[str] = []          # APIPark: service ids; Apinto: service names (health out, visit strategy)
    protected: list[Cidr] = []        # never blocked from this gateway's logs (besides paths, targets, upstreams)
    health: GatewayHealthConfig = GatewayHealthConfig()
    abuse: GatewayAbuseConfig = GatewayAbuseConfig()
    webhook: WebhookConfig | None = None
    auto_destinations: AutoDestinationsConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-32 of a-z, 0-9, '_' and '-', starting with a letter")
        return value

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str | None) -> str | None:
        if value is not None:
            from pathsteer.gateways.runtime import HaproxyRuntime
            try:
                HaproxyRuntime(value)
            except ValueError as exc:
                text = str(exc)
                raise ValueError(text[text.index(" is not ") + 1:] if " is not " in text
                                 else text.rpartition(": ")[2]) from None
        return value

    @field_validator("admin")
    @classmethod
    def _admin(cls, value: str | None) -> str | None:
        if value is not None and not _URL.fullmatch(value):
            raise ValueError("is not an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check(self) -> GatewayConfig:
        k = self.kind
        if k == "webhook":
            if self.webhook is None:
                raise ValueError(".webhook: a webhook gateway needs 'webhook' (url, secret_file, events)")
            if self.logs or self.runtime or self.acl or self.admin or self.services:
                raise ValueError(".logs: a webhook gateway only sends (logs/runtime/acl/admin/services are for the "
                                 "other kinds; any kind may have a 'webhook' too)")
            return self
        if k == "haproxy":
            if self.format not in (None, "haproxy", "haproxy-json"):
                raise ValueError(f".format: {self.format!r}: a haproxy gateway logs in the 'haproxy' (option httplog) "
                                 "or 'haproxy-json' (log-format) format")
            if self.admin or self.username or self.password_file or self.services:
                raise ValueError(".admin: admin/username/password_file/services are for apipark and apinto gateways")
            if self.acl and not self.runtime:
                raise ValueError(".acl: needs 'runtime' (the ACL is updated over HAProxy's runtime API)")
        else:
            if self.runtime or self.acl:
                raise ValueError(f".runtime: runtime/acl are for haproxy gateways, not {k}")
            if self.format == "haproxy":
                raise ValueError(f".format: 'haproxy' is HAProxy's log format; a {k} gateway logs JSON lines")
        if k == "jsonlines" and self.format is None and not self.fields:
            raise ValueError(".format: a jsonlines gateway needs 'format' (apinto, nginx, envoy) or 'fields'")
        if k == "apipark":
            if self.admin and not (self.username and self.password_file):
                raise ValueError(".admin: an apipark console needs 'username' and 'password_file'")
        if k in ("apipark", "apinto") and self.services and not self.admin:
            raise ValueError(".services: needs 'admin' (the address pathsteer acts through)")
        if self.format is not None or self.fields:
            from pathsteer.gateways.jsonlines import JsonLinesParser
            if (self.format or "") != "haproxy":
                try:
                    JsonLinesParser(self.format, self.fields, self.units)
                except ValueError as exc:
                    raise ValueError("." + str(exc).removeprefix("gateway ")) from None
        return self

    @property
    def log_format(self) -> str | None:
        """The parser: ``haproxy``, a JSON preset, or None (``fields`` alone)."""
        return self.format or DEFAULT_FORMAT[self.kind]

    @property
    def acts(self) -> bool:
        """Whether pathsteer can act on the gateway (weights, blocks), not only read it."""
        return bool(self.runtime or self.admin)


def check_gateways(gateways: list[GatewayConfig] | None, paths: list | None = None) -> None:
    """Cross-entry checks: unique names, no two receivers on one address; auto destinations
    need steering and name its paths."""
    if not gateways:
        return
    names_of_paths = [p.name for p in paths or []]
    for i, g in enumerate(gateways):
        ad = g.auto_destinations
        if ad is None:
            continue
        if not paths:
            raise ValueError(f"gateways[{i}].auto_destinations: needs steering (paths, destinations)")
        for j, name in enumerate(ad.paths or []):
            if name not in names_of_paths:
                raise ValueError(f"gateways[{i}].auto_destinations.paths[{j}]: unknown path {name!r} "
                                 f"(paths: {', '.join(names_of_paths)})")
    names: set[str] = set()
    listens: dict[str, str] = {}
    for i, g in enumerate(gateways):
        if g.name in names:
            raise ValueError(f"gateways[{i}].name: {g.name!r} is used twice")
        names.add(g.name)
        for text in g.logs:
            if text in listens:
                raise ValueError(f"gateways[{i}].logs: {text!r} is also {listens[text]}'s")
            listens[text] = g.name
