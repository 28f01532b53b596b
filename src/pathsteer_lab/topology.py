"""The lab's plan: names, interfaces and addresses, as data; saved as JSON under the state dir.

Everything here is pure (no I/O except `Topology.load`/`save`), so unit tests can check the plan.

    client ──c-r── r-c ┐                       ┌ s-p1 ──┐
                       │        ┌ p-r  [p1] p-s ┘        │
                      router ── r-p1 …                 server (198.51.100.0/24, 203.0.113.0/24,
                       │        └ r-pN  [pN]  … s-pN ──┘          2001:db8:100::/48, 2001:db8:113::/48)
    attacker ─a-r── r-a ┘

Path i: router link 10.200.i.0/24 (router .1, path gateway .2), server link 10.201.i.0/24
(path .1, server .2). IPv6 mirrors it with i written as the hex group: 2001:db8:200:i::/64 and
2001:db8:201:i::/64 (p12 → 2001:db8:200:12::). Client 10.200.0.0/24 / 2001:db8:200::/64, attacker
10.250.0.0/24 / 2001:db8:250::/64 (router ::1 / .1).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass

from pathsteer.errors import LabError, UsageError

STATE_ROOT = "/run/pathsteer/lab"
NS_PREFIX = "ps-"
MAX_PATHS = 64
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
ROLES = ("client", "router", "server", "attacker")

# Interface names (IFNAMSIZ 16); the same in every lab, since each lives in the lab's namespaces.
INGRESS_IF = "r-c"       # router, facing the client
ATTACKER_IF = "r-a"      # router, facing the attacker
CLIENT_IF = "c-r"
ATTACKER_SIDE_IF = "a-r"
PATH_ROUTER_SIDE_IF = "p-r"   # in a path namespace, towards the router
PATH_SERVER_SIDE_IF = "p-s"   # in a path namespace, towards the server
TUN_OUT = "dl-out"            # delay line, client → server direction (arrived on p-r)
TUN_IN = "dl-in"              # delay line, server → client direction (arrived on p-s)

# Server's destination prefixes: the whole prefix answers (AnyIP local routes on lo).
PREFIXES_V4 = ("198.51.100.0/24", "203.0.113.0/24")
PREFIXES_V6 = ("2001:db8:100::/48", "2001:db8:113::/48")
SERVER_V4 = ("198.51.100.10", "203.0.113.10")
SERVER_V6 = ("2001:db8:100::10", "2001:db8:113::10")

# Server policy routing: fwmark i → table SERVER_TABLE_BASE + i (default route back over path i).
SERVER_TABLE_BASE = 100


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UsageError(
            f"lab name {name!r} is invalid (1-32 characters: a-z, 0-9, '_', '-'; starting with a letter or digit)")
    return name


def validate_paths(count: object) -> int:
    try:
        n = int(str(count).strip())
    except ValueError:
        raise UsageError(f"--paths: {count!r} is not a whole number (1..{MAX_PATHS})") from None
    if not 1 <= n <= MAX_PATHS:
        raise UsageError(f"--paths: {count!r} is out of range (1..{MAX_PATHS})")
    return n


def namespace(name: str, role: str) -> str:
    return f"{NS_PREFIX}{name}-{role}"


def state_dir(name: str) -> str:
    return os.path.join(STATE_ROOT, name)


def lab_namespace_re(name: str) -> re.Pattern[str]:
    """Matches exactly the namespaces of lab ``name`` (roles and p1..pN)."""
    return re.compile(re.escape(f"{NS_PREFIX}{name}-") + r"(client|router|server|attacker|p[0-9]+)")


@dataclass(frozen=True)
class Path:
    name: str                 # p1 … pN
    index: int                # i
    namespace: str
    router_interface: str     # r-pi, in the router namespace
    gateway: str              # the path namespace's address on the router link
    gateway6: str
    router_address: str       # the router's address on that link
    router_address6: str
    server_interface: str     # s-pi, in the server namespace
    probe_address: str        # the server's address on path i's server link: always reached over path i
    probe_address6: str
    table: int                # server routing table of replies over this path (fwmark = index)


@dataclass(frozen=True)
class Topology:
    name: str
    namespaces: dict[str, str]
    paths: list[Path]
    client_address: str
    client_address6: str
    attacker_address: str
    attacker_address6: str
    router_client_address: str
    router_client_address6: str
    router_attacker_address: str
    router_attacker_address6: str
    server_addresses: list[str]
    server_addresses6: list[str]
    prefixes: list[str]
    prefixes6: list[str]
    ingress_interface: str = INGRESS_IF
    attacker_interface: str = ATTACKER_IF
    client_interface: str = CLIENT_IF
    state_dir: str = ""
    control_socket: str = ""

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def plan(cls, name: str, paths: int) -> "Topology":
        """The topology of lab ``name`` with ``paths`` paths (pure: nothing is built)."""
        validate_name(name)
        n = validate_paths(paths)
        plist = [
            Path(
                name=f"p{i}", index=i, namespace=namespace(name, f"p{i}"),
                router_interface=f"r-p{i}",
                gateway=f"10.200.{i}.2", gateway6=f"2001:db8:200:{i}::2",
                router_address=f"10.200.{i}.1", router_address6=f"2001:db8:200:{i}::1",
                server_interface=f"s-p{i}",
                probe_address=f"10.201.{i}.2", probe_address6=f"2001:db8:201:{i}::2",
                table=SERVER_TABLE_BASE + i,
            )
            for i in range(1, n + 1)
        ]
        sdir = state_dir(name)
        return cls(
            name=name,
            namespaces={role: namespace(name, role) for role in ROLES},
            paths=plist,
            client_address="10.200.0.2", client_address6="2001:db8:200::2",
            attacker_address="10.250.0.2", attacker_address6="2001:db8:250::2",
            router_client_address="10.200.0.1", router_client_address6="2001:db8:200::1",
            router_attacker_address="10.250.0.1", router_attacker_address6="2001:db8:250::1",
            server_addresses=list(SERVER_V4), server_addresses6=list(SERVER_V6),
            prefixes=list(PREFIXES_V4), prefixes6=list(PREFIXES_V6),
            state_dir=sdir, control_socket=os.path.join(sdir, "ctl.sock"),
        )

    # -- queries ------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        for p in self.paths:
            if p.name == name:
                return p
        have = f"p1..p{len(self.paths)}" if self.paths else "none"
        raise UsageError(f"lab {self.name!r} has no path {name!r} (paths: {have})")

    def all_namespaces(self) -> list[str]:
        return [*self.namespaces.values(), *(p.namespace for p in self.paths)]

    @property
    def client(self) -> str:
        return self.namespaces["client"]

    @property
    def router(self) -> str:
        return self.namespaces["router"]

    @property
    def server(self) -> str:
        return self.namespaces["server"]

    @property
    def attacker(self) -> str:
        return self.namespaces["attacker"]

    # -- running commands inside ---------------------------------------------------------------

    def run(self, role_or_ns: str, argv, **kwargs):
        """Run ``argv`` in a role's namespace ("client", "router", "p2", ...) and wait."""
        from pathsteer_lab import netns
        return netns.run(self.resolve(role_or_ns), argv, **kwargs)

    def popen(self, role_or_ns: str, argv, **kwargs):
        from pathsteer_lab import netns
        return netns.popen(self.resolve(role_or_ns), argv, **kwargs)

    def resolve(self, role_or_ns: str) -> str:
        if role_or_ns in self.namespaces:
            return self.namespaces[role_or_ns]
        for p in self.paths:
            if role_or_ns in (p.name, p.namespace):
                return p.namespace
        if role_or_ns in self.namespaces.values():
            return role_or_ns
        raise UsageError(f"lab {self.name!r} has no namespace or role {role_or_ns!r}")

    # -- JSON ---------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Topology":
        d = dict(d)
        d["paths"] = [Path(**p) for p in d["paths"]]
        return cls(**d)

    def save(self) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        tmp = os.path.join(self.state_dir, "topology.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=2)
        os.replace(tmp, os.path.join(self.state_dir, "topology.json"))

    @classmethod
    def load(cls, name: str) -> "Topology":
        """The topology of a running lab; `UsageError` naming it when there is no such lab."""
        validate_name(name)
        try:
            with open(os.path.join(state_dir(name), "topology.json")) as f:
                return cls.from_json(json.load(f))
        except FileNotFoundError:
            raise UsageError(f"no lab named {name!r} (see 'pathsteer lab list')") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise LabError(f"lab {name!r}: unreadable topology.json ({exc}); 'pathsteer lab down {name}' removes it") from None
