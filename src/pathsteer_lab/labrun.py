"""Running ``pathsteer run`` inside a lab's router namespace (lab tests, demo, benchmarks).

    d = LabDaemon(t, lab_config(t, mode="bpf", socket=...), "/tmp/x").start()
    d.call("steer.status"); d.stop()          # SIGTERM, clean stop; d.kill() is kill -9
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import signal
import subprocess
import sys
import time

import yaml

from pathsteer.control.client import ControlClient
from pathsteer.errors import PathsteerError


def logged_at(d, name: str, *words: str, after: float = 0.0, last: bool = False) -> float:
    """The time (unix s) of the first (``last``: the last) line of ``d``'s log (a `LabDaemon`)
    for event ``name`` with ``words`` at or after ``after``; AssertionError when there is none."""
    import datetime
    found = None
    for line in d.log().splitlines():
        stamp, _, rest = line.partition(" ")
        if rest.split(" ", 1)[0] == name and all(w in rest for w in words):
            try:
                at = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            except ValueError:
                continue
            if at >= after:
                found = at
                if not last:
                    return at
    if found is None:
        raise AssertionError(f"no {name} {' '.join(words)} in the log after {after}: {d.log_tail(30)}")
    return found


class LabDaemon:
    def __init__(self, t, config: dict, workdir: str, *, name: str = "steer") -> None:
        self.t = t
        self.config = config
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.socket = config["control"]["socket"]
        # The daemon's state (history, drains) stays in the test's workdir, not /var/lib/pathsteer.
        config.setdefault("history", {"state_dir": os.path.join(workdir, "state")})
        self.proc: subprocess.Popen | None = None
        self.write(config)

    def write(self, config: dict) -> None:
        self.config = config
        with open(self.config_path, "w") as f:
            if len(config.get("destinations") or ()) > 10_000:
                json.dump(config, f)  # JSON is YAML, and a million destinations dump and load in seconds
            else:
                yaml.safe_dump(config, f, sort_keys=False)

    def start(self, timeout: float = 15.0) -> LabDaemon:
        log = open(self.log_path, "a")
        self.proc = self.t.popen("router", [sys.executable, "-m", "pathsteer", "run", "--config", self.config_path],
                                 stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PathsteerError(f"pathsteer run exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.call("daemon.status").get("ready"):
                    return self
            except PathsteerError:
                pass
            time.sleep(0.05)
        raise PathsteerError(f"pathsteer run did not answer on {self.socket} within {timeout:g} s: {self.log_tail()}")

    @property
    def api_socket(self) -> str:
        """The HTTP API's Unix socket (reachable from the host namespace; see pathsteer_lab.http)."""
        api = self.config.get("api") or {}
        path = api.get("socket", "auto")
        return self.socket.removesuffix(".sock") + "-api.sock" if path == "auto" else path

    def http(self, method: str, url: str, body=None, *, token: str | None = None, timeout: float = 10.0):
        """One request to the daemon's HTTP API over its Unix socket: (status, parsed JSON or text)."""
        from pathsteer_lab.http import request
        return request(self.api_socket, method, url, body, token=token, timeout=timeout)

    def call(self, command: str, args: dict | None = None, timeout: float = 5.0):
        try:
            return ControlClient(self.socket, timeout=timeout).call(command, args or {})
        except OSError as exc:  # the daemon went away mid-answer
            raise PathsteerError(f"{command}: {exc}; {self.log_tail()}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait: the clean stop (routes restored, program detached)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """kill -9: what a crash leaves (in the kernel: its control sockets' files, and its bgp
        directory, are removed here, so tests leave none behind under /run/pathsteer; a restart
        binds them anew)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            for path in (self.socket, self.api_socket):
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)
            if self.config.get("bgp"):  # its ExaBGP's directory (config, API socket) too
                import shutil
                from pathsteer.bgp.service import runtime_dir_for
                path = runtime_dir_for(self.socket)
                if path is not None:
                    shutil.rmtree(path, ignore_errors=True)

    def log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n: int = 8) -> str:
        return " | ".join(self.log().strip().splitlines()[-n:])

    def changes(self) -> list[dict]:
        return self.call("steer.events", {"limit": 100000})["events"]

    def via(self, prefix: str) -> str:
        for r in self.call("steer.status")["routes"]:
            if r["prefix"] == prefix:
                return r["via"]
        raise KeyError(prefix)

    def wait_via(self, prefix: str, path: str, timeout: float = 10.0) -> float:
        """Wait until ``prefix`` goes via ``path``; returns how long it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.via(prefix) == path:
                return time.monotonic() - t0
            time.sleep(0.02)
        raise AssertionError(f"{prefix} not via {path} after {timeout:g} s: {self.via(prefix)}; {self.log_tail()}")


def cut_at(replies, asked: float, below_ms: float) -> float:
    """When a cut asked for at ``asked`` (wall clock, before `set_path` ran) took effect, as the
    packets of a `pathsteer_lab.measure.udp_stream` saw it: the send time of the last packet
    that still went over the old path (RTT under ``below_ms``), if after ``asked``. The lab's
    cut is an ``ip``/``tc`` run that takes a few ms to spawn — more on a loaded box — and a
    reroute counts from when the path died, not from when the test asked. A lower bound on
    the real moment (it fell between that packet and the next), so never in the daemon's favour."""
    sent_over = [sent for sent, rtt in replies if sent >= asked and rtt < below_ms]
    return max([asked, *sent_over])


def delivered_over(replies, after: float, lo_ms: float, hi_ms: float = 1e9) -> float | None:
    """When the first packet of a `pathsteer_lab.measure.udp_stream` that took the wanted path
    (its RTT within [lo_ms, hi_ms)) reached the server, at or after ``after`` (wall clock):
    its send time plus half its RTT. None if no packet did."""
    for sent, rtt in replies:
        if sent >= after - 0.5 and lo_ms <= rtt < hi_ms and sent + rtt / 2e3 >= after:
            return sent + rtt / 2e3
    return None
