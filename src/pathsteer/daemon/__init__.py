"""``pathsteer run --config FILE``: the daemon.

::

    load_config ─► components (guard, steering) ──────────────► ControlServer (JSON lines)
        ▲                 ▲ start / reload / stop                    │ commands
        │ SIGHUP, "reload"│                                          ▼
    reactor (asyncio): owns SIGTERM/SIGINT (clean stop: components stop in reverse order,
    detaching what they attached), SIGHUP (reload: a bad config is refused, the running one stays)

A component is anything with ``name``, ``start()``, ``reload(config)``, ``stop()`` and
``commands()``; `COMPONENTS` lists a `ComponentSpec` per component (the config sections that
switch it on, a factory taking the whole config, a pre-flight check); steering is
``ComponentSpec("steering", ("dataplane", "paths", "destinations"), build, check)``.
"""

from pathsteer.daemon.reactor import COMPONENTS, Component, ComponentSpec, Daemon

__all__ = ["COMPONENTS", "Component", "ComponentSpec", "Daemon"]
