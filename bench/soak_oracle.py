"""The soak's pure half: the seeded script of a compressed day, the oracle that knows every
path's true state at every moment, and the metrics computed from what was observed.

Nothing here touches the system, so it is unit-tested without root (tests/unit/test_soak_oracle.py);
`bench.soak` runs the script in a lab and feeds its observations back here.

Compression: **1 real minute = 1 simulated hour** (1 real second = 1 simulated minute); a run of
N minutes is N hours of a day that starts at a seeded hour, so 24 minutes are a whole day.

The script has two tracks. The *network track* is the day itself: every path's one-way delay
follows a diurnal curve (evening congestion on the cheap fast path, a morning bump on another),
sampled every few seconds as drift, and episodes follow one another — RTT spikes and jitter
bursts (transient: the oracle ignores them, a move because of one is needless), RTT level
steps, light and heavy loss, a hard cut of the best path and its recovery, two paths failing at
once, every path down for a moment. Between network episodes there is a calm gap in which the
*chaos track* acts on the daemon and the data plane: SIGHUP reloads that remove and later add a
path, kill -9 and restart, the route (fib) or TC filter (bpf) deleted by hand, a guard flood,
malformed control-socket traffic, a SIGHUP with a broken config.

Every step carries a *budget*: how long the daemon may take to follow it, derived from the
daemon's default probing and hysteresis (`Budgets.from_defaults`). While a step's budget runs,
the oracle also accepts what was right just before it (see `Oracle.accepted`).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field, replace

SIM_MINUTES_PER_SECOND = 1.0          # 1 real minute = 1 simulated hour
BASE_RTT_MS = 0.2                     # forwarding through the lab without a delay line
DEGRADED_LOSS_PCT = 5.0               # telemetry defaults: degraded at >= 5 % window loss ...
RECOVER_LOSS_PCT = 2.0                # ... and up again at <= 2 %
MIN_IMPROVEMENT = 0.10                # destinations' default hysteresis
MARGIN = 0.05                         # near the min_improvement line either choice is right

# Actions of steps. Network track: "set". Chaos track: the rest.
SET, RELOAD, BAD_CONFIG, KILL, DEL_ROUTE, FLOOD, CTL_GARBAGE = (
    "set", "reload", "bad_config", "kill", "del_route", "flood", "ctl_garbage")
CHAOS_ACTIONS = (CTL_GARBAGE, BAD_CONFIG, FLOOD, DEL_ROUTE, KILL, RELOAD)


# --------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class Budgets:
    """Seconds the daemon may take to follow each kind of change (detection + decision)."""

    cut: float          # a path goes down: down_after probes + the last one's timeout
    recover: float      # a path comes back and is better: up_after probes + hold + hold_down + RTT settling
    rtt: float          # a lasting RTT change: hold_down + the RTT statistic settling
    loss_on: float      # heavy loss seen in the window (degraded)
    loss_off: float     # the window forgets it (up again)
    reload: float       # a reload that removes the current path / adds one
    repair: float       # a route or filter deleted by hand: the next reconcile
    restart: float      # kill -9 and restart: adopt, then startup grace

    @classmethod
    def from_defaults(cls, interval: float = 1.0, timeout: float = 1.0, down_after: int = 3,
                      up_after: int = 5, hold: float = 0.5, hold_down: float = 1.0,
                      window_s: float = 60.0, window: int = 100, reconcile: float = 1.0,
                      startup_grace: float = 5.0, heavy_loss_rt: float = 0.44,
                      slack: float = 1.0) -> Budgets:
        probes_in_window = max(1, min(window, int(window_s / interval)))
        losses_needed = math.ceil(DEGRADED_LOSS_PCT / 100 * probes_in_window)
        rtt = hold_down + 15 * interval + slack
        return cls(
            cut=down_after * interval + timeout + slack,
            recover=up_after * interval + hold + hold_down + 5 * interval + slack,
            rtt=rtt,
            loss_on=2 * losses_needed / heavy_loss_rt * interval + hold + slack,
            loss_off=min(window_s, probes_in_window * interval) + up_after * interval + hold_down + slack,
            reload=up_after * interval + hold_down + 5 * interval + slack,
            repair=reconcile + slack,
            restart=startup_grace + rtt,
        )


# --------------------------------------------------------------------------------------------
# The script


@dataclass(frozen=True)
class PathTruth:
    """One path as the script set it: what the lab applies and what the oracle judges by."""

    delay_ms: float = 0.0          # one-way, each direction (true: spikes included)
    settled_ms: float = 0.0        # one-way without transient spikes: what the oracle ranks by
    jitter_ms: float = 0.0
    loss_pct: float = 0.0          # per direction
    down: bool = False
    configured: bool = True        # listed in the daemon's config

    @property
    def rtt_ms(self) -> float:
        """True round-trip time (spikes included)."""
        return BASE_RTT_MS + 2 * self.delay_ms

    @property
    def settled_rtt_ms(self) -> float:
        return BASE_RTT_MS + 2 * self.settled_ms

    @property
    def loss_rt_pct(self) -> float:
        p = self.loss_pct / 100
        return 100 * (1 - (1 - p) ** 2)

    @property
    def usable(self) -> bool:
        """Carries traffic at all (whatever the daemon thinks)."""
        return self.configured and not self.down and self.loss_pct < 100


@dataclass(frozen=True)
class Step:
    t: float                        # seconds from the start of the run
    action: str
    path: str | None = None
    truth: PathTruth | None = None  # SET: the path's settings from now on
    args: dict = field(default_factory=dict, hash=False, compare=False)
    budget: float = 0.0             # seconds the daemon may take to follow it (0: nothing to follow)
    excuse_loss: bool = False       # packets may be lost during the budget (a cut, a removed path)
    label: str = ""

    def to_json(self) -> dict:
        out = {"t": round(self.t, 3), "action": self.action, "label": self.label, "budget": round(self.budget, 2)}
        if self.path:
            out["path"] = self.path
        if self.truth is not None:
            out["truth"] = {"delay_ms": self.truth.delay_ms, "settled_ms": self.truth.settled_ms,
                            "jitter_ms": self.truth.jitter_ms, "loss_pct": self.truth.loss_pct,
                            "down": self.truth.down, "configured": self.truth.configured}
        if self.args:
            out["args"] = self.args
        return out


@dataclass(frozen=True)
class Script:
    seed: int
    seconds: float
    paths: tuple[str, ...]
    prefixes: tuple[str, ...]
    initial: dict                   # path -> PathTruth at t = 0
    steps: tuple[Step, ...]
    warmup: float
    start_hour: float

    def sim_hour(self, t: float) -> float:
        return (self.start_hour + t * SIM_MINUTES_PER_SECOND / 60.0) % 24

    @property
    def sim_hours(self) -> float:
        return (self.seconds - self.warmup) * SIM_MINUTES_PER_SECOND / 60.0

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            k = s.label.split(":")[0] if s.label else s.action
            out[k] = out.get(k, 0) + 1
        return out


# Diurnal one-way delays (ms) by simulated hour: p1 is fast but congested in the evening, p2 is
# steady, p3 has a morning bump, p4 is the slow backup. Curves cross, so the best path changes
# during the day for reasons the oracle knows.
def diurnal_ms(path_index: int, hour: float) -> float:
    def bump(center: float, width: float) -> float:
        d = min(abs(hour - center), 24 - abs(hour - center))
        return math.exp(-(d / width) ** 2)
    if path_index == 0:
        return 6.0 + 12.0 * bump(20.5, 2.5)
    if path_index == 1:
        return 11.0 + 1.0 * math.sin(2 * math.pi * hour / 24)
    if path_index == 2:
        return 16.0 - 9.0 * bump(3.5, 2.0) + 6.0 * bump(9.0, 1.5)
    return 24.0 + 2.0 * math.sin(2 * math.pi * (hour - 6) / 24)


def _round(x: float) -> float:
    return round(x * 4) / 4   # quarter milliseconds


class _Builder:
    """Builds the steps, keeping every path's current truth and the layers that make it."""

    def __init__(self, paths: tuple[str, ...], start_hour: float, budgets: Budgets) -> None:
        self.paths = paths
        self.start_hour = start_hour
        self.b = budgets
        self.base = {p: _round(diurnal_ms(i, start_hour)) for i, p in enumerate(paths)}  # drift layer
        self.level = {p: 1.0 for p in paths}          # RTT level steps (lasting)
        self.spike = {p: 0.0 for p in paths}          # transient
        self.jitter = {p: 0.0 for p in paths}
        self.loss = {p: 0.0 for p in paths}
        self.down = {p: False for p in paths}
        self.configured = {p: True for p in paths}
        self.truth = {p: self._compute(p) for p in paths}
        self.initial = dict(self.truth)
        self.steps: list[Step] = []

    def _compute(self, p: str) -> PathTruth:
        settled = _round(self.base[p] * self.level[p])
        return PathTruth(delay_ms=_round(settled + self.spike[p]), settled_ms=settled, jitter_ms=self.jitter[p],
                         loss_pct=self.loss[p], down=self.down[p], configured=self.configured[p])

    def emit(self, t: float, p: str, budget: float, label: str, excuse_loss: bool = False) -> None:
        new = self._compute(p)
        if new == self.truth[p]:
            return
        self.truth[p] = new
        self.steps.append(Step(t, SET, p, new, budget=budget, excuse_loss=excuse_loss, label=label))

    def chaos(self, t: float, action: str, budget: float = 0.0, label: str = "", excuse_loss: bool = False,
              **args) -> None:
        self.steps.append(Step(t, action, None, None, args=args, budget=budget, excuse_loss=excuse_loss,
                               label=label or action))

    def settled_rtt(self, p: str) -> float:
        return self.truth[p].settled_rtt_ms

    def best(self) -> str:
        live = [p for p in self.paths if self.configured[p] and not self.down[p] and self.loss[p] == 0]
        return min(live or list(self.paths), key=self.settled_rtt)

    def drift(self, t0: float, t1: float, every: float = 3.0) -> None:
        """Diurnal drift between t0 and t1, one step per path whenever it moved a quarter ms."""
        t = t0
        while t < t1:
            hour = (self.start_hour + t * SIM_MINUTES_PER_SECOND / 60.0) % 24
            for i, p in enumerate(self.paths):
                v = _round(diurnal_ms(i, hour))
                if abs(v - self.base[p]) >= 0.25:
                    self.base[p] = v
                    self.emit(t, p, self.b.rtt, "drift")
            t += every


