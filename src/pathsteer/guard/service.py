"""The guard as a daemon component: config + blocks → the program; control commands;
auto-block of heavy hitters; expiry.

Lifecycle (driven by pathsteer.daemon): ``check`` (before anything is touched) → ``start`` →
``reload`` (SIGHUP / ``pathsteer reload``) → ``stop`` (detaches what it attached). Commands:
``guard.block``, ``guard.unblock``, ``guard.list``, ``guard.stats``.

Auto-block: the program meters every tracked source at ``auto_block.threshold_pps`` and emits a
heavy-hitter event the moment one runs above it (after a fifth of a second's burst); the event
wakes the reactor through the ring buffer's epoll fd and the source (/32, IPv6 /64) is blocked
for ``ttl`` at once. Allowed sources are never metered, and are checked again here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field

from pathsteer import logs
from pathsteer.bpf import XdpMode
from pathsteer.config.model import GuardConfig
from pathsteer.control.server import Args, Command, NoArgs
from pathsteer.errors import NotFoundError, PathsteerError, UnsupportedError, UsageError
from pathsteer.guard.blocks import Block, BlockStore, Origin
from pathsteer.guard.program import Event, GuardProgram
from pathsteer.guard import synproxy
from pathsteer.guard.rules import Action, Limits, Network, PortRule, RuleSet, SynCookies, lookup, parse_cidr
from pathsteer.waker import beat

log = logging.getLogger("pathsteer.guard")
TICK_S = 0.2


def event(name: str, **fields: object) -> None:
    """A structured log line: ``guard.block cidr=192.0.2.0/24 origin=manual``."""
    logs.event(log, name, **fields)


class RuleIds:
    """Rule ids (indexes of rule_counters) per rule key; 0 when all are taken (uncounted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ids: dict[tuple, int] = {}
        self._free: list[int] = []
        self._next = 1

    def get(self, key: tuple) -> tuple[int, bool]:
        """(id, fresh): a fresh id's counter must be reset (it may have counted another rule)."""
        if key in self._ids:
            return self._ids[key], False
        if self._free:
            rid = self._free.pop()
        elif self._next < self.limit:
            rid, self._next = self._next, self._next + 1
        else:
            return 0, False
        self._ids[key] = rid
        return rid, True

    def release(self, key: tuple) -> None:
        rid = self._ids.pop(key, 0)
        if rid:
            self._free.append(rid)

    def items(self) -> list[tuple[tuple, int]]:
        return list(self._ids.items())


class BlockArgs(Args):
    cidr: str
    ttl: float | None = Field(default=None, gt=0)  # seconds; None = until unblocked
    reason: str = Field(default="", max_length=200)


class UnblockArgs(Args):
    cidr: str


class StatsArgs(Args):
    top: int = Field(default=10, ge=0, le=1000)


def _ports_text(ports: list[tuple[int, int]]) -> str:
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


def check_interfaces(config: GuardConfig) -> None:
    for i, name in enumerate(config.interfaces):
        try:
            socket.if_nametoindex(name)
        except OSError:
            raise UsageError(f"guard.interfaces[{i}]: {name!r} is not an interface in this network namespace") from None


class GuardService:
    name = "guard"

    def __init__(self, config: GuardConfig, *, clock: Callable[[], float] = time.time,
                 program_factory: Callable[[], GuardProgram] = GuardProgram.load) -> None:
        self.config = config
        self.clock = clock
        self._factory = program_factory
        self.program: GuardProgram | None = None
        self.store: BlockStore | None = None
        self.blocks: dict[Network, Block] = {}
        self.ids: RuleIds | None = None
        self.recent_drops: collections.deque[Event] = collections.deque(maxlen=100)
        self.heavy_hitters = 0
        self._ring = None
        self._tick: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.netfilter: synproxy.Netfilter | None = None  # managed synproxy table, while SYN cookies are on

    # --- lifecycle --------------------------------------------------------------------------

    @staticmethod
    def validate(config: GuardConfig) -> None:
        """What can be checked before anything is touched (beyond the config's own validation):
        the interfaces exist; SYN cookies: conntrack is there and nft (managed) or the
        operator's synproxy setup (external)."""
        check_interfaces(config)
        sc = config.syn_cookies
        if sc is None:
            return
        if not synproxy.conntrack_kfuncs_present():
            raise UnsupportedError("guard.syn_cookies: the kernel has no bpf_xdp_ct_lookup (conntrack's BPF kfuncs: "
                                   "CONFIG_NF_CONNTRACK with BTF; as a module, load nf_conntrack first)")
        if sc.netfilter == "external":
            synproxy.check_external()
        else:
            synproxy.read_tcp_loose()
            if shutil.which("nft") is None:
                raise UnsupportedError("guard.syn_cookies: nft not found (install nftables, or set "
                                       "guard.syn_cookies.netfilter: external and set synproxy up yourself)")

    def _netfilter_apply(self, config: GuardConfig) -> None:
        """Make the managed synproxy table match ``config`` (installed, replaced or removed)."""
        sc = config.syn_cookies
        if sc is not None and sc.netfilter == "managed":
            if self.netfilter is None:
                self.netfilter = synproxy.Netfilter(config.state_dir)
            self.netfilter.setup(sc.interfaces or config.interfaces, sc.ports, mss=sc.mss, mss6=sc.mss6,
                                 wscale=sc.wscale)
        elif self.netfilter is not None:
            self.netfilter.teardown()
            self.netfilter = None

    def check(self, config: GuardConfig) -> GuardConfig:
        """Phase one of a reload: ``config`` checked (the system, the rule slots it needs);
        nothing touched. The plan is the checked section itself."""
        if config.state_dir != self.config.state_dir:
            raise UsageError("guard.state_dir cannot change on reload (restart the daemon)")
        self.validate(config)
        if self.ids is not None:  # running: the new rules must fit the program's slots
            try:
                self._ruleset(config)
            finally:
                self._release_unused(self._ruleset(self.config))
        return config

    async def start(self) -> None:
        self.validate(self.config)
        self._loop = asyncio.get_running_loop()
        self.store = BlockStore(self.config.state_dir)
        now = self.clock()
        for block in self.store.load():
            if block.expired(now):
                self.store.delete(block.cidr)
                event("guard.expire", cidr=block.cidr, origin=block.origin.value, while_stopped="yes")
            else:
                self.blocks[block.cidr] = block
        self.program = self._factory()
        try:
            self.ids = RuleIds(self.program.limits["GUARD_LIMIT_RULES"])
            # synproxy first: from the moment XDP answers SYNs, the ACKs must find it there
            self._netfilter_apply(self.config)
            self.program.apply(self._ruleset(self.config))
            mode = None if self.config.xdp_mode == "auto" else XdpMode(self.config.xdp_mode)
            attached = self.program.attach(self.config.interfaces, mode)
            self._ring = self.program.event_reader(self._on_event)
            self._loop.add_reader(self._ring.fileno(), self._drain)
        except BaseException:
            self._teardown()
            raise
        self._tick = asyncio.create_task(self._ticker())
        sc = self.config.syn_cookies
        event("guard.start", interfaces=",".join(attached), blocks=len(self.blocks),
              deny=len(self.config.deny), allow=len(self.config.allow),
              syn_cookies=f"{_ports_text(sc.ports)}/{sc.netfilter}" if sc else "off")

    async def reload(self, config: GuardConfig) -> None:
        """Check and commit a new guard section (refused, nothing changed, if it cannot be used)."""
        await self.commit(self.check(config))

    async def commit(self, config: GuardConfig) -> None:
        """Phase two: apply a checked section. A failure after attaching newly listed
        interfaces detaches them and re-applies the running rules (nothing half-applied)."""
        rules = self._ruleset(config)
        old_ifaces, new_ifaces = set(self.config.interfaces), list(config.interfaces)
        added = [i for i in new_ifaces if i not in old_ifaces]
        mode = None if config.xdp_mode == "auto" else XdpMode(config.xdp_mode)
        try:
            self.program.attach(added, mode)  # all or nothing by itself
        except BaseException:
            self._release_unused(self._ruleset(self.config))
            raise
        cookies_on = config.syn_cookies is not None
        try:
            if cookies_on:
                self._netfilter_apply(config)  # before XDP answers SYNs for the new ports
            self.program.apply(rules)
        except BaseException as exc:
            self._roll_back(added, exc)
            raise
        if not cookies_on:
            self._netfilter_apply(config)  # after XDP stopped answering
        for name in old_ifaces - set(new_ifaces):
            self.program.detach(name)
        self.config = config
        self._release_unused(rules)
        event("guard.reload", interfaces=",".join(new_ifaces), deny=len(config.deny), allow=len(config.allow))

    def _roll_back(self, added: list[str], exc: BaseException) -> None:
        """A reload failed after attaching ``added``: detach them again and put the running
        config's rules back (the failed apply may have written part of the new ones), so the
        guard is as it was before the reload — nothing half-applied."""
        for name in added:
            try:
                self.program.detach(name)
            except PathsteerError as err:  # e.g. the interface went away meanwhile
                log.error("guard.reload-rollback-failed interface=%s error=%r", name, str(err))
        old_rules = self._ruleset(self.config)
        try:
            self._netfilter_apply(self.config)
            self.program.apply(old_rules)
        except PathsteerError as err:
            log.error("guard.reload-rollback-failed rules error=%r", str(err))
        self._release_unused(old_rules)
        event("guard.reload-refused", error=str(exc), detached=",".join(added) or "none")

    async def stop(self) -> None:
        if self._tick:
            self._tick.cancel()
            try:
                await self._tick
            except asyncio.CancelledError:
                pass
        self._teardown()
        event("guard.stop")

    def _teardown(self) -> None:
        if self._ring is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._ring.fileno())
            self._ring.close()
            self._ring = None
        if self.program is not None:
            self.program.detach_all()
            self.program.close()
            self.program = None
        if self.netfilter is not None:  # after the detach: no cookie ACK is left without synproxy
            try:
                self.netfilter.teardown()
            except PathsteerError as err:
                log.error("guard.synproxy-teardown-failed error=%r", str(err))
            self.netfilter = None
        if self.store is not None:
            self.store.close()
            self.store = None

    # --- rules ------------------------------------------------------------------------------

    def _id(self, key: tuple) -> int:
        rid, fresh = self.ids.get(key)
        if fresh and self.program is not None:
            self.program.reset_rule_counter(rid)
        return rid

    def _ruleset(self, config: GuardConfig) -> RuleSet:
        allow = {net: self._id(("allow", net)) for net in config.allow}
        deny = {net: self._id(("deny", net)) for net in [*config.deny, *self.blocks]}
        prules = tuple(
            PortRule(r.proto, Action(r.action), r.sport, r.dport, self._id(("rule", i, r.proto, r.sport, r.dport, r.action)))
            for i, r in enumerate(config.rules))
        rl, sl, ab = config.rate_limit, config.syn_limit, config.auto_block
        limits = Limits.build(
            per_source_pps=rl.per_source_pps if rl else None, burst=(rl.burst or rl.per_source_pps) if rl else None,
            syn_pps=sl.per_destination_pps if sl else None, syn_burst=(sl.burst or sl.per_destination_pps) if sl else None,
            threshold_pps=ab.threshold_pps if ab else None, sample_every=config.sample_drops)
        sc = config.syn_cookies
        cookies = None
        if sc is not None:
            cookies = SynCookies(tuple(sc.ports), frozenset(socket.if_nametoindex(n) for n in sc.interfaces or config.interfaces),
                                 sc.mss, sc.mss6, sc.wscale, sc.ttl)
        return RuleSet(allow, deny, prules, limits, cookies)

    def _release_unused(self, rules: RuleSet) -> None:
        """Give back the rule ids of rules a reload removed (their counters restart if reused)."""
        used = {*rules.allow.values(), *rules.deny.values(), *(r.rule_id for r in rules.port_rules)}
        for key, rid in self.ids.items():
            if rid not in used:
                self.ids.release(key)

    def block(self, cidr: Network, *, origin: Origin, ttl: float | None, reason: str) -> Block:
        now = self.clock()
        block = Block(cidr, origin, reason, now, now + ttl if ttl else None)
        self.store.put(block)  # persisted first: a crash after this still blocks after restart
        try:
            self.program.add_cidr("deny", cidr, self._id(("deny", cidr)))
        except BaseException:
            old = self.blocks.get(cidr)
            self.store.put(old) if old else self.store.delete(cidr)
            raise
        self.blocks[cidr] = block
        event("guard.block", cidr=cidr, origin=origin.value, ttl=f"{ttl:g}s" if ttl else "none",
              reason=repr(reason))
        return block

    def unblock(self, cidr: Network, why: str = "manual") -> None:
        block = self.blocks.pop(cidr)
        self.store.delete(cidr)
        if cidr not in self.config.deny:
            self.program.remove_cidr("deny", cidr)
            self.ids.release(("deny", cidr))
        event("guard.unblock" if why == "manual" else "guard.expire", cidr=cidr, origin=block.origin.value)

    def expire(self) -> int:
        """Remove the blocks whose ttl has passed: the trie first, in one batch (a flood of
        spoofed sources can leave thousands of auto-blocks expiring together), then the store in
        one transaction. If the trie refuses, nothing changes and the next tick tries again."""
        now = self.clock()
        expired = [b for b in self.blocks.values() if b.expired(now)]
        if not expired:
            return 0
        config_deny = set(self.config.deny)
        self.program.remove_cidrs("deny", [b.cidr for b in expired if b.cidr not in config_deny])
        self.store.delete_many([b.cidr for b in expired])
        for b in expired:
            del self.blocks[b.cidr]
            if b.cidr not in config_deny:
                self.ids.release(("deny", b.cidr))
            event("guard.expire", cidr=b.cidr, origin=b.origin.value)
        return len(expired)

    async def _ticker(self) -> None:
        while True:
            await beat(TICK_S)
            try:
                self.expire()
            except PathsteerError as exc:
                log.error("guard.expire-failed error=%r", str(exc))

    # --- events -----------------------------------------------------------------------------

    def _drain(self) -> None:
        try:
            self._ring.consume()
        except Exception:  # noqa: BLE001 - the reactor must go on
            log.exception("guard.events-failed")

    def _on_event(self, e: Event) -> None:
        if e.kind == "drop":
            self.recent_drops.append(e)
            return
        self.heavy_hitters += 1
        ab = self.config.auto_block
        if ab is None or e.source in self.blocks:
            return
        if lookup(self.program.installed["allow"], e.source.network_address) is not None:
            return  # never reached: allowed sources are not metered; checked all the same
        try:
            self.block(e.source, origin=Origin.AUTO, ttl=ab.ttl, reason=f"above {ab.threshold_pps} pps")
        except PathsteerError as exc:
            log.error("guard.auto-block-failed cidr=%s error=%r", e.source, str(exc))

    # --- control commands -------------------------------------------------------------------

    def commands(self) -> list[Command]:
        return [
            Command("guard.block", BlockArgs, self.cmd_block, "block a CIDR (ttl seconds, reason)"),
            Command("guard.unblock", UnblockArgs, self.cmd_unblock, "remove a manual or automatic block"),
            Command("guard.list", NoArgs, self.cmd_list, "blocks and config deny entries with hits"),
            Command("guard.stats", StatsArgs, self.cmd_stats, "per-verdict and per-rule counters, top sources"),
        ]

    def cmd_block(self, args: BlockArgs) -> dict:
        cidr = parse_cidr(args.cidr, "cidr")
        block = self.block(cidr, origin=Origin.MANUAL, ttl=args.ttl, reason=args.reason)
        return self._entry(block, self.program.rule_totals([self.ids.get(("deny", cidr))[0]]))

    def cmd_unblock(self, args: UnblockArgs) -> dict:
        cidr = parse_cidr(args.cidr, "cidr")
        if cidr not in self.blocks:
            if cidr in self.config.deny:
                raise UsageError(f"{cidr} is in the config's deny list (guard.deny): remove it there and reload")
            raise NotFoundError(f"{cidr} is not blocked (see 'pathsteer guard list')")
        self.unblock(cidr)
        return {"cidr": str(cidr), "unblocked": True}

    def _entry(self, block: Block, totals: dict) -> dict:
        rid = self.ids.get(("deny", block.cidr))[0]
        now = self.clock()
        t = totals.get(rid)
        return {"cidr": str(block.cidr), "origin": block.origin.value, "reason": block.reason,
                "created": block.created, "expires": block.expires,
                "expires_in": max(0.0, block.expires - now) if block.expires else None,
                "hits": t.packets if t else 0, "rule_id": rid}

    def cmd_list(self, _args: NoArgs) -> dict:
        entries = [Block(net, Origin.CONFIG, "config", 0.0) for net in self.config.deny]
        entries += sorted(self.blocks.values(), key=lambda b: b.created)
        totals = self.program.rule_totals({self.ids.get(("deny", b.cidr))[0] for b in entries})
        return {"entries": [self._entry(b, totals) for b in entries]}

    def cmd_stats(self, args: StatsArgs) -> dict[str, Any]:
        verdicts = self.program.verdict_totals()
        keys = self.ids.items()
        totals = self.program.rule_totals(rid for _, rid in keys)
        rules = []
        for key, rid in sorted(keys, key=lambda kv: kv[1]):
            kind = key[0]
            what = str(key[1]) if kind != "rule" else f"#{key[1]} proto={key[2]} sport={key[3][0]}-{key[3][1]} " \
                                                           f"dport={key[4][0]}-{key[4][1]} {key[5]}"
            rules.append({"rule_id": rid, "kind": kind, "rule": what, "packets": totals[rid].packets,
                          "bytes": totals[rid].bytes})
        top = self.program.top_sources(args.top) if args.top else []
        return {
            "verdicts": {v.value: {"packets": t.packets, "bytes": t.bytes} for v, t in verdicts.items()},
            "dropped": sum(t.packets for v, t in verdicts.items() if v.drops),
            "passed": sum(t.packets for v, t in verdicts.items() if not v.drops and not v.answers),
            "answered": sum(t.packets for v, t in verdicts.items() if v.answers),  # SYN-ACK cookies sent
            "rules": rules,
            "top_sources": [{"source": str(n), "packets": p, "rate_limited": d} for n, p, d in top],
            "heavy_hitter_events": self.heavy_hitters,
            "recent_drops": [{"source": str(e.source), "destination": e.destination, "verdict": e.verdict.value,
                              "proto": e.proto, "dport": e.dport} for e in list(self.recent_drops)[-10:]],
            "interfaces": list(self.config.interfaces),
            "blocks": len(self.blocks),
            "syn_cookies": None if self.config.syn_cookies is None else {
                "ports": _ports_text(self.config.syn_cookies.ports),
                "interfaces": list(self.config.syn_cookies.interfaces or self.config.interfaces),
                "netfilter": self.config.syn_cookies.netfilter},
            "sources_tracked": self.program.source_count(),
            "sources_capacity": self.program.maps["sources"].max_entries,
        }

