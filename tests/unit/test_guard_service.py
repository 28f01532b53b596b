"""The guard service's decisions without a kernel: a fake program records what would be
written to the maps; a fake clock drives expiry. (The real program: tests/kernel, tests/lab.)"""

from __future__ import annotations

import asyncio
import ipaddress
import os

import pytest

from pathsteer.config import parse_config
from pathsteer.errors import UsageError
from pathsteer.guard.program import Event, Totals
from pathsteer.guard.rules import Verdict
from pathsteer.guard.service import BlockArgs, GuardService, StatsArgs, UnblockArgs
from pathsteer.control.server import NoArgs

N = ipaddress.ip_network


class FakeRing:
    def __init__(self, callback):
        self.callback = callback
        self.r, self.w = os.pipe()

    def fileno(self):
        return self.r

    def consume(self):
        return 0

    def close(self):
        os.close(self.r)
        os.close(self.w)


class FakeProgram:
    def __init__(self):
        self.limits = {"GUARD_LIMIT_RULES": 100, "GUARD_LIMIT_PORT_RULES": 32}
        self.installed = {"allow": {}, "deny": {}}
        self.applied = None
        self.attached: list[str] = []
        self.fail_add = False
        self.ring = None
        self.maps = {"sources": type("M", (), {"max_entries": 65536})()}

    fail_apply_on = None  # a CIDR: an apply whose deny list holds it fails half-way

    def apply(self, rules, clock_ns=0):
        self.applied = rules
        if self.fail_apply_on in rules.deny:  # the allow trie written, the deny trie not
            self.installed = {"allow": dict(rules.allow), "deny": self.installed["deny"]}
            from pathsteer.errors import BpfError
            raise BpfError("deny trie full")
        self.installed = {"allow": dict(rules.allow), "deny": dict(rules.deny)}

    def attach(self, interfaces, mode=None):
        self.attached += list(interfaces)
        return [f"{i}:native" for i in interfaces]

    def detach(self, name):
        if name in self.attached:
            self.attached.remove(name)

    def detach_all(self):
        self.attached.clear()

    def close(self):
        pass

    def add_cidr(self, kind, net, rid):
        if self.fail_add:
            from pathsteer.errors import BpfError
            raise BpfError("map full")
        self.installed[kind][net] = rid

    def remove_cidr(self, kind, net):
        return self.installed[kind].pop(net, None) is not None

    fail_remove = False
    remove_calls = 0

    def remove_cidrs(self, kind, nets):
        if self.fail_remove:
            from pathsteer.errors import BpfError
            raise BpfError("delete_batch refused")
        self.remove_calls += 1
        for net in nets:
            self.installed[kind].pop(net, None)

    def reset_rule_counter(self, rid):
        pass

    def rule_totals(self, ids):
        return {rid: Totals(7, 700) for rid in ids}

    def verdict_totals(self):
        return {v: Totals(1, 100) for v in Verdict}

    def top_sources(self, n):
        return [(N("10.250.0.2/32"), 100, 5)][:n]

    def source_count(self):
        return 1

    def event_reader(self, callback):
        self.ring = FakeRing(callback)
        return self.ring


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


def hh(source: str) -> Event:
    return Event("heavy-hitter", 0, Verdict.PASS, 0, 100, 1, N(source), "198.51.100.10", 17, 0, 0)


@pytest.fixture
def service(tmp_path):
    config = parse_config({"guard": {
        "interfaces": ["lo"], "allow": ["10.200.0.0/24"], "deny": ["192.0.2.0/24"],
        "auto_block": {"threshold_pps": 20000, "ttl": "10m"}, "state_dir": str(tmp_path / "state")}}).guard
    clock, prog = Clock(), FakeProgram()
    svc = GuardService(config, clock=clock, program_factory=lambda: prog)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(svc.start())
    svc.fake, svc.clock_, svc.loop_ = prog, clock, loop
    yield svc
    if svc.program is not None:
        loop.run_until_complete(svc.stop())
    loop.close()


def test_start_applies_config_and_attaches(service):
    prog = service.fake
    assert prog.attached == ["lo"]
    assert set(prog.applied.deny) == {N("192.0.2.0/24")} and set(prog.applied.allow) == {N("10.200.0.0/24")}
    assert prog.applied.limits.meter_interval_ns == 50_000  # 1e9 / 20000


def test_manual_block_list_unblock(service):
    entry = service.cmd_block(BlockArgs(cidr="203.0.113.0/24", ttl=30, reason="scan"))
    assert (entry["cidr"], entry["origin"], entry["expires_in"], entry["hits"]) == ("203.0.113.0/24", "manual", 30, 7)
    assert N("203.0.113.0/24") in service.fake.installed["deny"]
    listed = service.cmd_list(NoArgs())["entries"]
    assert [(e["cidr"], e["origin"]) for e in listed] == [("192.0.2.0/24", "config"), ("203.0.113.0/24", "manual")]
    service.cmd_unblock(UnblockArgs(cidr="203.0.113.0/24"))
    assert N("203.0.113.0/24") not in service.fake.installed["deny"]
    with pytest.raises(UsageError, match="is not blocked"):
        service.cmd_unblock(UnblockArgs(cidr="203.0.113.0/24"))
    with pytest.raises(UsageError, match="config's deny list"):
        service.cmd_unblock(UnblockArgs(cidr="192.0.2.0/24"))
    with pytest.raises(UsageError, match="is not a CIDR"):
        service.cmd_block(BlockArgs(cidr="10.0.0.0/33"))


