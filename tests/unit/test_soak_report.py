"""bench.soak's pure helpers (log parsing, configs, the report table), without root."""

from __future__ import annotations

import yaml

from bench import soak
from pathsteer_lab.topology import Topology


def test_log_changes_parsed_with_millisecond_times():
    log = ("2026-12-02T13:32:39.696+0000 steer.change prefix=198.51.100.0/24 policy=lowest-latency "
           "kind=better from=p3 to=p2 reason='p2 better than p3 by 36% (rtt 20.7 ms vs 32.1 ms)'\n"
           "2026-12-02T13:32:39.697+0000 fib.apply put=4 removed=0\n"
           "Traceback (most recent call last):\n")
    wall0 = 1796218359.0   # 2026-12-02T13:32:39+00:00
    (c,) = soak.parse_log_changes(log, wall0)
    assert c["prefix"] == "198.51.100.0/24" and (c["from"], c["to"], c["kind"]) == ("p3", "p2", "better")
    assert abs(c["t"] - 0.696) < 1e-3


def test_daemon_config_uses_defaults_and_the_guard_on_the_attacker_side():
    t = Topology.plan("x", 4)
    cfg = soak.daemon_config(t, "bpf", "/run/x.sock", "/tmp/s", ["p1", "p2", "p4"])
    assert [p["name"] for p in cfg["paths"]] == ["p1", "p2", "p4"]
    assert cfg["paths"][0]["probe"] == {"targets": ["198.51.100.9", "203.0.113.9"]}   # nothing tuned
    assert cfg["dataplane"] == {"mode": "bpf", "ingress": ["r-c"]}
    assert all(set(d) == {"prefix", "paths"} for d in cfg["destinations"])
    assert cfg["guard"]["interfaces"] == ["r-a"]
    assert soak.daemon_config(t, "fib", "/s", "/d", ["p1"], guard_ingress=True)["guard"]["interfaces"] == ["r-a", "r-c"]
    assert "guard" not in soak.daemon_config(t, "fib", "/s", "/d", ["p1"], guard=False)


def test_bad_configs_are_each_broken_differently():
    t = Topology.plan("x", 4)
    good = soak.daemon_config(t, "fib", "/run/x.sock", "/tmp/s", ["p1", "p2"])
    texts = [soak.bad_config_text(good, i) for i in range(4)]
    assert len(set(texts)) == 4
    assert "p9" in yaml.safe_load(texts[1])["destinations"][0]["paths"]
    assert texts[2] == ""
    assert yaml.safe_load(texts[3])["destinations"][1]["prefix"] == "203.0.113.1/24"


def test_nft_counters_one_rule_per_prefix_and_flow():
    text = soak.nft_counters_script(Topology.plan("x", 2))
    for pfx in soak.PING_TARGETS:
        assert f'comment "{pfx}"' in text
    assert text.count("counter") == len(soak.PING_TARGETS) + len(soak.TCP_FLOWS)
    assert "hook prerouting" in text and 'iifname "p-r"' in text


def test_table_and_goals():
    summary = {"eligible_pct_min": 99.5, "best_pct_min": 96.0, "blackhole_s": 0.0, "blackhole_excused_s": 3.0,
               "moves": 10, "needless": 1, "needless_per_sim_h": 0.25, "lost": 10, "lost_outside": 0,
               "pings": 1000, "agree_pct_min": 99.0, "tcp_died": 0, "tcp_flows": 2, "events_socket": 4,
               "events_log": 4, "events_missing": 0, "via_without_event": 0, "checks_failed": 0, "checks": 5,
               "chaos_moves": 0, "crashes": 0, "rss_mib_max": 55.0, "rss_mib_per_h": 0.1, "fds_max": 40,
               "fds_per_h": 0.0, "cpu_pct": 2.0}
    goals = soak.goal_verdicts(summary)
    assert [g for g, ok in goals.items() if not ok] == ["best within hysteresis >= 97 %"]
    out = soak.table([{"plane": "fib", "minutes": 5.0, "sim_hours": 4.75, "summary": summary, "goals": goals}])
    assert "96.00 %" in out and "fib: goals MISSED: best within hysteresis >= 97 %" in out


def test_log_problems_counts_warnings_not_the_refused_reloads_asked_for():
    log = ("2026-12-02T13:57:50.556+0000 steer.load-unavailable error='ifindex 4: a TC ingress filter'\n"
           "2026-12-02T13:57:51.556+0000 steer.load-unavailable error='ifindex 4: a TC ingress filter'\n"
           "2026-12-02T13:58:09.169+0000 daemon.reload-refused error='bad'\n"
           "2026-12-02T13:58:10.000+0000 steer.change prefix=x from=p1 to=p2 reason='error in p1'\n"
           "Unhandled exception in client_connected_cb\n"
           "Traceback (most recent call last):\n")
    assert soak.log_problems(log) == {"steer.load-unavailable": 2, "Unhandled exception in client_connected_cb": 1,
                                      "Traceback": 1}
