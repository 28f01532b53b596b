"""``bgp``: a fleet over BGP, through ExaBGP (issue 10).

    bgp:
      local_as: 65001
      router_id: 10.0.0.1
      hold_time: 9s                        # keepalive: a third of it
      peers:
        - {address: 10.100.1.1, as: 65000, name: core1, password_file: /etc/pathsteer/core1.md5}
      announce:                            # the destinations, MED from their path's figures
        next_hop: self
        med_per: 100us                     # MED = round(rtt / med_per) + loss_med × loss %
        communities: ["65001:100"]
      learn:                               # routes the peers send become destinations
        enabled: true
        prefixes: ["10.0.0.0/8 le 24"]     # and/or communities: ["65000:100"]

What the daemon does with it is in pathsteer.bgp; this module is the file's side: the models,
the parsers of communities and prefix filters (`parse_community`, `PrefixFilter`), the
cross-section checks (`check_bgp`) and where the ExaBGP executable is (`exabgp_command`,
looked for when the daemon checks its components, not when the file is read).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import sys
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from pathsteer.config.fields import AbsolutePath, Duration, Fraction, IpAddress, Seconds
from pathsteer.config.sections import Section
from pathsteer.config.steering import DestinationTemplate
from pathsteer.errors import UsageError
from pathsteer.units import parse_duration

AS_TRANS = 23456  # RFC 6793: the 2-byte stand-in for a 4-byte AS, never a real one
MAX_AS = 2**32 - 1
MAX_PASSWORD = 80  # Linux TCP_MD5SIG_MAXKEYLEN
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_COMMAND = re.compile(r"[^\s/]+")
_FILTER = re.compile(r"(?P<prefix>\S+)(?:\s+(?P<k1>ge|le)\s+(?P<n1>\d+))?(?:\s+(?P<k2>ge|le)\s+(?P<n2>\d+))?")
_FILTER_EXAMPLES = "examples: 10.0.0.0/8, 10.0.0.0/8 le 24, 2001:db8::/32 ge 48 le 64"

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---- pure parsers ---------------------------------------------------------------------------

def parse_asn(value: object) -> int:
    """An AS number from ``65001``, ``"65001"`` or asdot ``"1.10"`` (1 × 65536 + 10); 1..4294967295,
    not AS_TRANS (23456). ValueError with a message that reads after the value."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        if isinstance(value, float):
            raise ValueError("is not an AS number (1..4294967295; asdot goes in quotes: '1.10' — unquoted, "
                             "YAML reads it as a decimal)")
        raise ValueError("is not an AS number (1..4294967295, or asdot '1.10')")
    if isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"(\d{1,5})\.(\d{1,5})", text)
        if m:
            high, low = int(m.group(1)), int(m.group(2))
            if high > 65535 or low > 65535:
                raise ValueError("is not an asdot AS number (each half 0..65535)")
            n = high * 65536 + low
        elif re.fullmatch(r"\d{1,10}", text):
            n = int(text)
        else:
            raise ValueError("is not an AS number (1..4294967295, or asdot '1.10')")
    else:
        n = value
    if n == 0:
        raise ValueError("is not an AS number: AS 0 is reserved (RFC 7607)")
    if n == AS_TRANS:
        raise ValueError("is AS_TRANS (23456), the stand-in for 4-byte AS numbers: give the real AS number")
    if not 1 <= n <= MAX_AS:
        raise ValueError("is not an AS number (1..4294967295)")
    return n


def parse_community(text: object) -> tuple[int, ...]:
    """``"65000:100"`` → (65000, 100) (a standard community, each part 0..65535);
    ``"65000:1:2"`` → (65000, 1, 2) (a large one, each part 0..4294967295)."""
    if isinstance(text, bool) or isinstance(text, int | float):
        raise ValueError("is a number, not a community: write it in quotes ('65000:30'; unquoted, YAML reads "
                         "A:B as a base-60 number)")
    if not isinstance(text, str):
        raise ValueError("is not a community (A:B, or A:B:C for a large one)")
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(re.fullmatch(r"\d{1,10}", p) for p in parts):
        raise ValueError("is not a community (A:B, or A:B:C for a large one; numbers only)")
    values = tuple(int(p) for p in parts)
    top = 65535 if len(values) == 2 else MAX_AS
    for v in values:
        if v > top:
            kind = "standard community (A:B, each 0..65535)" if len(values) == 2 else \
                "large community (A:B:C, each 0..4294967295)"
            raise ValueError(f"is not a {kind}: {v} is above {top}")
    return values


