"""``pathsteer run --config FILE``: the daemon.

::

    load_config ─► components (guard now; steering later) ─► ControlServer (JSON lines)
        ▲                 ▲ start / reload / stop                    │ commands
        │ SIGHUP, "reload"│                                          ▼
    reactor (asyncio): owns SIGTERM/SIGINT (clean stop: components stop in reverse order,
    detaching what they attached), SIGHUP (reload: a bad config is refused, the running one stays)

A component is anything with ``name``, ``check(section)``, ``start()``, ``reload(section)``,
``stop()`` and ``commands()``; `COMPONENTS` maps a config section to its factory, so steering
adds ``("steering", build)`` beside the guard's.
"""

from pathsteer.daemon.reactor import COMPONENTS, Component, Daemon

__all__ = ["COMPONENTS", "Component", "Daemon"]
