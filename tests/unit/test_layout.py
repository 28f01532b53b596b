"""The runtime package ships the daemon only: the lab tools live in `pathsteer_lab`.

`pathsteer` never imports `pathsteer_lab` (the one exception: `pathsteer.cli.main` finds the
``lab`` command by name, when the package is importable), has no lab, demo or lab-run modules,
and what `make install` builds from (`make stage`) holds no lab code, nor does the package built
from it even when the lab's source is beside it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "src" / "pathsteer"
LAB = REPO / "src" / "pathsteer_lab"
LAB_MODULE = re.compile(r"^pathsteer_lab(\.|$)")
# Names the runtime package must not have (as a module or a package, at any depth).
LAB_NAMES = {"lab", "demo", "labrun", "labconfig"}
# The one module allowed to name pathsteer_lab: as strings, for the optional `pathsteer lab`.
DISCOVERY = RUNTIME / "cli" / "main.py"
NOT_INSTALLED = ("pathsteer lab: the lab tools are not installed "
                 "(they are the pathsteer_lab package of a source checkout: make venv)")


def _runtime_sources() -> list[Path]:
    files = sorted(RUNTIME.rglob("*.py"))
    assert len(files) > 50, files  # the walk sees the package
    return files


def _lab_references(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{path}:{node.lineno}: import {a.name}" for a in node.names if LAB_MODULE.match(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and LAB_MODULE.match(node.module or ""):
            found.append(f"{path}:{node.lineno}: from {node.module} import ...")
        elif (path != DISCOVERY and isinstance(node, ast.Constant) and isinstance(node.value, str)
              and LAB_MODULE.match(node.value)):
            found.append(f"{path}:{node.lineno}: names module {node.value!r} (importlib?)")
    return found


def test_runtime_package_imports_nothing_from_the_lab():
    found = [ref for f in _runtime_sources() for ref in _lab_references(f)]
    assert found == [], "\n".join(found)


def test_the_check_sees_an_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pathsteer_lab.labrun import LabDaemon\nimport pathsteer_lab as lab\n"
                   "import importlib\nimportlib.import_module('pathsteer_lab.demo')\n"
                   "import pathsteer_labs  # another name\n")
    assert len(_lab_references(bad)) == 3


def test_runtime_package_has_no_lab_demo_or_labrun_modules():
    found = [str(p.relative_to(REPO)) for p in RUNTIME.rglob("*")
             if "__pycache__" not in p.parts and (p.stem if p.suffix == ".py" else p.name) in LAB_NAMES
             and (p.suffix == ".py" or p.is_dir())]
    assert found == []
    for name in ("lab", "lab.cli", "demo", "steering.labrun", "steering.labconfig"):
        assert not (RUNTIME / (name.replace(".", "/") + ".py")).exists()
        assert not (RUNTIME / name.replace(".", "/")).is_dir()


def test_lab_package_has_them():
    for name in ("__init__", "build", "cli", "delayline", "impair", "measure", "netns", "topology",
                 "demo", "labrun", "labconfig"):
        assert (LAB / f"{name}.py").is_file(), name


def _without_lab(monkeypatch):
    for name in list(sys.modules):
        if LAB_MODULE.match(name):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pathsteer_lab", None)  # import raises ModuleNotFoundError


def test_lab_command_comes_from_the_lab_package(capsys):
    from pathsteer.cli.main import build_parser
    help_text = build_parser().format_help()
    assert "    lab " in help_text and "pathsteer lab up" in help_text


def test_without_the_lab_package_pathsteer_lab_says_so(monkeypatch, capsys):
    _without_lab(monkeypatch)
    from pathsteer.cli.main import build_parser, main
    help_text = build_parser().format_help()
    assert "lab" not in help_text, help_text
    assert "pathsteer run" in help_text.rsplit("examples:", 1)[1]
    for argv in (["lab"], ["lab", "--help"], ["lab", "up", "--paths", "3", "--json"], ["lab", "down", "x"]):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == NOT_INSTALLED
    with pytest.raises(SystemExit) as e:  # the other commands are unaffected
        main(["status", "--help"])
    assert e.value.code == 0


def test_a_broken_lab_package_is_not_hidden(monkeypatch):
    for name in list(sys.modules):
        if LAB_MODULE.match(name):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pathsteer_lab.cli", None)  # the package is there, its cli not
    from pathsteer.cli.main import build_parser
    with pytest.raises(ImportError):
        build_parser()


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    """What `make install` builds: `make stage` into a temporary directory, then the package's
    files as setuptools lays them out for the wheel (build_py: the wheel's purelib is this
    tree; building a real wheel offline would need the `wheel` package, which the venv lacks).
    The lab's source is put beside the staged package first: pyproject.toml must leave it out
    on its own."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = tmp_path_factory.mktemp("ship")
    stage = root / "stage"
    subprocess.run(["make", "-s", "-C", str(REPO), "stage", f"STAGE={stage}"], check=True, timeout=60)
    assert sorted(p.name for p in (stage / "src").iterdir()) == ["pathsteer"]
    assert not any(p.name == "__pycache__" for p in stage.rglob("*"))
    shutil.copytree(LAB, stage / "src" / "pathsteer_lab", ignore=shutil.ignore_patterns("__pycache__"))
    out = root / "lib"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(out)], cwd=stage, check=True, timeout=120,
                   capture_output=True)
    return out


def test_shipped_tree_is_the_daemon_only(shipped):
    files = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file())
    assert "pathsteer/__main__.py" in files and "pathsteer/cli/main.py" in files
    assert "pathsteer/steering/service.py" in files and "pathsteer/daemon/reactor.py" in files
    assert sorted({f.split("/", 1)[0] for f in files}) == ["pathsteer"]
    lab_files = [f for f in files if LAB_NAMES & set(Path(f).with_suffix("").parts)]
    assert lab_files == []


def test_shipped_tree_runs_without_the_lab(shipped):
    """The shipped tree alone (no .pth to src/, only the venv's dependencies): the daemon's CLI
    works, ``pathsteer lab`` says it is not installed, pathsteer_lab is not importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(shipped), sysconfig.get_paths()["purelib"]])
    run = lambda *argv: subprocess.run([sys.executable, "-S", *argv], env=env, capture_output=True,
                                       text=True, timeout=60, cwd=shipped)
    p = run("-c", "import pathsteer, sys; print(pathsteer.__file__); import pathsteer_lab")
    assert p.stdout.strip() == str(shipped / "pathsteer" / "__init__.py"), p.stderr
    assert "No module named 'pathsteer_lab'" in p.stderr
    p = run("-m", "pathsteer", "--help")
    assert p.returncode == 0, p.stderr
    assert "status" in p.stdout and "lab" not in p.stdout
    p = run("-m", "pathsteer", "lab", "up", "--paths", "3")
    assert (p.returncode, p.stderr.strip()) == (2, NOT_INSTALLED)
