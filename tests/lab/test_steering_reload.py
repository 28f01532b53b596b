"""Reload in the lab (``pathsteer reload`` and SIGHUP): a path added to a running daemon is
taken over without moving or losing traffic, then used once measured; a data plane change
(own table → main table) is applied; in both data planes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import pathsteer_lab as lab
from pathsteer_lab import measure
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

pytestmark = pytest.mark.lab

SERVER = "198.51.100.10"
PREFIX = "198.51.100.0/24"


@pytest.mark.parametrize("mode", ["fib", "bpf"])
def test_a_path_added_by_sighup_is_taken_over_without_loss_then_used(lab3, tmp_path, mode):
    t = lab3
    for name, delay in (("p1", "10ms"), ("p2", "15ms"), ("p3", "1ms")):
        lab.set_path(t.name, name, delay=delay)
    sock = f"/run/pathsteer/{t.name}-r.sock"
    timeouts = {"p1": "200ms", "p2": "200ms", "p3": "200ms"}
    d = LabDaemon(t, lab_config(t, mode=mode, socket=sock, paths=["p1", "p2"], timeouts=timeouts),
                  str(tmp_path)).start()
    try:
        d.wait_via(PREFIX, "p1")
        time.sleep(0.5)
        with measure.UdpEcho(t, SERVER):
            stream = measure.udp_stream(t, SERVER, seconds=5.0, interval=0.005)
            time.sleep(1.0)
            d.write(lab_config(t, mode=mode, socket=sock, timeouts=timeouts))   # p3 (the fastest) joins
            d.proc.send_signal(signal.SIGHUP)
            took = d.wait_via(PREFIX, "p3", timeout=8)
            sent, replies = measure.udp_stream_result(stream)
        lost = sent - len(replies)
        print(f"{mode}: reload adding p3: {lost} of {sent} lost; on p3 after {took:.2f} s")
        assert lost <= 2
        assert "steer.reload" in d.log() and "dataplane=handed-over" in d.log()
        assert [p["name"] for p in d.call("steer.status")["paths"]] == ["p1", "p2", "p3"]
    finally:
        d.kill()


def test_fib_table_to_main_on_reload(lab3, tmp_path):
    t = lab3
    for name, delay in (("p1", "20ms"), ("p2", "1ms"), ("p3", "10ms")):
        lab.set_path(t.name, name, delay=delay)
    sock = f"/run/pathsteer/{t.name}-r.sock"
    timeouts = {"p1": "200ms", "p2": "200ms", "p3": "200ms"}
    d = LabDaemon(t, lab_config(t, mode="fib", socket=sock, table=200, timeouts=timeouts), str(tmp_path)).start()
    try:
        d.wait_via(PREFIX, "p2")
        time.sleep(0.3)
        d.write(lab_config(t, mode="fib", socket=sock, table=None, timeouts=timeouts))
        out = subprocess.run([sys.executable, "-m", "pathsteer", "reload", "--socket", sock],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        time.sleep(0.5)
        rules = t.run("router", ["ip", "rule"]).stdout
        assert "lookup 200" not in rules
        main = t.run("router", ["ip", "route", "show", PREFIX]).stdout
        assert "r-p2" in main and "proto 83" in main, main
        assert json.loads(json.dumps(d.call("steer.status")))["dataplane"]["table"] == "main"
        assert d.stop() == 0
        assert "via 10.200.1.2" in t.run("router", ["ip", "route", "show", PREFIX]).stdout
    finally:
        d.kill()