def format_community(value: tuple[int, ...]) -> str:
    """(65000, 100) → ``65000:100`` (what ExaBGP and the file write)."""
    return ":".join(str(v) for v in value)


@dataclass(frozen=True)
class PrefixFilter:
    """A prefix filter: routes inside ``network`` whose length is ``ge``..``le`` (inclusive).
    ``"P"`` matches P and every more specific prefix inside it; ``"P le N"`` lengths up to N;
    ``"P ge N"`` from N; ``"P ge N le M"`` from N to M."""

    network: IPNet
    ge: int
    le: int

    @classmethod
    def parse(cls, text: object) -> PrefixFilter:
        """From ``"10.0.0.0/8 le 24"``; ValueError with a message that reads after the value."""
        if not isinstance(text, str):
            raise ValueError(f"is not a prefix filter ({_FILTER_EXAMPLES})")
        m = _FILTER.fullmatch(text.strip())
        if not m:
            raise ValueError(f"is not a prefix filter ({_FILTER_EXAMPLES})")
        try:
            network = ipaddress.ip_network(m.group("prefix"), strict=True)
        except ValueError as exc:
            if "host bits" in str(exc):
                loose = ipaddress.ip_network(m.group("prefix"), strict=False)
                raise ValueError(f"has host bits set (did you mean {loose}?)") from None
            raise ValueError(f"is not a prefix filter: {m.group('prefix')!r} is not a prefix "
                             f"({_FILTER_EXAMPLES})") from None
        top = network.max_prefixlen
        bounds: dict[str, int] = {}
        for k, n in ((m.group("k1"), m.group("n1")), (m.group("k2"), m.group("n2"))):
            if k is None:
                continue
            if k in bounds:
                raise ValueError(f"gives {k} twice")
            bounds[k] = int(n)
            if not network.prefixlen <= int(n) <= top:
                raise ValueError(f"{k} {n} is not between the prefix's length ({network.prefixlen}) and {top}")
        ge, le = bounds.get("ge", network.prefixlen), bounds.get("le", top)
        if ge > le:
            raise ValueError(f"ge {ge} is above le {le}: matches nothing")
        return cls(network, ge, le)

    def matches(self, prefix: str | IPNet) -> bool:
        """Whether ``prefix`` (``"10.1.0.0/16"`` or a network) passes: inside ``network``, of the
        same family, its length between ``ge`` and ``le``."""
        net = ipaddress.ip_network(prefix, strict=False) if isinstance(prefix, str) else prefix
        return (net.version == self.network.version and self.ge <= net.prefixlen <= self.le
                and net.subnet_of(self.network))

    def __str__(self) -> str:
        text = str(self.network)
        if self.ge != self.network.prefixlen:
            text += f" ge {self.ge}"
        if self.le != self.network.max_prefixlen:
            text += f" le {self.le}"
        return text


# ---- field types ----------------------------------------------------------------------------

def _asn(value: object) -> int:
    return parse_asn(value)


def _router_id(value: object) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise ValueError("is not a router id (an IPv4 address, dotted quad: 10.0.0.1)")
    try:
        address = ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise ValueError("is not a router id (an IPv4 address, dotted quad: 10.0.0.1)") from None
    if int(address) in (0, MAX_AS):
        raise ValueError("is not a usable router id (not 0.0.0.0 or 255.255.255.255)")
    return address


def _unicast(value: IPAddr) -> IPAddr:
    if value.is_unspecified:
        raise ValueError("is the unspecified address")
    if value.is_multicast:
        raise ValueError("is a multicast address")
    if value == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError("is the broadcast address")
    return value


