"""Config: the issue's steering example loads; every bad value is refused with one line naming
the field and the value; nothing else is needed to validate (no root, no interfaces)."""

from __future__ import annotations

import copy
import ipaddress

import pytest
from hypothesis import given, settings, strategies as st

from pathsteer.config import ConfigError, load_config, parse_config
from pathsteer.errors import UsageError
from pathsteer.steering import build

ISSUE_EXAMPLE = """
dataplane:
  mode: fib              # fib | bpf
  ingress: [r-c]         # bpf: interfaces whose incoming traffic is steered
  table: 200             # fib: the routing table pathsteer owns (optional)
control:
  socket: /run/pathsteer/pathsteer.sock
paths:
  - name: p1
    interface: r-p1
    gateway: 10.200.1.2
    capacity: 100mbit    # optional
    probe: {targets: [198.51.100.9, 203.0.113.9], method: icmp, interval: 20ms}
  - name: p2
    interface: r-p2
    gateway: 10.200.2.2
    probe: {targets: [198.51.100.9, 203.0.113.9], method: icmp, interval: 20ms}
  - name: p3
    interface: r-p3
    gateway: 10.200.3.2
    gateway6: 2001:db8:200:3::2
    probe: {targets: [198.51.100.9, 203.0.113.9], method: icmp, interval: 20ms}
destinations:
  - prefix: 198.51.100.0/24
    policy: lowest-latency   # lowest-latency | weighted | failover
    paths: [p1, p2, p3]
    hysteresis: {min_improvement: 10%, hold_down: 1s}
    sla: {max_rtt: 100ms, max_loss: 5%, max_jitter: 20ms}
  - prefix: 2001:db8:100::/48
    policy: failover
    paths: [p3]
"""


