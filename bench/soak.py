"""Soak/chaos run: a compressed day of path trouble and operator mishaps against ``pathsteer run``,
judged against an oracle that knows every path's true state at every moment.

    .venv/bin/python -m bench.soak --minutes 30 --plane both --seed 1 --out soak-out

1 real minute = 1 simulated hour (see bench/soak_oracle.py for the script, the oracle and the
metrics). Per data plane: a lab with 4 paths; the daemon with its default probing and
hysteresis (only paths, destinations, data plane mode and a guard are configured); a ping
stream at 50/s to each of the server's 4 prefixes and two rate-capped iperf3 TCP flows; per-path
nftables counters in each path namespace tell where each prefix's packets really went. The
report: a table on stdout, DIR/soak-PLANE.json and a timeline DIR/soak-PLANE.png.

Everything started here (lab, daemon, ping, iperf3, hping3, counter readers) is torn down on
the way out, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime

from bench import soak_oracle as so
from pathsteer.control.client import ControlClient
from pathsteer.errors import PathsteerError, UsageError
import pathsteer_lab as lab
from pathsteer_lab.labrun import LabDaemon

PING_INTERVAL = 0.02          # 50 packets/s per prefix
PING_TARGETS = {"198.51.100.0/24": "198.51.100.10", "203.0.113.0/24": "203.0.113.10",
                "2001:db8:100::/48": "2001:db8:100::10", "2001:db8:113::/48": "2001:db8:113::10"}
TCP_FLOWS = (("203.0.113.10", 5301), ("2001:db8:113::10", 5302))
TCP_RATE = "4M"               # per flow: enough to be real traffic, not enough to load the machine
STATUS_EVERY = 0.25
COUNTERS_EVERY = 0.3
ATTACKER_TARGET = "198.51.100.10"

GOALS = {"eligible_pct": 99.0, "best_pct": 97.0, "blackhole_s": 0.0, "needless_per_sim_h": 1.0}


def default_budgets() -> so.Budgets:
    """Budgets from the daemon's own defaults (so they follow when a default changes)."""
    from pathsteer.config.steering import DecisionConfig, DataplaneConfig, HysteresisConfig, ProbeConfig
    p = ProbeConfig(targets=["198.51.100.9"])
    h = HysteresisConfig()
    dp = DataplaneConfig(mode="fib")
    dc = DecisionConfig()
    timeout = getattr(p, "timeout_s", None)
    timeout = float(timeout) if isinstance(timeout, (int, float)) else 1.0
    return so.Budgets.from_defaults(interval=p.interval, timeout=max(timeout, p.interval), down_after=p.down_after,
                                    up_after=p.up_after, hold=p.hold, hold_down=h.hold_down,
                                    window_s=p.window_seconds, window=p.window,
                                    reconcile=dp.reconcile_interval, startup_grace=dc.startup_grace)


def daemon_config(t: lab.Topology, plane: str, socket_path: str, state_dir: str, paths: list[str],
                  guard: bool = True, guard_ingress: bool = False) -> dict:
    """Defaults everywhere except what the scenario needs: paths, destinations, mode, guard."""
    cfg_paths = [{"name": p.name, "interface": p.router_interface, "gateway": p.gateway, "gateway6": p.gateway6,
                  "probe": {"targets": ["198.51.100.9", "203.0.113.9"]}} for p in t.paths if p.name in paths]
    dataplane: dict = {"mode": plane}
    if plane == "bpf":
        dataplane["ingress"] = [t.ingress_interface]
    cfg = {
        "control": {"socket": socket_path},
        "dataplane": dataplane,
        "paths": cfg_paths,
        "destinations": [{"prefix": pfx, "paths": list(paths)} for pfx in PING_TARGETS],
    }
    if guard:
        # on the attacker's interface; also on the client's (docs/guard.md's example) only when asked:
        # there, its generic-mode xdp.frags program stops the bpf plane from steering (see docs/limits.md)
        interfaces = [t.attacker_interface] + ([t.ingress_interface] if guard_ingress else [])
        cfg["guard"] = {"interfaces": interfaces,
                        "allow": ["10.200.0.0/24", "2001:db8:200::/64"],
                        "auto_block": {"threshold_pps": 5000, "ttl": "30s"},   # hping3 makes 9-30k pps here
                        "state_dir": state_dir}
    return cfg


BAD_CONFIGS = (
    "paths: [\n  - name: p1\n    interface: r-p1\n  gateway: {{\n",                       # YAML syntax
    None,                                                                                  # unknown path
    "",                                                                                    # empty file
    None,                                                                                  # host bits
)


def bad_config_text(good: dict, variant: int) -> str:
    import yaml
    v = variant % len(BAD_CONFIGS)
    if BAD_CONFIGS[v] is not None:
        return BAD_CONFIGS[v]
    cfg = json.loads(json.dumps(good))
    if v == 1:
        cfg["destinations"][0]["paths"] = [*cfg["destinations"][0]["paths"], "p9"]
    else:
        cfg["destinations"][1]["prefix"] = "203.0.113.1/24"
    return yaml.safe_dump(cfg, sort_keys=False)


def nft_counters_script(t: lab.Topology) -> str:
    rules = []
    for pfx, addr in PING_TARGETS.items():
        if ":" in addr:
            rules.append(f'iifname "p-r" ip6 daddr {addr} icmpv6 type echo-request counter comment "{pfx}"')
        else:
            rules.append(f'iifname "p-r" ip daddr {addr} icmp type echo-request counter comment "{pfx}"')
    for addr, port in TCP_FLOWS:
        fam = "ip6" if ":" in addr else "ip"
        rules.append(f'iifname "p-r" {fam} daddr {addr} tcp dport {port} counter comment "tcp:{port}"')
    body = "\n    ".join(rules)
    return ("table inet soak {\n  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n"
            f"    {body}\n  }}\n}}\n")


class Procs:
    """Every process this run started, each in its own process group; killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def add(self, p: subprocess.Popen) -> subprocess.Popen:
        with self.lock:
            self.procs.append(p)
        return p

    def kill(self, p: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            self.kill(p)


class Reader(threading.Thread):
    """Reads a process's stdout lines (timestamped with the wall clock) into a list."""

    def __init__(self, proc: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self.start()

    def run(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))


