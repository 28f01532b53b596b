"""Netfilter's half of the guard's SYN cookies: conntrack and the nftables ``synproxy`` statement.

The XDP program answers SYNs to the protected ports with SYN-ACK cookies and lets through ACKs
whose cookie is valid (bpf/guard_syncookie.h). Behind it, in the kernel:

* ``nf_conntrack_tcp_loose = 0`` (per network namespace), so that conntrack does not adopt such
  an ACK as an established flow but marks it INVALID;
* a ``synproxy`` rule for INVALID/UNTRACKED packets to the ports, in the input and forward
  hooks: it checks the same cookie (the kernel's secret: __cookie_v4_check), opens the
  connection to the server with the options the cookie and the echoed timestamp carry, and
  translates sequence numbers and timestamps for the flow's life;
* INVALID packets to the ports that synproxy did not take are dropped.

Unlike the kernel's selftest, SYNs are not ``notrack``-ed in raw prerouting: a SYN that reaches
the stack (from an allowed source, through a pass port rule, or for a 4-tuple conntrack still
holds, e.g. in TIME_WAIT for 120 s) then meets conntrack, which reopens such a tuple as a new
flow that goes straight to the server. Untracked, synproxy would answer it, and the client's
ACK would then match the old TIME_WAIT entry as a valid packet, bypass synproxy and reach a
server that knows no such connection (measured: about 3 % of the lab's rapid reconnects failed
so).

``netfilter: managed`` (the default): `Netfilter.setup` installs one table, ``inet
pathsteer_synproxy``, replacing one left by a crashed run, and sets the sysctl; `teardown` removes
the table and puts the sysctl back. The original sysctl value is kept in
``STATE_DIR/synproxy.json`` from before it is changed until it is restored, so a crash followed
by a restart still restores the value from before the first run.

``netfilter: external``: the operator runs their own synproxy ruleset; `check_external`
refuses to start unless the sysctl is 0 and the ruleset has a synproxy statement.

`ruleset` is pure: the nft script for a config, checked by unit tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pathsteer.bpf.btf import Btf
from pathsteer.errors import PathsteerError, UnsupportedError

TABLE = "pathsteer_synproxy"
TCP_LOOSE = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose"
STATE_FILE = "synproxy.json"


def _set_of(items: Sequence[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def ruleset(interfaces: Sequence[str], ports: Sequence[tuple[int, int]], *, mss: int, mss6: int,
            wscale: int, table: str = TABLE) -> str:
    """The nft script that (re)creates ``table``: one transaction, so an existing table of that
    name is replaced atomically (``nft -f`` applies all or nothing)."""
    ifaces = _set_of([json.dumps(name) for name in interfaces])
    dports = _set_of([f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ports])
    match = f"iifname {ifaces} tcp dport {dports}"
    proxy = f"wscale {wscale} timestamp sack-perm"
    filter_rules = (
        f"\t\t{match} ct state invalid,untracked meta nfproto ipv4 synproxy mss {mss} {proxy}\n"
        f"\t\t{match} ct state invalid,untracked meta nfproto ipv6 synproxy mss {mss6} {proxy}\n"
        f"\t\t{match} ct state invalid drop\n")
    return (
        f"table inet {table}\n"
        f"delete table inet {table}\n"
        f"table inet {table} {{\n"
        f"\tchain input {{\n"
        f"\t\ttype filter hook input priority filter; policy accept;\n"
        f"{filter_rules}"
        f"\t}}\n"
        f"\tchain forward {{\n"
        f"\t\ttype filter hook forward priority filter; policy accept;\n"
        f"{filter_rules}"
        f"\t}}\n"
        f"}}\n")


def _nft(script: str | None, *args: str) -> subprocess.CompletedProcess:
    nft = shutil.which("nft")
    if nft is None:
        raise UnsupportedError("guard.syn_cookies: nft not found (install nftables, or set "
                               "guard.syn_cookies.netfilter: external and set synproxy up yourself)")
    return subprocess.run([nft, *args], input=script, capture_output=True, text=True, check=False, timeout=30)


KIND_FUNC = 12  # BTF_KIND_FUNC (uapi linux/btf.h)
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
CONNTRACK_MODULE_BTF = "/sys/kernel/btf/nf_conntrack"


def conntrack_kfuncs_present() -> bool:
    """Does the kernel offer bpf_xdp_ct_lookup (built in: vmlinux BTF; a module: its BTF is
    there once nf_conntrack is loaded)? Without it the guard's cookie step stays off."""
    if Path(CONNTRACK_MODULE_BTF).exists():
        return True
    try:
        with Btf.from_file(VMLINUX_BTF) as vmlinux:
            vmlinux.find("bpf_xdp_ct_lookup", KIND_FUNC)
            return True
    except PathsteerError:
        return False


