"""The ``bgp`` component: ExaBGP run and supervised as a child, what steering measured
announced to the peers, destinations learned from them (issue 10).

* **ExaBGP** (`pathsteer.bgp.exabgp`) runs with a configuration written into a private
  directory, its one API process (`pathsteer.bgp.relay`) joined to this component's Unix
  socket. It dies with the daemon (``PR_SET_PDEATHSIG``): a kill -9 of pathsteer drops the
  sessions and the peers withdraw its routes. When it exits it is logged (``bgp.exabgp``) and
  started again after ``restart_min`` doubling up to ``restart_max``; steering never waits on
  it and never changes because of it.
* **Announce** (`pathsteer.bgp.announce`): every ``TICK_S`` the destinations announced are
  looked at in steering's last decision; the damped changes are sent to ExaBGP, one command per
  group of prefixes with equal attributes, per peer of the prefix's family, with the next hop
  given (``self``: the address this router reaches the peer from). A new ExaBGP (or a new relay
  connection) gets everything again.
* **Learn** (`pathsteer.bgp.learn`): updates from learning peers go through the filter; the
  learned set is handed to steering (``SteeringService.set_auto_destinations("bgp", ...)``)
  when it has been quiet for ``LEARN_QUIET_S`` (at most ``LEARN_MAX_DELAY_S`` after its first
  change); a peer's first table (after its session came up) at its End-of-RIB, or once quiet
  for ``LEARN_SYNC_QUIET_S``: 100k prefixes arrive as one steering reload, not 100k.
* **Stop**: everything is withdrawn (and ExaBGP given ``STOP_S`` to send it), then ExaBGP is
  stopped (it closes the sessions with a NOTIFICATION).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from pathsteer import logs
from pathsteer.bgp import exabgp, messages
from pathsteer.bgp.announce import Action, AnnounceSettings, Announcer, group, wanted
from pathsteer.bgp.learn import Learner
from pathsteer.config.bgp import BgpConfig, announced_destinations, require_exabgp
from pathsteer.control.server import Args, Command, NoArgs
from pathsteer.errors import NotFoundError, PathsteerError, UsageError
from pathsteer.waker import beat

log = logging.getLogger("pathsteer.bgp")

TICK_S = 0.1               # the announce pass
LEARN_QUIET_S = 0.3        # learned changes handed to steering once quiet this long ...
LEARN_MAX_DELAY_S = 2.0    # ... or this long after the first one
LEARN_SYNC_QUIET_S = 1.0   # a peer's first table: handed over at its End-of-RIB, or once quiet this long
STOP_S = 2.0               # withdrawals acknowledged by ExaBGP at stop, at most
CONNECT_S = 10.0           # ExaBGP's API process connects within this, or ExaBGP is restarted
CHUNK = 2000               # prefixes per ExaBGP command
EVENT_PREFIXES = 8         # prefixes named in one bgp.announce / bgp.withdraw event
HISTORY = 200              # recent announce/withdraw actions kept per prefix view
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


def local_address_for(peer: str) -> str | None:
    """The address this host reaches ``peer`` from (the kernel's choice: a connected UDP socket
    sends nothing), or None when there is no route."""
    import socket
    family = socket.AF_INET6 if ipaddress.ip_address(peer).version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((peer, 179))
            return s.getsockname()[0]
    except OSError:
        return None


def _runtime_base() -> str | None:
    return next((d for d in ("/run/pathsteer", "/run") if os.path.isdir(d) and os.access(d, os.W_OK)), None)


def runtime_dir_for(control_socket: str) -> str | None:
    """The bgp component's private directory for the daemon with this control socket (None:
    no writable runtime directory; a temporary one is used then)."""
    base = _runtime_base()
    if base is None:
        return None
    return os.path.join(base, "bgp-" + hashlib.sha1(control_socket.encode()).hexdigest()[:12])


class PrefixArgs(Args):
    prefix: str = Field(description="a destination prefix or an address in one")


@dataclass
class Session:
    name: str
    address: str
    peer_as: int
    state: str = "idle"
    since: float = 0.0  # wall clock
    reason: str = ""
    ups: int = 0
    downs: int = 0
    updates: int = 0
    received: set | None = None

    def view(self, announced: int, learned: int) -> dict:
        return {"name": self.name, "address": self.address, "as": self.peer_as, "state": self.state,
                "since": self.since or None, "reason": self.reason or None, "ups": self.ups, "downs": self.downs,
                "updates": self.updates, "received": len(self.received or ()),
                "announced": announced, "learned": learned}


class BgpService:
    name = "bgp"

    def __init__(self, cfg: BgpConfig, ctx: Any) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self._reset_state()
        self._tasks: list[asyncio.Task] = []
        self._dir: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._connected = asyncio.Event()
        self._restarts = 0
        self._exabgp_since: float | None = None
        self._exabgp_exits: deque[dict] = deque(maxlen=20)
        self._sent = 0
        self._acked = 0
        self._errors = 0
        self._garbage = 0
        self._garbage_logged = -1e18
        self._ack_waiters: deque[tuple[int, asyncio.Future]] = deque()
        self._learn_first: float | None = None
        self._sync: set[str] = set()  # learning peers up whose End-of-RIB has not come yet
        self._learn_last = 0.0
        self._learned_applied: tuple = ()
        self._learn_error: str | None = None
        self._last_action: dict = {}
        self._local: dict[str, str | None] = {}
        self._route_index: tuple = (None, [])
        self._stale: dict[str, set] = {}  # per peer: learned before an ExaBGP restart, not sent again yet

    def _reset_state(self) -> None:
        cfg = self.cfg
        a = cfg.announce
        self.settings = AnnounceSettings(cfg.local_as, a.med_per, a.med_max, a.loss_med, a.min_interval,
                                         a.min_change, tuple(a.community_list), tuple(a.large_community_list))
        self.announcer = Announcer(self.settings)
        self.learner = Learner(tuple(cfg.learn.filters), cfg.learn.community_set, cfg.learn.max)
        self.sessions = {str(p.address): Session(p.name or str(p.address), str(p.address), p.peer_as,
                                                 received=set()) for p in cfg.peers}
        self._learning = {str(p.address) for p in cfg.learning_peers}

    # --- the contract ---------------------------------------------------------------------------

    def check(self, cfg: BgpConfig) -> BgpConfig:
        try:
            require_exabgp(cfg)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self._passwords(cfg)
        return cfg

    @staticmethod
    def _passwords(cfg: BgpConfig) -> dict[str, str]:
        out = {}
        for i, p in enumerate(cfg.peers):
            if p.password is not None:
                key = p.password
            elif p.password_file is not None:
                try:
                    with open(p.password_file, encoding="utf-8") as f:
                        key = f.read().strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise UsageError(f"bgp.peers[{i}].password_file: {p.password_file!r} cannot be read "
                                     f"({getattr(exc, 'strerror', None) or exc})") from None
                if not 1 <= len(key) <= 80:
                    raise UsageError(f"bgp.peers[{i}].password_file: {p.password_file!r} holds a key of "
                                     f"{len(key)} characters (1..80)")
            else:
                continue
            if '"' in key and "'" in key:
                raise UsageError(f"bgp.peers[{i}].password: holds both quote characters (ExaBGP cannot take it)")
            out[str(p.address)] = key
        return out

    async def start(self) -> None:
        self.check(self.cfg)
        self._dir = self._runtime_dir()
        self._server = await asyncio.start_unix_server(self._on_relay, path=os.path.join(self._dir, "api.sock"),
                                                       limit=1 << 24)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(), name="bgp.exabgp"),
                       loop.create_task(self._announce_loop(), name="bgp.announce"),
                       loop.create_task(self._learn_loop(), name="bgp.learn")]
        logs.event(log, "bgp.start", local_as=self.cfg.local_as, router_id=str(self.cfg.router_id),
                   peers=",".join(s.address for s in self.sessions.values()))

    def _runtime_dir(self) -> str:
        """A private directory (0700) for ExaBGP's config (MD5 keys: 0600) and the API socket, in
        the daemon's runtime directory (systemd's RuntimeDirectory: /run is read-only under
        ProtectSystem=strict). Named after the daemon's control socket, so a restart after a
        kill -9 takes the same one back instead of leaving one more behind."""
        config = getattr(self.ctx, "config", None)
        socket_path = getattr(getattr(config, "control", None), "socket", None)
        path = runtime_dir_for(socket_path) if isinstance(socket_path, str) else None
        if path is None:
            return tempfile.mkdtemp(prefix="ps-bgp-", dir=_runtime_base())
        shutil.rmtree(path, ignore_errors=True)  # a killed run's: its socket is ours (checked before)
        os.mkdir(path, 0o700)
        return path

    async def commit(self, cfg: BgpConfig) -> None:
        if cfg == self.cfg:
            return
        # A changed section: everything announced is withdrawn by the new ExaBGP's fresh
        # sessions anyway; start again with the new configuration.
        await self._shutdown("reload")
        self.cfg = cfg
        self._reset_state()
        self._stopping = False
        await self.start()

    async def stop(self) -> None:
        await self._shutdown("stop")
        steer = self.ctx.component("steer") if self.ctx is not None else None
        if self._learned_applied and steer is not None and hasattr(steer, "set_auto_destinations"):
            with contextlib.suppress(Exception):
                await steer.set_auto_destinations("bgp", [])
        self._learned_applied = ()

    async def _shutdown(self, why: str) -> None:
        self._stopping = True
        if self._writer is not None and self.announcer.out:
            actions = self.announcer.withdraw_all(f"pathsteer {why}", time.monotonic())
            with contextlib.suppress(Exception):
                fut = self._send_actions(actions)
                if fut is not None:
                    await asyncio.wait_for(fut, STOP_S)
            self._event_actions(actions)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
        await self._stop_exabgp()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        logs.event(log, "bgp.stop", reason=why)

    def commands(self) -> list[Command]:
        return [Command("bgp.status", NoArgs, self.cmd_status,
                        "each BGP session (state, prefixes received, announced, learned), ExaBGP's process, "
                        "and what is announced"),
                Command("bgp.prefix", PrefixArgs, self.cmd_prefix,
                        "one prefix: what was announced with which MED and communities and why, or why not")]

    # --- ExaBGP ---------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff = self.cfg.exabgp.restart_min
        while not self._stopping:
            started = time.monotonic()
            code, why = await self._run_exabgp()
            if self._stopping:
                return
            ran = time.monotonic() - started
            if ran > 60:
                backoff = self.cfg.exabgp.restart_min
            self._restarts += 1
            self._exabgp_exits.append({"at": time.time(), "code": code, "why": why, "ran_s": round(ran, 1)})
            log.error("bgp.exabgp exited code=%s why=%s ran_s=%.1f restart_in_s=%.1f", code, why, ran, backoff)
            logs.event(log, "bgp.exabgp", state="exited", code=code, why=why, restart_in_s=round(backoff, 1))
            for s in self.sessions.values():
                if s.state != "down":
                    # Its learned prefixes stay steered (an ExaBGP crash never touches
                    # steering): kept as stale until the peer's End-of-RIB after the restart.
                    self._stale[s.address] = set(self.learner.by_peer.get(s.address, ()))
                    self._session(s.address, "down", "ExaBGP exited", keep_learned=True)
            self.announcer.forget()
            await asyncio.sleep(backoff)
            backoff = min(self.cfg.exabgp.restart_max, backoff * 2)

    async def _run_exabgp(self) -> tuple[int | None, str]:
        cfg = self.cfg
        for p in cfg.peers:
            addr = str(p.address)
            local = cfg.peer_local_address(p)
            self._local[addr] = str(local) if local is not None else local_address_for(addr)
        conf = os.path.join(self._dir, "exabgp.conf")
        relay = [sys.executable, "-m", "pathsteer.bgp.relay", os.path.join(self._dir, "api.sock")]
        with open(conf, "w", encoding="utf-8") as f:
            f.write(exabgp.render(cfg, relay, self._local, self._passwords(cfg)))
        os.chmod(conf, 0o600)
        try:
            argv = exabgp.command(cfg.exabgp.command, conf)
        except FileNotFoundError:
            return None, "exabgp not found"
        env = exabgp.environment(any(p.passive for p in cfg.peers))
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._connected.clear()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, preexec_fn=_die_with_parent, cwd=self._dir)
        except OSError as exc:
            return None, f"cannot start {argv[0]}: {exc.strerror}"
        self._exabgp_since = time.time()
        logs.event(log, "bgp.exabgp", state="started", pid=self._proc.pid)
        tail: deque[str] = deque(maxlen=5)
        reader = asyncio.get_running_loop().create_task(self._read_output(self._proc, tail))
        try:
            proc = self._proc
            connected = asyncio.ensure_future(self._connected.wait())
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait([connected, exited], timeout=CONNECT_S, return_when=asyncio.FIRST_COMPLETED)
            connected.cancel()
            if not self._connected.is_set() and not exited.done():
                await self._stop_exabgp()
                exited.cancel()
                return proc.returncode, "its API process did not connect: " + (" | ".join(tail) or "no output")
            code = await exited
            with contextlib.suppress(asyncio.TimeoutError, BaseException):
                await asyncio.wait_for(asyncio.shield(reader), 1.0)
            return code, " | ".join(tail) or "no output"
        finally:
            reader.cancel()
            self._exabgp_since = None

    async def _read_output(self, proc, tail: deque) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if text and not text.startswith("advice"):  # "environment file missing": pathsteer sets it
                tail.append(text[:300])
                log.warning("bgp.exabgp-log %s", text[:500])

    async def _stop_exabgp(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()

    # --- the API channel ------------------------------------------------------------------------

    async def _on_relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:  # a new relay (ExaBGP restarted it): the old one is gone
            with contextlib.suppress(Exception):
                self._writer.close()
        self._writer = writer
        self._sent = self._acked = 0
        for _, fut in self._ack_waiters:
            if not fut.done():
                fut.set_result(False)
        self._ack_waiters.clear()
        self.announcer.forget()  # everything is sent again to this ExaBGP
        self._connected.set()
        logs.event(log, "bgp.exabgp", state="connected")
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    continue
                if not line:
                    break
                self._on_line(line.decode(errors="replace"))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            with contextlib.suppress(Exception):
                writer.close()

    def _on_line(self, line: str) -> None:
        m = messages.parse(line)
        if isinstance(m, messages.Ack):
            self._acked += 1
            if not m.ok:
                self._errors += 1
            while self._ack_waiters and self._ack_waiters[0][0] <= self._acked:
                _, fut = self._ack_waiters.popleft()
                if not fut.done():
                    fut.set_result(True)
            return
        if isinstance(m, messages.State):
            self._session(m.peer, m.state, m.reason)
            return
        if isinstance(m, messages.Update):
            s = self.sessions.get(m.peer)
            if s is None:
                return
            s.updates += 1
            stale = self._stale.get(m.peer)
            if m.eor:
                if m.peer in self._sync:
                    self._sync.discard(m.peer)
                    self._learn_last = 0.0  # the table is whole: hand it over now
                if stale is not None:  # everything the peer still has was sent again
                    self._drop_stale(m.peer, "End-of-RIB")
                return
            if stale is not None:
                stale.difference_update(m.announced)
            s.received.difference_update(m.withdrawn)
            s.received.update(m.announced)
            if m.peer in self._learning:
                added, removed = self.learner.update(m)
                if added or removed:
                    self._learn_changed()
            return
        if isinstance(m, messages.Garbage):
            self._garbage += 1
            now = time.monotonic()
            if now - self._garbage_logged >= 60.0:  # once a minute at most, with the count
                self._garbage_logged = now
                log.warning("bgp.garbage count=%d why=%s line=%r", self._garbage, m.why, m.line[:120])

    def _session(self, peer: str, state: str, reason: str, *, keep_learned: bool = False) -> None:
        s = self.sessions.get(peer)
        if s is None or s.state == state:
            return
        s.state, s.since, s.reason = state, time.time(), reason
        if state == "up":
            s.ups += 1
            if peer in self._learning:
                self._sync.add(peer)
            if peer in self._stale:  # no End-of-RIB within the hold time: what was not sent again goes
                asyncio.get_running_loop().call_later(
                    2 * self.cfg.peer_hold_time(self._peer_cfg(peer)), self._drop_stale, peer, "no End-of-RIB")
        elif state == "down":
            s.downs += 1
            self._sync.discard(peer)
            s.received = set()
            if not keep_learned:
                self._stale.pop(peer, None)
                if self.learner.peer_down(peer):
                    self._learn_changed()
        logs.event(log, "bgp.session", peer=s.name, address=peer, state=state, reason=reason or "-")

    @property
    def _syncing(self) -> bool:
        return bool(self._sync)

    def _peer_cfg(self, peer: str):
        return next(p for p in self.cfg.peers if str(p.address) == peer)

    def _drop_stale(self, peer: str, why: str) -> None:
        stale = self._stale.pop(peer, None)
        if not stale:
            return
        _added, removed = self.learner.update(messages.Update(peer, withdrawn=tuple(stale)))
        if removed:
            self._learn_changed()
        logs.event(log, "bgp.stale", peer=self.sessions[peer].name, removed=removed, why=why)

    def _send(self, lines: list[str]) -> asyncio.Future | None:
        """Write ``lines`` to ExaBGP; a future done when ExaBGP acknowledged them all."""
        if self._writer is None or not lines:
            return None
        self._writer.write(("\n".join(lines) + "\n").encode())
        self._sent += len(lines)
        fut = asyncio.get_running_loop().create_future()
        self._ack_waiters.append((self._sent, fut))
        return fut

    # --- announce -------------------------------------------------------------------------------

    def _nexthop(self, peer: str) -> str | None:
        nh = self.cfg.announce.next_hop
        return self._local.get(peer) if nh == "self" else str(nh)

    def _send_actions(self, actions: list[Action]) -> asyncio.Future | None:
        lines = []
        for kind, attrs, prefixes in group(actions):
            version = prefixes[0].version
            for peer in self.sessions:
                if ipaddress.ip_address(peer).version != version:
                    continue
                nh = self._nexthop(peer)
                head = f"neighbor {peer} {kind} attributes next-hop {nh or 'self'}"
                if kind == "announce":
                    med, comms, large = attrs
                    head += f" med {med}"
                    if comms:
                        head += " community [ " + " ".join(f"{a}:{b}" for a, b in comms) + " ]"
                    if large:
                        head += " large-community [ " + " ".join(f"{a}:{b}:{c}" for a, b, c in large) + " ]"
                for i in range(0, len(prefixes), CHUNK):
                    lines.append(head + " nlri " + " ".join(str(p) for p in prefixes[i:i + CHUNK]))
        return self._send(lines)

    def _event_actions(self, actions: list[Action]) -> None:
        now = time.time()
        by: dict[tuple, list[Action]] = {}
        for a in actions:
            self._last_action[a.prefix] = {"at": now, "action": a.kind, "reason": a.reason}
            key = (a.kind, a.advert.attributes() if a.advert else (), a.advert.path if a.advert else "",
                   a.reason if len(actions) <= EVENT_PREFIXES else a.reason.split(":")[0])
            by.setdefault(key, []).append(a)
        for (kind, _attrs, path, _r), group_ in by.items():
            first = group_[0]
            names = ",".join(str(a.prefix) for a in group_[:EVENT_PREFIXES])
            more = f"+{len(group_) - EVENT_PREFIXES}" if len(group_) > EVENT_PREFIXES else ""
            if kind == "announce":
                logs.event(log, "bgp.announce", prefixes=names + more, count=len(group_), med=first.advert.med,
                           path=path, reason=first.reason)
            else:
                logs.event(log, "bgp.withdraw", prefixes=names + more, count=len(group_), reason=first.reason)

    def announced_prefixes(self, steer) -> dict:
        """The destinations announced: prefix → hold_down, from steering's file config (and the
        learned ones when ``learn.announce``)."""
        file_cfg = getattr(steer, "file_config", None) or steer.config
        hold = {d.prefix: d.hysteresis.hold_down for d in announced_destinations(self.cfg, file_cfg.destinations)}
        if self.cfg.learn.announce:
            for p in self.learner.counts:
                hold.setdefault(p, self.cfg.learn.hysteresis.hold_down)
        families = {ipaddress.ip_address(a).version for a in self.sessions}
        if len(families) < 2:  # a prefix goes to the peers of its family only
            hold = {p: h for p, h in hold.items() if p.version in families}
        return hold

    def _path_numbers(self, steer) -> dict[str, int]:
        file_cfg = getattr(steer, "file_config", None) or steer.config
        return {p.name: i + 1 for i, p in enumerate(file_cfg.paths)}

    def _wanted(self, steer, hold: dict) -> dict:
        decision = getattr(steer, "decision", None)
        if decision is None or getattr(steer, "applied", None) is None:
            return {p: (None, "steering has not decided yet") for p in hold}
        numbers = self._path_numbers(steer)
        telemetry = getattr(steer, "telemetry", None)
        recent = {p.name: (p.rtt.recent_s, p.rtt.last_s) for p in telemetry.paths} if telemetry is not None else {}
        out = {}
        routes = decision.routes
        # Where the announced prefixes sit in the decision's routes (config order: the same
        # while the params are): found again only when they change, not at every tick.
        key = (id(getattr(steer, "params", None)), len(routes), len(hold))
        if self._route_index[0] != key or any(i >= len(routes) or routes[i].prefix not in hold
                                               for i in self._route_index[1][:1]):
            self._route_index = (key, [i for i, r in enumerate(routes) if r.prefix in hold])
        for i in self._route_index[1]:
            r = routes[i]
            if r.prefix in hold:
                out[r.prefix] = wanted(r, numbers, self.settings, recent)
        for p in hold:
            out.setdefault(p, (None, "not steered (yet)"))
        return out

    async def _announce_loop(self) -> None:
        while True:
            await beat(TICK_S)
            steer = self.ctx.component("steer")
            if steer is None or self._writer is None or not self.cfg.announce.enabled:
                continue
            try:
                hold = self.announced_prefixes(steer)
                actions = self.announcer.step(time.monotonic(), self._wanted(steer, hold), hold)
            except Exception:  # noqa: BLE001 - never take the daemon down; said once per pass
                log.exception("bgp.announce-failed")
                continue
            if actions:
                self._send_actions(actions)
                self._event_actions(actions)

    # --- learn ----------------------------------------------------------------------------------

    def _learn_changed(self) -> None:
        now = time.monotonic()
        self._learn_last = now
        if self._learn_first is None:
            self._learn_first = now

    async def _learn_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if self._learn_first is None:
                continue
            now = time.monotonic()
            if self._syncing:
                # A learning peer is sending its table (up, no End-of-RIB yet): one change for
                # the whole table when it ends, not one every LEARN_MAX_DELAY_S as it grows.
                if now - self._learn_last < LEARN_SYNC_QUIET_S:
                    continue
            elif now - self._learn_last < LEARN_QUIET_S and now - self._learn_first < LEARN_MAX_DELAY_S:
                continue
            self._learn_first = None
            await self._apply_learned()

    async def _apply_learned(self) -> None:
        steer = self.ctx.component("steer")
        if steer is None or not hasattr(steer, "set_auto_destinations"):
            return
        prefixes = tuple(self.learner.prefixes())
        if prefixes == self._learned_applied:
            return
        file_cfg = getattr(steer, "file_config", None) or steer.config
        dests = await asyncio.to_thread(self._learned_destinations, prefixes, file_cfg)
        before = set(self._learned_applied)
        t0 = time.monotonic()
        try:
            await steer.set_auto_destinations("bgp", dests)
        except PathsteerError as exc:
            self._learn_error = str(exc)
            log.error("bgp.learn-refused error=%s", exc)
            return
        self._learn_error = None
        self._learned_applied = prefixes
        after = set(prefixes)
        added, removed = sorted(after - before, key=str), sorted(before - after, key=str)
        logs.event(log, "bgp.learn", learned=len(prefixes), added=len(added), removed=len(removed),
                   first_added=",".join(map(str, added[:EVENT_PREFIXES])) or "-",
                   first_removed=",".join(map(str, removed[:EVENT_PREFIXES])) or "-",
                   took_ms=round((time.monotonic() - t0) * 1e3, 1))

    def _learned_destinations(self, prefixes: tuple, file_cfg) -> list:
        """Steering destinations for ``prefixes`` from the ``learn`` template (the file's own
        prefixes stay the file's). Pure: run in a worker thread."""
        if not prefixes:
            return []
        own = {d.prefix for d in file_cfg.destinations}
        template = self.cfg.learn.destination(prefixes[0], [p.name for p in file_cfg.paths])
        return [template.model_copy(update={"prefix": p}) for p in prefixes if p not in own]

    # --- views ----------------------------------------------------------------------------------

    def cmd_status(self, _args: NoArgs) -> dict:
        announced_by_family = {4: 0, 6: 0}
        for p in self.announcer.out:
            announced_by_family[p.version] += 1
        sessions = []
        for s in self.sessions.values():
            v = ipaddress.ip_address(s.address).version
            sessions.append(s.view(announced_by_family[v], len(self.learner.by_peer.get(s.address, ()))))
        proc = self._proc
        return {
            "local_as": self.cfg.local_as, "router_id": str(self.cfg.router_id),
            "exabgp": {"running": proc is not None and proc.returncode is None,
                       "pid": proc.pid if proc is not None and proc.returncode is None else None,
                       "since": self._exabgp_since, "connected": self._writer is not None,
                       "restarts": self._restarts, "exits": list(self._exabgp_exits),
                       "commands_sent": self._sent, "acked": self._acked, "errors": self._errors,
                       "garbage": self._garbage},
            "sessions": sessions,
            "announced": len(self.announcer.out), "withdrawn_here": len(self.announcer.why_not),
            "learned": len(self.learner.counts), "learned_applied": len(self._learned_applied),
            "learn_error": self._learn_error, "learn_filtered": self.learner.filtered,
            "learn_over_max": self.learner.refused_over_max,
        }

    def cmd_prefix(self, args: PrefixArgs) -> dict:
        try:
            net = ipaddress.ip_network(args.prefix.strip(), strict=False)
        except ValueError:
            raise UsageError(f"prefix: {args.prefix!r} is not a prefix or an address") from None
        candidates = set(self.announcer.out) | set(self.announcer.why_not) | set(self.learner.counts)
        match = None
        for p in candidates:
            if p.version == net.version and net.subnet_of(p) and (match is None or p.prefixlen > match.prefixlen):
                match = p
        if match is None:
            raise NotFoundError(f"prefix: {args.prefix!r} is not announced, withdrawn or learned here")
        out = self.announcer.out.get(match)
        view: dict = {"prefix": str(match), "announced": out is not None, "learned": match in self.learner.counts,
                      "learned_from": [self.sessions[p].name for p, s in self.learner.by_peer.items()
                                       if match in s and p in self.sessions]}
        if out is not None:
            view.update(out.advert.view())
            view["why"] = out.advert.why()
            view["announced_age_s"] = round(time.monotonic() - out.at, 3)
            view["pending"] = (f"MED change seen {time.monotonic() - self.announcer.pending[match]:.1f} s ago"
                               if match in self.announcer.pending else None)
        else:
            view["why"] = self.announcer.why_not.get(match, "not announced here")
        view["last_action"] = self._last_action.get(match)
        view["peers"] = [s.name for s in self.sessions.values()
                         if ipaddress.ip_address(s.address).version == match.version]
        return view
