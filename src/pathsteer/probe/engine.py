"""One asyncio engine probing many paths × targets and feeding the telemetry core.

The engine is the imperative shell: it owns sockets, the schedule and the pins; every
decision (answer or late, duplicate, foreign; failing; path state) is made by
`pathsteer.telemetry` with the times the engine hands it. Each (path, target) pair has one
`_Prober` with its own pinned socket. One coalescing tick does all the work: it reads the
sockets that are ready (epoll), expires probes past their timeout, sends every probe due
within a few milliseconds, and sleeps until the next thing is due. Paths' sends are spread
over the interval in groups at least SEND_SPACING_S apart, so 64 paths do not fire at once
and do not wake the engine 64 times an interval either (a path's targets fire together, so
a quorum of them fails at once). RTTs use kernel receive timestamps, so when a reply is read
does not change what it measures: replies are read at the next wake-up (a send, an expiry,
a snapshot), not on their own.

    engine = ProbeEngine([PathProbeConfig(name="wan1", interface="eth1", gateway="192.0.2.1",
                                          targets=("198.51.100.1", "203.0.113.1"))])
    await engine.run(stop=stop_event)        # or run(count=100) for a one-shot measurement
    snap = engine.snapshot()                  # TelemetrySnapshot, any time, from the loop's thread
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import itertools
import logging
import secrets
import select
import time
from collections.abc import Callable, Sequence

from pathsteer import logs
from pathsteer.probe import icmp, pinning, sockets, twamp
from pathsteer.telemetry import (
    PathProbeConfig,
    PathState,
    PathTracker,
    ProbeMethod,
    TelemetrySnapshot,
    snapshot_of,
)
from pathsteer.telemetry.target import ReplyKind, TargetTracker
from pathsteer.waker import beat

log = logging.getLogger("pathsteer.probe")

StateCallback = Callable[[str, PathState, PathState, float], None]
SENT_MEMORY = 4096
MAX_SLACK_S = 0.005  # a probe may leave this much early to share a wake-up (interval/4 at most)
MAX_IDLE_S = 0.25  # replies are read at least this often when nothing else is due (and by snapshot())
COUNT_IDLE_S = 0.05  # the same in a run of ``count`` probes (it ends once its last replies are read)
SEND_SPACING_S = 0.025  # paths' send groups are at least this far apart within an interval
EXPIRY_SLACK_S = 0.0005  # fire just after a deadline, so the probe is surely past it
MAX_READ_ROUNDS = 64  # datagrams read per socket per tick at most (see _read_ready)
REPIN_INTERVAL_S = 1.0  # how often a failing path's pin is checked and put back


def _unwrap(counter: int, wire: int, bits: int) -> int:
    """The full sequence number nearest at or below ``counter`` whose low ``bits`` are ``wire``."""
    return counter - ((counter - wire) & ((1 << bits) - 1))


def send_offset(index: int, paths: int, interval_s: float) -> float:
    """When path ``index`` of ``paths`` first sends, after the engine starts: the paths are
    split into as many groups as fit SEND_SPACING_S apart in the interval (at most one per
    path), spread evenly over it."""
    groups = max(1, min(paths, int(interval_s / SEND_SPACING_S + 1e-9)))
    return interval_s * (index * groups // paths) / groups


class _Prober:
    """Probes one target of one path through one pinned socket. Scheduling is the engine's."""

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
        self.echo = icmp.EchoSession(self.version, self.ident, icmp.echo_data(self.token, self.cfg.payload_size)) \
            if self.cfg.method is ProbeMethod.ICMP else None
        self.sock = sockets.open_icmp(pin, self.ident) if self.cfg.method is ProbeMethod.ICMP else sockets.open_udp(pin)
        port = 0 if self.cfg.method is ProbeMethod.ICMP else self.cfg.port
        ip = ipaddress.ip_address(self.target)
        # A link-local IPv6 target needs its scope (RFC 4007 §6): the pinned interface.
        self.addr = (self.target, port, 0, pin.ifindex) if ip.version == 6 and ip.is_link_local else (self.target, port)
        self.next_at = 0.0  # when the next probe is due
        self.expiry_at: float | None = None  # when the engine will next expire this prober's probes
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    @property
    def done_sending(self) -> bool:
        return self.limit is not None and self.seq >= self.limit

    @property
    def finished(self) -> bool:
        return self.done_sending and self.tracker.pending == 0

    def _packet(self, seq: int) -> bytes:
        if self.cfg.method is ProbeMethod.ICMP:
            return self.echo.request(seq)
        ntp = twamp.to_ntp(time.time())
        self.sent_ntp[seq & 0xFFFFFFFF] = ntp
        if len(self.sent_ntp) > SENT_MEMORY:
            del self.sent_ntp[next(iter(self.sent_ntp))]
        # §4.1.2: pad by 27 octets so the reflector's 41-octet reply is the same size.
        return twamp.encode_sender(
            twamp.SenderPacket(seq & 0xFFFFFFFF, ntp, twamp.DEFAULT_ERROR_ESTIMATE,
                               bytes(twamp.SYMMETRIC_PADDING + self.cfg.payload_size))
        )

    def send(self) -> float:
        """Send the next probe; returns its send time."""
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
        interval = self.cfg.interval_s
        self.next_at += interval
        if self.next_at < now:  # fell behind (a stalled loop): skip, do not burst
            self.next_at = now + interval
        return now

    def expire(self, now: float) -> float | None:
        """Count timed-out probes as lost; returns the next deadline (None: nothing pending)."""
        lost = self.tracker.expire(now)
        if lost:
            log.debug("probe.timeout path=%s target=%s lost=%d", self.cfg.name, self.target, lost)
            self.engine.changed(self.path, now)
        return self.tracker.next_deadline()

    # -- receiving ----------------------------------------------------------------------

    def on_readable(self) -> bool:
        """Read one datagram (one reply is what a prober usually has waiting; the engine asks
        again while epoll says more are). False when nothing was waiting."""
        try:
            got = sockets.receive(self.sock)
        except OSError:  # a queued ICMP error on the socket (IP_RECVERR is off: rare)
            self.tracker.on_error()
            return True
        if got is None:
            return False
        if self.cfg.method is ProbeMethod.ICMP:
            self._icmp(*got)
        else:
            self._udp(*got)
        return True

    def _icmp(self, data: bytes, addr: tuple, received_at: float) -> None:
        seq = self.echo.reply_seq(data)  # an answer of ours, read without decoding (most replies)
        if seq is not None:
            if addr[0] == self.target or addr[0].split("%")[0] == self.target:
                self._reply(_unwrap(self.seq, seq, 16), received_at, None)
            return  # from another address: another target's prober handles it
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
        sent_at = self.tracker.sent_at(seq)
        rtt = None
        if sent_at is not None and 0.0 <= dwell < received_at - sent_at:
            rtt = received_at - sent_at - dwell
        self._reply(seq, received_at, rtt)

    def _reply(self, seq: int, received_at: float, rtt: float | None) -> None:
        before = self.tracker.state
        kind = self.tracker.on_reply(seq, received_at, rtt)
        if kind is ReplyKind.LATE or self.tracker.state is not before or not self.path.answer_cannot_change_state():
            self.engine.changed(self.path, received_at)
        if not self.tracker.pending:
            self.expiry_at = None  # nothing left to expire: the engine need not wake for it
        elif self.tracker.timer.adaptive:  # the timeout may have shrunk: expire on the new deadline
            self.engine.schedule_expiry(self)