# Network episodes: (name, function(builder, rng, t) -> seconds it lasts)
def _ep_spike(b: _Builder, rng: random.Random, t: float) -> float:
    p = b.best()
    b.spike[p] = float(rng.choice((30, 40, 60)))
    b.emit(t, p, 0.0, "spike")
    dur = rng.uniform(2.0, 3.0)
    b.spike[p] = 0.0
    b.emit(t + dur, p, 0.0, "spike-end")
    return dur + 2.0


def _ep_jitter(b: _Builder, rng: random.Random, t: float) -> float:
    p = rng.choice([b.best(), rng.choice(b.paths)])
    b.jitter[p] = float(rng.choice((2, 3, 4)))
    b.emit(t, p, 0.0, "jitter")
    dur = rng.uniform(8.0, 12.0)
    b.jitter[p] = 0.0
    b.emit(t + dur, p, 0.0, "jitter-end")
    return dur + 1.0


def _ep_level(b: _Builder, rng: random.Random, t: float) -> float:
    p = b.best()
    b.level[p] = rng.choice((1.8, 2.5, 3.0))
    b.emit(t, p, b.b.rtt, "rtt-step")
    dur = rng.uniform(20.0, 30.0)
    b.level[p] = 1.0
    b.emit(t + dur, p, b.b.rtt, "rtt-step-end")
    return dur + b.b.rtt * 0.6


