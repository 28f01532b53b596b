"""The guard: drops hostile traffic in XDP before it reaches anything.

::

    config (guard section) ─┐                     ┌─ allow/deny tries, port rules, settings
    blocks (SQLite) ────────┼─► service.Guard ──► program.GuardProgram ──► xdp_guard (bpf/guard.bpf.c)
    control socket ─────────┘      ▲   │ ticks: expiry          │ verdict/rule counters, sources
                                   │   └─ auto-block ◄── events ┘ (ring buffer: drops, heavy hitters)
    rules.RuleSet ─► model.GuardModel  (pure: the same decisions; property tests compare the two)

Modules: ``rules`` the rules as data (pure); ``model`` the reference model (pure); ``abi`` ctypes
mirrors checked against BTF; ``program`` the loaded program and its maps; ``blocks`` the block
table and its SQLite store; ``service`` the daemon component; ``cli`` ``pathsteer guard``.
"""