def _hold_time(value: object) -> int:
    try:
        seconds = parse_duration(value, "")
    except UsageError:
        raise ValueError("is not a duration (examples: 9s, 90s, 3m)") from None
    if seconds == 0:
        raise ValueError("is refused: a hold time of 0 turns keepalives off, and pathsteer relies on the hold "
                         "time to see a peer gone (3s..65535s)")
    if abs(seconds - round(seconds)) > 1e-9:
        raise ValueError("is not whole seconds (BGP's hold time is in seconds: 3s..65535s)")
    if not 3 <= round(seconds) <= 65535:
        raise ValueError("must be between 3s and 65535s (RFC 4271)")
    return int(round(seconds))


def _whole(lo: int, hi: int):
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"is not a whole number ({lo}..{hi})")
        try:
            n = int(str(value).strip())
        except ValueError:
            raise ValueError(f"is not a whole number ({lo}..{hi})") from None
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return n
    return check


def _standard_community(value: object) -> str:
    parsed = parse_community(value)
    if len(parsed) == 3:
        raise ValueError("is a large community (A:B:C): put it in large_communities")
    return format_community(parsed)


def _large_community(value: object) -> str:
    parsed = parse_community(value)
    if len(parsed) == 2:
        raise ValueError("is a standard community (A:B): put it in communities")
    return format_community(parsed)


def _any_community(value: object) -> str:
    return format_community(parse_community(value))


def _prefix_filter(value: object) -> str:
    return str(PrefixFilter.parse(value))


def _next_hop(value: object) -> str | IPAddr:
    if value == "self":
        return "self"
    if not isinstance(value, str):
        raise ValueError("is not 'self' or an IP address")
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("is not 'self' or an IP address") from None
    return _unicast(address)


AsNumber = Annotated[int, BeforeValidator(_asn)]
RouterId = Annotated[ipaddress.IPv4Address, BeforeValidator(_router_id), PlainSerializer(str)]
HoldTime = Annotated[int, BeforeValidator(_hold_time)]  # whole seconds, 3..65535
StandardCommunity = Annotated[str, BeforeValidator(_standard_community)]  # "A:B", canonical
LargeCommunity = Annotated[str, BeforeValidator(_large_community)]  # "A:B:C", canonical
Community = Annotated[str, BeforeValidator(_any_community)]  # either
PrefixFilterText = Annotated[str, BeforeValidator(_prefix_filter)]  # canonical: str(PrefixFilter)
NextHop = Annotated[Literal["self"] | ipaddress.IPv4Address | ipaddress.IPv6Address, BeforeValidator(_next_hop),
                    PlainSerializer(str)]


# ---- sections -------------------------------------------------------------------------------

