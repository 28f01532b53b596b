"""The API fuzzed from its own OpenAPI document (schemathesis): a lab daemon with default
settings, every operation (reads, and writes over the Unix socket, where no token is needed)
given generated valid and invalid input; zero 5xx, zero responses outside the document
(status codes, content types, body schemas). The event stream never ends and is excluded; it
has its own test (test_api_lab)."""

from __future__ import annotations

import collections
import tempfile
import time

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                status_code_conformance)
from schemathesis.checks import not_a_server_error

import pathsteer_lab as lab
from pathsteer.errors import UsageError
from pathsteer_lab.http import Forwarder
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon
from tests.conftest import unique

pytestmark = pytest.mark.lab


def wait_measured(d: LabDaemon, timeout: float) -> None:
    """Until every route was decided on measurements (its reason no longer the start-up's
    "waiting for ..."), so the reads have figures: which of the three unimpaired paths wins
    the first measurement is noise (a CI run saw p3 by 0.0x ms), so no path is waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        routes = d.call("steer.status").get("routes") or []
        if routes and all("waiting for" not in (r.get("reason") or "") for r in routes):
            return
        time.sleep(0.1)
    raise AssertionError(f"no measured decision within {timeout:g} s: {d.log_tail(12)}")


@pytest.fixture(scope="module")
def api_schema():
    name = unique("fz")
    workdir = tempfile.mkdtemp(prefix="pathsteer-fuzz-")
    d = None
    try:
        t = lab.up(name, 3)
        d = LabDaemon(t, lab_config(t, socket=f"/run/pathsteer/{name}-steer.sock"), workdir).start()
        wait_measured(d, timeout=15)
        with Forwarder(d.api_socket) as fwd:
            yield schemathesis.openapi.from_url(fwd.url + "/api/v1/openapi.json")
    finally:
        if d is not None:
            d.kill()
        try:
            lab.down(name)
        except UsageError:
            pass


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_api_fuzz(api_schema):
    """Every operation, 25 generated cases each (schemathesis' pytest plugin does not run on
    this pytest, so the operations are walked here, each under hypothesis)."""
    tried, calls, statuses = [], [0], collections.Counter()
    for result in api_schema.get_all_operations():
        op = result.ok()
        if op.path == "/api/v1/events/stream":
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                      database=None)
            def run(case):
                response = case.call_and_validate(checks=CHECKS)
                calls[0] += 1
                statuses[response.status_code] += 1

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, op.path  # no parameters: nothing to get wrong
        tried.append(f"{op.method.upper()} {op.path}")
    print(f"fuzzed {len(tried)} operations with {calls[0]} requests; statuses {dict(sorted(statuses.items()))}")
    assert len(tried) >= 18 and not any(code >= 500 for code in statuses)
