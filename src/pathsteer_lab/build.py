"""Building and removing labs: `up`, `down`, `list_labs`.

A lab is built in phases, each a handful of ``ip -batch`` processes run side by side:
namespaces → sysctls (in-process, via setns) → delay line (creates the TUNs) → veth pairs
(created inside the namespaces: nothing ever appears in the root namespace, so two labs never
collide) → addresses and links up → routes, rules, nftables. A failure anywhere removes what was
built. `down` works from the namespaces' names and the pid file alone, so it also removes a
half-built or crashed lab.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pathsteer.errors import LabError, NotRootError, UsageError
from pathsteer_lab import delayline, netns
from pathsteer_lab.topology import (
    ATTACKER_IF, ATTACKER_SIDE_IF, CLIENT_IF, INGRESS_IF, NS_PREFIX, PATH_ROUTER_SIDE_IF,
    PATH_SERVER_SIDE_IF, STATE_ROOT, TUN_IN, TUN_OUT, Topology, lab_namespace_re, state_dir,
    validate_name,
)

# Path-namespace tables used by `pathsteer_lab.impair` (rules pointing at them come and go).
TABLE_DELAY_OUT = 10     # default dev dl-out
TABLE_DELAY_IN = 20      # default dev dl-in
TABLE_DOWN = 30          # blackhole default: a dead path answers nothing
V6_ANY = "::/0"

COMMON_SYSCTLS = {
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
    "net/ipv6/conf/all/accept_dad": "0",
    "net/ipv6/conf/default/accept_dad": "0",
    "net/ipv6/conf/default/accept_ra": "0",
}
FORWARDING_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/ipv6/conf/all/forwarding": "1",
    "net/ipv4/conf/all/send_redirects": "0",
    "net/ipv4/conf/default/send_redirects": "0",
}
DELAYLINE_START_TIMEOUT = 10.0
LINKS_UP_TIMEOUT = 5.0


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotRootError(what)


# -- the plan as ip -batch commands (pure) --------------------------------------------------------

def veth_commands(t: Topology) -> dict[str, list[str]]:
    """Phase 1: veth pairs, each created inside its first namespace with its peer in the other."""
    router = [
        f"link add name {INGRESS_IF} type veth peer name {CLIENT_IF} netns {t.client}",
        f"link add name {ATTACKER_IF} type veth peer name {ATTACKER_SIDE_IF} netns {t.attacker}",
    ]
    cmds = {t.router: router}
    for p in t.paths:
        router.append(f"link add name {p.router_interface} type veth peer name {PATH_ROUTER_SIDE_IF} netns {p.namespace}")
        cmds[p.namespace] = [
            f"link add name {PATH_SERVER_SIDE_IF} type veth peer name {p.server_interface} netns {t.server}"]
    return cmds


def _addr(cmds: list[str], address: str, plen: int, dev: str) -> None:
    cmds.append(f"addr add {address}/{plen} dev {dev}" + (" nodad" if ":" in address else ""))


def address_commands(t: Topology) -> dict[str, list[str]]:
    """Phase 2: addresses, links up."""
    r = ["link set dev lo up"]
    _addr(r, t.router_client_address, 24, INGRESS_IF)
    _addr(r, t.router_client_address6, 64, INGRESS_IF)
    _addr(r, t.router_attacker_address, 24, ATTACKER_IF)
    _addr(r, t.router_attacker_address6, 64, ATTACKER_IF)
    r += [f"link set dev {INGRESS_IF} up", f"link set dev {ATTACKER_IF} up"]
    c = ["link set dev lo up"]
    _addr(c, t.client_address, 24, CLIENT_IF)
    _addr(c, t.client_address6, 64, CLIENT_IF)
    c.append(f"link set dev {CLIENT_IF} up")
    a = ["link set dev lo up"]
    _addr(a, t.attacker_address, 24, ATTACKER_SIDE_IF)
    _addr(a, t.attacker_address6, 64, ATTACKER_SIDE_IF)
    a.append(f"link set dev {ATTACKER_SIDE_IF} up")
    s = ["link set dev lo up"]
    for addr in t.server_addresses:
        _addr(s, addr, 32, "lo")
    for addr in t.server_addresses6:
        _addr(s, addr, 128, "lo")
    cmds = {t.router: r, t.client: c, t.attacker: a, t.server: s}
    for p in t.paths:
        _addr(r, p.router_address, 24, p.router_interface)
        _addr(r, p.router_address6, 64, p.router_interface)
        r.append(f"link set dev {p.router_interface} up")
        _addr(s, p.probe_address, 24, p.server_interface)
        _addr(s, p.probe_address6, 64, p.server_interface)
        s.append(f"link set dev {p.server_interface} up")
        pc = ["link set dev lo up"]
        _addr(pc, p.gateway, 24, PATH_ROUTER_SIDE_IF)
        _addr(pc, p.gateway6, 64, PATH_ROUTER_SIDE_IF)
        _addr(pc, f"10.201.{p.index}.1", 24, PATH_SERVER_SIDE_IF)
        _addr(pc, f"2001:db8:201:{p.index}::1", 64, PATH_SERVER_SIDE_IF)
        pc += [f"link set dev {dev} up" for dev in (PATH_ROUTER_SIDE_IF, PATH_SERVER_SIDE_IF, TUN_OUT, TUN_IN)]
        cmds[p.namespace] = pc
    return cmds


def route_commands(t: Topology) -> dict[str, list[str]]:
    """Phase 3: routes and rules (family inferred from the prefixes, as ``ip -batch`` has no -6)."""
    p1 = t.paths[0]
    r: list[str] = []
    for p in t.paths:
        r.append(f"route add 10.201.{p.index}.0/24 via {p.gateway}")
        r.append(f"route add 2001:db8:201:{p.index}::/64 via {p.gateway6}")
    # The kernel's own routing sends the destination prefixes over p1 until pathsteer steers them.
    r += [f"route add {pfx} via {p1.gateway}" for pfx in t.prefixes]
    r += [f"route add {pfx} via {p1.gateway6}" for pfx in t.prefixes6]
    c = [f"route add default via {t.router_client_address}",
         f"route add {V6_ANY} via {t.router_client_address6}"]
    a = [f"route add default via {t.router_attacker_address}",
         f"route add {V6_ANY} via {t.router_attacker_address6}"]
    s = [f"route add local {pfx} dev lo table local" for pfx in (*t.prefixes, *t.prefixes6)]
    s += [f"route add default via 10.201.{p1.index}.1",
          f"route add {V6_ANY} via 2001:db8:201:{p1.index}::1"]
    cmds = {t.router: r, t.client: c, t.attacker: a, t.server: s}
    for p in t.paths:
        # Replies leave over the path their flow last came in on: fwmark i (set by nftables from
        # the incoming interface through ct mark) → table 100+i → default via path i.
        s += [f"route add default via 10.201.{p.index}.1 dev {p.server_interface} table {p.table}",
              f"route add {V6_ANY} via 2001:db8:201:{p.index}::1 dev {p.server_interface} table {p.table}",
              f"rule add fwmark {p.index} lookup {p.table} pref 1000",
              f"-6 rule add fwmark {p.index} lookup {p.table} pref 1000"]
        back4, back6 = p.router_address, p.router_address6
        cmds[p.namespace] = [
            f"route add {t.client_address.rsplit('.', 1)[0]}.0/24 via {back4}",
            f"route add {t.attacker_address.rsplit('.', 1)[0]}.0/24 via {back4}",
            f"route add 2001:db8:200::/64 via {back6}",
            f"route add 2001:db8:250::/64 via {back6}",
            f"route add default via {p.probe_address}",
            f"route add {V6_ANY} via {p.probe_address6}",
            f"route add default dev {TUN_OUT} table {TABLE_DELAY_OUT}",
            f"route add {V6_ANY} dev {TUN_OUT} table {TABLE_DELAY_OUT}",
            f"route add default dev {TUN_IN} table {TABLE_DELAY_IN}",
            f"route add {V6_ANY} dev {TUN_IN} table {TABLE_DELAY_IN}",
            f"route add blackhole default table {TABLE_DOWN}",
            f"route add blackhole {V6_ANY} table {TABLE_DOWN}",
        ]
    return cmds


def server_nft(t: Topology) -> str:
    """nftables on the server: ct mark ← path of the incoming interface; mark ← ct mark on output.

    Set on every packet, so a flow moved to another path is followed by its replies.
    """
    elements = ", ".join(f'"{p.server_interface}" : {p.index}' for p in t.paths)
    return f"""table inet pathsteer_lab {{
  map path_of_iif {{ type ifname : mark; elements = {{ {elements} }} }}
  chain prerouting {{
    type filter hook prerouting priority mangle; policy accept;
    ct mark set iifname map @path_of_iif
  }}
  chain output {{
    type route hook output priority mangle; policy accept;
    ct mark != 0 meta mark set ct mark
  }}
}}
"""


# -- applying -----------------------------------------------------------------------------------

def _parallel(fn, items) -> None:
    items = list(items)
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(items)))) as pool:
        for _ in pool.map(lambda item: fn(*item), items):
            pass


def _claim(name: str) -> str:
    """Create the lab's state dir atomically: the claim on the name."""
    os.makedirs(STATE_ROOT, exist_ok=True)
    sdir = state_dir(name)
    pattern = lab_namespace_re(name)
    if any(pattern.fullmatch(ns) for ns in netns.list_namespaces()):
        raise UsageError(f"lab name {name!r} is already in use (namespaces {NS_PREFIX}{name}-* exist)")
    try:
        os.mkdir(sdir)
    except FileExistsError:
        raise UsageError(f"lab name {name!r} is already in use (see 'pathsteer lab list')") from None
    return sdir


