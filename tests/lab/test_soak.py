"""The soak (bench/soak.py) for 2 minutes per data plane: 2 simulated hours of drift, a hard
cut and its recovery, loss, reloads, kill -9, routes/filters deleted by hand, a guard flood,
malformed control traffic and config, against the daemon with its default settings.

The goals are the issue's (eligible ≥ 99 %, best within hysteresis ≥ 97 %, no blackhole beyond
the detection budgets, ≤ 1 needless switch per simulated hour, no TCP flow dying, no event
lost, no crash); the bounds below are looser where a noisy 2-core machine or a 2-minute sample
needs it, and say so. `make soak` is the 30-minute version; the report is printed either way."""

from __future__ import annotations

import pytest

from bench import soak
from bench import soak_oracle as so

pytestmark = pytest.mark.lab

MINUTES = 2.0


@pytest.mark.timeout(400)
@pytest.mark.parametrize("plane,seed", [("fib", 1), ("bpf", 2)])
def test_two_minute_soak(plane, seed, tmp_path):
    budgets = soak.default_budgets()
    script = so.make_script(MINUTES * 60, seed, budgets=budgets)
    run = soak.SoakRun(plane, script, str(tmp_path), budgets)
    raw = run.run()                       # tears the lab and every process down, also on failure
    report = soak.report_of(raw, str(tmp_path))
    print()
    print(soak.table([report]))
    print(f"report: {tmp_path}/soak-{plane}.json, timeline {tmp_path}/soak-{plane}.png")
    s = report["summary"]
    detail = {k: report[k] for k in ("checks", "crashes", "chaos_moves", "events_missing", "via_without_event")}
    failed_checks = [c for c in report["checks"] if not c["ok"]]
    # never loosened: these do not depend on the machine's speed
    assert s["crashes"] == 0, report["crashes"]
    assert failed_checks == [], failed_checks
    assert s["events_missing"] == 0 and s["via_without_event"] == 0, detail
    assert s["tcp_died"] == 0, report["tcp"]
    # goal 99 %: a late probe on a loaded machine can hold a dead path a moment past its budget
    assert s["eligible_pct_min"] >= 97.0, s
    # goal 97 %: 2 minutes hold one cut, whose recovery is a large share of so short a run
    assert s["best_pct_min"] >= 85.0, s
    # goal 0 s beyond the detection budgets; a starved probe loop can add a fraction of a second
    assert s["blackhole_s"] <= 1.0, [(m["prefix"], m["blackhole_s"]) for m in report["prefixes"]]
    # goal ≤ 1 per simulated hour and prefix: 2 hours, so at most 2 per prefix, and none caused
    # by a chaos action beyond one the noise could make
    assert s["needless_per_sim_h"] <= 2.0, [m["needless"] for m in report["prefixes"]]
    assert s["chaos_moves"] <= 1, report["chaos_moves"]
    # packets lost where nothing explains it (no cut budget, no loss on the path carrying them)
    assert s["lost_outside"] <= 0.01 * s["pings"], s
    # resources: 2 minutes cannot show a slope; bounded figures only
    assert s["rss_mib_max"] is not None and s["rss_mib_max"] < 250, report["resources"]
    assert s["fds_max"] is not None and s["fds_max"] < 200, report["resources"]
