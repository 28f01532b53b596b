"""Impairments of a lab path: delay, jitter, loss (delay line), rate (TBF), down (blackhole).

How each is applied, inside the path's namespace:

- delay / jitter / loss: the delay line gets the settings first, then the rules
  ``iif p-r lookup 10`` / ``iif p-s lookup 20`` (pref 200/201, IPv4 and IPv6) send forwarded
  packets into the TUN of their direction. Clearing them removes the rules first, so the path is
  back on plain kernel forwarding. A change while impaired is one control-socket request (well
  under a millisecond); turning impairment on or off is one ``ip -batch`` run (a few ms).
- rate: a TBF on both egress interfaces (``p-s`` towards the server, ``p-r`` towards the
  router), in the kernel.
- down: ``iif p-r|p-s lookup 30`` (pref 100/101), a table whose default route is a blackhole:
  forwarded packets vanish without an ICMP error, as on a real dead path, while the router's
  link stays up.

Only *forwarded* traffic is impaired: the path namespace's own addresses (the gateway 10.200.i.2)
are local, so they keep answering without delay, loss or down. Measure a path through its probe
address (the server's 10.201.i.2), which crosses the path like any traffic.

Capacity: a path through the delay line carries about 0.75–0.9 Gbit/s of TCP here (one Python
process, one read and one write per packet); a flow that saturates it queues in the TUN's
transmit queue (500 packets, ~7 ms at that rate) and then drops, as a real bottleneck would:
pings beside a saturating iperf3 saw +7–13 ms and some loss. Unimpaired paths forward in the
kernel at tens of Gbit/s. With --rate the bottleneck queue is the TBF's (up to 50 ms).

The settings live in ``impairments.json`` in the lab's state dir (updated under a lock), so
`set_path` changes only what it is given.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from dataclasses import asdict, dataclass, replace

from pathsteer.errors import LabError, UsageError
from pathsteer_lab import delayline, netns
from pathsteer_lab.build import TABLE_DELAY_IN, TABLE_DELAY_OUT, TABLE_DOWN, require_root
from pathsteer_lab.topology import PATH_ROUTER_SIDE_IF, PATH_SERVER_SIDE_IF, Path, Topology
from pathsteer.units import parse_duration, parse_percent, parse_rate

TBF_LATENCY = "50ms"     # queue a TBF may hold before dropping
TBF_MIN_BURST = 64 * 1024  # ≥ one GSO packet from a veth, or TBF has to segment every packet


@dataclass(frozen=True)
class Impairment:
    """One path's settings: seconds, seconds, percent (per direction), bit/s (0 = none)."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    rate: int = 0
    down: bool = False

    @property
    def needs_delay_line(self) -> bool:
        return self.delay > 0 or self.jitter > 0 or self.loss > 0


def _rules(pref_base: int, table_out: int, table_in: int) -> list[str]:
    """Rule selectors for both families ("-6 " marks the IPv6 ones for `netns.ip_batch`)."""
    rules = []
    for fam in ("", "-6 "):
        rules.append((fam, f"iif {PATH_ROUTER_SIDE_IF} lookup {table_out} pref {pref_base}"))
        rules.append((fam, f"iif {PATH_SERVER_SIDE_IF} lookup {table_in} pref {pref_base + 1}"))
    return rules


DOWN_RULES = _rules(100, TABLE_DOWN, TABLE_DOWN)
DELAY_RULES = _rules(200, TABLE_DELAY_OUT, TABLE_DELAY_IN)


def plan_rule_changes(old: Impairment, new: Impairment) -> tuple[list[str], list[str]]:
    """ip -batch lines to run before and after telling the delay line (pure).

    Down rules go in first and out last; delay rules go in after the delay line has its settings
    and out before it loses them, so no packet meets a half-applied change.
    """
    before: list[str] = []
    after: list[str] = []
    if new.down and not old.down:
        before += [f"{fam}rule add {r}" for fam, r in DOWN_RULES]
    if old.down and not new.down:
        after += [f"{fam}rule del {r}" for fam, r in DOWN_RULES]
    if new.needs_delay_line and not old.needs_delay_line:
        after += [f"{fam}rule add {r}" for fam, r in DELAY_RULES]
    if old.needs_delay_line and not new.needs_delay_line:
        before += [f"{fam}rule del {r}" for fam, r in DELAY_RULES]
    return before, after


