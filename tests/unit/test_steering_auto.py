"""`SteeringService.set_auto_destinations`: destinations another component (a gateway's
auto-destinations) adds and removes at run time — steered like the file's own, kept through a
reload of the file, never taking a prefix the file has, refused (nothing changed) when invalid.
A fake probe engine and data plane: no root, no kernel."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from pathsteer.config.steering import DestinationConfig
from pathsteer.errors import UsageError
from pathsteer.steering.service import SteeringService

from test_policy_fixtures import path
from test_steering_service import PREFIX, FakeEngine, FakePlane, config, no_system  # noqa: F401 (fixture)

AUTO = ipaddress.ip_network("203.0.113.10/32")


def dest(prefix, paths=("p1", "p2")) -> DestinationConfig:
    return DestinationConfig(prefix=str(prefix), paths=list(paths))


async def started(plane: FakePlane) -> SteeringService:
    s = SteeringService(config(), dataplane_factory=lambda c, links=None: plane, engine_factory=FakeEngine)
    await s.start()
    s.engine.set(path("p1", 10), path("p2", 30))
    await s._step()
    return s


def routes(s: SteeringService) -> dict:
    return {str(p): ",".join(h.path for h in r.nexthops) for p, r in s.decision.desired.routes.items()}


def test_added_steered_removed_and_kept_through_a_reload():
    async def main():
        plane = FakePlane()
        s = await started(plane)
        try:
            assert routes(s) == {str(PREFIX): "p1"}
            await s.set_auto_destinations("gateway:edge", [dest(AUTO)])
            assert routes(s) == {str(PREFIX): "p1", str(AUTO): "p1"}
            assert s.auto_destinations() == {"gateway:edge": [str(AUTO)]}
            assert [d.prefix for d in s.file_config.destinations] == [PREFIX]
            # the file reloaded (as the daemon does): the auto destination stays
            await s.commit(s.check(config()))
            assert str(AUTO) in routes(s)
            # a prefix the file has stays the file's
            await s.set_auto_destinations("gateway:edge", [dest(AUTO), dest(PREFIX, ("p2",))])
            assert routes(s)[str(PREFIX)] == "p1"
            await s.set_auto_destinations("gateway:edge", [])
            assert routes(s) == {str(PREFIX): "p1"} and s.auto == {}
        finally:
            await s.stop()

    asyncio.run(main())


def test_an_invalid_set_is_refused_and_nothing_changes():
    async def main():
        s = await started(FakePlane())
        try:
            await s.set_auto_destinations("gateway:edge", [dest(AUTO)])
            covering = dest(ipaddress.ip_network("10.200.0.0/16"))  # covers p1's gateway
            with pytest.raises(UsageError, match="auto destinations: .*covers the gateway"):
                await s.set_auto_destinations("gateway:edge", [dest(AUTO), covering])
            assert s.auto_destinations() == {"gateway:edge": [str(AUTO)]} and str(AUTO) in routes(s)
        finally:
            await s.stop()

    asyncio.run(main())
