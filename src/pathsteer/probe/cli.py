"""`pathsteer probe` and `pathsteer reflector`.

Usage errors (exit 2, one line naming the value): a target or gateway that is not an IP
literal, a gateway of the other IP version, an unknown interface, an interval below
10 ms, a malformed duration, port or count. Network conditions are not usage errors: a
gateway nobody answers for, a target that never answers, a link that is down — the
probes are sent, lost and counted, the report says so, and the exit code is 1 when no
probe was answered (like ping), 0 otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math

from pathsteer.cli.base import add_command, require_root
from pathsteer.errors import UsageError
from pathsteer.telemetry.config import MIN_INTERVAL_S, TWAMP_PORT, ProbeMethod
from pathsteer.units import parse_duration


def check_interval(value: float, field_name: str = "--interval") -> float:
    """``value`` in seconds if it is at least 10 ms; `UsageError` naming it otherwise."""
    if not math.isfinite(value) or value < MIN_INTERVAL_S:
        raise UsageError(f"{field_name}: {value * 1e3:g} ms is below the 10 ms minimum")
    return value


def check_port(value: int, field_name: str = "--port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UsageError(f"{field_name}: {value!r} is not a port (1-65535)")
    return value


def parse_address(text: str, field_name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 or IPv6 literal; host names are not resolved (a probe target must be exact)."""
    try:
        return ipaddress.ip_address(text.strip() if isinstance(text, str) else text)
    except ValueError:
        raise UsageError(f"{field_name}: {text!r} is not an IPv4 or IPv6 address") from None


def _int(text: str, field: str, minimum: int) -> int:
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise UsageError(f"{field}: {text!r} is not a whole number") from None
    if value < minimum:
        raise UsageError(f"{field}: {value} must be {minimum} or more")
    return value


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise UsageError(f"--port: {text!r} is not a port (1-65535)") from None
    return check_port(value)


def probe_request(args: argparse.Namespace):
    """Validate the arguments into a `ProbeRequest` (UsageError naming the bad value)."""
    from pathsteer.probe.oneshot import ProbeRequest
    from pathsteer.probe.pinning import interface_index

    target = parse_address(args.target, "TARGET")
    gateway = None
    if args.gateway is not None:
        gw = parse_address(args.gateway, "--gateway")
        if gw.version != target.version:
            raise UsageError(f"--gateway: {args.gateway} is IPv{gw.version} but TARGET {target} is IPv{target.version}")
        gateway = str(gw)
    interval = check_interval(parse_duration(args.interval, "--interval"))
    timeout = parse_duration(args.timeout, "--timeout")
    if timeout <= 0:
        raise UsageError(f"--timeout: {args.timeout!r} must be more than 0")
    count = _int(args.count, "--count", 1)
    port = _port(args.port)
    interface_index(args.interface)
    return ProbeRequest(
        target=str(target),
        interface=args.interface,
        gateway=gateway,
        method=ProbeMethod(args.method),
        port=port,
        count=count,
        interval_s=interval,
        timeout_s=timeout,
    )


def cmd_probe(args: argparse.Namespace) -> int:
    from pathsteer.probe import oneshot

    req = probe_request(args)
    require_root("pathsteer probe (raw sockets, SO_MARK, ip rules)")
    result = oneshot.report(req, oneshot.measure(req))
    result["gateway_neighbour"] = oneshot.gateway_neighbour(req)
    print(json.dumps(result, indent=2) if args.json else oneshot.format_text(req, result), flush=True)
    note = oneshot.hint(req, result)
    if note:
        import sys

        print(f"pathsteer: {note}", file=sys.stderr)
    return oneshot.EXIT_ANSWERED if result["received"] else oneshot.EXIT_NO_ANSWER


def cmd_reflector(args: argparse.Namespace) -> int:
    import sys

    from pathsteer.probe import reflector

    port = _port(args.port)
    if args.listen is not None:
        parse_address(args.listen, "--listen")
    stats = reflector.run(args.listen, port)
    print(f"pathsteer reflector: stopped; {stats.line()}", file=sys.stderr, flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "probe",
        help="measure RTT, jitter and loss to TARGET over one path (pinned, like ping)",
        description=(
            "Send COUNT probes to TARGET out of INTERFACE (through GATEWAY when given), whatever "
            "the routing table says about TARGET, and report RTT (min/avg/p50/p95/max), "
            "jitter (RFC 3550) and loss. Late, duplicate and foreign replies are counted, never "
            "taken as answers. Exit 0 when any probe was answered, 1 when none was, 2 on bad input."
        ),
        examples=[
            "pathsteer probe 192.0.2.1 --interface eth1 --gateway 10.1.0.1",
            "pathsteer probe 2001:db8::1 --interface wan2 --gateway fe80::1 --count 100 --interval 20ms",
            "pathsteer probe 198.51.100.7 --interface eth2 --method udp --port 862 --json",
            "ip netns exec r1 pathsteer probe 10.9.0.2 --interface p2 --count 1000 --interval 10ms --json",
        ],
        handler=cmd_probe,
    )
    p.add_argument("target", metavar="TARGET", help="IPv4 or IPv6 address to probe (no host names)")
    p.add_argument("--interface", "-I", required=True, metavar="IF", help="send out of this interface only")
    p.add_argument("--gateway", "-g", metavar="GW", help="next hop on IF (default: the kernel's routes via IF, else on-link)")
    p.add_argument("--method", choices=[m.value for m in ProbeMethod], default="icmp",
                   help="icmp: echo request; udp: TWAMP-light to a reflector (default icmp)")
    p.add_argument("--port", default=str(TWAMP_PORT), metavar="P", help=f"reflector UDP port (default {TWAMP_PORT})")
    p.add_argument("--count", "-c", default="10", metavar="N", help="probes to send (default 10)")
    p.add_argument("--interval", "-i", default="100ms", metavar="D", help="time between probes, 10ms or more (default 100ms)")
    p.add_argument("--timeout", "-W", default="1s", metavar="D", help="a probe unanswered this long is lost (default 1s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    r = add_command(
        sub,
        "reflector",
        help="answer TWAMP-light test packets (RFC 5357) so `pathsteer probe --method udp` can measure",
        description=(
            "A TWAMP-light Session-Reflector (RFC 5357 §4.2, unauthenticated mode). Malformed, "
            "short or hostile packets are counted and ignored. Stops cleanly on SIGTERM or SIGINT "
            "and prints its counters."
        ),
        examples=[
            "pathsteer reflector",
            "pathsteer reflector --listen 192.0.2.1 --port 8620",
            "ip netns exec server pathsteer reflector --listen :: &",
        ],
        handler=cmd_reflector,
    )
    r.add_argument("--listen", metavar="ADDR", help="address to listen on (default: every IPv4 and IPv6 address)")
    r.add_argument("--port", default=str(TWAMP_PORT), metavar="PORT", help=f"UDP port (default {TWAMP_PORT})")
