"""A fleet over BGP (issue 10): two edge labs, a core router that peers with both, a client behind it.

    with Fleet.up("f1a2b3c") as fl:                        # labs f1a2b3ca, f1a2b3cb + core + client
        with BirdCore(fl, tmp) as core:                     # or FrrCore(fl, tmp)
            core.wait_established(30)                       # once both edges' speakers are up
            core.best("198.51.100.0/24")                    # "10.100.1.2": the edge with the lower MED
            core.kernel_route("198.51.100.0/24")            # the gateway the core's kernel uses
            fl.ping("198.51.100.10")                        # from the fleet client, over that edge

Layout (k = 1, 2; edge k is the router namespace of lab ``f"{name}a"`` / ``f"{name}b"``, built by
`pathsteer_lab.build.up` with 2 paths)::

    fleet client              core                          edge 1 (router of lab NAMEa) ─ p1, p2 ─ server
    ps-NAME-fc  fc-c ──── c-fc  ps-NAME-core  c-e1 ──── r-core
    10.77.0.2           10.77.0.1      10.100.1.1      10.100.1.2
                                              c-e2 ──── r-core  edge 2 (router of lab NAMEb) ─ p1, p2 ─ server
                                       10.100.2.1      10.100.2.2

Both edges' servers answer the same prefixes (198.51.100.0/24, 203.0.113.0/24): anycast-like,
on purpose. The core forwards (ip_forward=1) but has no route to those prefixes: a BGP daemon on
it (`BirdCore`, `FrrCore`) installs the best route it learns from the edges' speakers (ExaBGP
under pathsteer, or a `BirdEdge` in tests) in its kernel table, so the client's traffic follows
the lowest MED. Each edge router routes 10.77.0.0/24 back via the core; each path namespace
routes 10.77.0.0/24 and 10.100.0.0/16 back to its router (as the lab does for its own client
subnet); the servers need nothing (their replies leave over the path their flow came in on).
rp_filter is off everywhere (the labs' defaults, and the same for the two new namespaces).
IPv4 only. Edge ASes 65001, 65002; the core's 65000.

Best-route selection on the core (both daemons): local preference, AS path length and origin
come before MED, so the edges' speakers must announce with equal ones (one AS in the path,
origin IGP); the MED is then compared across the two edge ASes (BIRD ``med metric yes``, FRR
``bgp always-compare-med``; without them, seen here, BIRD keeps the route of the lower router
id and FRR the older path, whatever the MEDs). Equal MEDs: one route wins (no ECMP).

Cleanup: the core and client namespaces (``ps-NAME-core``, ``ps-NAME-fc``) are no lab's:
``pathsteer lab list`` does not show them and ``pathsteer lab down NAMEa`` removes only lab a.
`Fleet.down` / the module's `down(NAME)` remove everything (both labs, the two namespaces, the
BGP daemons running in any of them, their sockets and short /tmp directories), idempotently.

BGP daemons: one BIRD (``bird -f``) or zebra + bgpd (foreground) per instance, started through
``ip netns exec`` with PR_SET_PDEATHSIG (they die with the thread that started them: start them
from a thread that outlives them), output appended to a log in the instance's workdir; sockets
and pid files in ``workdir/NAME/``, or in a short /tmp directory (``psfl-NAME-*``) when that path
would be longer than a Unix socket address allows. FRR 8.4 wants its user in group ``frrvty``
(root is not): zebra and bgpd run as ``-u root -g frrvty``, started with that gid already (a gid
change would clear the death signal). zebra installs routes with nexthop objects (``nhid``):
read them with ``ip route`` (as `kernel_route` does), not pyroute2.
"""

from __future__ import annotations

import ctypes
import glob
import grp
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from pathsteer.errors import LabError, UsageError
from pathsteer_lab import build, netns
from pathsteer_lab.measure import PingResult, parse_ping, ping_argv
from pathsteer_lab.procs import stop_process as _stop, tail as _tail, unlink as _unlink
from pathsteer_lab.topology import NS_PREFIX, Topology, lab_namespace_re, state_dir, validate_name

CORE_ASN = 65000
EDGE_ASNS = (65001, 65002)
CLIENT_NET = "10.77.0.0/24"
CLIENT_ADDRESS = "10.77.0.2"
CLIENT_GATEWAY = "10.77.0.1"
CORE_NETS = "10.100.0.0/16"           # every core ↔ edge link
EDGE_CORE_IF = "r-core"               # in an edge's router namespace
CLIENT_CORE_IF = "fc-c"               # in the fleet client
CORE_CLIENT_IF = "c-fc"               # in the core
MAX_NAME = 7                          # "ps-" + name + "-core" ≤ 15 characters
ORIGINATED_LARGE_COMMUNITY = (65000, 7, 1)
HOLD_TIME = 9
_SUN_PATH_MAX = 107


def core_namespace(name: str) -> str:
    return f"{NS_PREFIX}{name}-core"


def client_namespace(name: str) -> str:
    return f"{NS_PREFIX}{name}-fc"


def edge_lab_names(name: str) -> list[str]:
    return [f"{name}a", f"{name}b"]


def core_interface(k: int) -> str:
    """The core's interface towards edge ``k`` (1, 2)."""
    return f"c-e{k}"


def edge_address(k: int) -> str:
    return f"10.100.{k}.2"


def core_address(k: int) -> str:
    return f"10.100.{k}.1"


def _validate_fleet_name(name: str) -> str:
    validate_name(name)
    if len(name) > MAX_NAME:
        raise UsageError(f"fleet name {name!r} is too long (at most {MAX_NAME} characters: "
                         f"namespace {core_namespace(name)!r} must fit 15)")
    return name


# -- processes ----------------------------------------------------------------------------------

_prctl = ctypes.CDLL(None, use_errno=True).prctl   # looked up before any fork: the child only calls it


def _preexec(gid: int | None = None):
    """preexec_fn: the child gets SIGKILL when the test process dies (``ip netns exec`` execs,
    so the setting reaches the daemon). The kernel clears it when a process changes its uid or
    gid, so a daemon that switches to a group (FRR) is started with that group already."""
    def fn() -> None:
        if gid is not None:
            os.setgid(gid)
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return fn


def _popen(ns: str, argv: Sequence[str], log_path: str, *, gid: int | None = None) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return netns.popen(ns, list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                           preexec_fn=_preexec(gid), cwd="/")


def _runtime_dir(workdir: str, subdir: str, prefix: str, longest: int = 16) -> tuple[str, str | None]:
    """``workdir/subdir`` when Unix socket paths in it fit, else a fresh ``/tmp/psfl-<prefix>-*``
    (returned second, for the caller to remove)."""
    path = os.path.join(os.path.abspath(workdir), subdir)
    if len(os.path.join(path, "x" * longest)) <= _SUN_PATH_MAX:
        os.makedirs(path, exist_ok=True)
        return path, None
    short = tempfile.mkdtemp(prefix=f"psfl-{prefix}-", dir="/tmp")
    return short, short