def _ep_light_loss(b: _Builder, rng: random.Random, t: float) -> float:
    p = rng.choice(b.paths)
    b.loss[p] = 0.2
    b.emit(t, p, 0.0, "light-loss")
    dur = rng.uniform(10.0, 20.0)
    b.loss[p] = 0.0
    b.emit(t + dur, p, 0.0, "light-loss-end")
    return dur + 1.0


def _ep_heavy_loss(b: _Builder, rng: random.Random, t: float) -> float:
    p = b.best()
    b.loss[p] = 25.0
    b.emit(t, p, b.b.loss_on, "heavy-loss")
    dur = rng.uniform(15.0, 20.0)
    b.loss[p] = 0.0
    b.emit(t + dur, p, b.b.loss_off, "heavy-loss-end")
    return dur + 3.0


def _ep_cut(b: _Builder, rng: random.Random, t: float) -> float:
    p = b.best()
    b.down[p] = True
    b.emit(t, p, b.b.cut, "cut", excuse_loss=True)
    dur = rng.uniform(6.0, 12.0)
    b.down[p] = False
    b.emit(t + dur, p, b.b.recover, "recover")
    return dur + b.b.recover * 0.7


def _ep_double_cut(b: _Builder, rng: random.Random, t: float) -> float:
    first = b.best()
    second = rng.choice([p for p in b.paths if p != first and b.configured[p]])
    for p in (first, second):
        b.down[p] = True
        b.emit(t, p, b.b.cut, "double-cut", excuse_loss=True)
    dur = rng.uniform(8.0, 12.0)
    for p in (first, second):
        b.down[p] = False
        b.emit(t + dur, p, b.b.recover, "double-recover")
    return dur + b.b.recover * 0.7


