"""BpfSteerDataPlane's decisions against a fake program (no root): the order of writes that
makes every update atomic, slot reuse only after the grace period, diffs only, adopt, reconcile."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from pathsteer.bpf import BpfObject
from pathsteer.dataplane import bpf_steer
from pathsteer.dataplane.bpf_steer_abi import Abi, OBJECT, State, key_int
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent


class FakeProgram:
    """SteerProgram's interface over dicts, logging every write."""

    def __init__(self, abi: Abi) -> None:
        self.abi = abi
        self.id = 42
        self.ops: list[tuple] = []
        self.routes = {4: {}, 6: {}}
        self.lengths = {4: 0, 6: 0}
        self.groups: dict[int, tuple[list, list]] = {}
        self.paths: dict = {}
        self.state = State(0, 0)
        self.attached: set[str] = set()

    def heartbeat(self, stale_after_ns, now_ns=None):
        self.state = State(now_ns or 1, stale_after_ns)

    def read_state(self):
        return self.state

    def write_state(self, hb, stale):
        self.state = State(hb, stale)

    def read_paths(self):
        return dict(self.paths)

    def write_path(self, pid, value):
        self.paths[pid] = value

    def delete_path(self, pid):
        self.paths.pop(pid, None)

    def write_group(self, slot, members, ring):
        self.ops.append(("group", slot))
        self.groups[slot] = (list(members), list(ring))

    def read_group(self, slot):
        return self.groups.get(slot, ([], []))

    def group_image(self, members, ring):
        return repr((list(members), list(ring))).encode()

    def read_group_image(self, slot):
        return self.group_image(*self.read_group(slot))

    def write_routes(self, version, items):
        for kb, g in items:
            self.ops.append(("route", kb, g))
            self.routes[version][kb] = g
        return len(items)

    def delete_routes(self, version, keys):
        for kb in keys:
            self.ops.append(("delete", kb))
            self.routes[version].pop(kb, None)
            self.check_lengths(version)

    def present(self, version):
        return {int.from_bytes(kb[:4], "little") for kb in self.routes[version]}

    def check_lengths(self, version):
        """The invariant of route_lengths (steer_structs.h): every length announced has an entry."""
        named = {n for n in range(129) if self.lengths[version] >> n & 1}
        assert named <= self.present(version), f"v{version} lengths {named - self.present(version)} have no entry"

    def write_lengths(self, version, mask):
        self.ops.append(("lengths", version, mask))
        self.lengths[version] = mask
        self.check_lengths(version)

    def read_lengths(self, version):
        return self.lengths[version]

    def set_v6_lookup_lpm(self, on):
        self.lpm6 = on

    def v4_table(self):
        return memoryview(bytearray(2 << 24)).cast("H")

    def write_routes_packed(self, version, keys, values):
        size = 8 if version == 4 else 20
        n = len(keys) // size
        slots = struct.unpack(f"<{n}I", values)
        return self.write_routes(version, [(keys[i * size:(i + 1) * size], slots[i]) for i in range(n)])

    def delete_routes_packed(self, version, keys):
        size = 8 if version == 4 else 20
        self.delete_routes(version, [keys[i:i + size] for i in range(0, len(keys), size)])

    def read_routes(self, version):
        return dict(self.routes[version])

    def lookup_route(self, version, kb):
        return self.routes[version].get(kb)

    def attach(self, name):
        self.attached.add(name)

    def is_attached(self, name):
        return name in self.attached

    def detach(self, name):
        self.attached.discard(name)

    def close(self):
        pass

    def path_totals(self, ids):
        return {}


@pytest.fixture(scope="module")
def abi():
    with BpfObject.open(OBJECT) as obj:
        return Abi.from_btf(obj.btf)


PATHS = [PathLink("p1", 1, "r-p1", ipaddress.ip_address("10.200.1.2"), ipaddress.ip_address("2001:db8:200:1::2")),
         PathLink("p2", 2, "r-p2", ipaddress.ip_address("10.200.2.2"), None)]


