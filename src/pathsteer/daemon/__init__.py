"""``pathsteer run --config FILE``: the daemon.

::

    load_config ─► components (guard, steer) ─────────────────► ControlServer (JSON lines)
        ▲                 ▲ check → start / check → commit / stop    │ commands <name>.<verb>
        │ SIGHUP, "reload"│                                          ▼
    reactor (asyncio): owns SIGTERM/SIGINT (clean stop: components stop in reverse order,
    detaching what they attached), SIGHUP (reload in two phases: every component checks its
    new section, touching nothing, then all commit; a refusal changes nothing)

The component contract is `Component`: built from its own config section, named for its
command namespace, ``check(section) → plan``, ``start()``, ``commit(plan)``, ``stop()``,
``commands()``. `COMPONENTS` lists a `ComponentSpec` per component: its name, how to pick its
section from the config (None: it does not run) and how to build it, e.g.
``ComponentSpec("steer", lambda c: c.steering, SteeringService)``.
"""

from pathsteer.daemon.reactor import COMPONENTS, Component, ComponentSpec, Daemon

__all__ = ["COMPONENTS", "Component", "ComponentSpec", "Daemon"]
