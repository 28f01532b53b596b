"""``pathsteer lab`` argument handling that needs no root: bad input, help text."""

from __future__ import annotations

import pytest

from pathsteer.cli.main import main


@pytest.mark.parametrize("argv,names", [
    (["lab", "up", "--paths", "0"], ["--paths", "'0'"]),
    (["lab", "up", "--paths", "65"], ["--paths", "'65'"]),
    (["lab", "up", "--paths", "abc"], ["--paths", "'abc'"]),
    (["lab", "up", "--name", "No Way"], ["'No Way'"]),
    (["lab", "set", "x", "p1", "--delay", "-5ms"], ["--delay", "'-5ms'"]),
    (["lab", "set", "x", "p1", "--delay", "-5"], ["--delay", "'-5'"]),
    (["lab", "set", "x", "p1", "--loss", "-0.5%"], ["--loss", "'-0.5%'"]),
    (["lab", "set", "x", "p1", "--rate", "1e9"], ["--rate", "'1e9'"]),
    (["lab", "set", "x", "p1", "--down", "--up"], ["--up", "--down"]),
    (["lab", "set", "x"], ["PATH"]),
    (["lab", "bogus"], ["bogus"]),
])
def test_usage_errors_are_one_line_with_exit_2(capsys, argv, names):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pathsteer: error: ")
    for name in names:
        assert name in err[0]


@pytest.mark.parametrize("verb", ["up", "set", "down", "list"])
def test_help_ends_with_examples(capsys, verb):
    with pytest.raises(SystemExit):
        main(["lab", verb, "--help"])
    out = capsys.readouterr().out.rstrip().splitlines()
    assert "examples:" in out and out[-1].startswith("  pathsteer lab")


def test_lab_without_verb_prints_help(capsys):
    assert main(["lab"]) == 2
    assert "examples:" in capsys.readouterr().err
