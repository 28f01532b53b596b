"""Impairment planning: which rules and qdiscs change, in which order (no root needed)."""

from __future__ import annotations

import pytest

from pathsteer.errors import UsageError
from pathsteer_lab.impair import Impairment, parse_changes, plan_rule_changes, tbf_commands

NONE = Impairment()


def test_enabling_delay_adds_rules_after_the_delay_line_knows():
    before, after = plan_rule_changes(NONE, Impairment(delay=0.01))
    assert before == []
    assert "rule add iif p-r lookup 10 pref 200" in after
    assert "-6 rule add iif p-s lookup 20 pref 201" in after


def test_clearing_delay_removes_rules_before_the_delay_line_forgets():
    before, after = plan_rule_changes(Impairment(delay=0.01, loss=1), Impairment())
    assert len(before) == 4 and all("rule del" in line for line in before)
    assert after == []


def test_changing_a_delay_touches_no_rules():
    assert plan_rule_changes(Impairment(delay=0.01), Impairment(delay=0.05, jitter=0.002)) == ([], [])


def test_loss_or_jitter_alone_use_the_delay_line():
    assert plan_rule_changes(NONE, Impairment(loss=1.0))[1]
    assert plan_rule_changes(NONE, Impairment(jitter=0.001))[1]


def test_down_goes_in_first_and_out_last():
    before, after = plan_rule_changes(NONE, Impairment(down=True))
    assert before and not after and all("lookup 30" in line for line in before)
    before, after = plan_rule_changes(Impairment(down=True), NONE)
    assert after and not before and all("rule del" in line for line in after)


def test_rate_uses_tbf_on_both_egress_interfaces():
    cmds = tbf_commands(NONE, Impairment(rate=100_000_000))
    assert len(cmds) == 2 and {c.split()[3] for c in cmds} == {"p-s", "p-r"}
    assert all("tbf rate 100000000bit" in c for c in cmds)
    assert tbf_commands(Impairment(rate=5), Impairment(rate=5)) == []
    assert tbf_commands(Impairment(rate=100), NONE) == ["qdisc del dev p-s root", "qdisc del dev p-r root"]


def test_parse_changes_units():
    c = parse_changes(delay="10ms", jitter="2", loss="5%", rate="50mbit", down=True)
    assert c == {"delay": 0.010, "jitter": 0.002, "loss": 5.0, "rate": 50_000_000, "down": True}
    assert parse_changes() == {}
    assert parse_changes(delay=0) == {"delay": 0.0}


@pytest.mark.parametrize("kwargs,field", [
    ({"delay": "-5ms"}, "--delay"), ({"delay": "soon"}, "--delay"), ({"jitter": "1xs"}, "--jitter"),
    ({"loss": "-1"}, "--loss"), ({"loss": "150%"}, "--loss"), ({"rate": "-1mbit"}, "--rate"),
    ({"rate": "1bit"}, "--rate"), ({"down": "yes"}, "down"),
])
def test_parse_changes_rejects(kwargs, field):
    with pytest.raises(UsageError, match=field):
        parse_changes(**kwargs)
