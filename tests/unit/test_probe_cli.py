"""`pathsteer probe` / `pathsteer reflector` bad input: exit 2, one line naming the value."""

import pytest

from pathsteer.cli.main import main


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["probe", "192.0.2.1", "--interface", "nosuchif0"], "unknown interface 'nosuchif0'"),
        (["probe", "192.0.2.1", "--interface", "lo", "--interval", "5ms"], "--interval: 5 ms is below the 10 ms minimum"),
        (["probe", "192.0.2.1", "--interface", "lo", "--interval", "0"], "--interval: 0 ms is below the 10 ms minimum"),
        (["probe", "192.0.2.1", "--interface", "lo", "--interval", "fast"], "--interval: 'fast' is not a duration"),
        (["probe", "192.0.2.1", "--interface", "lo", "--timeout", "1x"], "--timeout: '1x' is not a duration"),
        (["probe", "192.0.2.1", "--interface", "lo", "--timeout", "0s"], "--timeout: '0s' must be more than 0"),
        (["probe", "192.0.2.1", "--interface", "lo", "--port", "70000"], "--port: 70000 is not a port"),
        (["probe", "192.0.2.1", "--interface", "lo", "--port", "http"], "--port: 'http' is not a port"),
        (["probe", "192.0.2.1", "--interface", "lo", "--count", "0"], "--count: 0 must be 1 or more"),
        (["probe", "192.0.2.1", "--interface", "lo", "--count", "ten"], "--count: 'ten' is not a whole number"),
        (["probe", "example.com", "--interface", "lo"], "TARGET: 'example.com' is not an IPv4 or IPv6 address"),
        (["probe", "300.1.1.1", "--interface", "lo"], "TARGET: '300.1.1.1' is not an IPv4 or IPv6 address"),
        (["probe", "192.0.2.1", "--interface", "lo", "--gateway", "gw"], "--gateway: 'gw' is not an IPv4 or IPv6 address"),
        (["probe", "192.0.2.1", "--interface", "lo", "--gateway", "fe80::1"], "--gateway: fe80::1 is IPv6 but TARGET 192.0.2.1 is IPv4"),
        (["probe", "192.0.2.1", "--interface", "lo", "--method", "tcp"], "invalid choice: 'tcp'"),
        (["probe", "192.0.2.1"], "--interface"),
        (["reflector", "--port", "0"], "--port: 0 is not a port"),
        (["reflector", "--listen", "localhost"], "--listen: 'localhost' is not an IPv4 or IPv6 address"),
    ],
)
def test_usage_errors(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pathsteer: error: "), err
    assert needle in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["probe", "reflector"])
def test_help_ends_with_examples(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    tail = out[out.index("examples:"):].strip().splitlines()
    assert len(tail) >= 3 and all(line.startswith("  pathsteer") or "pathsteer" in line for line in tail[1:])
    assert out.rstrip().endswith(tail[-1])


def test_probe_needs_root(capsys, monkeypatch):
    import pathsteer.cli.base

    monkeypatch.setattr(pathsteer.cli.base.os, "geteuid", lambda: 1000)
    rc, out, err = run(capsys, "probe", "127.0.0.1", "--interface", "lo", "--count", "1")
    assert rc == 2 and "needs root" in err and len(err.strip().splitlines()) == 1