@pytest.fixture
def plane(abi, monkeypatch):
    fake = FakeProgram(abi)
    monkeypatch.setattr(bpf_steer.SteerProgram, "load", classmethod(lambda cls: fake))
    monkeypatch.setattr(bpf_steer, "ifindex_of", lambda name: 7)
    monkeypatch.setattr(bpf_steer, "local_keys", lambda: {key_int(ipaddress.ip_network("198.51.100.1/32"))})
    clock = [1000.0]
    monkeypatch.setattr(bpf_steer.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(bpf_steer.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    p = bpf_steer.BpfSteerDataPlane(PATHS, ["r-c"], stale_after_s=10)
    p.clock = clock
    p.fake = fake
    return p


def routes(**spec) -> Desired:
    out = {}
    for text, hops in spec.items():
        net = ipaddress.ip_network(text.replace("_", "/").replace("x", ":"))
        out[net] = RouteIntent(net, tuple(NextHop(n, w) for n, w in hops))
    return Desired(out)


D1 = {"198.51.100.0_24": [("p1", 1)], "203.0.113.0_24": [("p1", 1), ("p2", 1)]}


def test_tables_are_written_before_any_route_points_to_them(plane):
    plane.apply(routes(**D1))
    seen_groups = set()
    for op in plane.fake.ops:
        if op[0] == "group":
            seen_groups.add(op[1])
        elif op[0] == "route" and op[2] != plane.fake.abi.group_local:
            assert op[2] in seen_groups, "a route flipped to a slot not yet written"
    assert plane.fake.attached == {"r-c"}
    assert plane.fake.state.stale_after_ns == 10 * 10**9


def test_local_address_inside_a_steered_prefix_is_marked_local(plane):
    plane.apply(routes(**D1))
    kb = bpf_steer.key_bytes(ipaddress.ip_network("198.51.100.1/32"))
    assert plane.fake.routes[4][kb] == plane.fake.abi.group_local


def test_second_apply_of_the_same_routes_writes_nothing(plane):
    plane.apply(routes(**D1))
    n = len(plane.fake.ops)
    plane.apply(routes(**D1))
    assert plane.fake.ops[n:] == []


def test_change_uses_a_new_slot_and_old_slot_waits_out_the_grace_period(plane):
    plane.apply(routes(**D1))
    net = ipaddress.ip_network("198.51.100.0/24")
    kb = bpf_steer.key_bytes(net)
    old_slot = plane.fake.routes[4][kb]
    plane.apply(routes(**{**D1, "198.51.100.0_24": [("p2", 1)]}))
    new_slot = plane.fake.routes[4][kb]
    assert new_slot != old_slot
    assert old_slot not in plane.fake.groups or plane.fake.groups[old_slot][0] == [(1, 1)], "old table untouched"
    # churn through many groups at the same instant: the old slot is not handed out again
    for w in range(2, 40):
        plane.apply(routes(**{**D1, "198.51.100.0_24": [("p1", w), ("p2", 1)]}))
        assert plane.fake.routes[4][kb] != old_slot
    plane.clock[0] += bpf_steer.GRACE_S + 0.01
    plane._release_cooled()
    assert old_slot in plane._free


def test_paths_without_a_gateway_of_the_family_are_left_out(plane):
    plane.apply(routes(**{"2001xdb8x100xx_48": [("p1", 1), ("p2", 1)]}))
    (key,) = set(plane.installed.values())
    assert key == ((1, 1),)


def test_unknown_path_is_an_error(plane):
    from pathsteer.errors import UsageError
    with pytest.raises(UsageError, match="unknown path 'p9'"):
        plane.apply(routes(**{"10.0.0.0_8": [("p9", 1)]}))


def test_removal_deletes_the_route(plane):
    plane.apply(routes(**D1))
    plane.apply(routes(**{"198.51.100.0_24": [("p1", 1)]}))
    assert bpf_steer.key_bytes(ipaddress.ip_network("203.0.113.0/24")) not in plane.fake.routes[4]
    assert len(plane._groups) == 1


def test_adopt_rebuilds_desired_from_the_maps(plane, abi, monkeypatch):
    plane.apply(routes(**D1))
    fake = plane.fake
    monkeypatch.setattr(bpf_steer.SteerProgram, "find", classmethod(lambda cls, *a: fake))
    fresh = bpf_steer.BpfSteerDataPlane(PATHS, ["r-c"], stale_after_s=10)
    monkeypatch.setattr(fresh, "_tc_place", lambda: (abi.tc_handle, abi.tc_priority))
    got = fresh.adopt()
    assert got == routes(**D1)
    assert fresh.local == {ipaddress.ip_network("198.51.100.1/32")}
    n = len(fake.ops)
    fresh.apply(got)
    assert fake.ops[n:] == [], "adopting and re-applying the same state changes nothing"


def test_reconcile_repairs_a_deleted_route_and_a_detach(plane):
    d = routes(**D1)
    plane.apply(d)
    kb = bpf_steer.key_bytes(ipaddress.ip_network("203.0.113.0/24"))
    del plane.fake.routes[4][kb]
    plane.fake.attached.clear()
    repaired = plane.reconcile(d)
    assert kb in plane.fake.routes[4]
    assert "attached to r-c" in repaired
    assert any("203.0.113.0/24 restored" in r for r in repaired)
    assert plane.reconcile(d) == []


def test_reconcile_rewrites_a_table_changed_behind_our_back(plane):
    d = routes(**D1)
    plane.apply(d)
    slot = plane.fake.routes[4][bpf_steer.key_bytes(ipaddress.ip_network("203.0.113.0/24"))]
    members, ring = plane.fake.groups[slot]
    plane.fake.groups[slot] = (members, [members[0][0]] * len(ring))
    assert plane.reconcile(d) == [f"group slot {slot} rewritten"]
    assert plane.fake.groups[slot] == (members, ring)
    assert plane.reconcile(d) == []


def test_stop_detaches(plane):
    plane.apply(routes(**D1))
    fake = plane.fake
    plane.stop()
    assert fake.attached == set() and plane.prog is None