def tbf_commands(old: Impairment, new: Impairment) -> list[str]:
    """tc -batch lines for the rate (pure)."""
    if new.rate == old.rate:
        return []
    devs = (PATH_SERVER_SIDE_IF, PATH_ROUTER_SIDE_IF)
    if not new.rate:
        return [f"qdisc del dev {dev} root" for dev in devs]
    burst = max(TBF_MIN_BURST, new.rate // 8 // 250)   # 4 ms worth of bytes, at least 64 KiB
    return [f"qdisc replace dev {dev} root tbf rate {new.rate}bit burst {burst} latency {TBF_LATENCY}"
            for dev in devs]


def _state_file(t: Topology) -> str:
    return os.path.join(t.state_dir, "impairments.json")


def read_impairments(t: Topology) -> dict[str, Impairment]:
    try:
        with open(_state_file(t)) as f:
            raw = json.load(f)
    except (OSError, ValueError):
        raw = {}
    return {p.name: Impairment(**raw.get(p.name, {})) for p in t.paths}


def _write(t: Topology, current: dict[str, Impairment]) -> None:
    tmp = _state_file(t) + ".tmp"
    with open(tmp, "w") as f:
        json.dump({k: asdict(v) for k, v in current.items()}, f)
    os.replace(tmp, _state_file(t))


def _tc_batch(namespace: str, commands: list[str]) -> None:
    if not commands:
        return
    proc = subprocess.run(["tc", "-n", namespace, "-batch", "-"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"tc -batch in {namespace} failed: {proc.stderr.strip().splitlines()[-1:]}")


def parse_changes(delay=None, jitter=None, loss=None, rate=None, down=None) -> dict:
    """Validate user values (text like ``10ms``/``5%``/``100mbit`` or numbers in s/%/bit/s)."""
    changes: dict = {}
    if delay is not None:
        changes["delay"] = parse_duration(delay, "--delay", default_unit="ms")
    if jitter is not None:
        changes["jitter"] = parse_duration(jitter, "--jitter", default_unit="ms")
    if loss is not None:
        changes["loss"] = parse_percent(loss, "--loss")
    if rate is not None:
        changes["rate"] = parse_rate(rate, "--rate")
        if 0 < changes["rate"] < 8000:
            raise UsageError(f"--rate: {rate!r} is below the smallest rate, 8kbit")
    if down is not None:
        if not isinstance(down, bool):
            raise UsageError(f"down: {down!r} is not true or false")
        changes["down"] = down
    return changes


def set_path(name: str, path: str, *, delay=None, jitter=None, loss=None, rate=None,
             down: bool | None = None) -> Impairment:
    """Change the given settings of ``path`` in lab ``name``; the others keep their values.

    ``delay``, ``jitter``: one-way on each direction (a ping over the path sees about 2·delay),
    as text (``"10ms"``, ``"1.5s"``) or a number of milliseconds. ``loss``: percent per
    direction (``"5%"`` or 5); a round trip loses 1-(1-p)². ``rate``: ``"100mbit"`` or bit/s.
    ``down``: True drops everything forwarded through the path, False restores it.
    0 clears a setting. Returns the path's settings after the change.
    """
    require_root("pathsteer lab set")
    t = Topology.load(name)
    p = t.path(path)
    changes = parse_changes(delay, jitter, loss, rate, down)
    return apply(t, p, changes)


def apply(t: Topology, p: Path, changes: dict) -> Impairment:
    lock = os.open(os.path.join(t.state_dir, "impairments.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_impairments(t)
        old = current[p.name]
        new = replace(old, **changes)
        before, after = plan_rule_changes(old, new)
        netns.ip_batch(p.namespace, before)
        if (new.delay, new.jitter, new.loss) != (old.delay, old.jitter, old.loss) or before or after:
            try:
                reply = delayline.request(t.control_socket, {
                    "op": "set", "path": p.name, "delay": new.delay, "jitter": new.jitter,
                    "loss": new.loss / 100.0})
            except OSError as exc:
                raise LabError(f"lab {t.name!r}: delay line not answering ({exc}); "
                               f"'pathsteer lab down {t.name}' and up again") from None
            if not reply.get("ok"):
                raise LabError(f"lab {t.name!r}: delay line refused: {reply.get('error')}")
        netns.ip_batch(p.namespace, after)
        _tc_batch(p.namespace, tbf_commands(old, new))
        current[p.name] = new
        _write(t, current)
        return new
    finally:
        os.close(lock)


def clear_path(name: str, path: str) -> Impairment:
    """Back to a plain path: no delay, jitter, loss or rate limit, and up."""
    return set_path(name, path, delay=0, jitter=0, loss=0, rate=0, down=False)
