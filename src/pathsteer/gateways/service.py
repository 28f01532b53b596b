"""The ``gateways`` component: each configured gateway's access log read into a usage window,
its servers' weights kept in line with the paths reaching them, its abusive clients blocked in
XDP and the guard's blocks mirrored back into it. Runs on the daemon's loop; never in the way
of steering or the guard (every call out has a timeout; a gateway that fails is counted, logged
once a minute per kind of failure, and tried again).

Each gateway is an `Adapter`:

* **usage in**: its ``logs`` receivers hand lines to the parser (HAProxy httplog or JSON lines)
  and the records to a `UsageWindow` (10 s by default);
* **health out** (``health``): every tick (and at once on a path state change, a route change or
  a drain), the servers' addresses are matched to the steered destinations and their paths
  (`health.plan`); weights that differ are set in the gateway (HAProxy runtime API, APIPark's
  console, Apinto's admin API). The weight each server had when pathsteer first saw it is kept
  in ``<state_dir>/gateway-<name>.json`` so that a restart after a crash still knows it; a clean
  stop puts every weight back and removes the file;
* **abuse in** (``abuse``): clients answered the watched statuses ``threshold`` times in the
  window (or above ``max_rps``) are blocked in the guard (origin ``gateway``, ttl, reason
  ``gateway:<name> 401×120/10s``), never an allow-listed, protected, path or upstream address;
* **abuse out** (``abuse.mirror``): the guard's blocks are mirrored into the gateway (HAProxy:
  the entries of the ACL file ``acl`` over the runtime API — pathsteer owns that ACL's entries;
  Apinto: a ``visit`` strategy refusing them; APIPark has no such API: the XDP block stands
  alone). At stop the mirror is emptied (the guard's XDP program goes with the daemon too);
* **L7 latency**: each upstream's response time goes to steering
  (``SteeringService.note_upstream_times``) for ``sla.max_upstream_time``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pathsteer import logs
from pathsteer.config.gateways import GatewayConfig
from pathsteer.control.server import Command, NoArgs
from pathsteer.errors import PathsteerError
from pathsteer.gateways import abuse, health
from pathsteer.gateways.haproxy import HaproxyParser, servers_map
from pathsteer.gateways.jsonlines import JsonLinesParser
from pathsteer.gateways.receivers import make_receiver, parse_listen
from pathsteer.gateways.window import UsageWindow

log = logging.getLogger("pathsteer.gateways")

TICK_S = 0.25            # health, abuse and mirror passes (and at once on a path or route change)
SERVERS_REFRESH_S = 5.0  # the gateway's servers and weights read again
UPSTREAM_TIMES_S = 1.0   # upstream response times handed to steering
AUTO_S = 1.0             # auto destinations looked at this often
LOG_EVERY_S = 60.0       # one log line per kind of failure per gateway this often (with the count)
STOP_S = 3.0             # the restore at stop, at most
ACTIONS = 50             # last actions kept per gateway (status)
WAKE_EVENTS = ("path.state", "steer.change", "steer.drain", "steer.undrain", "guard.block", "guard.unblock",
               "guard.expire")
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class GatewaysSection:
    """The component's section: the ``gateways`` entries and the daemon's state dir."""

    gateways: tuple[GatewayConfig, ...]
    state_dir: str


def host_of(upstream: str | None) -> str | None:
    """``"10.0.0.1:80"`` → ``"10.0.0.1"``, ``"[2001:db8::1]:80"`` → ``"2001:db8::1"``; a bare
    address as it is; None for a name or anything else."""
    if not upstream:
        return None
    text = upstream
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class _Limited:
    """Failures counted by kind and logged at most once per `LOG_EVERY_S` per kind."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.counts: collections.Counter[str] = collections.Counter()
        self.last: dict[str, str] = {}
        self._logged: dict[str, tuple[float, int]] = {}

    def __call__(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        self.last[kind] = message
        now = time.monotonic()
        at, count = self._logged.get(kind, (-1e18, 0))
        if now - at >= LOG_EVERY_S:
            more = self.counts[kind] - count - 1
            log.warning("gateway.%s gateway=%s error=%r%s", kind, self.gateway, message,
                        f" (and {more} more since)" if more > 0 else "")
            self._logged[kind] = (now, self.counts[kind])


# --- where weights are set ----------------------------------------------------------------------


class _Sink:
    """A gateway's servers and their weights: ``read`` → {(backend, server): (address, weight)}."""

    label = "gateway"

    async def read(self) -> dict[tuple[str, str], tuple[str | None, int]]:
        raise NotImplementedError

    async def set(self, changes: list[tuple[tuple[str, str], int]], done=None) -> None:
        """Set the weights; ``done(key, weight)`` after each one the gateway took (a failure
        part way leaves the earlier ones done, and raises)."""
        raise NotImplementedError


class HaproxySink(_Sink):
    label = "haproxy runtime"

    def __init__(self, address: str, parser: HaproxyParser | None) -> None:
        from pathsteer.gateways.runtime import HaproxyRuntime
        self.runtime = HaproxyRuntime(address)
        self.parser = parser
        self.stat: dict[tuple[str, str], dict] = {}  # per server: HAProxy's own status and counters

    async def read(self):
        states = await self.runtime.servers_state()
        if self.parser is not None:
            self.parser.servers = servers_map(states)  # log lines name servers; records want addresses
        try:
            self.stat = {(r.get("pxname", ""), r.get("svname", "")): {
                "status": r.get("status"), "check": r.get("check_status") or None,
                "sessions": _int(r.get("scur")), "total": _int(r.get("stot")), "5xx": _int(r.get("hrsp_5xx"))}
                for r in await self.runtime.stat() if r.get("svname") not in ("FRONTEND", "BACKEND")}
        except Exception:  # noqa: BLE001 - the counters are for the eye; the weights are what matters
            self.stat = {}
        return {key: (s.addr, s.weight) for key, s in states.items()}

    async def set(self, changes, done=None):
        for (backend, server), weight in changes:
            await self.runtime.set_weight(backend, server, weight)
            if done is not None:
                done((backend, server), weight)


class ApintoSink(_Sink):
    label = "apinto admin"

    def __init__(self, admin: str, services: list[str]) -> None:
        from pathsteer.gateways.apipark import ApintoClient
        self.client = ApintoClient(admin)
        self.services = services

    async def read(self):
        out = {}
        for name in self.services:
            svc = await self.client.service(name)
            for addr, (w, _rest) in self.client._weights(svc, "GET", f"/api/service/{name}").items():
                out[(name, addr)] = (host_of(addr), 1 if w is None else w)
        return out

    async def set(self, changes, done=None):
        for service, weights in _by_backend(changes).items():
            await self.client.set_weights(service, weights)
            for addr, w in weights.items():
                if done is not None:
                    done((service, addr), w)


class ApiparkSink(_Sink):
    label = "apipark console"

    def __init__(self, admin: str, username: str, password: str, services: list[str]) -> None:
        from pathsteer.gateways.apipark import ApiparkClient
        self.client = ApiparkClient(admin, username=username, password=password)
        self.services = services
        self.unpublished: set[str] = set()  # saved, the publish refused: published again at the next read

    async def read(self):
        out = {}
        for sid in self.services:
            up = await self.client.upstream(sid)
            weights = {}
            for n in up.get("nodes") or []:
                if isinstance(n, dict) and n.get("address"):
                    addr = str(n["address"])
                    weights[addr] = int(n.get("weight") or 0)
                    out[(sid, addr)] = (host_of(addr), weights[addr])
            if sid in self.unpublished and weights:
                await self.client.set_weights(sid, weights, reason="pathsteer: publishing again")
                self.unpublished.discard(sid)
        return out

    async def set(self, changes, done=None):
        for service, weights in _by_backend(changes).items():
            try:
                await self.client.set_weights(service, weights, reason="pathsteer: path health")
            except Exception:
                self.unpublished.add(service)  # (or not saved at all: a publish of the same is harmless)
                raise
            for addr, w in weights.items():
                if done is not None:
                    done((service, addr), w)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _by_backend(changes: list[tuple[tuple[str, str], int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (backend, server), weight in changes:
        out.setdefault(backend, {})[server] = weight
    return out


# --- one gateway --------------------------------------------------------------------------------


class Adapter:
    """One configured gateway (see the module docstring)."""

    def __init__(self, cfg: GatewayConfig, service: GatewaysService) -> None:
        self.cfg = cfg
        self.service = service
        fmt = cfg.log_format
        self.haproxy_parser: HaproxyParser | None = None
        if fmt == "haproxy":
            self.haproxy_parser = HaproxyParser(utc_offset_s=cfg.utc_offset)
            self.parser: Any = self.haproxy_parser
        elif cfg.kind == "webhook":
            self.parser = None  # it reads nothing
        else:
            self.parser = JsonLinesParser(fmt, cfg.fields, cfg.units)
        watch = list(dict.fromkeys([*cfg.abuse.statuses, 401]))
        self.window = UsageWindow(window_s=cfg.abuse.window, watch=watch)
        self.rule = abuse.AbuseRule(threshold=cfg.abuse.threshold, max_rps=cfg.abuse.max_rps, ttl_s=cfg.abuse.ttl,
                                    prefix_v4=cfg.abuse.prefix_v4, prefix_v6=cfg.abuse.prefix_v6)
        self.receivers = [make_receiver(parse_listen(text), self.on_line) for text in cfg.logs]
        self.sink: _Sink | None = self._make_sink()
        self.webhook = None
        self._webhook_task: asyncio.Task | None = None
        if cfg.webhook is not None:
            from pathsteer.gateways.webhook import WebhookSender
            w = cfg.webhook
            secret = None
            if w.secret_file:
                try:
                    with open(w.secret_file, "rb") as f:
                        secret = f.read().strip()
                except OSError as exc:
                    raise PathsteerError(f"gateways.{cfg.name}.webhook.secret_file: {w.secret_file!r} cannot be "
                                         f"read ({exc.strerror})") from None
            self.webhook = WebhookSender(w.url, secret=secret, timeout_s=w.timeout, retries=w.retries,
                                         queue_max=w.queue)
            self._webhook_events = frozenset(w.events)
        self.failures = _Limited(cfg.name)
        self.actions: collections.deque[dict] = collections.deque(maxlen=ACTIONS)
        self.servers: dict[tuple[str, str], health.Server] = {}
        self.current: dict[tuple[str, str], int] = {}
        self.verdicts: dict[tuple[str, str], health.Verdict] = {}
        self.connected: bool | None = None  # None: nothing to reach, or not tried yet
        self.mirrored: set[str] | None = None     # the entries the gateway holds (None: not read yet)
        self.spared: dict[str, float] = {}
        self.blocked_at: dict[str, float] = {}  # client → when this gateway had it blocked (monotonic)
        self.lines = 0
        self.records = 0
        self.lock = threading.Lock()  # the window, last_seen and the counters (receivers' threads)
        self._rate: collections.deque[tuple[float, int]] = collections.deque(maxlen=21)
        self._read_at = -1e18
        self._times_at = -1e18
        self._routes_key: Any = None
        self._routes: dict[str, health.Route | None] = {}
        self._state_file = os.path.join(service.section.state_dir, f"gateway-{cfg.name}.json")
        self._saved_found: dict[str, int] = {}
        self.auto_seen: dict[Any, float] = {}   # auto destination prefix → last request seen (monotonic)
        self.last_seen: dict[str, float] = {}    # upstream → its last record (with auto destinations)
        self._auto_set: tuple[str, ...] | None = None
        self._auto_at = -1e18
        self._auto_skipped: set[str] = set()

    def _make_sink(self) -> _Sink | None:
        c = self.cfg
        if c.kind == "haproxy" and c.runtime:
            return HaproxySink(c.runtime, self.haproxy_parser)
        if c.kind == "apinto" and c.admin and c.services:
            return ApintoSink(c.admin, c.services)
        if c.kind == "apipark" and c.admin and c.services:
            try:
                with open(c.password_file) as f:
                    password = f.readline().strip()
            except OSError as exc:
                raise PathsteerError(f"gateways.{c.name}.password_file: {c.password_file!r} cannot be read "
                                     f"({exc.strerror})") from None
            return ApiparkSink(c.admin, c.username, password, c.services)
        return None

    @property
    def name(self) -> str:
        return self.cfg.name

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        started = []
        try:
            for r in self.receivers:
                await r.start()
                started.append(r)
        except OSError as exc:
            for r in started:
                await r.stop()
            where = getattr(r, "listen", None)
            raise PathsteerError(f"gateways.{self.name}.logs: cannot listen on {where} "
                                 f"({exc.strerror or exc})") from None
        self._saved_found = self._load_found()
        if self.webhook is not None:
            self._webhook_task = asyncio.get_running_loop().create_task(self.webhook.run(),
                                                                        name=f"webhook {self.name}")
        if self.sink is not None:
            await self.read_servers(time.monotonic())

    def on_event(self, e: Any) -> None:
        """A bus event (on the loop): to the webhook when it is one of its events."""
        if self.webhook is not None and e.name in self._webhook_events:
            self.webhook.send({"name": e.name, "at": e.at, "seq": e.seq, "gateway": self.name, **e.fields})

    async def stop(self) -> None:
        for r in self.receivers:
            with contextlib.suppress(Exception):
                await r.stop()
        if self.sink is not None and self.connected:
            back = health.restore(self.servers.values(), self.current)
            try:
                if back:
                    await self.sink.set([(s.key, w) for s, w in back],
                                        lambda key, w: self.current.__setitem__(key, w))
                    logs.event(log, "gateway.restore", gateway=self.name, servers=len(back))
                with contextlib.suppress(OSError):
                    os.unlink(self._state_file)
            except Exception as exc:  # noqa: BLE001 - the file keeps the found weights for the next start
                log.error("gateway.restore-failed gateway=%s error=%r", self.name, str(exc))
        if self.cfg.abuse.mirror and self.mirrored:
            with contextlib.suppress(Exception):
                await self._mirror_apply(set())
        if self._webhook_task is not None:
            await self.webhook.flush(1.0)  # what was queued goes out first (a second at most)
            self._webhook_task.cancel()
            with contextlib.suppress(BaseException):
                await self._webhook_task
            self._webhook_task = None

    # --- usage in (the hot path: called per line, on the loop) ------------------------------

    def on_line(self, line: str) -> None:
        """One log line (a receiver's thread, or the loop: the lock keeps the window whole)."""
        with self.lock:
            if self.haproxy_parser is not None:
                rec = self.haproxy_parser.parse(line)
            else:
                rec = self.parser.parse(line, time.time())
            self.lines += 1
            if rec is not None:
                self.records += 1
                mono = time.monotonic()
                self.window.add(rec, mono)
                if rec.upstream is not None and self.cfg.auto_destinations is not None:
                    self.last_seen[rec.upstream] = mono

    # --- the found weights, kept for a restart after a crash -------------------------------

    def _load_found(self) -> dict[str, int]:
        try:
            with open(self._state_file) as f:
                data = json.load(f)
            return {str(k): int(v) for k, v in data.get("found", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("gateway.state-unreadable gateway=%s file=%s error=%r", self.name, self._state_file, str(exc))
            return {}

    def _save_found(self) -> None:
        found = {f"{s.backend}/{s.name}": s.found_weight for s in self.servers.values()}
        tmp = self._state_file + ".tmp"
        try:
            os.makedirs(os.path.dirname(self._state_file), mode=0o700, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"gateway": self.name, "found": found}, f)
            os.replace(tmp, self._state_file)
        except OSError as exc:
            self.failures("state-write", f"{self._state_file}: {exc.strerror}")

    # --- health out -------------------------------------------------------------------------

    async def read_servers(self, mono: float) -> None:
        """The gateway's servers and weights (found weights kept; an operator's change adopted)."""
        self._read_at = mono
        try:
            seen = await self.sink.read()
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, garbled: counted, tried again
            self._lost(exc)
            return
        if self.connected is not True:
            logs.event(log, "gateway.connected", gateway=self.name, via=self.sink.label, servers=len(seen))
        self.connected = True
        backends = self.cfg.health.backends
        changed = False
        for key, (addr, weight) in seen.items():
            if backends is not None and key[0] not in backends:
                continue
            old = self.servers.get(key)
            if old is None:
                found = self._saved_found.get(f"{key[0]}/{key[1]}", weight)
                self.servers[key] = health.Server(key[0], key[1], addr, found)
                changed = True
            elif addr != old.address or (weight != self.current.get(key) and weight != old.found_weight):
                # the address moved, or someone else set a weight: that is the weight to go back to
                found = weight if weight != self.current.get(key) else old.found_weight
                self.servers[key] = health.Server(key[0], key[1], addr, found)
                if found != old.found_weight:
                    self.action("adopt", f"{key[0]}/{key[1]}: weight {weight} set outside pathsteer: kept as its own")
                changed = True
            self.current[key] = weight
        for key in [k for k in self.servers if k not in seen]:
            del self.servers[key]
            self.current.pop(key, None)
            changed = True
        if changed:
            self._save_found()
            self._routes_key = None

    def _lost(self, exc: BaseException) -> None:
        from pathsteer.gateways.apipark import GatewayRefused
        from pathsteer.gateways.runtime import RuntimeApiRefused
        kind = "refused" if isinstance(exc, (GatewayRefused, RuntimeApiRefused)) else "unreachable"
        if self.connected is not False:
            logs.event(log, f"gateway.{kind}", gateway=self.name, via=self.sink.label, error=str(exc))
        self.connected = False
        self.failures(kind, str(exc))

    def _route_of(self, address: str | None, decision: Any) -> health.Route | None:
        if decision is not self._routes_key:
            self._routes_key, self._routes = decision, {}
        if address in self._routes:
            return self._routes[address]
        from pathsteer.steering.views import longest_match
        r = longest_match(decision, address) if address is not None and decision is not None else None
        route = health.Route(r.prefix, tuple(h.path for h in r.nexthops)) if r is not None else None
        self._routes[address] = route
        return route

    async def health_pass(self, steer: Any, path_states: Mapping[str, str]) -> None:
        if self.sink is None or not self.cfg.health.enabled or not self.servers or not self.connected:
            return
        decision = getattr(steer, "decision", None)
        if decision is None:
            return  # nothing decided yet: nothing known that the gateway does not know
        routes = [r for r in {id(r): r for r in (self._route_of(s.address, decision)
                                                 for s in self.servers.values()) if r is not None}.values()]
        self.verdicts = health.plan(self.servers.values(), routes, path_states,
                                    degraded_factor=self.cfg.health.degraded_factor)
        todo = health.changes(self.verdicts, self.current)
        if not todo:
            return
        verdicts = {v.server.key: v for v in todo}

        def done(key: tuple[str, str], weight: int) -> None:
            v = verdicts[key]
            before = self.current.get(key)
            self.current[key] = weight  # at once: a failure further on must not read it as someone else's
            logs.event(log, "gateway.weight", gateway=self.name, server=f"{v.server.backend}/{v.server.name}",
                       **{"from": before}, to=weight, health=v.health.value, path=v.path, why=v.why)
            self.action("weight", f"{v.server.backend}/{v.server.name} {before} → {weight}: {v.why}")

        try:
            await self.sink.set([(v.server.key, v.weight) for v in todo], done)
        except Exception as exc:  # noqa: BLE001 - read again and retry at the next tick
            self.failures("refused", str(exc))
            self.action("error", f"setting weights: {exc}")
            self._read_at = -1e18

    # --- auto destinations ------------------------------------------------------------------

    @property
    def owner(self) -> str:
        return f"gateway:{self.name}"

    def adopt_auto(self, steer: Any, mono: float) -> None:
        """The auto destinations steering already has for this gateway (a restarted adapter):
        kept as seen now, so they are not dropped before their traffic is seen again."""
        for d in (getattr(steer, "auto", {}) or {}).get(self.owner, ()):
            self.auto_seen.setdefault(d.prefix, mono)
        if self.auto_seen:
            self._auto_set = tuple(sorted(str(n) for n in self.auto_seen))

    async def auto_pass(self, steer: Any, mono: float) -> None:
        ad = self.cfg.auto_destinations
        if ad is None or steer is None or not hasattr(steer, "set_auto_destinations"):
            return
        if mono - self._auto_at < AUTO_S:
            return
        self._auto_at = mono
        cfg = steer.file_config
        configured = [d.prefix for d in cfg.destinations]
        paths = [p for p in cfg.paths if not ad.paths or p.name in ad.paths]
        gateways = [ipaddress.ip_address(str(a)) for p in cfg.paths for a in (p.gateway, p.gateway6) if a is not None]
        with self.lock:
            upstreams = self.window.upstreams(mono)
            last_seen = dict(self.last_seen)
        for key, f in upstreams.items():
            addr = host_of(key)
            if addr is None or f.requests < ad.min_requests:
                continue
            ip = ipaddress.ip_address(addr)
            if any(ip.version == n.version and ip in n for n in configured):
                continue  # a configured destination steers it already
            net = ipaddress.ip_network(f"{ip}/{ad.prefix_len if ip.version == 4 else ad.prefix_len6}", strict=False)
            if net not in self.auto_seen:
                why = None
                if any(g.version == net.version and g in net for g in gateways):
                    why = "it would cover a path's gateway"
                elif not any((p.gateway if net.version == 4 else p.gateway6) is not None for p in paths):
                    why = f"no path has an IPv{net.version} gateway"
                elif len(self.auto_seen) >= ad.max:
                    why = f"auto_destinations.max ({ad.max}) reached"
                if why is not None:
                    if str(net) not in self._auto_skipped and len(self._auto_skipped) < 10_000:
                        self._auto_skipped.add(str(net))
                        self.action("auto-skip", f"{net}: {why}")
                        log.warning("gateway.auto-skip gateway=%s prefix=%s why=%r", self.name, net, why)
                    continue
            self.auto_seen[net] = max(self.auto_seen.get(net, -1e18), last_seen.get(key, mono))
        with self.lock:
            for key, last in list(self.last_seen.items()):
                if mono - last > ad.idle:
                    del self.last_seen[key]
        for net, last in list(self.auto_seen.items()):
            if mono - last > ad.idle:
                del self.auto_seen[net]
        want = tuple(sorted(str(n) for n in self.auto_seen))
        if want == self._auto_set or (self._auto_set is None and not want):
            return
        names = [p.name for p in paths]
        dests = [ad.destination(n, names) for n in sorted(self.auto_seen, key=lambda n: (n.version, n))]
        try:
            await steer.set_auto_destinations(self.owner, dests)
        except Exception as exc:  # noqa: BLE001 - tried again at the next pass
            self.failures("auto-destination", str(exc))
            return
        before = set(self._auto_set or ())
        self._auto_set = want
        added, removed = sorted(set(want) - before), sorted(before - set(want))
        if added:
            self.action("auto-add", f"{', '.join(added)} steered ({ad.policy})")
        if removed:
            self.action("auto-remove", f"{', '.join(removed)}: idle {ad.idle:g}s")

    # --- abuse in ---------------------------------------------------------------------------

    def abuse_pass(self, guard: Any, mono: float) -> None:
        a = self.cfg.abuse
        if not a.enabled:
            return
        # The answers that led to a block stay in the window after it: a client blocked less than a
        # window ago is judged again only on a whole window of answers after its block (a block
        # shorter than the window must not be made again at its expiry by the same answers).
        recent = {c for c, at in self.blocked_at.items() if mono - at < self.window.window_s}
        if len(self.blocked_at) > len(recent) + 1000:
            self.blocked_at = {c: self.blocked_at[c] for c in recent}
        with self.lock:
            offenders = [o for o in self.window.offenders(a.threshold, a.statuses, now=mono) if o[0] not in recent]
            rates = ({c: f.requests_per_s for c, f in self.window.clients(mono).items() if c not in recent}
                     if a.max_rps is not None else {})
        if not offenders and not any(r > a.max_rps for r in rates.values()):
            return
        if guard is None:
            self.failures("no-guard", "abusive clients seen, but no guard runs to block them (config: guard)")
            return
        blocked = [*guard.blocks, *guard.config.deny]
        made, spared = abuse.blocks(self.name, offenders, rates, self.rule, allow=guard.config.allow,
                                    protected=self.service.protected(self), blocked=blocked)
        from pathsteer.guard.blocks import Origin
        for b in made:
            try:
                guard.block(b.cidr, origin=Origin.GATEWAY, ttl=self.rule.ttl_s, reason=b.reason)
            except PathsteerError as exc:
                self.failures("block-failed", f"{b.cidr}: {exc}")
                continue
            self.blocked_at[b.client] = mono
            self.action("block", f"{b.cidr} for {self.rule.ttl_s:g}s: {b.reason}")
        for s in spared:
            if mono - self.spared.get(s.client, -1e18) >= LOG_EVERY_S:
                self.spared[s.client] = mono
                log.warning("gateway.spared gateway=%s client=%s why=%r", self.name, s.client, s.why)
                self.action("spared", f"{s.client}: {s.why}")
        if len(self.spared) > 10_000:
            self.spared.clear()

    # --- abuse out --------------------------------------------------------------------------

    def _mirror_target(self) -> bool:
        c = self.cfg
        return c.abuse.mirror and ((c.kind == "haproxy" and c.acl is not None and c.runtime is not None)
                                   or (c.kind == "apinto" and c.admin is not None))

    async def mirror_pass(self, guard: Any) -> None:
        if not self._mirror_target() or guard is None:
            return
        want = {_entry(net) for net in [*guard.blocks, *guard.config.deny]}
        if self.mirrored is not None and want == self.mirrored:
            return
        try:
            await self._mirror_apply(want)
        except Exception as exc:  # noqa: BLE001 - read again at the next pass
            self.failures("mirror-failed", str(exc))
            self.mirrored = None

    async def _mirror_apply(self, want: set[str]) -> None:
        c = self.cfg
        if c.kind == "haproxy":
            rt = self.sink.runtime
            if self.mirrored is None:
                self.mirrored = {_entry(ipaddress.ip_network(v, strict=False)) for v in await rt.acl_entries(c.acl)
                                 if _is_net(v)}
            for v in sorted(want - self.mirrored):
                await rt.add_acl(c.acl, v)
                self.mirrored.add(v)
                self.action("acl-add", f"{c.acl}: {v}")
            for v in sorted(self.mirrored - want):
                await rt.del_acl(c.acl, v)
                self.mirrored.discard(v)
                self.action("acl-del", f"{c.acl}: {v}")
        else:
            from pathsteer.gateways.apipark import ApintoClient
            client = self.sink.client if isinstance(self.sink, ApintoSink) else ApintoClient(c.admin)
            await client.set_blocklist(f"pathsteer-{c.name}", sorted(want))
            self.action("visit", f"strategy pathsteer-{c.name}: {len(want)} refused")
            self.mirrored = set(want)

    # --- L7 latency -------------------------------------------------------------------------

    def upstream_times(self, mono: float) -> dict[str, tuple[float | None, float | None, int]]:
        out = {}
        with self.lock:
            upstreams = self.window.upstreams(mono)
        for key, f in upstreams.items():
            addr = host_of(key)
            if addr is not None and f.samples:
                out[addr] = (f.upstream_p50_s, f.upstream_p95_s, f.samples)
        return out

    # --- status -----------------------------------------------------------------------------

    def action(self, what: str, detail: str) -> None:
        self.actions.append({"at": time.time(), "action": what, "detail": detail})

    def tick_rate(self, mono: float) -> None:
        self._rate.append((mono, self.lines))

    def lines_per_s(self) -> float:
        if len(self._rate) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rate[0], self._rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def view(self, steer: Any) -> dict:
        mono = time.monotonic()
        with self.lock:
            malformed = dict(getattr(self.parser, "malformed", {}))
        decision = getattr(steer, "decision", None) if steer is not None else None
        ups = []
        with self.lock:
            upstreams = self.window.upstreams(mono)
        for key, f in sorted(upstreams.items()):
            addr = host_of(key)
            route = self._route_of(addr, decision) if decision is not None and addr else None
            ups.append({"upstream": key, "requests_per_s": round(f.requests_per_s, 2),
                        "bytes_out_per_s": round(f.bytes_out_per_s), "statuses": f.statuses,
                        "upstream_p50_ms": _ms(f.upstream_p50_s), "upstream_p95_ms": _ms(f.upstream_p95_s),
                        "prefix": str(route.prefix) if route else None, "paths": list(route.paths) if route else []})
        servers = []
        for key in sorted(self.servers):
            s, v = self.servers[key], self.verdicts.get(key)
            servers.append({"backend": s.backend, "server": s.name, "address": s.address,
                            "found_weight": s.found_weight, "weight": self.current.get(key),
                            "health": v.health.value if v else "unknown", "path": v.path if v else None,
                            "why": v.why if v else "not judged yet",
                            "gateway_status": getattr(self.sink, "stat", {}).get(key)})
        return {
            "name": self.name, "kind": self.cfg.kind,
            "connected": self.connected, "via": self.sink.label if self.sink else None,
            "logs": [{"listen": str(r.listen) if hasattr(r, "listen") else f"file:{r.path}",
                      "lines": r.stats.lines, "rejected": r.stats.rejected, "last_error": r.stats.last_error}
                     for r in self.receivers],
            "lines": self.lines, "records": self.records, "lines_per_s": round(self.lines_per_s(), 1),
            "parse_errors": sum(malformed.values()), "malformed": malformed,
            "upstreams": ups, "servers": servers,
            "mirrored": len(self.mirrored) if self.mirrored is not None else None,
            "webhook": self.webhook.stats if self.webhook is not None else None,
            "auto_destinations": [{"prefix": str(n), "idle_s": round(mono - at, 1)}
                                  for n, at in sorted(self.auto_seen.items(), key=lambda kv: (kv[0].version, kv[0]))],
            "errors": dict(self.failures.counts), "last_errors": dict(self.failures.last),
            "actions": list(self.actions)[-20:],
        }


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 3)


def _is_net(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False


def _entry(net: Any) -> str:
    """An ACL entry: an IPv4 /32 or IPv6 /128 as its address, anything else as the CIDR."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


# --- the component ------------------------------------------------------------------------------


class GatewaysService:
    name = "gateways"

    def __init__(self, section: GatewaysSection, ctx: Any) -> None:
        self.section = section
        self.ctx = ctx
        self.adapters: dict[str, Adapter] = {}
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = False

    # --- lifecycle --------------------------------------------------------------------------

    def check(self, section: GatewaysSection) -> GatewaysSection:
        for g in section.gateways:  # the files an adapter reads at its start: refused here if unreadable
            files = []
            if g.kind == "apipark" and g.password_file and g.admin:
                files.append(("password_file", g.password_file))
            if g.webhook is not None and g.webhook.secret_file:
                files.append(("webhook.secret_file", g.webhook.secret_file))
            for field, path in files:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as exc:
                    raise PathsteerError(f"gateways.{g.name}.{field}: {path!r} cannot be read "
                                         f"({exc.strerror})") from None
        return section

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            for g in self.section.gateways:
                a = Adapter(g, self)
                await a.start()
                a.adopt_auto(self.ctx.component("steer"), time.monotonic())
                self.adapters[g.name] = a
        except BaseException:
            for a in self.adapters.values():
                await a.stop()
            self.adapters = {}
            raise
        self.ctx.bus.subscribe(self._on_event)
        self._subscribed = True
        self._task = self._loop.create_task(self._run(), name="gateways")
        logs.event(log, "gateways.start", gateways=",".join(self.adapters) or "none")

    async def commit(self, section: GatewaysSection) -> None:
        old, self.section = self.section, section
        keep = {g.name: g for g in section.gateways}
        steer = self.ctx.component("steer")
        for name in list(self.adapters):
            if keep.get(name) != self.adapters[name].cfg or section.state_dir != old.state_dir:
                a = self.adapters.pop(name)
                await a.stop()
                gone = keep.get(name) is None or keep[name].auto_destinations is None
                if gone and steer is not None and hasattr(steer, "set_auto_destinations"):
                    with contextlib.suppress(Exception):
                        await steer.set_auto_destinations(a.owner, [])
        for g in section.gateways:
            if g.name not in self.adapters:
                a = Adapter(g, self)
                await a.start()
                a.adopt_auto(steer, time.monotonic())
                self.adapters[g.name] = a
        self._wake.set()

    async def stop(self) -> None:
        if self._subscribed:
            self.ctx.bus.unsubscribe(self._on_event)
            self._subscribed = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        for a in self.adapters.values():
            try:
                await asyncio.wait_for(a.stop(), STOP_S)
            except Exception as exc:  # noqa: BLE001 - the others all the same
                log.error("gateway.stop-failed gateway=%s error=%r", a.name, str(exc))
        logs.event(log, "gateways.stop", gateways=",".join(self.adapters) or "none")

    def _on_event(self, e: Any) -> None:
        """The bus callback (any thread): a path, route, drain or block change wakes the loop;
        webhooks get theirs (on the loop)."""
        if self._loop is None or self._wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed
            if e.name in WAKE_EVENTS:
                self._loop.call_soon_threadsafe(self._wake.set)
            if self._webhooks:
                self._loop.call_soon_threadsafe(self._to_webhooks, e)

    def _to_webhooks(self, e: Any) -> None:
        for a in list(self.adapters.values()):
            a.on_event(e)

    @property
    def _webhooks(self) -> bool:
        return any(a.webhook is not None for a in self.adapters.values())

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("gateways.tick-failed")

    async def tick(self) -> None:
        mono = time.monotonic()
        steer = self.ctx.component("steer")
        guard = self.ctx.component("guard")
        states = self.path_states(steer)
        for a in list(self.adapters.values()):
            a.tick_rate(mono)
            if a.sink is not None and mono - a._read_at >= (SERVERS_REFRESH_S if a.connected else 1.0):
                await a.read_servers(mono)
            if steer is not None:
                await a.health_pass(steer, states)
                await a.auto_pass(steer, mono)
            a.abuse_pass(guard, mono)
            await a.mirror_pass(guard)
            if steer is not None and mono - a._times_at >= UPSTREAM_TIMES_S:
                a._times_at = mono
                self._note_times(steer, a, mono)

    @staticmethod
    def path_states(steer: Any) -> dict[str, str]:
        if steer is None:
            return {}
        out = {}
        snap = getattr(steer, "telemetry", None)
        if snap is not None:
            out = {p.name: p.state.value for p in snap.paths}
        for name in getattr(steer, "drains", {}) or {}:
            out[name] = "drained"
        return out

    def _note_times(self, steer: Any, a: Adapter, mono: float) -> None:
        note = getattr(steer, "note_upstream_times", None)
        if note is None:
            return
        figures = a.upstream_times(mono)
        if not figures:
            return
        try:
            from pathsteer.policy.upstream import UpstreamTime
            note({addr: UpstreamTime(p50_s=p50, p95_s=p95, requests=n, window_s=a.window.window_s)
                  for addr, (p50, p95, n) in figures.items() if p95 is not None})
        except Exception as exc:  # noqa: BLE001 - a missed second of figures
            a.failures("upstream-times", str(exc))

    def protected(self, adapter: Adapter) -> list:
        """Never blocked from a gateway's logs: loopback, the configured ``protected``, the paths'
        gateways and probe targets, the gateway's servers and upstreams."""
        out: list = [*_LOOPBACK, *adapter.cfg.protected]
        cfg = self.ctx.config
        for p in cfg.paths or []:
            for addr in (p.gateway, getattr(p, "gateway6", None), *p.probe.targets):
                if addr is not None:
                    out.append(ipaddress.ip_network(str(addr)))
        for a in self.adapters.values():
            for s in a.servers.values():
                if s.address:
                    out.append(ipaddress.ip_network(s.address))
        return out

    # --- commands ---------------------------------------------------------------------------

    def commands(self) -> list[Command]:
        return [Command("gateways.status", NoArgs, self.cmd_status,
                        "each gateway: connection, records read, parse errors, upstreams and their paths, "
                        "servers and weights, last actions")]

    def cmd_status(self, _args: NoArgs) -> dict:
        steer = self.ctx.component("steer")
        return {"gateways": [a.view(steer) for a in self.adapters.values()]}