class SoakRun:
    """One data plane: build, run the script, observe, tear down. `run()` returns the raw data."""

    def __init__(self, plane: str, script: so.Script, outdir: str, budgets: so.Budgets, log=print,
                 guard_ingress: bool = False) -> None:
        self.plane = plane
        self.guard_ingress = guard_ingress
        self.script = script
        self.outdir = outdir
        self.budgets = budgets
        self.say = log
        self.name = f"soak{os.getpid() % 100000}{plane}{random.randrange(1000)}"
        self.workdir = os.path.join(outdir, f"work-{plane}")
        os.makedirs(self.workdir, exist_ok=True)
        self.procs = Procs()
        self.stop = threading.Event()
        self.t: lab.Topology | None = None
        self.d: LabDaemon | None = None
        self.wall0 = 0.0
        self.paths_now = list(script.paths)
        self.status: list[tuple[float, dict | None]] = []
        self.events: dict[tuple, dict] = {}
        self.resources: list[dict] = []
        self.counters: list[tuple[float, dict[str, dict[str, int]]]] = []
        self.checks: list[dict] = []
        self.applied: list[tuple[int, float]] = []
        self.crashes: list[dict] = []
        self.tcp: list[dict] = []
        self.pings: dict[str, Reader] = {}
        self.daemon_lock = threading.RLock()
        self.expect_down = threading.Event()
        self.errors: list[str] = []
        self.guard = True
        self.notes: list[str] = []
        self.nasty_failed: list[str] = []

    # -- helpers ------------------------------------------------------------------------------

    def rel(self, wall: float | None = None) -> float:
        return (time.time() if wall is None else wall) - self.wall0

    def call(self, command: str, args: dict | None = None, timeout: float = 2.0):
        return ControlClient(self.d.socket, timeout=timeout).call(command, args or {})

    def config(self, paths: list[str]) -> dict:
        return daemon_config(self.t, self.plane, self.socket, os.path.join(self.workdir, "state"), paths,
                             guard=self.guard, guard_ingress=self.guard_ingress)

    def log_count(self, needle: str) -> int:
        return self.d.log().count(needle)

    def check(self, what: str, ok: bool, skipped: bool = False, **detail) -> None:
        entry = {"t": round(self.rel(), 2), "what": what, "ok": bool(ok) or skipped, **detail}
        if skipped:
            entry["skipped"] = True
        self.checks.append(entry)
        if not ok:
            self.say(f"  [{self.plane}] CHECK FAILED at {entry['t']:.1f}s: {what}: {detail}")

    # -- setup ----------------------------------------------------------------------------------

    def setup(self) -> None:
        t = self.t = lab.up(self.name, len(self.script.paths))
        for p, truth in self.script.initial.items():
            self.apply_truth(p, so.PathTruth(), truth)
        nft = nft_counters_script(t)
        for p in t.paths:
            r = t.run(p.name, ["nft", "-f", "-"], input=nft, check=False)
            if r.returncode != 0:
                raise PathsteerError(f"nft in {p.namespace}: {r.stderr.strip()}")
        self.socket = f"/run/pathsteer/{self.name}.sock"
        os.makedirs("/run/pathsteer", exist_ok=True)
        self.d = LabDaemon(t, self.config(self.paths_now), self.workdir, name="pathsteer")
        for _, port in TCP_FLOWS:
            self.procs.add(t.popen("server", ["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True))

    def apply_truth(self, path: str, old: so.PathTruth, new: so.PathTruth) -> None:
        kw = {}
        if new.delay_ms != old.delay_ms:
            kw["delay"] = new.delay_ms
        if new.jitter_ms != old.jitter_ms:
            kw["jitter"] = new.jitter_ms
        if new.loss_pct != old.loss_pct:
            kw["loss"] = new.loss_pct
        if new.down != old.down:
            kw["down"] = new.down
        if kw:
            lab.set_path(self.name, path, **kw)

    def start_daemon(self) -> None:
        with self.daemon_lock:
            self.d.start(timeout=30)
            if self.d.proc.stdout is None:
                pass

    def daemon_pid(self) -> int | None:
        """The daemon's pid: ``ip netns exec`` execs it, so it is the Popen's own pid."""
        p = self.d.proc if self.d else None
        if p is None or p.poll() is not None:
            return None
        return p.pid

    # -- background observers ------------------------------------------------------------------

    def poll_status(self) -> None:
        while not self.stop.is_set():
            t = self.rel()
            try:
                st = self.call("steer.status", timeout=1.0)
                self.status.append((t, {"via": {r["prefix"]: r["via"] for r in st["routes"]},
                                        "paths": {p["name"]: p.get("state") for p in st["paths"]},
                                        "rtt": {p["name"]: p.get("rtt_ms") for p in st["paths"]}}))
            except (PathsteerError, OSError, KeyError, ValueError):
                self.status.append((t, None))
            self.stop.wait(STATUS_EVERY)

    def pull_events(self) -> None:
        try:
            evs = self.call("steer.events", {"limit": 100000}, timeout=3.0)["events"]
        except (PathsteerError, OSError, KeyError, ValueError):
            return
        for e in evs:
            key = (round(e["at"], 3), e["prefix"], e["from"], e["to"], e["kind"])
            self.events.setdefault(key, e)

    def poll_events(self) -> None:
        while not self.stop.is_set():
            with self.daemon_lock:
                if not self.expect_down.is_set():
                    self.pull_events()
            self.stop.wait(2.0)

    def sample_resources(self) -> None:
        tck = os.sysconf("SC_CLK_TCK")
        while not self.stop.is_set():
            pid = self.daemon_pid()
            if pid:
                try:
                    with open(f"/proc/{pid}/status") as f:
                        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
                    fds = len(os.listdir(f"/proc/{pid}/fd"))
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    cpu = (int(fields[11]) + int(fields[12])) / tck
                    self.resources.append({"t": round(self.rel(), 2), "pid": pid, "rss_kb": rss, "fds": fds,
                                           "cpu_s": cpu})
                except (OSError, StopIteration, ValueError, IndexError):
                    pass
            self.stop.wait(1.0)

    def start_counters(self) -> Reader:
        nss = " ".join(p.namespace for p in self.t.paths)
        loop = (f"while :; do date +%s.%N; for ns in {nss}; do echo \"@$ns\"; "
                f"nsenter --net=/run/netns/$ns nft -j list table inet soak 2>/dev/null || echo '{{}}'; done; "
                f"sleep {COUNTERS_EVERY}; done")
        proc = self.procs.add(subprocess.Popen(["sh", "-c", loop], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                               text=True, start_new_session=True))
        return Reader(proc)

    def parse_counters(self, reader: Reader) -> None:
        by_ns = {p.namespace: p.name for p in self.t.paths}
        cur_t, cur_ns, cur = None, None, {}
        for _, line in reader.lines:
            if line and line[0].isdigit():
                if cur_t is not None:
                    self.counters.append((cur_t, cur))
                cur_t, cur = self.rel(float(line)), {}
            elif line.startswith("@"):
                cur_ns = by_ns.get(line[1:])
            elif line.startswith("{") and cur_ns:
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                for item in data.get("nftables", []):
                    rule = item.get("rule")
                    if not rule:
                        continue
                    c = next((x["counter"] for x in rule.get("expr", []) if "counter" in x), None)
                    if c is not None:
                        cur.setdefault(rule.get("comment", ""), {})[cur_ns] = c["packets"]
        if cur_t is not None:
            self.counters.append((cur_t, cur))

    def start_pings(self) -> None:
        for pfx, addr in PING_TARGETS.items():
            argv = ["ping", "-n", "-D", "-O", "-i", f"{PING_INTERVAL:g}", "-W", "1"]
            if ":" in addr:
                argv.append("-6")
            proc = self.procs.add(self.t.popen("client", [*argv, addr], stdout=subprocess.PIPE,
                                               stderr=subprocess.DEVNULL, text=True, start_new_session=True))
            self.pings[pfx] = Reader(proc)

    def tcp_flow(self, addr: str, port: int, end_rel: float) -> None:
        """One long TCP flow; if it dies before its time, that is counted and a new one starts."""
        while not self.stop.is_set():
            remaining = end_rel - self.rel()
            if remaining < 10:
                return
            started = self.rel()
            proc = self.procs.add(self.t.popen("client", [
                "iperf3", "-c", addr, "-p", str(port), "-t", str(int(remaining)), "-b", TCP_RATE, "-i", "0",
                "--connect-timeout", "5000", "-J"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                start_new_session=True))
            out, _ = proc.communicate()
            ended = self.rel()
            entry = {"flow": f"{addr}:{port}", "start": round(started, 2), "end": round(ended, 2),
                     "planned_end": round(started + int(remaining), 2), "rc": proc.returncode}
            try:
                data = json.loads(out)
                entry["error"] = data.get("error")
                s = data.get("end", {}).get("sum_sent", {})
                entry["bytes"] = s.get("bytes")
                entry["retransmits"] = s.get("retransmits")
            except ValueError:
                entry["error"] = (out or "").strip()[-200:]
            entry["died"] = not self.stop.is_set() and (proc.returncode != 0 or ended < started + int(remaining) - 3)
            self.tcp.append(entry)
            if entry["died"]:
                self.say(f"  [{self.plane}] TCP flow {addr}:{port} died at {ended:.1f}s: {entry.get('error')}")
                self.stop.wait(1.0)
            else:
                return

    # -- chaos ----------------------------------------------------------------------------------

    def chaos(self, i: int, step: so.Step) -> None:
        a = step.action
        before = self.last_via()
        if a == so.RELOAD:
            paths = step.args["paths"]
            n = self.log_count("steer.reload")
            with self.daemon_lock:
                self.d.write(self.config(paths))
                self.applied.append((i, self.rel()))
                self.d.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 8
            got = None
            while time.time() < deadline:
                try:
                    got = [p["name"] for p in self.call("steer.status")["paths"]]
                    if got == paths and self.log_count("steer.reload") > n:
                        break
                except (PathsteerError, OSError):
                    pass
                time.sleep(0.1)
            self.paths_now = paths
            self.check(step.label, got == paths, paths=got)
        elif a == so.BAD_CONFIG:
            good = self.config(self.paths_now)
            text = bad_config_text(good, i)
            n = self.log_count("daemon.reload-refused")
            with self.daemon_lock:
                with open(self.d.config_path, "w") as f:
                    f.write(text)
                self.applied.append((i, self.rel()))
                self.d.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 5
            while time.time() < deadline and self.log_count("daemon.reload-refused") <= n:
                time.sleep(0.1)
            refused = self.log_count("daemon.reload-refused") > n
            self.d.write(good)
            time.sleep(0.5)
            try:
                paths = [p["name"] for p in self.call("steer.status")["paths"]]
            except (PathsteerError, OSError):
                paths = None
            line = next((x for x in reversed(self.d.log().splitlines()) if "reload-refused" in x), "")
            self.check(f"bad_config (variant {i % len(BAD_CONFIGS)})", refused and paths == self.paths_now
                       and self.d.alive(), refused=refused, paths=paths, log=line[-200:],
                       via_before=before, via_after=self.last_via())
        elif a == so.KILL:
            with self.daemon_lock:
                self.pull_events()
                n = self.log_count("steer.adopt")
                self.expect_down.set()
                self.applied.append((i, self.rel()))
                self.d.kill()
                time.sleep(step.args.get("dead_s", 1.0))
                t0 = time.time()
                try:
                    self.start_daemon()
                    ok = True
                except PathsteerError as exc:
                    ok = False
                    self.check("kill: restart", False, error=str(exc)[-300:])
                self.expect_down.clear()
            took = time.time() - t0
            adopted = self.log_count("steer.adopt") > n
            line = next((x for x in reversed(self.d.log().splitlines()) if "steer.adopt" in x), "")
            self.check("kill -9 + restart adopts", ok and adopted, restart_s=round(took, 2), log=line[-160:])
        elif a == so.DEL_ROUTE:
            pfx = step.args["prefix"]
            fam = ["-6"] if ":" in pfx else []
            self.applied.append((i, self.rel()))
            if self.plane == "fib":
                r = self.t.run("router", ["ip", *fam, "route", "del", pfx, "proto", "83"], check=False)
                what = f"route {pfx}"

                def present() -> bool:
                    out = self.t.run("router", ["ip", *fam, "route", "show", pfx, "proto", "83"], check=False).stdout
                    return bool(out.strip())
            else:
                r = self.t.run("router", ["tc", "filter", "del", "dev", self.t.ingress_interface, "ingress",
                                          "pref", "14"], check=False)
                what = "tc filter r-c ingress pref 14"

                def present() -> bool:
                    out = self.t.run("router", ["tc", "filter", "show", "dev", self.t.ingress_interface, "ingress"],
                                     check=False).stdout
                    return "pref 14 " in out
            t0 = time.time()
            repaired = None
            while time.time() - t0 < 5:
                if present():
                    repaired = time.time() - t0
                    break
                time.sleep(0.05)
            self.check(f"deleted by hand: {what}", r.returncode == 0 and repaired is not None,
                       deleted=r.returncode == 0, err=(r.stderr or "").strip()[-120:],
                       repaired_after_s=None if repaired is None else round(repaired, 2))
        elif a == so.FLOOD:
            self.applied.append((i, self.rel()))
            p = self.procs.add(self.t.popen("attacker", ["hping3", "--flood", "--udp", "-p", "9", "-d", "32",
                                                          ATTACKER_TARGET], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True))
            t0 = time.time()
            blocked, after = None, None
            while time.time() - t0 < 5.0:   # until the auto-block (measured: < 0.2 s), at most 5 s
                try:
                    blocked = [e for e in self.call("guard.list")["entries"] if e.get("origin") == "auto"]
                except (PathsteerError, OSError, KeyError):
                    blocked = None
                if blocked and after is None:
                    after = time.time() - t0
                if after is not None and time.time() - t0 >= max(after + 1.0, step.args.get("seconds", 2.0)):
                    break
                time.sleep(0.1)
            stats = None
            try:
                v = self.call("guard.stats")["verdicts"]
                stats = {k: x.get("packets") for k, x in v.items() if x.get("packets")}
            except (PathsteerError, OSError, KeyError, AttributeError):
                pass
            flooded = round(time.time() - t0, 2)
            self.procs.kill(p)
            if self.guard:
                self.check("guard flood auto-blocked", bool(blocked) and self.d.alive(),
                           blocked=[e.get("cidr") for e in blocked or []],
                           block_after_s=None if after is None else round(after, 2), flood_s=flooded, verdicts=stats)
            else:
                self.check("flood (no guard running)", self.d.alive(), skipped=True)
        elif a == so.CTL_GARBAGE:
            self.applied.append((i, self.rel()))
            replies = self.garbage()
            ok_replies = all(r.get("ok") is False for r in replies["parsed"])
            try:
                alive = self.call("daemon.status") is not None
            except (PathsteerError, OSError):
                alive = False
            self.check("malformed control traffic gets errors", ok_replies and alive and self.d.alive()
                       and replies["unparsed"] == 0, replies=len(replies["parsed"]),
                       unparsed=replies["unparsed"], huge=replies["huge"], alive=alive,
                       no_reply_to=sorted(set(self.nasty_failed))[:5])
        # whether a chaos action changed a verdict is judged afterwards, against the oracle: a move
        # that nothing in the script explains, shortly after one, is reported (`chaos_moves`)
        _ = before

    def garbage(self) -> dict:
        lines = [b"garbage\n", b"{not json\n", b'{"command": "no.such.command"}\n', b"[1, 2, 3]\n",
                 b'{"command": "steer.explain", "args": {"address": "not-an-ip"}}\n',
                 b'{"command": "steer.events", "args": {"limit": -5}}\n',
                 b'{"command": "steer.status", "args": [1]}\n', b"\x00\xff\xfe\xfd\n",
                 b'"just a string"\n', b"null\n", b'{"command": 5}\n']
        # lines that each get a connection of their own (one failing does not hide the others)
        nasty = [b'{"command": "daemon.status", "args": {"x": ' + b"9" * 5000 + b"}}\n",   # int digits limit
                 b"[" * 100000 + b"\n",                                                      # nesting depth
                 b'{"command": "steer.explain", "args": {"address": "' + b"1" * 100000 + b'"}}\n']
        parsed, unparsed = [], 0
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect(self.d.socket)
            f = s.makefile("rb")
            for line in lines:
                s.sendall(line)
                reply = f.readline()
                try:
                    parsed.append(json.loads(reply))
                except ValueError:
                    unparsed += 1
        except OSError:
            unparsed += 1
        finally:
            s.close()
        for line in nasty:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(3)
            try:
                s.connect(self.d.socket)
                s.sendall(line)
                reply = s.makefile("rb").readline()
                parsed.append(json.loads(reply))
            except (OSError, ValueError):
                unparsed += 1
                self.nasty_failed.append(line[:60].decode("latin-1"))
            finally:
                s.close()
        # a huge line (past the 1 MiB limit), then a half line left hanging while others are served
        huge = None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.d.socket)
            try:
                s.sendall(b"{" + b"x" * (3 << 20) + b"\n")
            except OSError:
                pass
            try:
                huge = json.loads(s.makefile("rb").readline() or b"null")
            except (ValueError, OSError):
                huge = None
        except OSError:
            pass
        finally:
            s.close()
        hang = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            hang.connect(self.d.socket)
            hang.sendall(b'{"command": "steer.sta')
            t0 = time.time()
            self.call("steer.status")
            served_while_hanging = time.time() - t0 < 2
        except (OSError, PathsteerError):
            served_while_hanging = False
        finally:
            hang.close()
        if isinstance(huge, dict):
            parsed.append(huge)
        return {"parsed": parsed, "unparsed": unparsed + (0 if served_while_hanging else 1),
                "huge": huge.get("error") if isinstance(huge, dict) else huge}

    def last_via(self) -> dict:
        for _, s in reversed(self.status):
            if s is not None:
                return dict(s["via"])
        return {}

    def chaos_worker(self, q: queue.Queue) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            i, step = item
            try:
                self.chaos(i, step)
            except Exception as exc:  # a broken chaos step is reported, the run goes on
                self.check(f"{step.label}: runner error", False, error=f"{exc!r}",
                           tb=traceback.format_exc()[-600:])

    def watchdog(self) -> None:
        """A daemon that exits on its own is a crash: recorded with its log, and restarted."""
        while not self.stop.is_set():
            with self.daemon_lock:
                if not self.expect_down.is_set() and self.d.proc is not None and self.d.proc.poll() is not None:
                    rc = self.d.proc.returncode
                    tail = self.d.log_tail(15)
                    self.crashes.append({"t": round(self.rel(), 2), "rc": rc, "log": tail})
                    self.say(f"  [{self.plane}] DAEMON EXITED rc={rc} at {self.rel():.1f}s: {tail[-300:]}")
                    try:
                        self.start_daemon()
                    except PathsteerError as exc:
                        self.errors.append(f"restart after crash failed: {exc}")
            self.stop.wait(0.5)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict:
        try:
            self.setup()
            self.wall0 = time.time()
            try:
                self.start_daemon()
            except PathsteerError as exc:
                if "guard" not in str(exc):
                    raise
                # the guard cannot load in this tree (someone is changing it): soak without it
                self.guard = False
                note = f"guard disabled: the daemon did not start with it: {str(exc)[-240:]}"
                self.notes.append(note)
                self.say(f"  [{self.plane}] {note}")
                self.d.write(self.config(self.paths_now))
                self.start_daemon()
            started = self.rel()
            counters = self.start_counters()
            self.start_pings()
            threads = [threading.Thread(target=f, daemon=True) for f in
                       (self.poll_status, self.poll_events, self.sample_resources, self.watchdog)]
            for addr, port in TCP_FLOWS:
                threads.append(threading.Thread(target=self.tcp_flow, args=(addr, port, self.script.seconds),
                                                daemon=True))
            for th in threads:
                th.start()
            q: queue.Queue = queue.Queue()
            worker = threading.Thread(target=self.chaos_worker, args=(q,), daemon=True)
            worker.start()
            truth = dict(self.script.initial)
            next_report = 60.0
            for i, step in enumerate(self.script.steps):
                delay = step.t - self.rel()
                if delay > 0:
                    time.sleep(delay)
                if self.rel() >= next_report:
                    self.say(f"  [{self.plane}] {self.rel() / 60:.0f} min ({self.script.sim_hour(self.rel()):04.1f} h "
                             f"of the day), {len(self.events)} events, checks failed "
                             f"{sum(not c['ok'] for c in self.checks)}")
                    next_report += 60.0
                if step.action == so.SET:
                    at = self.rel()   # the change takes effect during the call: its start is its time
                    self.apply_truth(step.path, truth[step.path], step.truth)
                    truth[step.path] = step.truth
                    self.applied.append((i, at))
                else:
                    q.put((i, step))
            delay = self.script.seconds - self.rel()
            if delay > 0:
                time.sleep(delay)
            q.put(None)
            worker.join(timeout=60)
            with self.daemon_lock:
                self.pull_events()
            self.stop.set()
            for th in threads:
                th.join(timeout=15)
            ended = self.rel()
            for r in self.pings.values():
                self.procs.kill(r.proc, signal.SIGINT)
            self.procs.kill(counters.proc)
            time.sleep(0.3)
            self.parse_counters(counters)
            return self.raw(started, ended)
        finally:
            self.teardown()

    def raw(self, started: float, ended: float) -> dict:
        """Everything observed, as plain data (saved as work-PLANE/raw.json; `--analyse` rereads it)."""
        return {
            "plane": self.plane, "seed": self.script.seed, "seconds": self.script.seconds,
            "warmup": self.script.warmup, "budgets": self.budgets.__dict__, "wall0": self.wall0,
            "started": started, "ended": ended, "applied": self.applied,
            "status": self.status, "events": list(self.events.values()),
            "counters": self.counters, "pings": {p: [x for _, x in r.lines] for p, r in self.pings.items()},
            "resources": self.resources, "tcp": self.tcp, "checks": self.checks, "crashes": self.crashes,
            "errors": self.errors, "notes": self.notes, "guard": self.guard, "lab": self.name,
            "guard_interfaces": (self.config(self.paths_now).get("guard") or {}).get("interfaces"),
            "log": self.d.log(), "log_path": self.d.log_path,
        }

    def teardown(self) -> None:
        self.stop.set()
        self.procs.kill_all()
        if self.d is not None:
            try:
                rc = self.d.stop()
                self.clean_stop_rc = rc
            except Exception:   # noqa: BLE001 - teardown goes on whatever happened
                pass
            with open(os.path.join(self.workdir, "pathsteer.log"), "a"):
                pass
        try:
            lab.down(self.name)
        except (UsageError, PathsteerError, OSError) as exc:
            self.say(f"  [{self.plane}] lab down {self.name}: {exc}")


# ------------------------------------------------------------------------------------------------
# From raw observations to the report


def parse_log_changes(log: str, wall0: float) -> list[dict]:
    out = []
    for line in log.splitlines():
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1] == "steer.change":
            continue
        try:
            at = datetime.strptime(parts[0], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        except ValueError:
            continue
        fields = dict(kv.split("=", 1) for kv in parts[2].split(" ") if "=" in kv and not kv.startswith("reason"))
        out.append({"t": at - wall0, "prefix": fields.get("prefix"), "from": fields.get("from"),
                    "to": fields.get("to"), "kind": fields.get("kind")})
    return out


def log_problems(log: str) -> dict[str, int]:
    """Warnings and errors in the daemon's log by kind (``steer.load-unavailable``, tracebacks,
    ...), apart from the refused reloads the script asked for."""
    out: dict[str, int] = {}
    for line in log.splitlines():
        parts = line.split(" ", 2)
        name = parts[1] if len(parts) >= 2 and parts[0][:4].isdigit() else None
        if name is not None:
            if name == "daemon.reload-refused" or not any(w in name for w in ("fail", "unavailable", "error",
                                                                               "refused", "stopped")):
                continue
            key = name
        elif line.startswith(("Traceback", "Unhandled exception")):
            key = line.split(" (")[0]
        elif line.startswith("pathsteer: error"):
            key = "pathsteer: error"
        else:
            continue
        out[key] = out.get(key, 0) + 1
    return out


def analyse(raw: dict) -> dict:
    budgets = so.Budgets(**raw["budgets"])
    script = so.make_script(raw["seconds"], raw["seed"], budgets=budgets, warmup=raw["warmup"])
    script = so.retime(script, [tuple(x) for x in raw["applied"]])
    oracle = so.Oracle(script)
    t0, t1 = script.warmup, min(raw["ended"], script.seconds)
    events = sorted(raw["events"], key=lambda e: e["at"])
    log_changes = parse_log_changes(raw["log"], raw["wall0"])
    # claimed via per prefix, carried over while the daemon did not answer
    claimed: dict[str, list] = {p: [] for p in PING_TARGETS}
    last: dict[str, str | None] = {p: None for p in PING_TARGETS}
    for t, s in raw["status"]:
        for p in PING_TARGETS:
            if s is not None and p in s["via"]:
                last[p] = s["via"][p]
            claimed[p].append((t, last[p]))
    # actual packets per prefix per path
    actual_cum: dict[str, list] = {p: [] for p in PING_TARGETS}
    for t, c in raw["counters"]:
        for p in PING_TARGETS:
            actual_cum[p].append((t, c.get(p, {})))
    per_prefix = []
    for p in PING_TARGETS:
        pings = [(s - raw["wall0"], rtt) for s, rtt in so.parse_ping_lines(raw["pings"][p],
                                                                     PING_INTERVAL)]
        moves = [(e["at"] - raw["wall0"], e["from"], e["to"]) for e in events if e["prefix"] == p]
        m = so.prefix_metrics(oracle, p, t0, t1, claimed[p], so.counter_intervals(actual_cum[p]), pings, moves,
                              ping_interval=PING_INTERVAL)
        per_prefix.append(m)
    # events: every change in the log must be in what the socket gave, and every via change seen
    # in the status polls must have an event
    socket_keys = {(e["prefix"], e["from"], e["to"], round(e["at"] - raw["wall0"], 1)) for e in events}
    missing = [c for c in log_changes if c["from"] and c["to"] and not any(
        (c["prefix"], c["from"], c["to"]) == k[:3] and abs(k[3] - c["t"]) < 0.6 for k in socket_keys)]
    unexplained_via = []
    for p in PING_TARGETS:
        prev = None
        for t, v in claimed[p]:
            if prev is not None and v is not None and v != prev:
                if not any(e["prefix"] == p and e["to"] == v and -5 < t - (e["at"] - raw["wall0"]) < 5 for e in events):
                    unexplained_via.append({"t": round(t, 2), "prefix": p, "from": prev, "to": v})
            prev = v if v is not None else prev
    # needless moves shortly after a chaos action (5 s; after kill -9, 5 s past the restart's
    # startup grace) with no network step (drift aside) in between: a verdict the chaos changed.
    # Each needless move also names the last step before it.
    grace = 5.0 + 10.0
    chaos_moves = []
    for m in per_prefix:
        for n in m.needless:
            before = [st for st in script.steps if st.t <= n["t"] and st.label != "drift"]
            if not before:
                continue
            st = before[-1]
            n["after_step"] = f"{st.label} at {st.t:.1f}"
            if st.action != so.SET and n["t"] - st.t <= (grace if st.action == so.KILL else 5.0):
                chaos_moves.append({"chaos": st.label, "chaos_t": round(st.t, 2), "prefix": m.prefix, **n})
    res = so.resource_summary(raw["resources"], warmup_s=60.0)
    sim_h = script.sim_hours
    needless = sum(len(m.needless) for m in per_prefix)
    report = {
        "plane": raw["plane"], "seed": script.seed, "minutes": round((t1 - t0 + script.warmup) / 60, 2),
        "sim_hours": round(sim_h, 2), "window": [round(t0, 2), round(t1, 2)],
        "compression": "1 real minute = 1 simulated hour",
        "budgets": raw["budgets"],
        "prefixes": [m.to_json() for m in per_prefix],
        "summary": {
            "eligible_pct_min": round(min(m.eligible_pct for m in per_prefix), 3),
            "best_pct_min": round(min(m.best_pct for m in per_prefix), 3),
            "blackhole_s": round(sum(m.blackhole_s for m in per_prefix), 2),
            "blackhole_excused_s": round(sum(m.blackhole_excused_s for m in per_prefix), 2),
            "needless": needless,
            "needless_per_sim_h": round(needless / sim_h / len(per_prefix), 3) if sim_h else None,
            "moves": sum(m.moves for m in per_prefix),
            "pings": sum(m.pings for m in per_prefix), "lost": sum(m.lost for m in per_prefix),
            "lost_outside": sum(m.lost_outside for m in per_prefix),
            "agree_pct_min": round(min(m.agree_pct for m in per_prefix), 3),
            "tcp_flows": len(raw["tcp"]), "tcp_died": sum(1 for f in raw["tcp"] if f.get("died")),
            "events_socket": len(events), "events_log": len(log_changes), "events_missing": len(missing),
            "via_without_event": len(unexplained_via),
            "checks": len(raw["checks"]), "checks_failed": sum(not c["ok"] for c in raw["checks"]),
            "crashes": len(raw["crashes"]), "chaos_moves": len(chaos_moves),
            "log_problems": log_problems(raw["log"]),
            "rss_mib_per_h": (res["longest"] or {}).get("rss_mib_per_h"),
            "fds_per_h": (res["longest"] or {}).get("fds_per_h"),
            "rss_mib_max": max((i["rss_mib_max"] for i in res["instances"]), default=None),
            "fds_max": max((i["fds_max"] for i in res["instances"]), default=None),
            "cpu_pct": res["cpu_pct"],
        },
        "resources": res, "resource_samples": _every(raw["resources"], 5.0), "tcp": raw["tcp"], "checks": raw["checks"], "crashes": raw["crashes"],
        "chaos_moves": chaos_moves, "events_missing": missing[:50], "via_without_event": unexplained_via[:50],
        "errors": raw["errors"], "notes": raw["notes"], "guard": raw["guard"], "script_kinds": script.kinds(),
        "steps": [s.to_json() for s in script.steps],
        "events": [{**e, "t": round(e["at"] - raw["wall0"], 3)} for e in events],
    }
    report["goals"] = goal_verdicts(report["summary"])
    return report


def _every(samples: list[dict], seconds: float) -> list[list]:
    """[t, RSS MiB, fds] at most one per ``seconds`` (for the timeline)."""
    out, last = [], -1e9
    for x in samples:
        if x["t"] - last >= seconds:
            out.append([x["t"], round(x["rss_kb"] / 1024, 2), x["fds"]])
            last = x["t"]
    return out


def script_budgets(b: so.Budgets) -> dict:
    return {k: round(v, 2) for k, v in b.__dict__.items()}


def goal_verdicts(s: dict) -> dict:
    return {
        "eligible >= 99 %": s["eligible_pct_min"] >= GOALS["eligible_pct"],
        "best within hysteresis >= 97 %": s["best_pct_min"] >= GOALS["best_pct"],
        "blackhole 0 s beyond detection": s["blackhole_s"] <= GOALS["blackhole_s"],
        "needless <= 1 per simulated hour": (s["needless_per_sim_h"] or 0) <= GOALS["needless_per_sim_h"],
        "no TCP flow died": s["tcp_died"] == 0,
        "no event lost": s["events_missing"] == 0 and s["via_without_event"] == 0,
        "chaos checks pass": s["checks_failed"] == 0,
        "no verdict changed by chaos": s["chaos_moves"] == 0,
        "no crash": s["crashes"] == 0,
    }


def table(reports: list[dict]) -> str:
    rows = [
        ("minutes (= simulated hours)", lambda r: f"{r['minutes']:.1f} ({r['sim_hours']:.1f} h measured)"),
        ("on an eligible path, min over prefixes", lambda r: f"{r['summary']['eligible_pct_min']:.2f} %  (goal ≥ 99)"),
        ("on the best path within hysteresis", lambda r: f"{r['summary']['best_pct_min']:.2f} %  (goal ≥ 97)"),
        ("blackhole beyond detection budgets", lambda r: f"{r['summary']['blackhole_s']:.2f} s  (goal 0; "
                                                       f"{r['summary']['blackhole_excused_s']:.1f} s within)"),
        ("moves / needless", lambda r: f"{r['summary']['moves']} / {r['summary']['needless']}"),
        ("needless per simulated hour per prefix", lambda r: f"{r['summary']['needless_per_sim_h']}  (goal ≤ 1)"),
        ("pings lost / outside cuts", lambda r: f"{r['summary']['lost']} / {r['summary']['lost_outside']} "
                                                f"of {r['summary']['pings']}"),
        ("packets went where status said", lambda r: f"{r['summary']['agree_pct_min']:.2f} % (min)"),
        ("TCP flows died", lambda r: f"{r['summary']['tcp_died']} of {r['summary']['tcp_flows']}"),
        ("events socket / log / missing / via w/o event",
         lambda r: f"{r['summary']['events_socket']} / {r['summary']['events_log']} / "
                   f"{r['summary']['events_missing']} / {r['summary']['via_without_event']}"),
        ("chaos checks failed", lambda r: f"{r['summary']['checks_failed']} of {r['summary']['checks']}"),
        ("needless moves right after chaos", lambda r: f"{r['summary']['chaos_moves']}"),
        ("daemon crashes", lambda r: f"{r['summary']['crashes']}"),
        ("log warnings/errors", lambda r: ", ".join(f"{k} ×{v}" for k, v in
                                                    r["summary"].get("log_problems", {}).items()) or "none"),
        ("RSS max / slope", lambda r: f"{r['summary']['rss_mib_max']} MiB / {r['summary']['rss_mib_per_h']} MiB/h"),
        ("fds max / slope", lambda r: f"{r['summary']['fds_max']} / {r['summary']['fds_per_h']} per h"),
        ("daemon CPU", lambda r: f"{r['summary']['cpu_pct']} % of a core"),
    ]
    w0 = max(len(n) for n, _ in rows)
    cols = [[f(r) for _, f in rows] for r in reports]
    widths = [max(len(r["plane"]), *(len(c) for c in col)) for r, col in zip(reports, cols)]
    out = [f"{'':<{w0}}  " + "  ".join(f"{r['plane']:<{w}}" for r, w in zip(reports, widths))]
    for i, (name, _) in enumerate(rows):
        out.append(f"{name:<{w0}}  " + "  ".join(f"{col[i]:<{w}}" for col, w in zip(cols, widths)))
    for r in reports:
        failed = [g for g, ok in r["goals"].items() if not ok]
        out.append(f"{r['plane']}: goals {'all met' if not failed else 'MISSED: ' + '; '.join(failed)}")
    return "\n".join(out)


def plot(report: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["steps"]
    paths = sorted({s["path"] for s in steps if s.get("path")} | set(report.get("initial", {})))
    paths = paths or ["p1", "p2", "p3", "p4"]
    colors = {p: c for p, c in zip(paths, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"))}
    end = report["window"][1]
    long_run = end > 600
    fig, axes = plt.subplots(4, 1, figsize=(22 if long_run else 15, 10.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 1.2, 1]})
    ax = axes[0]
    init = report.get("initial", {})
    for p in paths:
        xs, ys = [0.0], [init.get(p, {}).get("rtt", float("nan"))]
        for s in steps:
            if s.get("path") != p or "truth" not in s:
                continue
            tr = s["truth"]
            xs.append(s["t"])
            ys.append(ys[-1])
            v = float("nan") if tr["down"] or not tr["configured"] else so.BASE_RTT_MS + 2 * tr["delay_ms"]
            xs.append(s["t"])
            ys.append(v)
        xs.append(end)
        ys.append(ys[-1])
        ax.plot(xs, ys, color=colors[p], label=f"{p} true RTT", lw=1.2)
        downs = [(s["t"], s["truth"]) for s in steps if s.get("path") == p and "truth" in s]
        for key, lo, hatch in (("down", 0.0, None), ("removed", 0.045, "////")):
            start = None
            for t, tr in downs:
                bad = tr["down"] if key == "down" else not tr["configured"]
                if bad and start is None:
                    start = t
                elif not bad and start is not None:
                    ax.axvspan(start, t, ymin=lo, ymax=lo + 0.04, color=colors[p], alpha=0.6, hatch=hatch,
                               fill=hatch is None)
                    start = None
        loss_start = None
        for t, tr in downs:
            if tr["loss_pct"] >= 5 and loss_start is None:
                loss_start = t
            elif tr["loss_pct"] < 5 and loss_start is not None:
                ax.axvspan(loss_start, t, ymin=0.96, ymax=1.0, color=colors[p], alpha=0.6)
                loss_start = None
    ax.set_ylabel("RTT ms (true)")
    ax.set_ylim(0, min(160, max(60, ax.get_ylim()[1])))
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.93), fontsize=8, ncol=4)
    ax.set_title(f"pathsteer soak, {report['plane']} plane, seed {report['seed']}: {report['minutes']:.1f} min "
                 f"(1 min = 1 simulated h); bars: down, removed by reload (hatched), heavy loss (top)")
    ax = axes[1]
    prefixes = [m["prefix"] for m in report["prefixes"]]
    for k, pfx in enumerate(prefixes):
        seg = report.get("chosen", {}).get(pfx, [])
        for (t, v), nxt in zip(seg, seg[1:] + [[end, None]]):
            if v in colors:
                ax.broken_barh([(t, nxt[0] - t)], (k - 0.4, 0.8), color=colors[v])
        pm = next(m for m in report["prefixes"] if m["prefix"] == pfx)
        for a, b, kind in pm.get("misses", []):
            ax.broken_barh([(a, b - a)], (k - 0.5, 0.12), color="red" if kind == "not-eligible" else "dimgray")
        for n in pm["needless"]:
            ax.plot([n["t"]], [k], marker="x", color="black", ms=8)
    ax.set_yticks(range(len(prefixes)))
    ax.set_yticklabels(prefixes, fontsize=8)
    ax.set_ylabel("chosen path")
    ax.set_title("chosen path per prefix (from status); strip below: packets off the best path (grey), "
                 "off every eligible path (red); x: needless move", fontsize=9)
    ax = axes[2]
    kinds = {"kill": 0, "reload": 1, "bad_config": 2, "del_route": 3, "flood": 4, "ctl_garbage": 5}
    for s in steps:
        k = s["action"]
        if k in kinds:
            ax.plot([s["t"]], [kinds[k]], marker="v", color="black", ms=6)
    for c in report["checks"]:
        if not c["ok"]:
            ax.axvline(c["t"], color="red", lw=0.8)
    for c in report["crashes"]:
        ax.axvline(c["t"], color="magenta", lw=2)
    ax.set_yticks(list(kinds.values()))
    ax.set_yticklabels(list(kinds), fontsize=8)
    ax.set_ylim(-0.7, len(kinds) - 0.3)
    ax.set_title("chaos actions; red line: a failed check, magenta: a daemon crash", fontsize=9)
    ax = axes[3]
    samples = report.get("resource_samples", [])
    if samples:
        ax.plot([x[0] for x in samples], [x[1] for x in samples], color="tab:blue", lw=1, label="RSS MiB")
        ax.set_ylabel("RSS MiB")
        ax2 = ax.twinx()
        ax2.plot([x[0] for x in samples], [x[2] for x in samples], color="tab:gray", lw=1, label="fds")
        ax2.set_ylabel("fds")
        ax.set_title(f"daemon RSS (blue) and open fds (grey); slope after warm-up "
                     f"{report['summary']['rss_mib_per_h']} MiB/h, {report['summary']['fds_per_h']} fds/h",
                     fontsize=9)
    ax.set_xlabel("seconds (= simulated minutes)")
    ax.set_xlim(0, end)
    fig.tight_layout()
    fig.savefig(path, dpi=100 if long_run else 90)
    plt.close(fig)


def report_of(raw: dict, outdir: str) -> dict:
    report = analyse(raw)
    script = so.make_script(raw["seconds"], raw["seed"], budgets=so.Budgets(**raw["budgets"]), warmup=raw["warmup"])
    report["initial"] = {p: {"rtt": tr.rtt_ms} for p, tr in script.initial.items()}
    report["chosen"] = {}
    for pfx in PING_TARGETS:
        seg, last = [], None
        for t, st in raw["status"]:
            v = st["via"].get(pfx) if st else last
            if v != last:
                seg.append([round(t, 2), v])
                last = v
        report["chosen"][pfx] = seg
    report["daemon_log"] = raw["log_path"]
    plane = raw["plane"]
    with open(os.path.join(outdir, f"soak-{plane}.json"), "w") as f:
        json.dump(report, f, indent=1)
    plot(report, os.path.join(outdir, f"soak-{plane}.png"))
    return report


def run_plane(plane: str, script: so.Script, outdir: str, budgets: so.Budgets, guard_ingress: bool = False) -> dict:
    r = SoakRun(plane, script, outdir, budgets, guard_ingress=guard_ingress)
    print(f"[{plane}] lab {r.name}: {script.seconds / 60:.1f} min, seed {script.seed}, "
          f"{len(script.steps)} steps, day from {script.start_hour:04.1f} h", flush=True)
    raw = r.run()
    with open(os.path.join(r.workdir, "raw.json"), "w") as f:
        json.dump(raw, f)
    return report_of(raw, outdir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog="""examples:
  python -m bench.soak --minutes 30 --plane both --out soak-out     # what `make soak` does
  python -m bench.soak --minutes 5 --plane bpf --seed 3 --out /tmp/s
  python -m bench.soak --analyse --plane both --out soak-out        # recompute the reports
  make soak SOAK_ARGS="--minutes 10 --plane fib"
""")
    ap.add_argument("--minutes", type=float, default=30.0, help="per data plane (1 minute = 1 simulated hour)")
    ap.add_argument("--plane", choices=("fib", "bpf", "both"), default="both", help="data plane(s), one after the other")
    ap.add_argument("--seed", type=int, default=1, help="the script's seed: same seed, same day")
    ap.add_argument("--out", default="soak-out", help="directory for soak-PLANE.json/.png and the daemon logs")
    ap.add_argument("--guard-ingress", action="store_true",
                    help="put the guard on the client's interface r-c too, not only on the attacker's r-a")
    ap.add_argument("--analyse", action="store_true",
                    help="do not run: recompute the report from DIR/work-PLANE/raw.json of an earlier run")
    args = ap.parse_args(argv)
    if args.analyse:
        planes = ("fib", "bpf") if args.plane == "both" else (args.plane,)
        reports = []
        for plane in planes:
            path = os.path.join(args.out, f"work-{plane}", "raw.json")
            if os.path.exists(path):
                with open(path) as f:
                    reports.append(report_of(json.load(f), args.out))
        if not reports:
            print(f"bench.soak: error: no raw.json under {args.out}/work-*/", file=sys.stderr)
            return 2
        print(table(reports))
        return 0
    if os.geteuid() != 0:
        print("bench.soak: error: needs root (network namespaces, BPF)", file=sys.stderr)
        return 2
    if args.minutes < 1:
        print("bench.soak: error: --minutes: at least 1", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    budgets = default_budgets()
    planes = ("fib", "bpf") if args.plane == "both" else (args.plane,)
    reports = []
    try:
        for plane in planes:
            script = so.make_script(args.minutes * 60, args.seed, budgets=budgets)
            reports.append(run_plane(plane, script, args.out, budgets, guard_ingress=args.guard_ingress))
    except KeyboardInterrupt:
        print("bench.soak: interrupted; everything torn down", file=sys.stderr)
        return 130
    print(table(reports))
    for r in reports:
        print(f"{r['plane']}: {os.path.join(args.out, 'soak-' + r['plane'] + '.json')}, "
              f"{os.path.join(args.out, 'soak-' + r['plane'] + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