def _ep_all_down(b: _Builder, rng: random.Random, t: float) -> float:
    dur = rng.uniform(2.0, 3.0)
    for p in b.paths:
        b.down[p] = True
        b.emit(t, p, b.b.cut, "all-down", excuse_loss=True)
    for p in b.paths:
        b.down[p] = False
        b.emit(t + dur, p, b.b.recover, "all-up", excuse_loss=True)
    return dur + b.b.recover * 0.7


# The longest each episode can take (its recovery included): an episode starts only if it fits.
MAX_LEN = {"cut": 22.0, "spike": 5.0, "double-cut": 22.0, "rtt-step": 42.0, "all-down": 12.0,
           "heavy-loss": 23.0, "jitter": 13.0, "light-loss": 21.0}

NETWORK_EPISODES = (("cut", _ep_cut), ("spike", _ep_spike), ("double-cut", _ep_double_cut),
                    ("rtt-step", _ep_level), ("all-down", _ep_all_down), ("heavy-loss", _ep_heavy_loss),
                    ("jitter", _ep_jitter), ("light-loss", _ep_light_loss))


def make_script(seconds: float, seed: int, paths: tuple[str, ...] = ("p1", "p2", "p3", "p4"),
                prefixes: tuple[str, ...] = ("198.51.100.0/24", "203.0.113.0/24", "2001:db8:100::/48",
                                             "2001:db8:113::/48"),
                budgets: Budgets | None = None, warmup: float = 15.0,
                start_hour: float | None = None) -> Script:
    """The seeded script of a compressed day lasting ``seconds`` (the first ``warmup`` calm).

    Network episodes come in a seeded order, each kind once before any repeats; after each one
    a calm gap holds one or two chaos actions (also each once before any repeats; kill -9 at most
    once every 10 minutes). The cut comes first, so even a short run sees one."""
    rng = random.Random(seed)
    b_ = budgets or Budgets.from_defaults()
    if start_hour is None:
        start_hour = rng.choice((6.0, 14.0, 17.0, 1.0))
    b = _Builder(tuple(paths), start_hour, b_)
    net_queue: list = []
    chaos_queue: list[str] = []
    removed: str | None = None
    last_kill = -1e9
    t = warmup
    end = seconds - 3.0   # the last few seconds are calm
    first_net = True
    while t < end - 8.0:
        if not net_queue:
            net_queue = list(NETWORK_EPISODES)
            rng.shuffle(net_queue)
            if first_net:   # a cut first, then chaos early: a 2-minute run sees the most
                net_queue.sort(key=lambda e: e[0] != "cut")
                first_net = False
        # the next episode that fits before the end (and, while a path is removed by reload, not
        # one that takes paths down in numbers)
        fits = [k for k, (n, _) in enumerate(net_queue) if t + MAX_LEN[n] <= end
                and not (removed is not None and n in ("double-cut", "all-down"))]
        if not fits:
            if t + MAX_LEN["spike"] > end:
                break
            name, fn = "spike", _ep_spike
        else:
            name, fn = net_queue.pop(fits[0])
        took = fn(b, rng, t)
        b.drift(t, min(t + took, end))
        t += took
        # calm gap with chaos
        gap = rng.uniform(6.0, 9.0)
        n_chaos = 2 if rng.random() < 0.5 else 1
        ct = t + 1.0
        for _ in range(n_chaos):
            if ct > end - 4.0:
                break
            if not chaos_queue:
                chaos_queue = list(CHAOS_ACTIONS)
                rng.shuffle(chaos_queue)
            action = chaos_queue.pop(0)
            if action == KILL and ct - last_kill < 600.0 and last_kill > 0:
                action = CTL_GARBAGE
            if action == RELOAD:
                if removed is None:
                    removed = rng.choice(b.paths[1:])
                    b.configured[removed] = False
                    b.emit(ct, removed, b_.reload, "reload-remove", excuse_loss=True)
                    b.chaos(ct, RELOAD, label=f"reload:remove {removed}",
                            paths=[p for p in b.paths if b.configured[p]])
                else:
                    b.configured[removed] = True
                    b.emit(ct, removed, b_.reload, "reload-add")
                    b.chaos(ct, RELOAD, label=f"reload:add {removed}", paths=list(b.paths))
                    removed = None
                ct += 3.0
            elif action == KILL:
                last_kill = ct
                b.chaos(ct, KILL, budget=b_.restart, label="kill", dead_s=1.0)
                ct += 4.0
            elif action == DEL_ROUTE:
                prefix = rng.choice(prefixes)
                b.chaos(ct, DEL_ROUTE, budget=b_.repair, label=f"del_route:{prefix}", excuse_loss=True,
                        prefix=prefix)
                ct += 2.0
            elif action == FLOOD:
                b.chaos(ct, FLOOD, label="flood", seconds=2.0)
                ct += 3.0
            else:
                b.chaos(ct, action, label=action)
                ct += 2.0
        gap = max(gap, ct - t)
        b.drift(t, min(t + gap, end))
        t += gap
    if removed is not None:   # the day ends with every path configured
        t = min(max([t] + [s.t + 0.25 for s in b.steps]), seconds - 1.5)
        b.configured[removed] = True
        b.emit(t, removed, b_.reload, "reload-add")
        b.chaos(t, RELOAD, label=f"reload:add {removed}", paths=list(b.paths))
    steps = sorted((s for s in b.steps if s.t < seconds - 1.0 or s.action == RELOAD), key=lambda s: s.t)
    return Script(seed=seed, seconds=seconds, paths=tuple(paths), prefixes=tuple(prefixes), initial=b.initial,
                  steps=tuple(steps), warmup=warmup, start_hour=start_hour)