class BgpPeerConfig(Section):
    """``bgp.peers[]``: one BGP session. ``as`` in the file (``peer_as`` in Python);
    ``name`` defaults to the address; ``hold_time``/``local_address`` fall back to bgp's
    (`BgpConfig.peer_hold_time`, `BgpConfig.peer_local_address`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    address: IpAddress
    peer_as: AsNumber = Field(alias="as")
    name: str | None = None  # always set once validated: the address when left out
    password: str | None = None  # TCP MD5 (RFC 2385) key
    password_file: AbsolutePath | None = None  # a file holding it
    hold_time: HoldTime | None = None
    port: Annotated[int, BeforeValidator(_whole(1, 65535))] = 179
    passive: bool = False  # wait for the peer to connect
    local_address: IpAddress | None = None
    learn: bool = True  # take destinations from this peer (when bgp.learn.enabled)

    @field_validator("address", "local_address")
    @classmethod
    def _address(cls, value: IPAddr | None) -> IPAddr | None:
        return value if value is None else _unicast(value)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> object:
        if value is not None and not (isinstance(value, str) and _NAME.fullmatch(value)):
            raise ValueError("must be 1-32 of a-z, 0-9, '_' and '-', starting with a letter")
        return value

    @model_validator(mode="after")
    def _check(self) -> BgpPeerConfig:
        if self.name is None:
            object.__setattr__(self, "name", str(self.address))
        if self.password is not None:
            # The key is not echoed in the error: its length says what is wrong.
            if not 1 <= len(self.password) <= MAX_PASSWORD:
                raise ValueError(f".password: a key of {len(self.password)} characters: must be 1-{MAX_PASSWORD} "
                                 f"(the kernel's TCP MD5 limit)")
            if not all(" " <= ch <= "~" for ch in self.password):
                raise ValueError(".password: must be printable ASCII (the key is not shown)")
            if self.password_file is not None:
                raise ValueError(".password: give password or password_file, not both")
        if self.local_address is not None and self.local_address.version != self.address.version:
            raise ValueError(f".local_address: {self.local_address} is IPv{self.local_address.version}; the peer "
                             f"{self.address} is IPv{self.address.version}")
        return self

    @property
    def md5(self) -> bool:
        """Whether the session is signed (TCP MD5)."""
        return self.password is not None or self.password_file is not None


class BgpAnnounceConfig(Section):
    """``bgp.announce``: the destinations announced to every peer, their MED from the figures
    of the path carrying them: ``round(rtt / med_per) + loss_med × loss %``, at most ``med_max``.
    A prefix is announced again at most every ``min_interval``, and only for a MED change of
    ``min_change`` or more (a part of the announced MED)."""

    enabled: bool = True
    next_hop: NextHop = "self"
    med_per: Duration = 100e-6
    med_max: Annotated[int, BeforeValidator(_whole(1, MAX_AS))] = 65535
    loss_med: Annotated[int, BeforeValidator(_whole(0, 100_000))] = 100
    min_interval: Seconds = 1.0
    min_change: Fraction = 0.1
    communities: list[StandardCommunity] = []
    large_communities: list[LargeCommunity] = []

    @field_validator("med_per")
    @classmethod
    def _med_per(cls, value: float) -> float:
        if not 1e-6 * (1 - 1e-9) <= value <= 1.0:
            raise ValueError("must be between 1us and 1s")
        return value

    @field_validator("min_interval")
    @classmethod
    def _min_interval(cls, value: float) -> float:
        if value > 60.0:
            raise ValueError("must be between 0 and 60s")
        return value

    @field_validator("communities", "large_communities")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def med(self, rtt_s: float, loss_pct: float = 0.0) -> int:
        """The MED for a path with ``rtt_s`` seconds and ``loss_pct`` percent points of loss
        (`pathsteer.bgp.announce.med_of`, which the daemon uses)."""
        from pathsteer.bgp.announce import AnnounceSettings, med_of
        return med_of(rtt_s, loss_pct, AnnounceSettings(0, self.med_per, self.med_max, self.loss_med))

    @property
    def community_list(self) -> list[tuple[int, int]]:
        return [parse_community(c) for c in self.communities]  # type: ignore[misc]

    @property
    def large_community_list(self) -> list[tuple[int, int, int]]:
        return [parse_community(c) for c in self.large_communities]  # type: ignore[misc]


class BgpLearnConfig(DestinationTemplate):
    """``bgp.learn``: routes from the peers (those with ``learn: true``) that match ``prefixes``
    (when given) and ``communities`` (when given: any one of them) become destinations, steered
    with this template (``paths`` empty: every path), at most ``max`` of them. Learning every
    route a peer sends is refused: one filter at least."""

    enabled: bool = False
    prefixes: list[PrefixFilterText] | None = None
    communities: list[Community] | None = None
    max: Annotated[int, BeforeValidator(_whole(1, 2_000_000))] = 200_000
    announce: bool = False  # learned destinations announced back too (like the file's)
    paths: list[str] = []

    @field_validator("prefixes", "communities")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("matches nothing: list one at least, or leave the key out")
        return None if value is None else list(dict.fromkeys(value))

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for i, name in enumerate(value):
            if name in value[:i]:
                raise ValueError(f"lists {name!r} twice")
        return value

    @model_validator(mode="after")
    def _check(self) -> BgpLearnConfig:
        if self.enabled and self.prefixes is None and self.communities is None:
            raise ValueError("give prefixes or communities to learn (learning every route a peer sends "
                             "is refused)")
        return self

    @property
    def filters(self) -> list[PrefixFilter]:
        """``prefixes`` parsed ([] when not given: no prefix filter)."""
        return [PrefixFilter.parse(p) for p in self.prefixes or []]

    @property
    def community_set(self) -> frozenset[tuple[int, ...]]:
        """``communities`` parsed: (A, B) and (A, B, C) tuples (empty when not given)."""
        return frozenset(parse_community(c) for c in self.communities or [])

    def matches(self, prefix: str | IPNet, communities: object = ()) -> bool:
        """Whether a route for ``prefix`` carrying ``communities`` (tuples, or "A:B" strings) is
        learned: it matches ``prefixes`` (when given) and one of ``communities`` (when given).
        (The daemon's `pathsteer.bgp.learn.Learner` does the same with these parsed once.)"""
        from pathsteer.bgp.learn import Learner
        have = frozenset(parse_community(c) if isinstance(c, str) else tuple(c) for c in communities)  # type: ignore[union-attr]
        return Learner(tuple(self.filters), self.community_set).matches(prefix, have)

    def destination(self, prefix, paths: list[str], **extra):
        """The steering destination for a learned ``prefix`` (``paths``: the template's, or all)."""
        return super().destination(prefix, paths, announce=self.announce, **extra)


class ExabgpConfig(Section):
    """``bgp.exabgp``: the ExaBGP process pathsteer runs (and restarts: ``restart_min``
    doubling up to ``restart_max`` after each exit). ``command``: an absolute path or a name
    on PATH; absent: the ``exabgp`` beside this Python (the virtualenv's), else on PATH."""

    command: str | None = None
    restart_min: Duration = 1.0
    restart_max: Duration = 30.0

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is not None and not (os.path.isabs(value) or _COMMAND.fullmatch(value)):
            raise ValueError("must be an absolute path or a command name (looked up on PATH)")
        return value

    @field_validator("restart_min", "restart_max")
    @classmethod
    def _restart(cls, value: float) -> float:
        if value > 3600.0:
            raise ValueError("must be at most 1h")
        return value

    @model_validator(mode="after")
    def _order(self) -> ExabgpConfig:
        if self.restart_min > self.restart_max:
            raise ValueError(f".restart_min: {self.restart_min:g} s is above restart_max ({self.restart_max:g} s)")
        return self


class BgpConfig(Section):
    """``bgp``: this router's BGP identity, its peers, what it announces and what it learns."""

    local_as: AsNumber
    router_id: RouterId
    local_address: IpAddress | None = None  # the sessions' source address (None: the kernel picks)
    hold_time: HoldTime = 9  # seconds; keepalive a third of it
    peers: list[BgpPeerConfig] = Field(min_length=1)
    announce: BgpAnnounceConfig = BgpAnnounceConfig()
    learn: BgpLearnConfig = BgpLearnConfig()
    exabgp: ExabgpConfig = ExabgpConfig()

    @field_validator("local_address")
    @classmethod
    def _local(cls, value: IPAddr | None) -> IPAddr | None:
        return value if value is None else _unicast(value)

    @model_validator(mode="after")
    def _peers(self) -> BgpConfig:
        addresses: dict[IPAddr, int] = {}
        names: dict[str, int] = {}
        for i, p in enumerate(self.peers):
            if p.address in addresses:
                raise ValueError(f".peers[{i}].address: {p.address} is listed twice (also peers[{addresses[p.address]}])")
            addresses[p.address] = i
            if p.name in names:
                raise ValueError(f".peers[{i}].name: {p.name!r} is used twice (also peers[{names[p.name]}])")
            names[p.name] = i
            la = self.local_address
            if p.local_address is None and la is not None and la.version != p.address.version:
                raise ValueError(f".local_address: {la} is IPv{la.version}; peers[{i}] ({p.address}) is "
                                 f"IPv{p.address.version}: give that peer its own local_address")
        return self

    def peer_hold_time(self, peer: BgpPeerConfig) -> int:
        """The hold time of ``peer``'s session in seconds (its own, else bgp's)."""
        return peer.hold_time if peer.hold_time is not None else self.hold_time

    def peer_keepalive(self, peer: BgpPeerConfig) -> int:
        """A third of the hold time, whole seconds (at least 1)."""
        return max(1, self.peer_hold_time(peer) // 3)

    def peer_local_address(self, peer: BgpPeerConfig) -> IPAddr | None:
        """The source address of ``peer``'s session (None: the kernel picks)."""
        return peer.local_address if peer.local_address is not None else self.local_address

    @property
    def learning_peers(self) -> list[BgpPeerConfig]:
        """The peers whose routes are learned (none when learn is off)."""
        return [p for p in self.peers if p.learn] if self.learn.enabled else []


# ---- cross-section --------------------------------------------------------------------------

def announced_destinations(bgp: BgpConfig | None, destinations: list | None) -> list:
    """The file's destinations announced: none when announce is off; those with ``announce:
    true`` when any says so; else every one not ``announce: false``."""
    if bgp is None or not bgp.announce.enabled:
        return []
    destinations = destinations or []
    if any(d.announce is True for d in destinations):
        return [d for d in destinations if d.announce is True]
    return [d for d in destinations if d.announce is not False]


def check_bgp(bgp: BgpConfig | None, paths: list | None = None, destinations: list | None = None) -> None:
    """Cross-section checks: bgp needs steering (its MEDs are the paths' figures), learned
    destinations name configured paths; a destination's ``announce`` needs a bgp section."""
    if bgp is None:
        for i, d in enumerate(destinations or []):
            if d.announce is not None:
                raise ValueError(f"destinations[{i}].announce: {d.announce} but there is no 'bgp' section")
        return
    if not paths:
        raise ValueError("bgp: needs paths to measure (steering: paths, destinations)")
    names = {p.name: p for p in paths}
    learn = bgp.learn
    for j, name in enumerate(learn.paths):
        if name not in names:
            raise ValueError(f"bgp.learn.paths[{j}]: unknown path {name!r} (paths: {', '.join(names)})")
    if learn.rtt in ("passive", "best") and not any(names[n].passive for n in learn.paths or names):
        raise ValueError(f"bgp.learn.rtt: {learn.rtt!r} needs passive measurement on one of its paths "
                         f"(paths[].passive: true on one of {', '.join(learn.paths or names)})")


def exabgp_command(cfg: BgpConfig | ExabgpConfig) -> str | None:
    """The ExaBGP executable to run: ``exabgp.command`` (an absolute path, or a name on PATH),
    else the ``exabgp`` beside ``sys.executable`` (the virtualenv's bin), else ``exabgp`` on
    PATH; None when there is none (the daemon's check refuses the config then: `require_exabgp`)."""
    ex = cfg.exabgp if isinstance(cfg, BgpConfig) else cfg
    if ex.command is not None:
        if os.path.isabs(ex.command):
            return ex.command if os.path.isfile(ex.command) and os.access(ex.command, os.X_OK) else None
        return shutil.which(ex.command)
    beside = os.path.join(os.path.dirname(sys.executable), "exabgp")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which("exabgp")


def require_exabgp(cfg: BgpConfig | ExabgpConfig) -> str:
    """`exabgp_command`, or ValueError naming the field (one line) when there is none."""
    found = exabgp_command(cfg)
    if found is not None:
        return found
    ex = cfg.exabgp if isinstance(cfg, BgpConfig) else cfg
    if ex.command is not None:
        raise ValueError(f"bgp.exabgp.command: {ex.command!r} is not an executable "
                         f"({'no such file, or not executable' if os.path.isabs(ex.command) else 'not on PATH'})")
    raise ValueError(f"bgp.exabgp.command: no exabgp found (not beside {sys.executable}, not on PATH): "
                     f"install it (pip install exabgp) or give its path")


__all__ = ["AS_TRANS", "AsNumber", "BgpAnnounceConfig", "BgpConfig", "BgpLearnConfig", "BgpPeerConfig",
           "ExabgpConfig", "PrefixFilter", "announced_destinations", "check_bgp", "exabgp_command",
           "format_community", "parse_asn", "parse_community", "require_exabgp"]