def _start_delay_line(t: Topology) -> int:
    log = open(os.path.join(t.state_dir, "delayline.log"), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pathsteer_lab.delayline", t.state_dir],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
        cwd="/",
    )
    log.close()
    deadline = time.monotonic() + DELAYLINE_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"lab {t.name!r}: the delay line exited with {proc.returncode}: "
                           f"{_tail(os.path.join(t.state_dir, 'delayline.log'))}")
        if os.path.exists(t.control_socket):
            try:
                if delayline.request(t.control_socket, {"op": "ping"}).get("ok"):
                    return proc.pid
            except OSError:
                pass
        time.sleep(0.005)
    raise LabError(f"lab {t.name!r}: the delay line did not start within {DELAYLINE_START_TIMEOUT:g}s")


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1] if lines else "(no output)"
    except OSError:
        return "(no log)"


def _links_not_up(namespace: str) -> list[str]:
    out = subprocess.run(["ip", "-n", namespace, "-o", "link", "show", "type", "veth"],
                         capture_output=True, text=True).stdout
    return [f"{namespace}:{line.split(':')[1].strip().split('@')[0]}"
            for line in out.splitlines() if " state UP " not in line]


def _wait_links_up(t: Topology, timeout: float = LINKS_UP_TIMEOUT) -> None:
    """Wait until every veth's operstate is UP.

    The kernel applies carrier changes of veth in linkwatch, batched up to a second apart
    (net/core/link_watch.c: not "urgent"); until then IPv6 does not use the link (addrconf waits
    for NETDEV_CHANGE) and the first IPv6 packets wait about 1 s. Tests must not see that.
    """
    namespaces = t.all_namespaces()
    deadline = time.monotonic() + timeout
    while True:
        with ThreadPoolExecutor(max_workers=8) as pool:
            waiting = [x for xs in pool.map(_links_not_up, namespaces) for x in xs]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(f"lab {t.name!r}: links not up after {timeout:g}s: {' '.join(waiting[:5])}")
        namespaces = sorted({w.split(":")[0] for w in waiting})
        time.sleep(0.02)


