"""pathsteer: measure every path, keep each destination on the best one, drop hostile traffic.

Architecture (a pipeline; each stage is a package)::

    probes ──► metrics ──► decide ──► apply
    (probe/,    (telemetry/) (policy/)  (dataplane/: FIB via netlink, BPF maps)
     eBPF counters)

    guard/  XDP filter: CIDR allow/deny (LPM tries), rate limits, SYN-flood defence
    bpf/    a small typed layer over the system libbpf (ctypes over libbpf.so.1):
            open/load objects, typed maps checked against BTF, XDP/TC attach, test_run
    cli/    `pathsteer COMMAND [options]`

The network-namespace lab that every end-to-end test, benchmark and the demo run on is a
separate package, `pathsteer_lab`, not shipped and never imported from here.

`decide(now, metrics, state) -> desired` is pure; appliers are thin and do the I/O.
Failure mode is the kernel's own routing (fail open).
"""

__version__ = "0.1.0"