def retime(script: Script, applied: list[tuple[int, float]]) -> Script:
    """The script as it was actually run: step i applied at time t (the runner is late sometimes)."""
    at = dict(applied)
    steps = tuple(replace(s, t=at.get(i, s.t)) for i, s in enumerate(script.steps))
    return replace(script, steps=tuple(sorted(steps, key=lambda s: s.t)))


# --------------------------------------------------------------------------------------------
# The oracle


def tier(state: dict[str, PathTruth]) -> set[str]:
    """The paths the policy should choose among: UP (configured, not down, loss below the
    degraded threshold); if none, the degraded ones; if none, every configured path (nothing
    works: any choice is as good, pathsteer keeps the least bad)."""
    live = {p for p, s in state.items() if s.configured and not s.down}
    up = {p for p in live if state[p].loss_rt_pct < DEGRADED_LOSS_PCT}
    if up:
        return up
    if live:
        return live
    return {p for p, s in state.items() if s.configured} or set(state)


def acceptable(state: dict[str, PathTruth], min_improvement: float = MIN_IMPROVEMENT,
               margin: float = MARGIN) -> set[str]:
    """Paths of the tier no other beats by min_improvement (+ margin): the best within hysteresis."""
    t = tier(state)
    best = min(state[p].settled_rtt_ms for p in t)
    return {p for p in t if (state[p].settled_rtt_ms - best) / state[p].settled_rtt_ms < min_improvement + margin}


def must_stay(state: dict[str, PathTruth], min_improvement: float = MIN_IMPROVEMENT,
              margin: float = MARGIN) -> set[str]:
    """Paths that nothing beats even by min_improvement − margin: leaving one is needless."""
    t = tier(state)
    best = min(state[p].settled_rtt_ms for p in t)
    return {p for p in t if (state[p].settled_rtt_ms - best) / state[p].settled_rtt_ms < min_improvement - margin}


