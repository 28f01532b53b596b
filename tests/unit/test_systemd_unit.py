"""The systemd unit as `make install` writes it (`make install-systemd` into a temporary DESTDIR,
PREFIX = this virtualenv, so ExecStart exists): `systemd-analyze verify` passes without a word
about it; the settings docs/systemd.md explains are there; the example config is installed only
when there is none, and uncommented it is a valid config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pathsteer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "contrib" / "systemd" / "pathsteer.service"
EXAMPLE = ROOT / "contrib" / "pathsteer.yaml"
PREFIX = sys.prefix  # the virtualenv: bin/pathsteer is there


def make_install(destdir: Path, prefix: str = PREFIX) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "install-systemd",
                           f"DESTDIR={destdir}", f"PREFIX={prefix}"],
                          capture_output=True, text=True, timeout=60)


def settings(text: str) -> dict[str, list[str]]:
    """KEY → its values, in order (a unit may set a key more than once)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def verify(unit: Path) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def installed(tmp_path):
    if not os.access(os.path.join(PREFIX, "bin", "pathsteer"), os.X_OK):
        pytest.skip(f"no {PREFIX}/bin/pathsteer to point ExecStart at")
    proc = make_install(tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path


def test_systemd_analyze_verify_passes_on_the_installed_unit(installed):
    unit = installed / "etc/systemd/system/pathsteer.service"
    proc = verify(unit)
    ours = [line for line in (proc.stderr + proc.stdout).splitlines() if "pathsteer" in line]
    assert proc.returncode == 0 and ours == [], proc.stderr


def test_verify_has_teeth_a_missing_execstart_fails(tmp_path):
    proc = make_install(tmp_path, prefix="/nonexistent/pathsteer")
    assert proc.returncode == 0, proc.stderr
    result = verify(tmp_path / "etc/systemd/system/pathsteer.service")
    assert result.returncode != 0 and "/nonexistent/pathsteer/bin/pathsteer" in result.stderr


def test_the_unit_has_what_docs_systemd_md_explains(installed):
    text = (installed / "etc/systemd/system/pathsteer.service").read_text()
    assert "@" not in re.sub(r"#.*", "", text)  # every placeholder filled in
    s = settings(text)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"] == f"{PREFIX}/bin/pathsteer run --config /etc/pathsteer/pathsteer.yaml"
    assert one["ExecReload"] == f"{PREFIX}/bin/pathsteer reload --socket /run/pathsteer/pathsteer.sock"
    assert one["WatchdogSec"] == "30s" and one["Restart"] == "on-failure"
    assert one["NoNewPrivileges"] == "yes"
    assert set(one["CapabilityBoundingSet"].split()) == {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN",
                                                         "CAP_NET_RAW", "CAP_SYS_ADMIN"}
    assert one["StateDirectory"] == "pathsteer" and one["RuntimeDirectory"] == "pathsteer"
    assert one["RuntimeDirectoryPreserve"] == "yes"
    assert one["ProtectSystem"] == "strict"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    # Steering and the guard write /proc/sys/net: ProtectKernelTunables would make it read-only.
    assert "ProtectKernelTunables" not in s and "ProcSubset" not in s
    # The control socket's default is where ExecReload calls it, in the RuntimeDirectory.
    from pathsteer.config.model import DEFAULT_SOCKET, DEFAULT_STATE_DIR
    assert DEFAULT_SOCKET == "/run/pathsteer/pathsteer.sock" and DEFAULT_STATE_DIR == "/var/lib/pathsteer"
    assert (installed / PREFIX.lstrip("/") / "share/doc/pathsteer/systemd.md").is_file()


def test_every_capability_name_is_one_the_kernel_has():
    header = Path("/usr/include/linux/capability.h")
    if not header.exists():
        pytest.skip("no linux/capability.h (Debian: linux-libc-dev)")
    known = set(re.findall(r"#define\s+(CAP_[A-Z_]+)\s+\d+", header.read_text()))
    caps = settings(TEMPLATE.read_text())["CapabilityBoundingSet"][-1].split()
    assert set(caps) <= known, set(caps) - known  # systemd ignores an unknown name without a word


def test_the_example_config_is_installed_once_and_never_overwritten(installed):
    config = installed / "etc/pathsteer/pathsteer.yaml"
    assert config.read_text() == EXAMPLE.read_text()
    assert config.stat().st_mode & 0o777 == 0o640
    config.write_text("control: {socket: /run/pathsteer/pathsteer.sock}\nguard: {interfaces: [lo]}\n")
    proc = make_install(installed)
    assert proc.returncode == 0 and "kept:" in proc.stdout
    assert "guard: {interfaces: [lo]}" in config.read_text()


def uncommented(text: str) -> str:
    """The example's settings: each block that starts with '#key:' (no space), to a blank line."""
    out, block = [], False
    for line in text.splitlines():
        if re.match(r"#\S", line):
            block = True
        elif not line.strip():
            block = False
        if block:
            out.append(line[1:])
    return "\n".join(out) + "\n"


def test_the_example_config_uncommented_is_a_valid_config(tmp_path):
    path = tmp_path / "pathsteer.yaml"
    path.write_text(uncommented(EXAMPLE.read_text()))
    config = load_config(str(path))
    assert config.sections == ["guard", "dataplane", "paths", "destinations"]
    assert config.control.socket == "/run/pathsteer/pathsteer.sock"


def test_the_example_config_as_installed_runs_nothing_and_says_so(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pathsteer", "run", "--config", str(EXAMPLE), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "nothing to run" in proc.stderr and "Traceback" not in proc.stderr