def _kill_namespace_processes(namespaces: Iterable[str]) -> None:
    pids = [pid for ns in namespaces if netns.exists(ns) for pid in netns.pids(ns) if pid != os.getpid()]
    build._kill(pids, grace=1.0)


def _wait(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- the fleet topology -------------------------------------------------------------------------

class Fleet:
    """Two edge labs, a core, a fleet client (module docstring). `Fleet.up` builds it."""

    def __init__(self, name: str, edges: list[Topology]) -> None:
        self.name = name
        self.edges = edges
        self.core_ns = core_namespace(name)
        self.client_ns = client_namespace(name)
        self.client_address = CLIENT_ADDRESS
        self.client_gateway = CLIENT_GATEWAY
        self.daemons: list = []          # BGP daemons started on this fleet: stopped by down()

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def up(cls, name: str, paths: int = 2) -> Fleet:
        """Build fleet ``name`` (≤ 7 characters); nothing is left behind when it fails."""
        build.require_root("fleet up")
        _validate_fleet_name(name)
        taken = [ns for ns in (core_namespace(name), client_namespace(name)) if netns.exists(ns)]
        for lab in edge_lab_names(name):
            pattern = lab_namespace_re(lab)
            taken += [ns for ns in netns.list_namespaces() if pattern.fullmatch(ns)]
            if os.path.isdir(state_dir(lab)):
                taken.append(state_dir(lab))
        if taken:
            raise UsageError(f"fleet name {name!r} is already in use ({' '.join(taken)} exist)")
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                futures = [pool.submit(build.up, lab, paths) for lab in edge_lab_names(name)]
                edges = [f.result() for f in futures]
            fleet = cls(name, edges)
            fleet._wire()
            return fleet
        except BaseException:
            down(name)
            raise

    def _wire(self) -> None:
        core, fc = self.core_ns, self.client_ns
        netns.ip_batch(None, [f"netns add {core}", f"netns add {fc}"])
        netns.write_sysctls(core, {**build.COMMON_SYSCTLS, **build.FORWARDING_SYSCTLS})
        netns.write_sysctls(fc, build.COMMON_SYSCTLS)
        c = ["link set dev lo up",
             f"link add name {CORE_CLIENT_IF} type veth peer name {CLIENT_CORE_IF} netns {fc}",
             f"addr add {CLIENT_GATEWAY}/24 dev {CORE_CLIENT_IF}",
             f"link set dev {CORE_CLIENT_IF} up"]
        for k, t in enumerate(self.edges, 1):
            c += [f"link add name {core_interface(k)} type veth peer name {EDGE_CORE_IF} netns {t.router}",
                  f"addr add {core_address(k)}/24 dev {core_interface(k)}",
                  f"link set dev {core_interface(k)} up"]
        netns.ip_batch(core, c)
        netns.ip_batch(fc, ["link set dev lo up", f"addr add {CLIENT_ADDRESS}/24 dev {CLIENT_CORE_IF}",
                            f"link set dev {CLIENT_CORE_IF} up", f"route add default via {CLIENT_GATEWAY}"])
        for k, t in enumerate(self.edges, 1):
            netns.ip_batch(t.router, [f"addr add {edge_address(k)}/24 dev {EDGE_CORE_IF}",
                                      f"link set dev {EDGE_CORE_IF} up",
                                      f"route add {CLIENT_NET} via {core_address(k)}"])
            # Replies to the fleet client (and to the core's link addresses) from a path namespace
            # go back to the router, as the lab's own client subnet does (build.route_commands).
            for p in t.paths:
                netns.ip_batch(p.namespace, [f"route add {CLIENT_NET} via {p.router_address}",
                                             f"route add {CORE_NETS} via {p.router_address}"])
        self._wait_links_up()

    def _wait_links_up(self, timeout: float = build.LINKS_UP_TIMEOUT) -> None:
        namespaces = [self.core_ns, self.client_ns, *(t.router for t in self.edges)]
        if not _wait(lambda: not any(build._links_not_up(ns) for ns in namespaces), timeout, 0.02):
            waiting = [x for ns in namespaces for x in build._links_not_up(ns)]
            raise LabError(f"fleet {self.name!r}: links not up after {timeout:g}s: {' '.join(waiting[:5])}")

    # -- addresses ---------------------------------------------------------------------------

    @staticmethod
    def edge_address(k: int) -> str:
        """Edge ``k``'s (1, 2) address on its link to the core: 10.100.k.2."""
        return edge_address(k)

    @staticmethod
    def core_address(k: int) -> str:
        """The core's address on its link to edge ``k``: 10.100.k.1."""
        return core_address(k)

    def edge(self, k: int) -> Topology:
        return self.edges[k - 1]

    def all_namespaces(self) -> list[str]:
        return [self.core_ns, self.client_ns, *(ns for t in self.edges for ns in t.all_namespaces())]

    # -- commands and checks -------------------------------------------------------------------

    def run(self, ns: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        """Run ``argv`` in ``ns``: "core", "client", or a namespace name."""
        return netns.run(self._ns(ns), argv, **kw)

    def popen(self, ns: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        return netns.popen(self._ns(ns), argv, **kw)

    def _ns(self, ns: str) -> str:
        return {"core": self.core_ns, "client": self.client_ns, "fc": self.client_ns}.get(ns, ns)

    def ping(self, destination: str = "198.51.100.10", count: int = 5, interval: float = 0.05,
             timeout: float = 2.0) -> PingResult:
        """Ping from the fleet client; never raises for loss."""
        proc = self.run("client", ping_argv(destination, count, interval, timeout=timeout), check=False,
                        timeout=count * interval + timeout + 10)
        result = parse_ping(proc.stdout)
        if result.sent == 0:
            raise LabError(f"ping {destination} from the fleet client failed: "
                           f"{(proc.stderr or proc.stdout).strip()[-200:]}")
        return result

    def edge_rx_packets(self, k: int) -> int:
        """Packets edge ``k``'s router has received from the core (``r-core`` counter)."""
        out = netns.run(self.edge(k).router, ["ip", "-j", "-s", "link", "show", "dev", EDGE_CORE_IF]).stdout
        return int(json.loads(out)[0]["stats64"]["rx"]["packets"])

    def set_core_route(self, prefix: str, k: int | None) -> None:
        """A static route on the core: ``prefix`` via edge ``k``, or none (``k`` None). For
        checking the wiring; a BGP core must not have one (its metric 0 beats a daemon's route)."""
        if k is None:
            netns.run(self.core_ns, ["ip", "route", "del", prefix], check=False)
        else:
            netns.run(self.core_ns, ["ip", "route", "replace", prefix, "via", edge_address(k)])

    def kernel_routes(self, prefix: str) -> list[dict]:
        return kernel_routes(self.core_ns, prefix)

    def kernel_route(self, prefix: str) -> str | None:
        return kernel_route(self.core_ns, prefix)

    # -- removing ------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop the BGP daemons started on it, remove both labs and the two namespaces."""
        for d in list(self.daemons):
            try:
                d.stop()
            except Exception:  # pragma: no cover - down() goes on
                pass
        self.daemons.clear()
        down(self.name)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.down()


def down(name: str) -> bool:
    """Remove whatever exists of fleet ``name`` (idempotent): processes in the core and client
    namespaces (BGP daemons), those namespaces, both edge labs, ``/tmp/psfl-NAME-*``. True when
    something was found."""
    build.require_root("fleet down")
    validate_name(name)
    extra = [ns for ns in (core_namespace(name), client_namespace(name)) if netns.exists(ns)]
    found = bool(extra)
    _kill_namespace_processes(extra)
    netns.ip_batch(None, [f"netns del {ns}" for ns in extra], force=True)
    for lab in edge_lab_names(name):
        try:
            build.down(lab)
            found = True
        except UsageError:
            pass
    for path in glob.glob(f"/tmp/psfl-{name}-*"):
        shutil.rmtree(path, ignore_errors=True)
        found = True
    left = [ns for ns in (core_namespace(name), client_namespace(name)) if netns.exists(ns)]
    if left:
        raise LabError(f"fleet {name!r}: could not remove namespaces {' '.join(left)}")
    return found


def kernel_routes(ns: str, prefix: str) -> list[dict]:
    """``ip -j route show PREFIX`` (main table, exact prefix) in ``ns``, lowest metric first."""
    out = subprocess.run(["ip", "-n", ns, "-j", "route", "show", prefix], capture_output=True, text=True).stdout
    routes = json.loads(out or "[]")
    return sorted(routes, key=lambda r: r.get("metric", 0))


def kernel_route(ns: str, prefix: str) -> str | None:
    """The gateway of the route the kernel uses for exactly ``prefix`` in ``ns`` (the lowest
    metric; a multipath route's first next hop), or None (no route, or one without a gateway)."""
    for r in kernel_routes(ns, prefix):
        if r.get("type", "unicast") != "unicast":
            return None
        if "gateway" in r:
            return r["gateway"]
        for nh in r.get("nexthops", []):
            if "gateway" in nh:
                return nh["gateway"]
        return None
    return None


# -- BGP daemons: the shared contract -------------------------------------------------------------

def _fmt_large(c: Sequence[int]) -> str:
    return ":".join(str(x) for x in c)


def _fmt_std(c: Sequence[int]) -> str:
    return ":".join(str(x) for x in c)


class CoreRouter:
    """What `BirdCore` and `FrrCore` share: the core's BGP daemon in ``ns`` peering with
    ``edges`` [(address, asn)], originating ``originated`` {prefix: (large community or None,
    community or None)} towards the edges only, installing its best routes in the kernel.

    Subclasses give `_start`, `_stop`, `_apply`, `routes`, `sessions`, `count_routes`,
    `config_text`. Session names are ``edge1``, ``edge2`` … (the order of ``edges``)."""

    kind = "core"

    def __init__(self, fleet_or_ns, workdir: str, *, asn: int = CORE_ASN,
                 edges: Sequence[tuple[str, int]] | None = None, hold_time: int = HOLD_TIME,
                 router_id: str | None = None, name: str | None = None) -> None:
        if isinstance(fleet_or_ns, Fleet):
            self.fleet: Fleet | None = fleet_or_ns
            self.ns = fleet_or_ns.core_ns
            default_edges = [(edge_address(k), asn_k) for k, asn_k in zip((1, 2), EDGE_ASNS)]
            tag = fleet_or_ns.name
        else:
            self.fleet, self.ns, default_edges, tag = None, fleet_or_ns, [], fleet_or_ns
        self.edges = [(str(a), int(n)) for a, n in (edges if edges is not None else default_edges)]
        if not self.edges:
            raise UsageError(f"{type(self).__name__}: no edges to peer with")
        self.asn = asn
        self.hold_time = int(hold_time)
        if not 3 <= self.hold_time <= 65535:
            raise UsageError(f"hold time {hold_time!r}: 3..65535 seconds")
        # The core's own address towards each edge (BIRD's "local"): what its kernel would use.
        self.local_addresses = {a: _source_address(self.ns, a) for a, _ in self.edges}
        self.router_id = router_id or self.local_addresses[self.edges[0][0]]
        self.name = name or self.kind
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.log_path = os.path.join(self.workdir, f"{self.name}.log")
        self._tag = tag
        self.originated: dict[str, tuple[tuple[int, int, int] | None, tuple[int, int] | None]] = {}

    # names -------------------------------------------------------------------------------------

    def session_names(self) -> list[str]:
        return [f"edge{k}" for k in range(1, len(self.edges) + 1)]

    # life cycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0):
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        if self.fleet is not None:
            self.fleet.daemons.append(self)
        return self

    def stop(self) -> None:
        self._stop()
        if self.fleet is not None and self in self.fleet.daemons:
            self.fleet.daemons.remove(self)

    def __enter__(self):
        if not self.alive():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n: int = 8) -> str:
        return _tail(self.log_path, n)

    # originated prefixes ------------------------------------------------------------------------

    def originate(self, prefixes: str | Iterable[str], *,
                  large_community: tuple[int, int, int] | None = ORIGINATED_LARGE_COMMUNITY,
                  community: tuple[int, int] | None = None) -> None:
        """Announce ``prefixes`` from the core to every edge, tagged with ``large_community``
        and/or ``community`` (None: no such tag). Applied at once when the daemon runs."""
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        for p in prefixes:
            self.originated[p] = (tuple(large_community) if large_community else None,
                                  tuple(community) if community else None)
        if self.alive():
            self._apply()

    def withdraw(self, prefix: str) -> None:
        self.originated.pop(prefix, None)
        if self.alive():
            self._apply(withdrawn=[prefix])

    # reading -------------------------------------------------------------------------------------

    def best(self, prefix: str) -> str | None:
        """The next hop of the best route for exactly ``prefix`` (None: no route, or a local one)."""
        for r in self.routes(prefix):
            if r["best"]:
                return r["next_hop"]
        return None

    def wait_best(self, prefix: str, next_hop: str | None, timeout: float = 20.0) -> float:
        """Wait until the best route of ``prefix`` goes via ``next_hop``; seconds it took."""
        t0 = time.monotonic()
        if _wait(lambda: self.best(prefix) == next_hop, timeout, 0.05) is not True:
            raise AssertionError(f"{self.name}: best route of {prefix} is via {self.best(prefix)}, "
                                 f"not {next_hop}, after {timeout:g} s; routes {self.routes(prefix)}; "
                                 f"sessions {self.sessions()}; {self.log_tail()}")
        return time.monotonic() - t0

    def wait_routes(self, prefix: str, count: int, timeout: float = 20.0) -> list[dict]:
        """Wait until the core holds ``count`` (or more) routes of ``prefix``; they are returned.
        (A session is Established before its routes arrive.)"""
        got = _wait(lambda: (lambda rs: rs if len(rs) >= count else None)(self.routes(prefix)), timeout, 0.05)
        if got is None:
            raise AssertionError(f"{self.name}: {len(self.routes(prefix))} routes of {prefix}, not {count}, "
                                 f"after {timeout:g} s: {self.routes(prefix)}; sessions {self.sessions()}")
        return got

    def kernel_route(self, prefix: str) -> str | None:
        """The gateway of the core kernel's route for exactly ``prefix`` (or None)."""
        return kernel_route(self.ns, prefix)

    def wait_kernel_route(self, prefix: str, gateway: str | None, timeout: float = 20.0) -> float:
        t0 = time.monotonic()
        if _wait(lambda: self.kernel_route(prefix) == gateway, timeout, 0.05) is not True:
            raise AssertionError(f"{self.name}: kernel route of {prefix} via {self.kernel_route(prefix)}, "
                                 f"not {gateway}, after {timeout:g} s; routes {self.routes(prefix)}; "
                                 f"{self.log_tail()}")
        return time.monotonic() - t0

    def wait_established(self, timeout: float = 30.0, names: Iterable[str] | None = None) -> dict[str, str]:
        """Wait until the sessions ``names`` (default: every edge) are Established."""
        want = list(names) if names is not None else self.session_names()

        def done():
            s = self.sessions()
            return s if all(s.get(n) == "Established" for n in want) else None

        got = _wait(done, timeout, 0.1)
        if got is None:
            raise TimeoutError(f"{self.name}: sessions not Established after {timeout:g} s: "
                               f"{self.sessions()}; {self.log_tail()}")
        return got

    def wait_count(self, n: int, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        if not _wait(lambda: self.count_routes() >= n, timeout, 0.05):
            raise TimeoutError(f"{self.name}: {self.count_routes()} routes, not {n}, after {timeout:g} s")
        return time.monotonic() - t0


def _source_address(ns: str, peer: str) -> str:
    """The address ``ns`` sends from towards ``peer`` (``ip route get``)."""
    out = subprocess.run(["ip", "-n", ns, "-j", "route", "get", peer], capture_output=True, text=True)
    try:
        return json.loads(out.stdout)[0]["prefsrc"]
    except (ValueError, LookupError):
        raise LabError(f"{ns}: no route to BGP peer {peer}: {out.stderr.strip()}") from None


# -- BIRD ----------------------------------------------------------------------------------------

class Bird:
    """One ``bird -f`` in ``ns`` with a given config text; files in ``workdir``/NAME (or a
    short /tmp dir): ``bird.conf``, ``bird.ctl`` (control socket), ``bird.pid``; output in
    ``workdir/NAME.log``."""

    def __init__(self, ns: str, workdir: str, name: str = "bird", tag: str = "x") -> None:
        self.ns, self.name = ns, name
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.log_path = os.path.join(self.workdir, f"{name}.log")
        self.dir, self._own_dir = _runtime_dir(self.workdir, name, tag)
        self.cfg_path = os.path.join(self.dir, "bird.conf")
        self.socket = os.path.join(self.dir, "bird.ctl")
        self.pid_file = os.path.join(self.dir, "bird.pid")
        self.config = ""
        self.proc: subprocess.Popen | None = None

    def start(self, config: str, timeout: float = 15.0) -> Bird:
        self._write(config)
        check = subprocess.run(["bird", "-p", "-c", self.cfg_path], capture_output=True, text=True)
        if check.returncode != 0:
            raise LabError(f"{self.name}: bad BIRD config: {(check.stderr or check.stdout).strip()}")
        for path in (self.socket, self.pid_file):
            _unlink(path)
        self.proc = _popen(self.ns, ["bird", "-f", "-c", self.cfg_path, "-s", self.socket, "-P", self.pid_file],
                           self.log_path)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise LabError(f"{self.name}: bird exited with {self.proc.returncode}: {_tail(self.log_path)}")
                if os.path.exists(self.socket):
                    r = subprocess.run(["birdc", "-s", self.socket, "show", "status"], capture_output=True,
                                       text=True, timeout=5)
                    if r.returncode == 0 and "Daemon is up and running" in r.stdout:
                        return self
                if time.monotonic() > deadline:
                    raise LabError(f"{self.name}: bird did not answer within {timeout:g} s: {_tail(self.log_path)}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def _write(self, config: str) -> None:
        self.config = config
        tmp = self.cfg_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(config)
        os.replace(tmp, self.cfg_path)
        with open(os.path.join(self.workdir, f"{self.name}.conf"), "w") as f:  # a copy beside the log
            f.write(config)

    def configure(self, config: str) -> None:
        """Rewrite the config and ``birdc configure`` (BIRD reloads only what changed)."""
        self._write(config)
        out = self.birdc("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise LabError(f"{self.name}: birdc configure: {out.strip()}")

    def birdc(self, *command: str, timeout: float = 10.0) -> str:
        """One birdc command (words), its output; LabError when birdc fails."""
        r = subprocess.run(["birdc", "-s", self.socket, *command], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise LabError(f"{self.name}: birdc {' '.join(command)}: {(r.stderr or r.stdout).strip()}")
        return r.stdout

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (BIRD removes its kernel routes), SIGKILL after 5 s; socket, pid file, short dir removed."""
        _stop(self.proc)
        for path in (self.socket, self.pid_file):
            _unlink(path)
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    # reading -------------------------------------------------------------------------------------

    def routes(self, prefix: str) -> list[dict]:
        """The routes of exactly ``prefix`` (`parse_bird_routes`); [] when there is none."""
        r = subprocess.run(["birdc", "-s", self.socket, "show", "route", "for", prefix, "all"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0 and "Network not found" not in r.stdout:
            raise LabError(f"{self.name}: birdc show route for {prefix} all: {(r.stderr or r.stdout).strip()}")
        return parse_bird_routes(r.stdout, prefix)

    def protocols(self) -> dict[str, dict]:
        return parse_bird_protocols(self.birdc("show", "protocols"))

    def sessions(self) -> dict[str, str]:
        """BGP protocol name → session state ("Established", "Active", "Connect", "Idle", ...)."""
        return {name: p["bgp_state"] for name, p in self.protocols().items() if p["proto"] == "BGP"}

    def count_routes(self) -> int:
        """Routes in the master4 table (every path of every network)."""
        return parse_bird_count(self.birdc("show", "route", "count"))[0]

    def count_networks(self) -> int:
        return parse_bird_count(self.birdc("show", "route", "count"))[1]


_BIRD_ROUTE_HEAD = re.compile(
    r"^(?P<net>\S+)?\s+(?P<type>unicast|blackhole|unreachable|prohibited)\s+"
    r"\[(?P<proto>\S+)\s+[^\]]*?(?:\s+from\s+(?P<from>\S+))?\]"
    r"\s*(?P<best>\*)?\s*\((?P<pref>\d+)\)")
_PAIRS = re.compile(r"\((\d+),\s*(\d+)\)")
_TRIPLES = re.compile(r"\((\d+),\s*(\d+),\s*(\d+)\)")


def parse_bird_routes(text: str, prefix: str | None = None) -> list[dict]:
    """``birdc show route [for P] all`` → one dict per route: prefix, protocol, type, best,
    preference, next_hop, interface, from (the BGP neighbour, or None), as_path [int], origin,
    med, local_pref, communities [(a, b)], large_communities [(a, b, c)]. With ``prefix``, only
    routes of exactly that network (``for`` shows the longest match)."""
    routes: list[dict] = []
    net = None
    cur: dict | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Table ")):
            continue
        m = _BIRD_ROUTE_HEAD.match(line)
        if m and not line.startswith("\t"):
            net = m.group("net") or net
            cur = {"prefix": net, "protocol": m.group("proto"), "type": m.group("type"),
                   "best": bool(m.group("best")), "preference": int(m.group("pref")), "next_hop": None,
                   "interface": None, "from": m.group("from"), "as_path": [], "origin": None, "med": None,
                   "local_pref": None, "communities": [], "large_communities": []}
            routes.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("via "):
            parts = s.split()
            cur["next_hop"] = parts[1]
            if "on" in parts:
                cur["interface"] = parts[parts.index("on") + 1]
        elif s.startswith("dev ") and cur["interface"] is None:
            cur["interface"] = s.split()[1]
        elif ":" in s:
            key, _, value = s.partition(":")
            value = value.strip()
            if key == "BGP.as_path":
                cur["as_path"] = [int(x) for x in re.findall(r"\d+", value)]
            elif key == "BGP.origin":
                cur["origin"] = value
            elif key == "BGP.med":
                cur["med"] = int(value)
            elif key == "BGP.local_pref":
                cur["local_pref"] = int(value)
            elif key == "BGP.community":
                cur["communities"] = [(int(a), int(b)) for a, b in _PAIRS.findall(value)]
            elif key == "BGP.large_community":
                cur["large_communities"] = [tuple(int(x) for x in t) for t in _TRIPLES.findall(value)]
            elif key == "BGP.next_hop" and cur["next_hop"] is None:
                cur["next_hop"] = value.split()[0]
    for r in routes:
        if r["from"] is None and r["origin"] is not None:   # a BGP route from a directly connected peer
            r["from"] = r["next_hop"]
    if prefix is not None:
        routes = [r for r in routes if r["prefix"] == prefix]
    return routes


def parse_bird_protocols(text: str) -> dict[str, dict]:
    """``birdc show protocols`` → name → {proto, table, state, since, info, bgp_state}."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or line.startswith(("BIRD ", "Name ")):
            continue
        name, proto, table, state = parts[:4]
        rest = parts[4:]
        # "Since" is one or two words (time, or date and time): the info column follows.
        info_words = rest[1:]
        if info_words and re.fullmatch(r"[\d:.-]+", info_words[0]):
            info_words = info_words[1:]
        info = " ".join(info_words)
        bgp_state = None
        if proto == "BGP":
            first = info.split()[0] if info else ""
            bgp_state = first if first in ("Established", "Active", "Connect", "OpenSent", "OpenConfirm",
                                           "Idle", "Passive") else ("Idle" if state in ("down", "start") else state)
        out[name] = {"proto": proto, "table": table, "state": state, "info": info, "bgp_state": bgp_state}
    return out


def parse_bird_count(text: str) -> tuple[int, int]:
    """``birdc show route count`` → (routes, networks), summed over the tables shown."""
    routes = networks = 0
    for m in re.finditer(r"^(\d+) of (\d+) routes for (\d+) networks in table ", text, re.M):
        routes += int(m.group(2))
        networks += int(m.group(3))
    return routes, networks


def bird_core_config(*, router_id: str, asn: int, edges: Sequence[tuple[str, str, int, str]],
                     hold_time: int = HOLD_TIME,
                     originated: Mapping[str, tuple[tuple[int, int, int] | None, tuple[int, int] | None]] = {},
                     ) -> str:
    """The core's BIRD 2 config. ``edges``: [(protocol name, neighbour address, neighbour AS,
    the core's own address towards it)]; ``originated``: {prefix: (large community, community)}."""
    routes = []
    for prefix, (large, std) in originated.items():
        attrs = []
        if large:
            attrs.append(f"bgp_large_community.add(({', '.join(map(str, large))}));")
        if std:
            attrs.append(f"bgp_community.add(({', '.join(map(str, std))}));")
        routes.append(f"  route {prefix} blackhole" + (f" {{ {' '.join(attrs)} }};" if attrs else ";"))
    peers = "\n".join(
        f"protocol bgp {name} from edge {{\n"
        f"  local {local} as {asn};\n"
        f"  neighbor {addr} as {peer_asn};\n"
        f"}}\n" for name, addr, peer_asn, local in edges)
    keepalive = max(1, hold_time // 3)
    return f"""\
# pathsteer fleet core: BIRD 2. Learns the service prefixes from the edges over eBGP, puts the
# best route of each in the kernel (so traffic follows it), announces only its own prefixes.
router id {router_id};
log stderr all;

protocol device {{
  scan time 10;
}}

# The best route of every prefix learned over BGP goes into the kernel's main table.
protocol kernel {{
  ipv4 {{
    import none;
    export where source = RTS_BGP;
  }};
  learn off;
}}

# What the core itself announces to the edges (tagged with communities).
protocol static originated {{
  ipv4;
{chr(10).join(routes)}
}}

template bgp edge {{
  local as {asn};
  hold time {hold_time};
  keepalive time {keepalive};
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 10;
  # The edges have different ASes: compare MED between routes from any neighbour AS (BIRD's
  # default compares it only between routes from the same AS), so the lowest MED wins.
  med metric yes;
  ipv4 {{
    import all;
    # Only the core's own prefixes: never one edge's routes to the other edge.
    export where source = RTS_STATIC;
  }};
}}

{peers}"""


class BirdCore(CoreRouter):
    """BIRD 2 on the fleet's core (or any namespace, with ``edges`` given).

        core = BirdCore(fleet, tmp).start(); core.wait_established(30)
        core.best("198.51.100.0/24"); core.originate("192.0.2.0/24")   # large community 65000:7:1
    """

    kind = "bird-core"

    def __init__(self, fleet_or_ns, workdir: str, **kw) -> None:
        super().__init__(fleet_or_ns, workdir, **kw)
        self.bird = Bird(self.ns, self.workdir, self.name, tag=self._tag)
        self.log_path = self.bird.log_path

    @property
    def config_text(self) -> str:
        return bird_core_config(router_id=self.router_id, asn=self.asn, hold_time=self.hold_time,
                                edges=[(n, a, asn, self.local_addresses[a])
                                       for n, (a, asn) in zip(self.session_names(), self.edges)],
                                originated=self.originated)

    @property
    def socket(self) -> str:
        return self.bird.socket

    def _start(self, timeout: float) -> None:
        self.bird.start(self.config_text, timeout)

    def _stop(self) -> None:
        self.bird.stop()

    def _apply(self, withdrawn: Sequence[str] = ()) -> None:
        self.bird.configure(self.config_text)

    def alive(self) -> bool:
        return self.bird.alive()

    def birdc(self, *command: str) -> str:
        return self.bird.birdc(*command)

    def routes(self, prefix: str) -> list[dict]:
        return self.bird.routes(prefix)

    def sessions(self) -> dict[str, str]:
        return self.bird.sessions()

    def count_routes(self) -> int:
        return self.bird.count_routes()

    def count_networks(self) -> int:
        return self.bird.count_networks()


def bird_edge_config(*, local: str, asn: int, neighbor: str, neighbor_asn: int,
                     announce: Mapping[str, int | None], hold_time: int = HOLD_TIME) -> str:
    """A stand-in for an edge's speaker: BIRD announcing ``announce`` {prefix: MED or None} to
    the core (MED set in the export filter: BIRD sends MED over eBGP only when the filter sets it)."""
    routes = "\n".join(f"  route {p} blackhole;" for p in announce)
    cases = "\n".join(
        f"  if net = {p} then {{ {'' if med is None else f'bgp_med = {med}; '}accept; }}"
        for p, med in announce.items())
    return f"""\
router id {local};
log stderr all;
protocol device {{ scan time 10; }}
protocol static announced {{
  ipv4;
{routes}
}}
filter to_core {{
{cases}
  reject;
}}
protocol bgp core {{
  local {local} as {asn};
  neighbor {neighbor} as {neighbor_asn};
  hold time {hold_time};
  keepalive time {max(1, hold_time // 3)};
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 10;
  ipv4 {{ import all; export filter to_core; }};
}}
"""


class BirdEdge:
    """A BIRD that plays an edge's BGP speaker (ExaBGP-free tests): in ``ns`` (an edge's router
    namespace), peering with the core from ``local``, announcing prefixes with MEDs. It has no
    kernel protocol: the edge's kernel routes stay the lab's."""

    def __init__(self, ns: str, workdir: str, *, local: str, asn: int, core: str, core_asn: int = CORE_ASN,
                 announce: Mapping[str, int | None] | None = None, hold_time: int = HOLD_TIME,
                 name: str = "bird-edge", tag: str = "x") -> None:
        self.local, self.asn, self.core, self.core_asn, self.hold_time = local, asn, core, core_asn, hold_time
        self.announced: dict[str, int | None] = dict(announce or {})
        self.bird = Bird(ns, workdir, name, tag=tag)
        self.fleet: Fleet | None = None

    @classmethod
    def for_fleet(cls, fleet: Fleet, k: int, workdir: str, announce: Mapping[str, int | None] | None = None,
                  **kw) -> BirdEdge:
        edge = cls(fleet.edge(k).router, workdir, local=edge_address(k), asn=EDGE_ASNS[k - 1],
                   core=core_address(k), announce=announce, name=f"bird-edge{k}", tag=fleet.name, **kw)
        edge.fleet = fleet       # stopped by Fleet.down
        return edge

    @property
    def config_text(self) -> str:
        return bird_edge_config(local=self.local, asn=self.asn, neighbor=self.core, neighbor_asn=self.core_asn,
                                announce=self.announced, hold_time=self.hold_time)

    def start(self, timeout: float = 15.0) -> BirdEdge:
        self.bird.start(self.config_text, timeout)
        if self.fleet is not None:
            self.fleet.daemons.append(self)
        return self

    def announce(self, prefix: str, med: int | None) -> None:
        self.announced[prefix] = med
        if self.bird.alive():
            self.bird.configure(self.config_text)

    def withdraw(self, prefix: str) -> None:
        self.announced.pop(prefix, None)
        if self.bird.alive():
            self.bird.configure(self.config_text)

    def routes(self, prefix: str) -> list[dict]:
        return self.bird.routes(prefix)

    def sessions(self) -> dict[str, str]:
        return self.bird.sessions()

    def stop(self) -> None:
        self.bird.stop()
        if self.fleet is not None and self in self.fleet.daemons:
            self.fleet.daemons.remove(self)

    def alive(self) -> bool:
        return self.bird.alive()

    def __enter__(self) -> BirdEdge:
        if not self.bird.alive():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- FRR -----------------------------------------------------------------------------------------

FRR_DIR = "/usr/lib/frr"
FRR_VTY_GROUP = "frrvty"   # FRR 8.4 insists its user be in this group (root is not): run as root:frrvty


def _route_map_name(large, std) -> str:
    parts = ["ORIGINATE"]
    if large:
        parts.append("LC-" + "-".join(map(str, large)))
    if std:
        parts.append("C-" + "-".join(map(str, std)))
    return "_".join(parts)


def frr_core_config(*, router_id: str, asn: int, edges: Sequence[tuple[str, str, int]],
                    hold_time: int = HOLD_TIME,
                    originated: Mapping[str, tuple[tuple[int, int, int] | None, tuple[int, int] | None]] = {},
                    ) -> str:
    """The core's bgpd config (FRR 8.4). ``edges``: [(description, neighbour address, AS)]."""
    maps = {}
    for large, std in originated.values():
        maps[_route_map_name(large, std)] = (large, std)
    route_maps = ""
    for name, (large, std) in sorted(maps.items()):
        route_maps += f"route-map {name} permit 10\n"
        if large:
            route_maps += f" set large-community {_fmt_large(large)}\n"
        if std:
            route_maps += f" set community {_fmt_std(std)}\n"
        route_maps += "exit\n!\n"
    neighbors = "".join(
        f" neighbor {addr} remote-as {peer_asn}\n"
        f" neighbor {addr} description {name}\n"
        f" neighbor {addr} timers connect 2\n"
        f" neighbor {addr} advertisement-interval 0\n" for name, addr, peer_asn in edges)
    af_neighbors = "".join(f"  neighbor {addr} route-map TO-EDGE out\n" for _, addr, _ in edges)
    networks = "".join(f"  network {p} route-map {_route_map_name(*tags)}\n" for p, tags in originated.items())
    keepalive = max(1, hold_time // 3)
    return f"""\
! pathsteer fleet core: FRR bgpd. Learns the service prefixes from the edges over eBGP, zebra
! puts the best route of each in the kernel, announces only its own prefixes.
!
! Routes the core originates: an empty AS path. Nothing else goes to an edge.
bgp as-path access-list ORIGINATED seq 5 permit ^$
!
route-map TO-EDGE permit 10
 match as-path ORIGINATED
exit
route-map TO-EDGE deny 20
exit
!
{route_maps}router bgp {asn}
 bgp router-id {router_id}
 no bgp ebgp-requires-policy
 no bgp network import-check
 ! The edges have different ASes: compare MED between routes from any neighbour AS.
 bgp always-compare-med
 timers bgp {keepalive} {hold_time}
{neighbors} !
 address-family ipv4 unicast
{networks}{af_neighbors} exit-address-family
exit
!
"""


class FrrCore(CoreRouter):
    """FRR 8.4 (zebra + bgpd, foreground) on the fleet's core. Files in ``workdir``/NAME (or a
    short /tmp dir): ``bgpd.conf``, ``zebra.conf``, pid files, the vty sockets ``zebra.vty``,
    ``bgpd.vty`` and zebra's ``zserv.api``; output in ``workdir/NAME-zebra.log`` and
    ``NAME.log`` (bgpd). Read with ``vtysh --vty_socket DIR`` (`vtysh`)."""

    kind = "frr-core"

    def __init__(self, fleet_or_ns, workdir: str, **kw) -> None:
        super().__init__(fleet_or_ns, workdir, **kw)
        self.dir, self._own_dir = _runtime_dir(self.workdir, self.name, self._tag)
        self.zebra_log = os.path.join(self.workdir, f"{self.name}-zebra.log")
        self.bgpd_conf = os.path.join(self.dir, "bgpd.conf")
        self.zebra_conf = os.path.join(self.dir, "zebra.conf")
        self.zserv = os.path.join(self.dir, "zserv.api")
        self.zebra: subprocess.Popen | None = None
        self.bgpd: subprocess.Popen | None = None

    @property
    def config_text(self) -> str:
        return frr_core_config(router_id=self.router_id, asn=self.asn, hold_time=self.hold_time,
                               edges=[(n, a, asn) for n, (a, asn) in zip(self.session_names(), self.edges)],
                               originated=self.originated)

    def _files(self) -> list[str]:
        return [os.path.join(self.dir, f) for f in ("zebra.pid", "bgpd.pid", "zebra.vty", "bgpd.vty", "zserv.api")]

    def _start(self, timeout: float) -> None:
        gid = grp.getgrnam(FRR_VTY_GROUP).gr_gid
        os.chown(self.dir, 0, gid)
        os.chmod(self.dir, 0o770)
        for path in self._files():
            _unlink(path)
        with open(self.zebra_conf, "w") as f:
            f.write("! zebra: nothing to configure (bgpd's routes go into the main table)\n")
        self._write(self.config_text)
        common = ["-u", "root", "-g", FRR_VTY_GROUP, "--vty_socket", self.dir, "-z", self.zserv, "-P", "0",
                  "--log", "stdout"]
        self.zebra = _popen(self.ns, [f"{FRR_DIR}/zebra", *common, "-i", os.path.join(self.dir, "zebra.pid"),
                                      "-f", self.zebra_conf], self.zebra_log, gid=gid)
        self._wait_file(self.zserv, self.zebra, self.zebra_log, timeout)
        self.bgpd = _popen(self.ns, [f"{FRR_DIR}/bgpd", *common, "-i", os.path.join(self.dir, "bgpd.pid"),
                                     "-f", self.bgpd_conf], self.log_path, gid=gid)
        self._wait_file(os.path.join(self.dir, "bgpd.vty"), self.bgpd, self.log_path, timeout)
        deadline = time.monotonic() + timeout
        while True:
            r = self._vtysh(["show bgp ipv4 unicast summary json"], check=False)
            if r.returncode == 0 and r.stdout.strip().startswith("{"):
                return
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: bgpd did not answer within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)

    @staticmethod
    def _wait_file(path: str, proc: subprocess.Popen, log: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if proc.poll() is not None:
                raise LabError(f"{os.path.basename(proc.args[4])} exited with {proc.returncode}: {_tail(log)}")
            if time.monotonic() > deadline:
                raise LabError(f"{path} did not appear within {timeout:g} s: {_tail(log)}")
            time.sleep(0.02)

    def _write(self, config: str) -> None:
        with open(self.bgpd_conf, "w") as f:
            f.write(config)
        with open(os.path.join(self.workdir, f"{self.name}-bgpd.conf"), "w") as f:
            f.write(config)

    def _stop(self) -> None:
        _stop(self.bgpd)
        _stop(self.zebra)   # after bgpd: zebra removes the routes it installed
        for path in self._files():
            _unlink(path)
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def alive(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.zebra, self.bgpd))

    def _vtysh(self, commands: Sequence[str], check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
        argv = ["vtysh", "--vty_socket", self.dir]
        for c in commands:
            argv += ["-c", c]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise LabError(f"{self.name}: vtysh {' / '.join(commands)}: {(r.stderr or r.stdout).strip()}")
        return r

    def vtysh(self, *commands: str) -> str:
        """Run vtysh commands (each a -c), their output."""
        return self._vtysh(commands).stdout

    def show_json(self, command: str):
        out = self.vtysh(command).strip()
        return json.loads(out) if out else {}

    def _apply(self, withdrawn: Sequence[str] = ()) -> None:
        cmds = ["configure terminal"]
        for large, std in set(self.originated.values()):
            cmds += [f"route-map {_route_map_name(large, std)} permit 10"]
            if large:
                cmds.append(f"set large-community {_fmt_large(large)}")
            if std:
                cmds.append(f"set community {_fmt_std(std)}")
            cmds.append("exit")
        cmds += [f"router bgp {self.asn}", "address-family ipv4 unicast"]
        cmds += [f"no network {p}" for p in withdrawn]
        cmds += [f"network {p} route-map {_route_map_name(*tags)}" for p, tags in self.originated.items()]
        cmds += ["exit-address-family", "exit", "end"]
        self._vtysh(cmds)
        self._write(self.config_text)

    def routes(self, prefix: str) -> list[dict]:
        data = self.show_json(f"show bgp ipv4 unicast {prefix} json")
        if data.get("prefix") != prefix:
            return []
        by_addr = {a: n for n, (a, _) in zip(self.session_names(), self.edges)}
        out = []
        for p in data.get("paths", []):
            nh = (p.get("nexthops") or [{}])[0].get("ip")
            peer = (p.get("peer") or {}).get("peerId")
            local = bool(p.get("sourced") or p.get("local")) or peer in (None, "0.0.0.0")
            large = (p.get("largeCommunity") or {}).get("string", "")
            std = (p.get("community") or {}).get("string", "")
            out.append({
                "prefix": prefix, "protocol": "local" if local else by_addr.get(peer, peer),
                "type": "unicast", "best": bool((p.get("bestpath") or {}).get("overall")),
                "next_hop": None if local or nh == "0.0.0.0" else nh, "from": None if local else peer,
                "as_path": [int(x) for x in re.findall(r"\d+", (p.get("aspath") or {}).get("string", ""))],
                "origin": p.get("origin"), "med": p.get("metric"), "local_pref": p.get("locPrf", 100),
                "communities": [tuple(int(x) for x in c.split(":")) for c in std.split() if c.count(":") == 1],
                "large_communities": [tuple(int(x) for x in c.split(":")) for c in large.split() if c.count(":") == 2],
            })
        return out

    def sessions(self) -> dict[str, str]:
        data = self.show_json("show bgp ipv4 unicast summary json")
        peers = data.get("peers", {}) if "peers" in data else (data.get("ipv4Unicast") or {}).get("peers", {})
        out = {}
        for name, (addr, _) in zip(self.session_names(), self.edges):
            state = (peers.get(addr) or {}).get("state", "Idle")
            out[name] = state
        return out

    def _statistics(self) -> dict:
        data = self.show_json("show bgp ipv4 unicast statistics json").get("ipv4Unicast") or [{}]
        return data[0]

    def count_routes(self) -> int:
        """Paths in the BGP table (received from every edge, and the originated ones)."""
        return int(self._statistics().get("totalAdvertisements", 0))

    def count_networks(self) -> int:
        return int(self._statistics().get("totalPrefixes", 0))

    def zebra_route(self, prefix: str) -> list[dict]:
        """``show ip route PREFIX json``: zebra's entries for that prefix."""
        return self.show_json(f"show ip route {prefix} json").get(prefix, [])


def example_configs() -> dict[str, str]:
    """The core configs the harness generates for a fleet (both edges, 192.0.2.0/24 originated
    with large community 65000:7:1): {"bird": ..., "frr": ...}, for the README."""
    edges = [(f"edge{k}", edge_address(k), asn, core_address(k)) for k, asn in zip((1, 2), EDGE_ASNS)]
    originated = {"192.0.2.0/24": (ORIGINATED_LARGE_COMMUNITY, None)}
    return {"bird": bird_core_config(router_id=core_address(1), asn=CORE_ASN, edges=edges, originated=originated),
            "frr": frr_core_config(router_id=core_address(1), asn=CORE_ASN, edges=[e[:3] for e in edges],
                                   originated=originated)}


# -- BIRD → BIRD transfer time (benchmark anchor) --------------------------------------------------

def bird_prefixes(n: int) -> list[str]:
    """``n`` distinct /24s from 16.0.0.0/24 upwards."""
    base = 16 << 24
    return [f"{(a >> 24) & 255}.{(a >> 16) & 255}.{(a >> 8) & 255}.0/24"
            for a in (base + (i << 8) for i in range(n))]


def bird_transfer_time(workdir: str, n_prefixes: int, *, since: str = "announce", kernel: bool = False,
                       timeout: float = 300.0, tag: str | None = None) -> float:
    """Seconds for one BIRD to learn ``n_prefixes`` /24s (`bird_prefixes`) from another over eBGP,
    until the receiver's table holds them all (polled with ``show route count``). Two fresh
    namespaces joined by a veth, removed afterwards; logs and configs under ``workdir``.

    ``since="announce"`` (default): the session is Established first; the clock starts at
    ``birdc enable`` of the sender's static protocol (disabled until then), so the time is the
    sender's table insert plus the transfer, like a speaker announcing on an open session.
    ``since="enable"``: the routes are in the sender's table first; the clock starts at ``birdc
    enable`` of its (disabled) BGP protocol, so it also holds the session's set-up, and BIRD
    waits 0.75–1 s before its first connect (connect delay: at least 1 s, randomized).
    ``kernel``: the receiver also exports the routes to its kernel (the count reads BIRD's table).
    Namespaces ``ps-bt<tag>-tx``, ``ps-bt<tag>-rx`` (``tag``: ≤ 7 characters, random by default)."""
    if since not in ("announce", "enable"):
        raise UsageError(f"since: 'announce' or 'enable', not {since!r}")
    build.require_root("bird_transfer_time")
    tag = tag or secrets.token_hex(3)
    if not re.fullmatch(r"[a-z0-9]{1,7}", tag):
        raise UsageError(f"tag {tag!r}: 1-7 characters a-z, 0-9")
    tx_ns, rx_ns = f"ps-bt{tag}-tx", f"ps-bt{tag}-rx"
    workdir = os.path.join(os.path.abspath(workdir), f"bt{tag}")
    os.makedirs(workdir, exist_ok=True)
    sender = receiver = None
    load_timeout = max(30.0, n_prefixes / 5000)
    try:
        netns.ip_batch(None, [f"netns add {tx_ns}", f"netns add {rx_ns}"])
        netns.ip_batch(tx_ns, ["link set dev lo up", f"link add name bt-tx type veth peer name bt-rx netns {rx_ns}",
                               "addr add 10.99.0.1/24 dev bt-tx", "link set dev bt-tx up"])
        netns.ip_batch(rx_ns, ["link set dev lo up", "addr add 10.99.0.2/24 dev bt-rx", "link set dev bt-rx up"])
        _wait(lambda: not build._links_not_up(tx_ns) and not build._links_not_up(rx_ns), 5.0, 0.02)
        routes = "\n".join(f"  route {p} blackhole;" for p in bird_prefixes(n_prefixes))
        sender = Bird(tx_ns, workdir, "bt-sender", tag=f"bt{tag}")
        receiver = Bird(rx_ns, workdir, "bt-receiver", tag=f"bt{tag}")
        kernel_block = "protocol kernel { ipv4 { import none; export all; }; learn off; }\n" if kernel else ""
        receiver.start(f"""router id 10.99.0.2;
log stderr all;
protocol device {{ }}
{kernel_block}protocol bgp sender {{
  local 10.99.0.2 as 65100; neighbor 10.99.0.1 as 65200; passive on;
  ipv4 {{ import all; export none; }};
}}
""", timeout=30)
        sender.start(f"""router id 10.99.0.1;
log stderr all;
protocol device {{ }}
protocol static originated {{
  {"disabled;" if since == "announce" else ""}
  ipv4;
{routes}
}}
protocol bgp receiver {{
  {"disabled;" if since == "enable" else ""}
  local 10.99.0.1 as 65200; neighbor 10.99.0.2 as 65100;
  connect delay time 1;
  ipv4 {{ import none; export all; }};
}}
""", timeout=load_timeout)
        if since == "announce":
            if not _wait(lambda: receiver.sessions().get("sender") == "Established", 30.0, 0.05):
                raise TimeoutError(f"bird_transfer_time: no session after 30 s: {_tail(receiver.log_path)}")
            command = ("enable", "originated")
        else:
            if not _wait(lambda: sender.count_networks() >= n_prefixes, load_timeout, 0.05):
                raise TimeoutError(f"bird_transfer_time: the sender holds {sender.count_networks()} routes")
            command = ("enable", "receiver")
        t0 = time.monotonic()
        sender.birdc(*command)
        deadline = t0 + timeout
        while True:
            if receiver.count_networks() >= n_prefixes:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise TimeoutError(f"bird_transfer_time: {receiver.count_networks()} of {n_prefixes} after "
                                   f"{timeout:g} s; sender {sender.sessions()}; {_tail(sender.log_path)}")
            time.sleep(0.01)
    finally:
        for b in (sender, receiver):
            if b is not None:
                b.stop()
        _kill_namespace_processes([tx_ns, rx_ns])
        netns.ip_batch(None, [f"netns del {tx_ns}", f"netns del {rx_ns}"], force=True)