class Oracle:
    """Every path's true state at every moment, and what the daemon may be doing then.

    While a step's budget runs, the daemon may not have noticed it yet: the *variants* of the
    state at t are the state itself, the state with each still-settling change undone (that
    path back to its truth just before the change) and with all of them undone at once. A path
    is eligible (accepted) at t if it is in the tier (the best within hysteresis) of some
    variant; a move off a path is needless if that path was a must-stay choice in every
    variant, i.e. nothing the script did, noticed or not, asked for it.
    """

    def __init__(self, script: Script, min_improvement: float = MIN_IMPROVEMENT, margin: float = MARGIN) -> None:
        self.script = script
        self.mi, self.margin = min_improvement, margin
        state = dict(script.initial)
        self.times: list[float] = [-1e9]
        self.states: list[dict[str, PathTruth]] = [dict(state)]
        self.sets: list[tuple[float, float, str, PathTruth]] = []   # (start, end of budget, path, truth before)
        for s in script.steps:
            if s.action != SET:
                continue
            if s.budget > 0:
                self.sets.append((s.t, s.t + s.budget, s.path, state[s.path]))
            state = dict(state)
            state[s.path] = s.truth
            if s.t == self.times[-1]:
                self.states[-1] = state
            else:
                self.times.append(s.t)
                self.states.append(state)
        self._set_starts = [x[0] for x in self.sets]
        self._max_budget = max((b - a for a, b, _, _ in self.sets), default=0.0)
        self.windows = sorted(((s.t, s.t + s.budget, s) for s in script.steps if s.budget > 0), key=lambda w: w[:2])
        self.loss_windows = [(a, b) for a, b, s in self.windows if s.excuse_loss]
        self._cache: dict = {}

    def index(self, t: float) -> int:
        return bisect.bisect_right(self.times, t) - 1

    def state(self, t: float) -> dict[str, PathTruth]:
        return self.states[self.index(t)]

    def active(self, t: float) -> tuple[int, ...]:
        """Indices (into self.sets) of the changes whose budget still runs at t."""
        hi = bisect.bisect_right(self._set_starts, t)
        lo = bisect.bisect_left(self._set_starts, t - self._max_budget)
        return tuple(k for k in range(lo, hi) if self.sets[k][0] <= t < self.sets[k][1])

    def _judged(self, t: float) -> tuple[set[str], set[str], set[str]]:
        i = self.index(t)
        act = self.active(t)
        key = (i, act)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        now = self.states[i]
        variants = [now]
        undone_all = dict(now)
        for k in sorted(act, reverse=True):     # latest first, so the earliest truth wins in undone_all
            _, _, path, before = self.sets[k]
            v = dict(now)
            v[path] = before
            variants.append(v)
            undone_all[path] = before
        if len(act) > 1:
            variants.append(undone_all)
        elig: set[str] = set()
        acc: set[str] = set()
        stay: set[str] | None = None
        for v in variants:
            elig |= tier(v)
            acc |= acceptable(v, self.mi, self.margin)
            ms = must_stay(v, self.mi, self.margin)
            stay = ms if stay is None else stay & ms
        out = (elig, acc, stay or set())
        if len(self._cache) > 200000:
            self._cache.clear()
        self._cache[key] = out
        return out

    def eligible(self, t: float) -> set[str]:
        """Oracle-eligible paths at t, with what was eligible before a change still settling."""
        return self._judged(t)[0]

    def accepted(self, t: float) -> set[str]:
        """Best within hysteresis at t, likewise."""
        return self._judged(t)[1]

    def needless_to_leave(self, path: str, t: float) -> bool:
        """Leaving ``path`` at t is explained by nothing in the script."""
        return path in self._judged(t)[2]

    def usable(self, t: float) -> bool:
        return any(v.usable for v in self.state(t).values())

    def loss_excused(self, t: float) -> bool:
        """Inside the budget of a cut, a removed path or a route deleted by hand, or nothing works."""
        if not self.usable(t):
            return True
        return any(a <= t < b for a, b in self.loss_windows)


# --------------------------------------------------------------------------------------------
# Observations → metrics


def step_function(samples: list[tuple[float, object]]) -> tuple[list[float], list[object]]:
    samples = sorted(samples, key=lambda x: x[0])
    return [s[0] for s in samples], [s[1] for s in samples]


def value_at(fn: tuple[list[float], list[object]], t: float, default=None):
    times, values = fn
    i = bisect.bisect_right(times, t) - 1
    return values[i] if i >= 0 else default


def carried_at(actual: list[tuple[float, float, dict[str, int]]], t: float,
               starts: list[float] | None = None) -> dict[str, int] | None:
    """Per-path packet counts of the counter interval holding t (None: no interval covers t);
    ``starts``: the intervals' start times, when the caller looks up many times."""
    i = bisect.bisect_right(starts if starts is not None else [a[0] for a in actual], t) - 1
    if i < 0 or not (actual[i][0] <= t < actual[i][1]):
        return None
    return actual[i][2]


@dataclass
class PrefixMetrics:
    prefix: str
    seconds: float
    eligible_pct: float
    best_pct: float
    eligible_claimed_pct: float    # from the daemon's claimed choice (status), not the packets
    best_claimed_pct: float
    agree_pct: float               # share of time packets went where the daemon said
    blackhole_s: float
    blackhole_excused_s: float
    pings: int
    lost: int
    lost_outside: int              # lost outside cuts and outside paths with configured loss
    moves: int
    needless: list = field(default_factory=list)
    misses: list = field(default_factory=list)     # [from, to, kind]: time off the eligible / best path

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        for k in ("eligible_pct", "best_pct", "eligible_claimed_pct", "best_claimed_pct", "agree_pct",
                  "blackhole_s", "blackhole_excused_s", "seconds"):
            d[k] = round(d[k], 3)
        return d