def test_issue_example(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(ISSUE_EXAMPLE)
    c = load_config(path)
    assert c.sections == ["dataplane", "paths", "destinations"]
    assert c.dataplane.mode == "fib" and c.dataplane.table == 200 and c.dataplane.stale_after == 10.0
    p1 = c.paths[0]
    assert p1.capacity == 100_000_000 and p1.probe.interval == 0.020
    # No timeout: adaptive per target (was a fixed 50 ms, which a 60 ms path never answered within).
    assert p1.probe.timeout_s is None and p1.probe.adaptive_timeout.max_s == 2.0
    d = c.destinations[0]
    assert d.prefix == ipaddress.ip_network("198.51.100.0/24")
    assert d.hysteresis.min_improvement == pytest.approx(0.10) and d.hysteresis.hold_down == 1.0
    assert (d.sla.max_rtt, d.sla.max_loss, d.sla.max_jitter) == (0.1, 5.0, 0.02)
    params = build.policy_params(c)
    assert params.destinations[0].sla.max_loss_pct == 5.0
    assert [p.ipv6 for p in params.paths] == [False, False, True]
    probes = build.probe_configs(c)
    assert probes[0].gateway == "10.200.1.2" and probes[0].interval_s == 0.02
    links = build.path_links(c)
    assert [(link.name, link.id) for link in links] == [("p1", 1), ("p2", 2), ("p3", 3)]


def base() -> dict:
    import yaml
    return yaml.safe_load(ISSUE_EXAMPLE)


def changed(path: str, value) -> dict:
    """The example with one field set: ``destinations.0.paths.2``; value None deletes it."""
    data = copy.deepcopy(base())
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = data
    for k in keys[:-1]:
        node = node[k]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


@pytest.mark.parametrize("field, value, message", [
    ("destinations.0.paths.2", "p9", "destinations[0].paths[2]: unknown path 'p9' (paths: p1, p2, p3)"),
    ("paths.1.name", "p1", "paths[1].name: 'p1' is used twice (also paths[0])"),
    ("destinations.1.prefix", "198.51.100.0/24", "destinations[1].prefix: '198.51.100.0/24' is listed twice"),
    ("destinations.0.prefix", "198.51.100.1/24", "destinations[0].prefix: '198.51.100.1/24' has host bits set"),
    ("destinations.0.prefix", "10.200.0.0/16", "destinations[0].prefix: 10.200.0.0/16 covers the gateway 10.200.1.2"),
    ("destinations.0.prefix", "banana", "destinations[0].prefix: 'banana' is not a prefix"),
    ("destinations.0.paths", ["p1", "p1"], "destinations[0].paths[1]: 'p1' is listed twice"),
    ("destinations.1.paths", ["p1"], "destinations[1].paths: none of ['p1'] has an IPv6 gateway"),
    ("destinations.0.policy", "fastest", "destinations[0].policy: 'fastest': input should be"),
    ("destinations.0.hysteresis", {"hold_down": "1 fortnight"}, "destinations[0].hysteresis.hold_down: '1 fortnight' is not a duration"),
    ("destinations.0.hysteresis", {"min_improvement_abs": "-1ms"}, "destinations[0].hysteresis.min_improvement_abs: '-1ms'"),
    ("destinations.0.hysteresis", {"min_improvement": "110%"}, "destinations[0].hysteresis.min_improvement: '110%' must be between 0% and 100%"),
    ("destinations.0.sla", {"max_loss": "5 percent"}, "destinations[0].sla.max_loss: '5 percent' is not a percentage"),
    ("destinations.0.sla", {"max_upstream_time": "0ms"},
     "destinations[0].sla.max_upstream_time: '0ms' must be a duration above 0"),
    ("destinations.0.sla", {"max_upstream_time": "slow"},
     "destinations[0].sla.max_upstream_time: 'slow' is not a duration"),
    ("destinations.0.sla", {"upstream_hold": "500ms"},
     "destinations[0].sla.upstream_hold: '500ms' must be at least 1s"),
    ("destinations.0.sla", {"max_upstream_tim": "300ms"}, "destinations[0].sla.max_upstream_tim: unknown field"),
    ("paths.0.capacity", "100 furlongs", "paths[0].capacity: '100 furlongs' is not a rate"),
    ("paths.0.capacity", "0mbit", "paths[0].capacity: '0mbit' must be a rate above 0"),
    ("paths.0.probe", {"targets": ["198.51.100.9"], "interval": "5ms"}, "paths[0].probe.interval: '5ms' is below the 10ms minimum"),
    ("paths.0.probe", {"targets": ["x"]}, "paths[0].probe.targets[0]: 'x' is not an IPv4 or IPv6 address"),
    ("paths.0.probe", {"targets": ["2001:db8::1"]}, "IPv6 targets need an IPv6 gateway (gateway6)"),
    ("paths.0.gateway", "2001:db8::1", "paths[0].gateway: '2001:db8::1' is not an IPv4 address"),
    ("paths.0.gateway", None, "paths[0]: needs"),
    ("paths.0.interface", "a b", "paths[0].interface: 'a b' is not an interface name"),
    ("paths.0.colour", "blue", "paths[0].colour: unknown field"),
    ("dataplane.mode", "ebpf", "dataplane.mode: 'ebpf': input should be 'fib' or 'bpf'"),
    ("dataplane.table", 254, "dataplane.table: 254 is a table of the kernel's own"),
    ("dataplane.stale_after", "soon", "dataplane.stale_after: 'soon' is not a duration"),
    ("dataplane.reconcile_interval", "5s", "dataplane.reconcile_interval: '5s' must be between 50ms and 1s"),
    ("destinations", None, "destinations: missing (steering needs dataplane, paths and destinations"),
    ("decision", {"min_samples": 0}, "decision.min_samples: 0: input should be greater than or equal to 1"),
    ("decision", {"min_samples": "many"}, "decision.min_samples: 'many': input should be a valid integer"),
    ("decision", {"min_samples": True}, "decision.min_samples: True must be a whole number of answered probes"),
    ("destinations.0.weighted", {"min_shift": "30%", "max_step": "10%"},
     "destinations[0].weighted.max_step: 10% is below min_shift (30%)"),
    ("destinations.0.weighted", {"min_shift": "60%"}, "destinations[0].weighted.min_shift: '60%' must be at most 50%"),
    ("destinations.0.weighted", {"max_step": "0%"}, "destinations[0].weighted.max_step: '0%' must be at least 1%"),
    ("destinations.0.weighted", {"utilization_ceiling": "0%"},
     "destinations[0].weighted.utilization_ceiling: '0%' must be at least 1%"),
])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError) as info:
        parse_config(changed(field, value), "c.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("c.yaml: ")
    assert message in text, text
    assert info.value.exit_code == 2


def test_max_upstream_time_reaches_the_policy():
    data = changed("destinations.0.sla", {"max_upstream_time": "300ms", "upstream_hold": "2m"})
    sla = build.policy_params(parse_config(data, "c.yaml")).destinations[0].sla
    assert (sla.max_upstream_time_s, sla.upstream_hold_s) == (pytest.approx(0.3), 120.0)
    default = build.policy_params(parse_config(base(), "c.yaml")).destinations[0].sla
    assert (default.max_upstream_time_s, default.upstream_hold_s) == (None, 60.0)


def test_bpf_needs_ingress():
    data = changed("dataplane", {"mode": "bpf"})
    with pytest.raises(ConfigError, match="dataplane.ingress: the bpf data plane needs at least one interface"):
        parse_config(data)


def test_defaults_and_main_table():
    data = changed("dataplane", {"table": "main"})
    c = parse_config(data)
    assert c.dataplane.table is None and c.dataplane.reconcile_interval == 1.0
    c = parse_config(changed("dataplane", None))
    assert c.dataplane is None and build.dataplane_config(c).mode == "fib"


def test_nested_prefixes_are_allowed():
    data = base()
    data["destinations"].append({"prefix": "198.51.100.128/25", "paths": ["p2"]})
    c = parse_config(data)
    assert len(c.destinations) == 3


def test_guard_and_steering_together():
    data = base()
    data["guard"] = {"interfaces": ["r-a"]}
    assert parse_config(data).sections == ["guard", "dataplane", "paths", "destinations"]


def test_path_ids_are_kept_across_a_reload():
    c = parse_config(base())
    first = build.path_links(c)
    data = base()
    data["paths"] = [data["paths"][2], {**data["paths"][0], "name": "p4"}, data["paths"][1]]
    data["destinations"] = [{"prefix": "198.51.100.0/24", "paths": ["p2", "p4"]}]
    again = build.path_links(parse_config(data), first)
    assert [(link.name, link.id) for link in again] == [("p3", 3), ("p4", 1), ("p2", 2)]


def test_min_samples_default_and_setting():
    assert build.policy_params(parse_config(base())).min_samples == 5
    assert build.policy_params(parse_config(changed("decision", {"min_samples": 20}))).min_samples == 20


def test_min_samples_a_path_can_never_hold_is_refused():
    """p1 keeps at most 10 probes × 2 targets in its window: 21 answers could never be reached."""
    data = changed("decision", {"min_samples": 21})
    data["paths"][0]["probe"]["window"] = 10
    # refused by the config itself (before: only when the daemon built its policy params)
    with pytest.raises(UsageError) as info:
        parse_config(data)
    assert str(info.value).endswith("decision.min_samples: 21 is more than paths[0] (p1) can ever have in its "
                                    "window (10 probes × 2 targets = 20)"), str(info.value)
    data["decision"]["min_samples"] = 20
    assert build.policy_params(parse_config(data)).min_samples == 20


def test_weighted_min_shift_above_the_default_step_is_accepted():
    """min_shift 30% (accepted by the config) used to make the daemon refuse with an error about
    weighted.max_step, a field the user could not set; max_step now follows it by default."""
    data = changed("destinations.0.weighted", {"min_shift": "30%"})
    data["destinations"][0]["policy"] = "weighted"
    params = build.policy_params(parse_config(data, "c.yaml"))
    assert params.destinations[0].weighted.min_shift == pytest.approx(0.30)
    assert params.destinations[0].weighted.max_step == pytest.approx(0.30)
    data["destinations"][0]["weighted"] = {"max_step": "40%"}
    assert build.policy_params(parse_config(data, "c.yaml")).destinations[0].weighted.max_step == pytest.approx(0.40)


_probe_values = {
    "interval": st.sampled_from(["5ms", "10ms", "20ms", "1s", "0ms"]),
    "timeout": st.sampled_from([None, "0ms", "1ms", "50ms", "3s"]),
    "timeout_slack": st.sampled_from([None, "0ms", "1ms", "40ms", "5s"]),
    "timeout_max": st.sampled_from([None, "0ms", "10ms", "2s"]),
    "quorum": st.sampled_from([None, 0, 1, 2, 3]),
    "down_after": st.sampled_from([0, 1, 3, 101]),
    "up_after": st.sampled_from([0, 1, 5]),
    "hold": st.sampled_from(["0s", "0.5s", "-1s"]),
    "degraded_loss": st.sampled_from(["0%", "1%", "5%", "100%", "101%"]),
    "recover_loss": st.sampled_from(["0%", "2%", "50%"]),
    "window": st.sampled_from([0, 1, 4, 100]),
    "window_seconds": st.sampled_from(["0s", "0.01s", "1s", "60s"]),
    "port": st.sampled_from([0, 1, 862, 65536]),
}


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional=_probe_values), st.sampled_from([1, 5, 50]))
def test_what_the_config_accepts_the_parts_take_without_checking_again(probe, min_samples):
    """User input is validated once, in the config (field paths): whatever it accepts builds
    into the params classes, whose own checks are invariants that must then never fire; what
    it refuses is a one-line UsageError naming a field."""
    data = changed("decision", {"min_samples": min_samples})
    data["paths"][0]["probe"].update({k: v for k, v in probe.items() if v is not None})
    try:
        config = parse_config(data)
    except UsageError as exc:
        assert "\n" not in str(exc) and ("paths[0]" in str(exc) or "decision" in str(exc)), str(exc)
        return
    build.probe_configs(config)
    build.policy_params(config)


def test_more_paths_than_probe_pin_slots_is_refused():
    """Probe pins use table/mark 0x70730000 + path index, 4096 slots: more paths are refused by
    the config, naming the field (before: an error from the pins at daemon start)."""
    data = base()
    one = data["paths"][0]
    data["paths"] = [{**copy.deepcopy(one), "name": f"p{i}", "interface": f"r-p{i % 100}"} for i in range(4097)]
    data["destinations"] = [{"prefix": "198.51.100.0/24", "paths": ["p0"]}]
    with pytest.raises(UsageError) as info:
        parse_config(data)
    assert str(info.value).endswith("paths: 4097 paths; at most 4096"), str(info.value)
    assert "\n" not in str(info.value)