def up(name: str, paths: int = 3) -> Topology:
    """Build lab ``name`` with ``paths`` paths and return its topology.

    Raises `UsageError` for a bad or taken name or path count, `LabError` when the kernel or a
    tool refuses; in both cases nothing of the lab is left behind.
    """
    require_root("pathsteer lab up")
    t = Topology.plan(name, paths)   # validates name and path count
    _claim(name)
    try:
        t.save()
        with open(os.path.join(t.state_dir, "impairments.json"), "w") as f:
            json.dump({}, f)
        netns.ip_batch(None, [f"netns add {ns}" for ns in t.all_namespaces()])

        def sysctls(ns: str) -> None:
            values = dict(COMMON_SYSCTLS)
            if ns == t.router or ns not in t.namespaces.values():
                values.update(FORWARDING_SYSCTLS)
            netns.write_sysctls(ns, values)

        for ns in t.all_namespaces():
            sysctls(ns)
        _start_delay_line(t)
        for phase in (veth_commands, address_commands, route_commands):
            _parallel(netns.ip_batch, phase(t).items())
        netns.run(t.server, ["nft", "-f", "-"], input=server_nft(t))
        _wait_links_up(t)
        return t
    except BaseException:
        _remove(name)
        raise


def far_end_threads(t: Topology) -> None:
    """Give the lab's far end its own CPU accounting, as a real network's: each path
    namespace's router-facing veth (``p-r``) receives in its own kernel thread (threaded NAPI;
    veth uses NAPI only with an XDP program attached, so the pass-only one of
    ``bpf/baseline.bpf.c``). Without it, a packet the router sends is forwarded by the path,
    answered by the server and brought back inside the sender's sendto(), all of it billed to
    the sender: what a benchmark of a sender's CPU must not count. With it, that work runs in
    the path's thread; the router's own stack (its send, its receive) stays the sender's.
    For the CPU benchmarks; the tests use the lab as `up` builds it."""
    from pathsteer.bpf.object import object_path

    obj = str(object_path("baseline"))

    def one(p) -> None:
        netns.run(p.namespace, ["ip", "link", "set", "dev", PATH_ROUTER_SIDE_IF, "xdpdrv", "obj", obj,
                                "sec", "xdp"])
        netns.run(p.namespace, ["sh", "-c", f"echo 1 > /sys/class/net/{PATH_ROUTER_SIDE_IF}/threaded"])

    _parallel(lambda p, _x: one(p), [(p, None) for p in t.paths])