def prefix_metrics(oracle: Oracle, prefix: str, t0: float, t1: float,
                   claimed: list[tuple[float, str | None]],
                   actual: list[tuple[float, float, dict[str, int]]],
                   pings: list[tuple[float, float | None]],
                   moves: list[tuple[float, str, str]],
                   dt: float = 0.1, ping_interval: float = 0.02, min_run_s: float = 0.3) -> PrefixMetrics:
    """Metrics of one prefix between t0 and t1 (seconds of the run).

    ``claimed``: (t, via) from status polls; ``actual``: (from, to, {path: packets}) of this
    prefix's client packets counted in each path namespace; ``pings``: (send time, RTT ms or
    None when lost); ``moves``: (t, from, to) from the daemon's events.

    Time shares are taken on a grid of ``dt``; an actual interval whose packets went over
    several paths splits its weight between them; an interval without packets (all lost, or no
    counter sample) is judged by the daemon's claimed choice (lost packets are blackhole time). Blackhole: runs of consecutive lost pings at least
    ``min_run_s`` long, the part of them inside no cut budget while some path was usable.
    """
    cfn = step_function(claimed)
    actual = sorted(actual, key=lambda a: a[0])
    starts = [a[0] for a in actual]
    n = el = be = el_c = be_c = agree = 0.0
    misses: list[list] = []     # [from, to, "not-eligible" | "not-best"], merged

    def miss(t: float, kind: str) -> None:
        if misses and misses[-1][2] == kind and t - misses[-1][1] <= dt * 1.5:
            misses[-1][1] = round(t + dt, 2)
        else:
            misses.append([round(t, 2), round(t + dt, 2), kind])

    t = t0
    while t < t1:
        elig, acc = oracle.eligible(t), oracle.accepted(t)
        usable = oracle.usable(t)
        via = value_at(cfn, t)
        n += 1
        if via in elig or not usable:
            el_c += 1
        if via in acc or not usable:
            be_c += 1
        carried = carried_at(actual, t, starts)
        if not carried:   # no packets (lost: blackhole time is counted apart) or no counter sample
            carried = {via: 1} if via else {}
        total = sum(carried.values())
        if total == 0:
            if not usable:
                el += 1
                be += 1
        else:
            e = sum(v for p, v in carried.items() if p in elig) / total
            b = sum(v for p, v in carried.items() if p in acc) / total
            el += e
            be += b
            agree += carried.get(via, 0) / total
            if usable and e < 0.5:
                miss(t, "not-eligible")
            elif usable and b < 0.5:
                miss(t, "not-best")
        t += dt
    n = max(n, 1)
    # losses
    in_range = [(s, r) for s, r in pings if t0 <= s < t1]
    lost = [s for s, r in in_range if r is None]
    lost_outside = 0
    for s in lost:
        if oracle.loss_excused(s):
            continue
        carried = carried_at(actual, s, starts) or {}
        st = oracle.state(s)
        if any(st[p].loss_pct > 0 for p in carried if p in st):
            continue
        lost_outside += 1
    bh = bh_exc = 0.0
    run: list[float] = []
    for s, r in in_range + [(t1 + 1, 0.0)]:
        if r is None:
            run.append(s)
            continue
        if run and run[-1] - run[0] + ping_interval >= min_run_s:
            x = run[0]
            while x < run[-1] + ping_interval:
                if oracle.loss_excused(x):
                    bh_exc += dt / 2
                else:
                    bh += dt / 2
                x += dt / 2
        run = []
    needless = []
    mv = [(t, a, b) for t, a, b in moves if t0 <= t < t1 and a and b and a != b]
    for t, a, b in mv:
        if oracle.needless_to_leave(a, t):
            needless.append({"t": round(t, 2), "from": a, "to": b})
    return PrefixMetrics(prefix=prefix, seconds=t1 - t0, eligible_pct=100 * el / n, best_pct=100 * be / n,
                         eligible_claimed_pct=100 * el_c / n, best_claimed_pct=100 * be_c / n,
                         agree_pct=100 * agree / n, blackhole_s=bh, blackhole_excused_s=bh_exc,
                         pings=len(in_range), lost=len(lost), lost_outside=lost_outside, moves=len(mv),
                         needless=needless, misses=misses[:500])


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value), per hour of real time; None below 3 samples."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den == 0:
        return None
    return 3600 * sum((t - mt) * (v - mv) for t, v in samples) / den


