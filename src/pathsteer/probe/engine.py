"""One asyncio engine probing many paths × targets and feeding the telemetry core.

The engine is the imperative shell: it owns sockets, timers and the pins; every decision
(answer or late, duplicate, foreign; failing; path state) is made by `pathsteer.telemetry`
with the times the engine hands it. Each (path, target) pair has one `_Prober` with its
own socket; sends are spread evenly over the interval so 64 paths do not fire at once.

    engine = ProbeEngine([PathProbeConfig(name="wan1", interface="eth1", gateway="192.0.2.1",
                                          targets=("198.51.100.1", "203.0.113.1"))])
    await engine.run(stop=stop_event)        # or run(count=100) for a one-shot measurement
    snap = engine.snapshot()                  # TelemetrySnapshot, any time, from the loop's thread
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence

from pathsteer.errors import UsageError
from pathsteer.probe import icmp, pinning, sockets, twamp
from pathsteer.telemetry import (
    PathProbeConfig,
    PathState,
    PathTracker,
    ProbeMethod,
    TelemetrySnapshot,
    snapshot_of,
)
from pathsteer.telemetry.target import TargetTracker

log = logging.getLogger("pathsteer.probe")

StateCallback = Callable[[str, PathState, PathState, float], None]
SENT_MEMORY = 4096
REPIN_INTERVAL_S = 1.0  # how often a failing path's pin is checked and put back


def _in_thread(fn, *args, **kwargs):
    """Call ``fn`` in a helper thread and wait for it. pyroute2's synchronous IPRoute runs
    its own event loop and refuses to start inside a running one (ours); this blocks the
    loop for the few milliseconds a rule and a route take, at start and stop only."""
    result: list = []

    def call() -> None:
        try:
            result.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # handed back to the caller's thread
            result.append((False, exc))

    t = threading.Thread(target=call, name="pathsteer-pin")
    t.start()
    t.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _unwrap(counter: int, wire: int, bits: int) -> int:
    """The full sequence number nearest at or below ``counter`` whose low ``bits`` are ``wire``."""
    return counter - ((counter - wire) & ((1 << bits) - 1))


class _Prober:
    """Probes one target of one path through one pinned socket."""

    def __init__(self, engine: ProbeEngine, path: PathTracker, tracker: TargetTracker, pin: pinning.Pin) -> None:
        self.engine = engine
        self.path = path
        self.tracker = tracker
        self.cfg = path.config
        self.pin = pin
        self.target = str(ipaddress.ip_address(tracker.address))
        self.version = pin.version
        self.seq = 0  # last sequence number sent (full counter, from 1)
        self.limit: int | None = None
        self.ident = secrets.randbelow(0x10000)
        self.token = secrets.randbelow(1 << 32)
        self.sent_ntp: dict[int, int] = {}
        self.sock = sockets.open_icmp(pin) if self.cfg.method is ProbeMethod.ICMP else sockets.open_udp(pin)
        self.addr = (self.target, 0) if self.cfg.method is ProbeMethod.ICMP else (self.target, self.cfg.port)
        self._timer: asyncio.TimerHandle | None = None
        self.next_at = 0.0
        self.closed = False
        self._finish_reported = False

    # -- sending ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, at: float, limit: int | None) -> None:
        self.limit = limit
        self.next_at = at
        loop.add_reader(self.sock.fileno(), self.engine.guard(self.on_readable))
        self._timer = loop.call_at(at, self.engine.guard(self.send))

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _check_finished(self) -> None:
        if (
            not self._finish_reported
            and self.limit is not None
            and self.seq >= self.limit
            and self.tracker.pending == 0
        ):
            self._finish_reported = True
            self.engine.prober_finished()

    def _packet(self, seq: int) -> bytes:
        if self.cfg.method is ProbeMethod.ICMP:
            return icmp.encode_echo_request(self.version, self.ident, seq, icmp.echo_data(self.token, self.cfg.payload_size))
        ntp = twamp.to_ntp(time.time())
        self.sent_ntp[seq & 0xFFFFFFFF] = ntp
        if len(self.sent_ntp) > SENT_MEMORY:
            del self.sent_ntp[next(iter(self.sent_ntp))]
        # §4.1.2: pad by 27 octets so the reflector's 41-octet reply is the same size.
        return twamp.encode_sender(
            twamp.SenderPacket(seq & 0xFFFFFFFF, ntp, twamp.DEFAULT_ERROR_ESTIMATE,
                               bytes(twamp.SYMMETRIC_PADDING + self.cfg.payload_size))
        )

    def send(self) -> None:
        loop = self.engine.loop
        self.seq += 1
        seq = self.seq
        packet = self._packet(seq)
        now = time.monotonic()
        self.tracker.on_sent(seq, now)
        try:
            self.sock.sendto(packet, self.addr)
        except OSError as exc:  # ENETUNREACH, EHOSTUNREACH, ENETDOWN, ENOBUFS, EPERM (firewall)
            self.tracker.on_error()
            log.debug("probe.send_error path=%s target=%s errno=%s", self.cfg.name, self.target, exc.errno)
        loop.call_at(now + self.cfg.timeout_s, self.engine.guard(self.expire))
        if self.limit is not None and seq >= self.limit:
            self._timer = None
            return
        interval = self.cfg.interval_s
        self.next_at += interval
        if self.next_at < now:  # fell behind (a stalled loop): skip, do not burst
            self.next_at = now + interval
        self._timer = loop.call_at(self.next_at, self.engine.guard(self.send))

    def expire(self) -> None:
        if self.closed:
            return
        self.on_readable()  # replies already queued were received in time: read them first
        now = time.monotonic()
        if self.tracker.expire(now):
            self.engine.changed(self.path, now)
        self._check_finished()

    # -- receiving ----------------------------------------------------------------------

    def on_readable(self) -> None:
        if self.closed:
            return
        try:
            for data, addr, received_at in sockets.drain(self.sock):
                if self.cfg.method is ProbeMethod.ICMP:
                    self._icmp(data, addr, received_at)
                else:
                    self._udp(data, addr, received_at)
        except OSError:  # a queued ICMP error on the socket (IP_RECVERR is off: rare)
            self.tracker.on_error()
        self._check_finished()

    def _icmp(self, data: bytes, addr: tuple, received_at: float) -> None:
        try:
            msg = icmp.decode(self.version, icmp.strip_ipv4_header(data) if self.version == 4 else data)
        except icmp.MalformedPacket:
            return
        if msg is None or msg.ident != self.ident:
            return  # other ICMP, or another prober's or program's echo (raw sockets see all)
        if isinstance(msg, icmp.Error):
            self.tracker.on_error()
            return
        if addr[0].split("%")[0] != self.target:
            return  # an echo reply from another address: another target's prober handles it
        if msg.token != self.token:
            self.tracker.on_foreign()
            return
        self._reply(_unwrap(self.seq, msg.seq, 16), received_at, None)

    def _udp(self, data: bytes, addr: tuple, received_at: float) -> None:
        if addr[0].split("%")[0].removeprefix("::ffff:") != self.target or addr[1] != self.cfg.port:
            self.tracker.on_foreign()
            return
        try:
            rep = twamp.decode_reflector(data)
        except twamp.MalformedPacket:
            self.tracker.on_foreign()
            return
        sent = self.sent_ntp.get(rep.sender_seq)
        if sent is not None and sent != rep.sender_timestamp:
            self.tracker.on_foreign()  # our sequence number, not our packet
            return
        # RFC 5357 §4.2.1 timestamps: the reflector's dwell time T3 - T2 is not path delay.
        dwell = twamp.ntp_delta_s(rep.timestamp, rep.receive_timestamp)
        seq = _unwrap(self.seq, rep.sender_seq, 32)
        sent_at = self.tracker._pending.get(seq)  # noqa: SLF001 - the send time we recorded
        rtt = None
        if sent_at is not None and 0.0 <= dwell < received_at - sent_at:
            rtt = received_at - sent_at - dwell
        self._reply(seq, received_at, rtt)

    def _reply(self, seq: int, received_at: float, rtt: float | None) -> None:
        self.tracker.on_reply(seq, received_at, rtt)
        self.engine.changed(self.path, received_at)


class ProbeEngine:
    """Probes every target of every configured path until stopped (or ``count`` each)."""

    def __init__(self, configs: Sequence[PathProbeConfig], *, on_state_change: StateCallback | None = None) -> None:
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise UsageError("path names must be unique")
        self.configs = tuple(configs)
        self.on_state_change = on_state_change
        now = time.monotonic()
        self.paths = [PathTracker(c, now) for c in self.configs]
        self.pins: list[pinning.Pin] = []
        self.probers: list[_Prober] = []
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._unfinished = 0
        self._all_done: asyncio.Event | None = None
        self._failure: Exception | None = None

    def snapshot(self) -> TelemetrySnapshot:
        return snapshot_of(self.paths, time.monotonic())

    def changed(self, path: PathTracker, now: float) -> None:
        before = path.state
        after = path.update(now)
        if after is not before:
            log.info("path.state path=%s from=%s to=%s", path.name, before.value, after.value)
            if self.on_state_change is not None:
                self.on_state_change(path.name, before, after, now)

    def guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` for a loop callback: a bug inside it ends `run` with that exception
        instead of leaving the run waiting forever."""

        def call() -> None:
            try:
                fn()
            except Exception as exc:  # re-raised by run()
                if self._failure is None:
                    self._failure = exc
                if self._all_done is not None:
                    self._all_done.set()

        return call

    def prober_finished(self) -> None:
        self._unfinished -= 1
        if self._unfinished <= 0 and self._all_done is not None:
            self._all_done.set()

    async def _keep_pins(self) -> None:
        """While a path has failing targets or send errors, put its pin back once a second
        (the kernel drops the table route when the link goes down). Healthy paths cost nothing."""
        errors_seen: dict[int, int] = {}
        while True:
            await asyncio.sleep(REPIN_INTERVAL_S)
            for i, (path, pin) in enumerate(zip(self.paths, self.pins)):
                if pin.table is None:
                    continue
                errors = sum(t.errors for t in path.targets.values())
                if errors != errors_seen.get(i, 0) or any(t.failing for t in path.targets.values()):
                    errors_seen[i] = errors
                    await self.loop.run_in_executor(None, pinning.ensure, pin)

    async def run(self, *, count: int | None = None, stop: asyncio.Event | None = None) -> TelemetrySnapshot:
        """Install pins, probe until ``stop`` is set (or each target had ``count`` probes
        answered or timed out), then close sockets and remove pins. Returns the last snapshot."""
        self.loop = asyncio.get_running_loop()
        self._all_done = asyncio.Event()
        try:
            for cfg, path in zip(self.configs, self.paths):
                pin = _in_thread(pinning.install, cfg.interface, cfg.gateway, cfg.ip_version, table=cfg.table, mark=cfg.mark)
                self.pins.append(pin)
                for tracker in path.targets.values():
                    self.probers.append(_Prober(self, path, tracker, pin))
            self._unfinished = len(self.probers) if count is not None else 1 << 62
            start = time.monotonic() + 0.01
            n = len(self.probers)
            for i, p in enumerate(self.probers):
                p.start(self.loop, start + p.cfg.interval_s * i / n, count)
            keeper = asyncio.ensure_future(self._keep_pins())
            waits = [asyncio.ensure_future(self._all_done.wait()), keeper]
            if stop is not None:
                waits.append(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if self._failure is not None:
                raise self._failure
            return self.snapshot()
        finally:
            for p in self.probers:
                p.stop(self.loop)
            for pin in self.pins:
                _in_thread(pinning.remove, pin)
            self.probers.clear()
            self.pins.clear()