# -- removing -----------------------------------------------------------------------------------

def _delay_line_pids(name: str) -> list[int]:
    """The lab's delay line: from its pid file, and (for a crash during start) by its exact argv."""
    sdir = state_dir(name)
    found: set[int] = set()
    try:
        with open(os.path.join(sdir, "delayline.pid")) as f:
            found.add(int(f.read().strip()))
    except (OSError, ValueError):
        pass
    want = ["-m", "pathsteer_lab.delayline", sdir]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv[1:4] == want:
                found.add(int(entry))
    return sorted(pid for pid in found if _is_delay_line(pid, sdir))


def _is_delay_line(pid: int, sdir: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return argv[1:4] == ["-m", "pathsteer_lab.delayline", sdir]


def _kill(pids: list[int], grace: float) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM if grace else signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while grace and time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") and not _is_zombie(pid) for pid in pids):
            return
        time.sleep(0.01)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") and not _is_zombie(pid) for pid in pids):
            return
        time.sleep(0.005)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _remove(name: str) -> bool:
    """Remove whatever exists of lab ``name``; True when something was found."""
    pattern = lab_namespace_re(name)
    namespaces = [ns for ns in netns.list_namespaces() if pattern.fullmatch(ns)]
    sdir = state_dir(name)
    found = bool(namespaces) or os.path.isdir(sdir)
    # The delay line first: its TUNs hold references to the path namespaces.
    _kill(_delay_line_pids(name), grace=1.0)
    inside = [pid for ns in namespaces for pid in netns.pids(ns) if pid != os.getpid()]
    _kill(inside, grace=0.0)
    netns.ip_batch(None, [f"netns del {ns}" for ns in namespaces], force=True)
    shutil.rmtree(sdir, ignore_errors=True)
    return found


def down(name: str) -> None:
    """Remove lab ``name``: processes, namespaces, state. Works on half-built and crashed labs."""
    require_root("pathsteer lab down")
    validate_name(name)
    if not _remove(name):
        raise UsageError(f"no lab named {name!r} (see 'pathsteer lab list')")
    left = [ns for ns in netns.list_namespaces() if lab_namespace_re(name).fullmatch(ns)]
    if left:
        raise LabError(f"lab {name!r}: could not remove namespaces {' '.join(left)}")


# -- listing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabStatus:
    name: str
    paths: int
    state: str            # "up" or "broken"
    problems: list[str]
    namespaces: int
    delay_line_pid: int | None

    def to_json(self) -> dict:
        return {"name": self.name, "paths": self.paths, "state": self.state,
                "problems": self.problems, "namespaces": self.namespaces,
                "delay_line_pid": self.delay_line_pid}


_ROUTER_RE = re.compile(re.escape(NS_PREFIX) + r"(.+)-(client|router|server|attacker|p[0-9]+)")


def list_labs() -> list[LabStatus]:
    """Every lab on this machine, also half-built and crashed ones (state ``broken``)."""
    names: set[str] = set()
    try:
        names.update(d for d in os.listdir(STATE_ROOT) if os.path.isdir(state_dir(d)))
    except FileNotFoundError:
        pass
    all_ns = netns.list_namespaces()
    for ns in all_ns:
        m = _ROUTER_RE.fullmatch(ns)
        if m:
            names.add(m.group(1))
    out = []
    for name in sorted(names):
        problems: list[str] = []
        have = [ns for ns in all_ns if lab_namespace_re(name).fullmatch(ns)]
        try:
            t = Topology.load(name)
            npaths = len(t.paths)
            missing = [ns for ns in t.all_namespaces() if ns not in have]
            if missing:
                problems.append(f"missing namespaces: {' '.join(missing)}")
        except (UsageError, LabError):
            npaths = sum(1 for ns in have if re.search(r"-p[0-9]+$", ns))
            problems.append("no topology.json (half-built)")
        pids = _delay_line_pids(name) if os.path.isdir(state_dir(name)) else []
        if not pids:
            problems.append("delay line not running")
        out.append(LabStatus(name, npaths, "broken" if problems else "up", problems, len(have),
                             pids[0] if pids else None))
    return out