def test_failed_map_update_leaves_nothing_half_applied(service):
    service.fake.fail_add = True
    with pytest.raises(Exception, match="map full"):
        service.cmd_block(BlockArgs(cidr="203.0.113.0/24"))
    assert service.blocks == {} and service.store.load() == []


def test_auto_block_and_expiry(service):
    service._on_event(hh("10.250.0.2/32"))
    block = service.blocks[N("10.250.0.2/32")]
    assert (block.origin.value, block.expires - block.created) == ("auto", 600.0)
    service._on_event(hh("10.250.0.2/32"))  # repeated event: still one block
    assert len(service.blocks) == 1
    service.clock_.now += 599.9
    assert service.expire() == 0
    service.clock_.now += 0.1
    assert service.expire() == 1
    assert N("10.250.0.2/32") not in service.fake.installed["deny"] and service.store.load() == []


def test_a_burst_of_auto_blocks_expires_in_one_batch(service):
    for i in range(300):
        service._on_event(hh(f"10.250.{i // 250}.{i % 250 + 1}/32"))
    service.cmd_block(BlockArgs(cidr="192.0.2.0/24", ttl=1))  # also in the config's deny list
    assert len(service.blocks) == 301
    service.clock_.now += 600
    service.fake.fail_remove = True  # the trie refuses: nothing changes, the next tick retries
    with pytest.raises(Exception, match="refused"):
        service.expire()
    assert len(service.blocks) == 301 and len(service.store.load()) == 301
    service.fake.fail_remove = False
    assert service.expire() == 301 and service.fake.remove_calls == 1
    assert service.blocks == {} and service.store.load() == []
    assert set(service.fake.installed["deny"]) == {N("192.0.2.0/24")}  # the config's entry stays
    assert {key[0] for key, _ in service.ids.items()} == {"allow", "deny"}
    assert [key[1] for key, _ in service.ids.items() if key[0] == "deny"] == [N("192.0.2.0/24")]


def test_allow_list_is_never_auto_blocked(service):
    service._on_event(hh("10.200.0.9/32"))
    assert service.blocks == {}


def test_blocks_survive_restart(service, tmp_path):
    service.cmd_block(BlockArgs(cidr="2001:db8:bad:1::/64", reason="v6"))
    service.cmd_block(BlockArgs(cidr="203.0.113.0/24", ttl=5))
    service.loop_.run_until_complete(service.stop())
    service.program = None
    service.clock_.now += 10  # the /24 expires while the daemon is down
    prog = FakeProgram()
    again = GuardService(service.config, clock=service.clock_, program_factory=lambda: prog)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(again.start())
    try:
        assert set(again.blocks) == {N("2001:db8:bad:1::/64")}
        assert N("2001:db8:bad:1::/64") in prog.applied.deny
    finally:
        loop.run_until_complete(again.stop())
        loop.close()


def test_reload_refuses_state_dir_change_and_applies_new_deny(service, tmp_path):
    cfg = service.config.model_copy(update={"state_dir": str(tmp_path / "other")})
    with pytest.raises(UsageError, match="state_dir cannot change"):
        service.loop_.run_until_complete(service.reload(cfg))
    cfg = service.config.model_copy(update={"deny": [N("198.18.0.0/15")]})
    service.loop_.run_until_complete(service.reload(cfg))
    assert set(service.fake.applied.deny) == {N("198.18.0.0/15")}


def test_failed_reload_detaches_what_it_attached_and_restores_the_rules(service, monkeypatch):
    """A reload that fails after attaching a newly added interface leaves nothing of itself:
    the interface is detached again and the running config's rules are back in the maps."""
    prog = service.fake
    before = service.config
    service.cmd_block(BlockArgs(cidr="203.0.113.0/24", reason="scan"))
    old_ids = dict(service.ids.items())
    cfg = before.model_copy(update={"interfaces": ["lo", "eth-new"], "allow": [N("10.9.0.0/16")],
                                    "deny": [N("198.18.0.0/15")]})
    monkeypatch.setattr(GuardService, "validate", staticmethod(lambda config: None))  # no eth-new here
    prog.fail_apply_on = N("198.18.0.0/15")
    with pytest.raises(Exception, match="deny trie full"):
        service.loop_.run_until_complete(service.reload(cfg))
    assert prog.attached == ["lo"]  # eth-new was attached, then detached again
    assert service.config is before
    assert set(prog.installed["allow"]) == {N("10.200.0.0/24")}
    assert set(prog.installed["deny"]) == {N("192.0.2.0/24"), N("203.0.113.0/24")}
    assert dict(service.ids.items()) == old_ids  # the new rules' ids were given back
    prog.fail_apply_on = None
    service.loop_.run_until_complete(service.reload(cfg))  # the same reload, now able to apply
    assert prog.attached == ["lo", "eth-new"] and set(prog.installed["allow"]) == {N("10.9.0.0/16")}


