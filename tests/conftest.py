"""Shared test helpers. Tiers: tests/unit (no root), tests/kernel (root, own netns), tests/lab."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent


def unique(prefix: str, length: int = 6) -> str:
    """A short name unique to this run (fits IFNAMSIZ when prefix is ≤ 8 characters)."""
    return f"{prefix}{secrets.token_hex(length // 2)}"


@pytest.fixture
def unique_name():
    """``unique_name("ps")`` → ``ps3fa9c1``: names that two concurrent runs never share."""
    return unique


def pytest_collection_modifyitems(config, items):
    """Tests under tests/kernel and tests/lab need root; skip them with the reason when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (kernel and lab tests run as root, as CI does)")
    for item in items:
        path = str(item.fspath)
        if "/tests/kernel/" in path or "/tests/lab/" in path:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def as_nobody():
    """``as_nobody(["-m", "pathsteer", "lab", "list"])``: run this checkout's Python (the
    venv's, with this checkout's ``src``) as user nobody (65534) and return the
    CompletedProcess. Works wherever the checkout is, a directory only root can enter
    (``/root``, ``mktemp -d``) included: in a private mount namespace the checkout is
    bind-mounted on a world-readable mount point, and nobody runs it from there."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    prefix = Path(sys.prefix).resolve()
    if CHECKOUT not in prefix.parents:
        pytest.skip(f"the interpreter's prefix {prefix} is not inside the checkout {CHECKOUT}")
    mount = tempfile.mkdtemp(prefix="ps-nobody-", dir="/tmp")
    os.chmod(mount, 0o755)
    python = os.path.join(mount, prefix.relative_to(CHECKOUT), "bin", "python")
    script = 'mount --bind "$1" "$2" && shift 2 && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"'

    def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": os.path.join(mount, "src"), "HOME": "/nonexistent"}
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(CHECKOUT), mount,
                python, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd="/")

    try:
        yield run
    finally:
        shutil.rmtree(mount, ignore_errors=True)