class ProbeEngine:
    """Probes every target of every configured path until stopped (or ``count`` each)."""

    def __init__(self, configs: Sequence[PathProbeConfig], *, on_state_change: StateCallback | None = None,
                 own_slots: bool = True, previous: Sequence[PathTracker] = ()) -> None:
        """``own_slots``: this engine is the namespace's daemon engine: it sweeps the pins a
        killed run left and pins path i at slot i (`pinning.SLOT_RANGE`). False (one-shot
        runs beside a daemon): random free numbers, nothing swept. ``previous``: the trackers
        of an engine this one replaces (a reload): a path whose probe config is the same keeps
        its measurements and state, so a reload that changes other paths costs it nothing."""
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError("path names must be unique")
        self.configs = tuple(configs)
        self.on_state_change = on_state_change
        # Called at the end of each wake-up of the engine (replies read, sends made) with its
        # time: a periodic consumer of the figures (the decide loop) runs in that wake-up
        # instead of waking the process on its own timer.
        self.on_tick: Callable[[float], None] | None = None
        self.own_slots = own_slots
        now = time.monotonic()
        kept = {p.config: p for p in previous}
        self.paths = [kept[c].handed_over() if c in kept else PathTracker(c, now) for c in self.configs]
        self.pins: list[pinning.Pin] = []
        self.probers: list[_Prober] = []
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._all_done: asyncio.Event | None = None
        self._sends: list[tuple[float, int, _Prober]] = []  # heap: (due, order, prober)
        self._expiries: list[tuple[float, int, _Prober]] = []  # heap: (deadline, order, prober)
        self._order = itertools.count()  # tie-breaker: probers are not comparable
        self._by_fd: dict[int, _Prober] = {}
        self._poller: select.epoll | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._count_mode = False
        self._slack = MAX_SLACK_S
        self._failure: Exception | None = None
        self._in_tick = False

    def snapshot(self) -> TelemetrySnapshot:
        """The telemetry now. State changes due by now (a hold time ending) are made, and
        reported to ``on_state_change``, before the snapshot is taken."""
        self._read_ready()
        now = time.monotonic()
        for path in self.paths:
            self.changed(path, now)
        return snapshot_of(self.paths, now, updated=True)

    def _read_ready(self) -> None:
        """Read every socket with replies waiting (none while the engine is not running)."""
        if self._poller is None or self._poller.closed:
            return
        # One datagram per ready socket per round, rounds while epoll (level-triggered) says
        # more wait: one poll per round instead of a failed read (EAGAIN) per socket. The cap
        # bounds a tick under a flood; what is left is read on the next tick (receive times are
        # the kernel's, so reading later measures the same).
        by_fd = self._by_fd
        for _ in range(MAX_READ_ROUNDS):
            ready = self._poller.poll(0)
            if not ready:
                return
            for fd, _events in ready:
                by_fd[fd].on_readable()

    def changed(self, path: PathTracker, now: float) -> None:
        before = path.state
        after = path.update(now)
        if after is not before:
            logs.event(log, "path.state", path=path.name, **{"from": before.value}, to=after.value)  # and on the bus
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

    def _tick(self) -> None:
        """Everything due, in one wake-up: read replies, expire probes past their timeout,
        send probes due within the coalescing slack; then sleep until the next thing is due.

        One wake-up serves many probes (the asyncio cost per callback is most of a Python
        prober's CPU). Reading replies late costs no accuracy: receive times are the kernel's
        (SO_TIMESTAMPNS) and late/lost is judged on them."""
        self._in_tick = True
        try:
            self._tick_once()
        finally:
            self._in_tick = False

    def _tick_once(self) -> None:
        now = time.monotonic()
        self._read_ready()
        expiries, sends = self._expiries, self._sends
        while expiries and expiries[0][0] <= now:
            at, _, p = heapq.heappop(expiries)
            if at != p.expiry_at:
                continue  # superseded by an earlier deadline (the timeout shrank)
            p.expiry_at = None
            deadline = p.expire(now)
            if deadline is not None:
                p.expiry_at = max(deadline, now) + EXPIRY_SLACK_S
                heapq.heappush(expiries, (p.expiry_at, next(self._order), p))
        horizon = now + self._slack
        while sends and sends[0][0] <= horizon:
            _, _, p = heapq.heappop(sends)
            p.send()
            if p.expiry_at is None:
                self.schedule_expiry(p)
            if not p.done_sending:
                heapq.heappush(sends, (p.next_at, next(self._order), p))
        if self._count_mode and all(p.finished for p in self.probers):
            self._all_done.set()
            return
        # a count run waits only for its last replies: read them soon, so the run ends soon
        wake = now + (COUNT_IDLE_S if self._count_mode else MAX_IDLE_S)
        if sends and sends[0][0] < wake:
            wake = sends[0][0]
        while expiries and expiries[0][0] != expiries[0][2].expiry_at:
            heapq.heappop(expiries)  # superseded, or answered in full: no reason to wake
        if expiries and expiries[0][0] < wake:
            wake = expiries[0][0]
        self._tick_handle = self.loop.call_at(wake, self._guarded_tick)
        if self.on_tick is not None:
            self.on_tick(now)

    def schedule_expiry(self, p: _Prober) -> None:
        """Make sure the engine wakes for ``p``'s earliest deadline: a later wake-up already
        queued is superseded (a stale heap entry is skipped when it comes up)."""
        deadline = p.tracker.next_deadline()
        if deadline is None:
            return
        at = deadline + EXPIRY_SLACK_S
        if p.expiry_at is None or at < p.expiry_at:
            p.expiry_at = at
            heapq.heappush(self._expiries, (at, next(self._order), p))
            handle = self._tick_handle
            if not self._in_tick and handle is not None and at < handle.when():
                handle.cancel()  # a reply read outside a tick (snapshot) moved a deadline up
                self._tick_handle = self.loop.call_at(at, self._guarded_tick)

    async def _keep_pins(self) -> None:
        """While a path has failing targets or send errors, put its pin back once a second
        (the kernel drops the table route when the link goes down). Healthy paths cost nothing."""
        errors_seen: dict[int, int] = {}
        while True:
            await beat(REPIN_INTERVAL_S)
            for i, (path, pin) in enumerate(zip(self.paths, self.pins)):
                if pin.table is None:
                    continue
                errors = sum(t.errors for t in path.targets.values())
                if errors != errors_seen.get(i, 0) or any(t.failing for t in path.targets.values()):
                    errors_seen[i] = errors
                    try:
                        if not pinning.ensure(pin):
                            log.debug("probe.repin_failed path=%s", path.name)
                    except Exception as exc:  # keep probing; try again next round
                        log.warning("probe.repin_error path=%s error=%s", path.name, exc)

    async def run(self, *, count: int | None = None, stop: asyncio.Event | None = None) -> TelemetrySnapshot:
        """Install pins, probe until ``stop`` is set (or each target had ``count`` probes
        answered or timed out), then close sockets and remove pins. Returns the last snapshot."""
        self.loop = asyncio.get_running_loop()
        self._all_done = asyncio.Event()
        try:
            if self.own_slots:
                swept = pinning.sweep(max(pinning.SWEEP_SLOTS, len(self.configs)))
                if swept:
                    log.info("probe.pins-swept count=%d", swept)
            for i, (cfg, path) in enumerate(zip(self.configs, self.paths)):
                pin = pinning.install(cfg.interface, cfg.gateway, cfg.ip_version, table=cfg.table,
                                      mark=cfg.mark, slot=i if self.own_slots else None)
                self.pins.append(pin)
                for tracker in path.targets.values():
                    self.probers.append(_Prober(self, path, tracker, pin))
            self._count_mode = count is not None
            self._slack = min(MAX_SLACK_S, min(c.interval_s for c in self.configs) / 4)
            self._poller = select.epoll()
            start = time.monotonic() + 0.01
            # Paths are spread over the interval in groups (every wake-up costs the loop tens
            # of µs, a send a few: 64 paths every 100 ms send in 4 groups, not 64 wake-ups);
            # a path's targets probe together, so a path whose quorum is several targets is
            # seen down when its first target is, not up to an interval later.
            slot = {id(path): i for i, path in enumerate(self.paths)}
            n = len(self.paths)
            for p in self.probers:
                p.limit = count
                p.next_at = start + send_offset(slot[id(p.path)], n, p.cfg.interval_s)
                heapq.heappush(self._sends, (p.next_at, next(self._order), p))
                self._poller.register(p.sock.fileno(), select.EPOLLIN)
                self._by_fd[p.sock.fileno()] = p
            self._guarded_tick = self.guard(self._tick)
            self._tick_handle = self.loop.call_at(start, self._guarded_tick)
            keeper = asyncio.ensure_future(self._keep_pins())
            waits = [asyncio.ensure_future(self._all_done.wait())]
            if stop is not None:
                waits.append(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                keeper.cancel()
                for w in waits:
                    w.cancel()
            if self._failure is not None:
                raise self._failure
            return self.snapshot()  # reads the replies that came in since the last tick
        finally:
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            if self._poller is not None:
                self._poller.close()
            for p in self.probers:
                p.close()
            for pin in self.pins:
                pinning.remove(pin)
            self.probers.clear()
            self.pins.clear()
            self._sends.clear()
            self._expiries.clear()
            self._by_fd.clear()
