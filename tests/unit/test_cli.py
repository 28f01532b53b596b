"""The command line as a whole: every command's --help ends with examples; usage errors are one line."""

import subprocess
import sys

import pytest

from pathsteer.cli.main import build_parser, main


def _leaf_commands(parser, prefix=()):
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not subs:
        yield prefix
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_commands(child, prefix + (name,))


COMMANDS = sorted(set(_leaf_commands(build_parser())))


def test_there_are_commands():
    assert ("lab", "up") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_ends_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n" in out, out
    tail = out.rsplit("examples:\n", 1)[1]
    assert any(line.strip().startswith("pathsteer ") for line in tail.splitlines()), tail


@pytest.mark.parametrize("argv", [["nope"], ["lab", "up", "--paths", "abc"], ["lab", "up", "--bogus"], []])
def test_usage_errors_are_one_line_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "pathsteer", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    if argv:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pathsteer: error: "), proc.stderr
