"""Fixtures of the lab tier: fresh, uniquely named labs, torn down even when a test fails.

    def test_x(lab3):                       # a 3-path lab
        r = measure.ping(lab3, lab3.path("p2").probe_address)

    def test_y(lab_factory):
        t = lab_factory(paths=5)
"""

from __future__ import annotations

import pytest

from pathsteer.errors import UsageError
import pathsteer_lab as lab


@pytest.fixture
def lab_factory(unique_name):
    made: list[str] = []

    def make(paths: int = 3) -> lab.Topology:
        name = unique_name("t")
        made.append(name)          # before up: a failed up cleans itself, down is then a no-op
        return lab.up(name, paths)

    yield make
    for name in made:
        try:
            lab.down(name)
        except UsageError:
            pass


@pytest.fixture
def lab3(lab_factory) -> lab.Topology:
    return lab_factory(3)


@pytest.fixture
def steer_daemon(lab3, tmp_path):
    """``(lab, start)``: ``start(**lab_config kwargs)`` runs ``pathsteer run`` in the lab's
    router with that config; every daemon started is killed at teardown."""
    from pathsteer_lab.labconfig import lab_config
    from pathsteer_lab.labrun import LabDaemon
    made: list[LabDaemon] = []

    def start(**kw) -> LabDaemon:
        d = LabDaemon(lab3, lab_config(lab3, socket=f"/run/pathsteer/{lab3.name}-steer.sock", **kw),
                      str(tmp_path)).start()
        made.append(d)
        return d

    yield lab3, start
    for d in made:
        d.kill()