def test_stats_shape(service):
    stats = service.cmd_stats(StatsArgs(top=5))
    assert stats["verdicts"]["drop-deny"] == {"packets": 1, "bytes": 100}
    # every verdict counts one packet: 6 drop, 5 pass, 1 answers (tx-syncookie)
    assert (stats["dropped"], stats["passed"], stats["answered"]) == (6, 5, 1)
    assert stats["syn_cookies"] is None
    assert stats["top_sources"] == [{"source": "10.250.0.2/32", "packets": 100, "rate_limited": 5}]
    assert {r["kind"] for r in stats["rules"]} == {"allow", "deny"}


def test_interface_missing_is_refused_before_anything(tmp_path):
    config = parse_config({"guard": {"interfaces": ["lo", "nope0"], "state_dir": str(tmp_path)}}).guard
    with pytest.raises(UsageError, match=r"guard.interfaces\[1\]: 'nope0' is not an interface"):
        GuardService.validate(config)


# --- SYN cookies: the order of netfilter and XDP ---------------------------------------------

class FakeNetfilter:
    """Records setup/teardown in one journal with the fake program's applies and detaches."""

    def __init__(self, journal, state_dir):
        self.journal = journal
        self.fail_setup = False

    def setup(self, interfaces, ports, *, mss, mss6, wscale):
        if self.fail_setup:
            from pathsteer.errors import PathsteerError
            raise PathsteerError("nft refused")
        self.journal.append(("nft-setup", tuple(interfaces), tuple(ports), mss, mss6, wscale))

    def teardown(self):
        self.journal.append(("nft-teardown",))


@pytest.fixture
def cookie_service(tmp_path, monkeypatch):
    from pathsteer.guard import synproxy
    journal = []
    made = []
    monkeypatch.setattr(synproxy, "Netfilter", lambda state_dir: made.append(FakeNetfilter(journal, state_dir)) or made[-1])
    monkeypatch.setattr(GuardService, "validate", staticmethod(lambda config: None))  # no host conntrack/nft here
    prog = FakeProgram()
    real_apply = prog.apply

    def apply(rules, clock_ns=0):
        journal.append(("apply", rules.syn_cookies is not None))
        real_apply(rules, clock_ns)

    prog.apply = apply
    prog.detach_all = lambda: journal.append(("detach",))
    prog.close = lambda: None
    prog.detach = lambda name: None
    prog.reset_rule_counter = lambda rid: None
    config = parse_config({"guard": {"interfaces": ["lo"], "state_dir": str(tmp_path / "state"),
                                     "syn_cookies": {"ports": [80, "8000-8080"], "mss": 1400}}}).guard
    svc = GuardService(config, program_factory=lambda: prog)
    loop = asyncio.new_event_loop()
    svc.journal_, svc.loop_, svc.made_ = journal, loop, made
    yield svc
    if svc.program is not None:
        loop.run_until_complete(svc.stop())
    loop.close()


def test_cookies_netfilter_before_xdp_and_after_detach(cookie_service):
    svc = cookie_service
    svc.loop_.run_until_complete(svc.start())
    rules = svc.program.applied.syn_cookies
    assert rules.ports == ((80, 80), (8000, 8080)) and rules.mss4 == 1400 and rules.ifindexes == {1}
    assert svc.journal_ == [("nft-setup", ("lo",), ((80, 80), (8000, 8080)), 1400, 1440, 7), ("apply", True)]
    assert svc.cmd_stats(StatsArgs(top=0))["syn_cookies"] == {"ports": "80,8000-8080", "interfaces": ["lo"],
                                                              "netfilter": "managed"}
    svc.journal_.clear()
    svc.loop_.run_until_complete(svc.stop())
    assert svc.journal_ == [("detach",), ("nft-teardown",)]


def test_cookies_reload_off_then_on(cookie_service):
    svc = cookie_service
    svc.loop_.run_until_complete(svc.start())
    on = svc.config
    svc.journal_.clear()
    svc.loop_.run_until_complete(svc.reload(on.model_copy(update={"syn_cookies": None})))
    assert svc.journal_ == [("apply", False), ("nft-teardown",)]  # XDP stops answering first
    svc.journal_.clear()
    svc.loop_.run_until_complete(svc.reload(on))
    assert [j[0] for j in svc.journal_] == ["nft-setup", "apply"]  # synproxy there before the first SYN-ACK


def test_cookies_start_fails_cleanly_when_netfilter_refuses(cookie_service):
    svc = cookie_service
    from pathsteer.errors import PathsteerError
    import pathsteer.guard.synproxy as synproxy
    orig = synproxy.Netfilter

    def refusing(state_dir):
        nf = orig(state_dir)
        nf.fail_setup = True
        return nf

    synproxy.Netfilter = refusing
    with pytest.raises(PathsteerError, match="nft refused"):
        svc.loop_.run_until_complete(svc.start())
    assert ("apply", True) not in svc.journal_ and svc.program is None
