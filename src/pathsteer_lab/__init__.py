"""pathsteer_lab: the network lab every test, benchmark and the demo runs on — namespaces joined
by veth pairs. Not part of the shipped daemon: the runtime package `pathsteer` never imports it
(tests/unit/test_layout.py), `make install` leaves it out, the dev venv (`make venv`) has it;
``pathsteer lab`` exists only where it is importable.

    client ── router ─┬─ p1 ─┐
    attacker ─┘       ├─ p2 ─┼── server
                      └─ pN ─┘

The router is where pathsteer runs: its client-facing interface ``r-c`` is the ingress, and
``r-p1..r-pN`` lead to one path namespace each (the path's gateway). Each path namespace
forwards between the router and the server, and impairs what it forwards on demand: delay,
jitter and loss through one user-space delay line per lab (this kernel has no netem), rate with
TBF, down with a blackhole. The server answers for two IPv4 and two IPv6 destination prefixes
and sends every reply back over the path its flow came in on. Modules:

- `topology`: the plan (names, interfaces, addresses) as data and its JSON form.
- `build`: `up`, `down`, `list_labs`.
- `impair`: `set_path` and how impairments are applied.
- `delayline`: the delay-line process.
- `netns`: entering namespaces, running commands inside them.
- `measure`: ping, iperf3 and a UDP echo stream inside a lab (tests, demo, benchmarks).
- `cli`: ``pathsteer lab`` (found by `pathsteer.cli.main` when this package is importable).
- `labconfig`, `labrun`: a steering config for a lab and ``pathsteer run`` in its router
  namespace (`LabDaemon`), for the demo, the lab tests and the benchmarks.
- `demo`: ``python -m pathsteer_lab.demo`` (``make demo``).

Commands inside a lab: ``Topology.run("client", argv)`` / ``Topology.popen(...)`` (roles:
client, router, server, attacker, p1..pN), or `run(namespace, argv)`; both go through
``ip netns exec`` (a fresh /sys of that namespace). State of lab NAME: /run/pathsteer/lab/NAME/
(topology.json, impairments.json, the delay line's ctl.sock, delayline.pid and delayline.log).
"""

from pathsteer_lab.build import LabStatus, down, list_labs, up
from pathsteer_lab.impair import Impairment, clear_path, read_impairments, set_path
from pathsteer_lab.netns import exec_argv, popen, run
from pathsteer_lab.topology import Path, Topology

__all__ = ["LabStatus", "Impairment", "Path", "Topology", "clear_path", "down", "exec_argv",
           "list_labs", "popen", "read_impairments", "run", "set_path", "up"]