def read_tcp_loose() -> int:
    try:
        return int(Path(TCP_LOOSE).read_text())
    except OSError as exc:
        raise UnsupportedError(f"guard.syn_cookies: cannot read {TCP_LOOSE} ({exc.strerror}): "
                               "SYN cookies need netfilter connection tracking") from None


def write_tcp_loose(value: int) -> None:
    Path(TCP_LOOSE).write_text(f"{value}\n")


class Netfilter:
    """The managed synproxy table and sysctl of one network namespace."""

    def __init__(self, state_dir: str | Path, table: str = TABLE) -> None:
        self.state_path = Path(state_dir) / STATE_FILE
        self.table = table
        self.active = False

    def _saved_loose(self) -> int | None:
        try:
            return int(json.loads(self.state_path.read_text())["tcp_loose"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def setup(self, interfaces: Sequence[str], ports: Sequence[tuple[int, int]], *, mss: int, mss6: int,
              wscale: int) -> None:
        """Install (or replace) the table and set ``nf_conntrack_tcp_loose`` to 0; on failure
        nothing is left changed."""
        script = ruleset(interfaces, ports, mss=mss, mss6=mss6, wscale=wscale, table=self.table)
        first = not self.active
        if first:
            original = self._saved_loose()  # a crashed run's record wins: it saw the value before
            if original is None:
                original = read_tcp_loose()
                self.state_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.state_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"tcp_loose": original, "table": self.table}) + "\n")
                os.replace(tmp, self.state_path)
        proc = _nft(script, "-f", "-")
        if proc.returncode != 0:
            if first:
                self._restore()
            detail = next((ln for ln in proc.stderr.splitlines() if "Error" in ln), proc.stderr.strip()[:200])
            raise PathsteerError(f"guard.syn_cookies: nft refused the synproxy table: {detail}")
        try:
            write_tcp_loose(0)
        except OSError as exc:
            if first:
                _nft(None, "delete", "table", "inet", self.table)
                self._restore()
            raise PathsteerError(f"guard.syn_cookies: cannot set {TCP_LOOSE} to 0 ({exc.strerror})") from None
        self.active = True

    def _restore(self) -> None:
        original = self._saved_loose()
        if original is not None:
            try:
                write_tcp_loose(original)
            except OSError:
                pass
        try:
            self.state_path.unlink()
        except FileNotFoundError:
            pass

    def teardown(self) -> None:
        """Remove the table (if there) and put the sysctl back as it was before setup."""
        proc = _nft(None, "delete", "table", "inet", self.table)
        if proc.returncode != 0 and "No such file" not in proc.stderr:
            self._restore()
            self.active = False
            raise PathsteerError(f"guard.syn_cookies: cannot remove table inet {self.table}: {proc.stderr.strip()[:200]}")
        self._restore()
        self.active = False


def check_external() -> None:
    """``netfilter: external``: refuse to start unless conntrack leaves cookie ACKs INVALID and
    the ruleset has a synproxy statement (a cookie ACK would otherwise reach the server, which
    answers it with a RST)."""
    loose = read_tcp_loose()
    if loose != 0:
        raise UnsupportedError(f"guard.syn_cookies.netfilter: external needs net.netfilter.nf_conntrack_tcp_loose=0 "
                               f"(it is {loose}) and an nftables synproxy rule for the ports; or use netfilter: managed")
    proc = _nft(None, "list", "ruleset")
    if proc.returncode != 0 or "synproxy" not in proc.stdout:
        raise UnsupportedError("guard.syn_cookies.netfilter: external, but the nftables ruleset has no synproxy "
                               "statement (see docs/guard.md, SYN cookies); or use netfilter: managed")
