"""Unit parsers: values users write, and the one-line errors for what they get wrong."""

import pytest
from hypothesis import given, strategies as st

from pathsteer.errors import UsageError
from pathsteer.units import format_duration, parse_duration, parse_percent, parse_rate


@pytest.mark.parametrize("text, seconds", [
    ("10ms", 0.010), ("1.5s", 1.5), ("250us", 250e-6), ("2m", 120.0), ("1h", 3600.0),
    ("0", 0.0), (".5s", 0.5), (" 20 ms ", 0.020), (3, 3.0),
])
def test_duration(text, seconds):
    assert parse_duration(text, "f") == pytest.approx(seconds)


def test_duration_default_unit():
    assert parse_duration("20", "f", default_unit="ms") == pytest.approx(0.020)
    assert parse_duration(20, "f", default_unit="ms") == pytest.approx(0.020)


@pytest.mark.parametrize("text", ["-1ms", "10xs", "", "ms", "1e3ms", "nan", True, float("inf"), -2])
def test_duration_rejects(text):
    with pytest.raises(UsageError) as e:
        parse_duration(text, "--delay")
    assert str(e.value).startswith("--delay: ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, pct", [("5%", 5.0), ("0.5%", 0.5), ("5", 5.0), (100, 100.0), ("0", 0.0)])
def test_percent(text, pct):
    assert parse_percent(text, "f") == pct


@pytest.mark.parametrize("text", ["-1%", "101%", "abc", "5%%", True])
def test_percent_rejects(text):
    with pytest.raises(UsageError, match=r"^--loss: "):
        parse_percent(text, "--loss")


@pytest.mark.parametrize("text, bps", [
    ("100mbit", 100_000_000), ("1gbit", 1_000_000_000), ("500kbit", 500_000), ("1Gbit", 10**9),
    ("10mbps", 80_000_000), ("1000", 1000), (2_000, 2000),
])
def test_rate(text, bps):
    assert parse_rate(text, "f") == bps


@pytest.mark.parametrize("text", ["-5mbit", "fast", "10 furlongs", True])
def test_rate_rejects(text):
    with pytest.raises(UsageError, match=r"^capacity: "):
        parse_rate(text, "capacity")


@given(st.floats(min_value=1e-6, max_value=1e5, allow_nan=False))
def test_format_then_parse_roundtrips(seconds):
    assert parse_duration(format_duration(seconds), "f") == pytest.approx(seconds, rel=1e-5)


def test_config_does_not_import_the_guard():
    """The config layer parses CIDRs and port ranges with `pathsteer.units`; it imports no
    component (the guard imports the config, not the other way round)."""
    import subprocess
    import sys
    code = ("import sys, pathsteer.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('pathsteer.guard', 'pathsteer.steering'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_the_pure_layers_import_no_kernel_side():
    """policy and telemetry are pure: they import neither the data planes nor the BPF layer,
    the probes or the daemon's components (the route contract is pathsteer.routes)."""
    import subprocess
    import sys
    code = ("import sys, pathsteer.policy, pathsteer.telemetry, pathsteer.telemetry.passive, pathsteer.telemetry.load; "
            "print(sorted(m for m in sys.modules if m.startswith(('pathsteer.dataplane', 'pathsteer.bpf', "
            "'pathsteer.probe', 'pathsteer.steering', 'pathsteer.guard'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_one_way_to_the_kernels_routing():
    """rtnetlink is spoken by `pathsteer.netlink` alone (and listened to by the route monitor):
    no pyroute2, no `ip`/`tc` subprocess, no other NETLINK_ROUTE socket in the daemon."""
    import ast
    from pathlib import Path

    import pathsteer

    root = Path(pathsteer.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(), rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pyroute2" for a in node.names):
                offenders.append(f"{rel}:{node.lineno} imports pyroute2")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyroute2":
                offenders.append(f"{rel}:{node.lineno} imports pyroute2")
            if (isinstance(node, ast.Attribute) and node.attr == "NETLINK_ROUTE"
                    and rel not in ("netlink.py", "dataplane/netlink_monitor.py")):
                offenders.append(f"{rel}:{node.lineno} opens a NETLINK_ROUTE socket")
            if isinstance(node, (ast.List, ast.Tuple)) and node.elts and isinstance(node.elts[0], ast.Constant) \
                    and node.elts[0].value in ("ip", "tc", "bridge"):
                offenders.append(f"{rel}:{node.lineno} runs {node.elts[0].value!r}")
    assert offenders == [], offenders