def resource_summary(samples: list[dict], warmup_s: float = 60.0) -> dict:
    """``samples``: {t, pid, rss_kb, fds, cpu_s}. Per daemon instance (pid), after its first
    ``warmup_s`` (or its first quarter, if shorter lived): RSS and fd slopes; the longest-lived
    instance is the verdict. CPU: total CPU seconds over total seconds sampled."""
    by_pid: dict[int, list[dict]] = {}
    for s in samples:
        by_pid.setdefault(s["pid"], []).append(s)
    instances = []
    cpu = secs = 0.0
    for pid, ss in by_pid.items():
        ss.sort(key=lambda s: s["t"])
        life = ss[-1]["t"] - ss[0]["t"]
        cpu += ss[-1]["cpu_s"] - ss[0]["cpu_s"]
        secs += life
        cut = ss[0]["t"] + min(warmup_s, life / 4)
        post = [s for s in ss if s["t"] >= cut]
        instances.append({
            "pid": pid, "seconds": round(life, 1),
            "rss_mib_first": round(post[0]["rss_kb"] / 1024, 1) if post else None,
            "rss_mib_last": round(ss[-1]["rss_kb"] / 1024, 1),
            "rss_mib_max": round(max(s["rss_kb"] for s in ss) / 1024, 1),
            "rss_mib_per_h": _r(slope_per_hour([(s["t"], s["rss_kb"] / 1024) for s in post])),
            "fds_first": post[0]["fds"] if post else None, "fds_last": ss[-1]["fds"],
            "fds_max": max(s["fds"] for s in ss),
            "fds_per_h": _r(slope_per_hour([(s["t"], s["fds"]) for s in post])),
        })
    instances.sort(key=lambda i: -i["seconds"])
    return {"instances": instances, "longest": instances[0] if instances else None,
            "cpu_pct": round(100 * cpu / secs, 2) if secs else None}


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


# --------------------------------------------------------------------------------------------
# Parsing what the runner collected


def parse_ping_lines(lines: list[str], interval: float = 0.02) -> list[tuple[float, float | None]]:
    """``ping -n -D -O`` output → (send time, RTT ms or None) per sequence number.

    icmp_seq is 16 bits and wraps after 65536 packets (22 minutes at 50/s): unwrapped here.
    Send times: reply time − RTT; for lost packets interpolated from the neighbours' send times.
    """
    import re
    reply = re.compile(r"^\[(?P<ts>[0-9.]+)\] \d+ bytes from .*icmp_seq=(?P<seq>\d+).* time=(?P<rtt>[0-9.]+) ms")
    noans = re.compile(r"^\[(?P<ts>[0-9.]+)\] no answer yet for icmp_seq=(?P<seq>\d+)")
    sent: dict[int, float | None] = {}
    rtts: dict[int, float] = {}
    hint: dict[int, float] = {}
    wrap = 0
    last = None

    def unwrap(seq: int) -> int:
        nonlocal wrap, last
        s = seq + wrap
        if last is not None and s < last - 30000:
            wrap += 65536
            s += 65536
        elif last is not None and s > last + 30000:   # a late line from before a wrap
            s -= 65536
        last = max(last or s, s)
        return s

    for line in lines:
        m = reply.match(line)
        if m:
            s = unwrap(int(m.group("seq")))
            rtt = float(m.group("rtt"))
            rtts[s] = rtt
            sent[s] = float(m.group("ts")) - rtt / 1e3
            continue
        m = noans.match(line)
        if m:
            s = unwrap(int(m.group("seq")))
            hint.setdefault(s, float(m.group("ts")) - interval)
    if not sent and not hint:
        return []
    top = max(list(sent) + list(hint))
    low = min(list(sent) + list(hint))
    known = sorted((s, t) for s, t in sent.items() if t is not None)
    ks = [k for k, _ in known]
    out = []
    for s in range(low, top + 1):
        if s in sent:
            out.append((sent[s], rtts[s]))
            continue
        i = bisect.bisect_left(ks, s)
        if 0 < i < len(ks):
            (s0, t0), (s1, t1) = known[i - 1], known[i]
            ts = t0 + (t1 - t0) * (s - s0) / (s1 - s0)
        elif s in hint:
            ts = hint[s]
        elif known:
            s0, t0 = known[-1] if i >= len(ks) else known[0]
            ts = t0 + (s - s0) * interval
        else:
            continue
        out.append((ts, None))
    return out


def counter_intervals(samples: list[tuple[float, dict[str, int]]]) -> list[tuple[float, float, dict[str, int]]]:
    """Cumulative per-path counters of one prefix, (t, {path: packets}) sorted by t → intervals
    (from, to, {path: packets in between}). A counter that went backwards (table recreated)
    counts from zero."""
    samples = sorted(samples, key=lambda x: x[0])
    out = []
    for (ta, a), (tb, b) in zip(samples, samples[1:]):
        d = {}
        for p, v in b.items():
            prev = a.get(p, 0)
            d[p] = v - prev if v >= prev else v
        out.append((ta, tb, {p: v for p, v in d.items() if v > 0}))
    return out
