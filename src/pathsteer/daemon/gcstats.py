"""How long the cyclic garbage collector stops the daemon: every collection timed, per
generation, for ``pathsteer_gc_pause_seconds``.

A collection holds the GIL throughout, so it stalls the loop (probes, the API) and the decide
thread alike; at 10k prefixes a full one walked millions of objects for a few hundred
milliseconds (hence `gc.freeze` once the daemon is ready, and the thresholds below). The
callbacks cost two clock reads a collection.
"""

from __future__ import annotations

import gc
import time

from pathsteer.telemetry.histogram import DURATION_BUCKETS_S, RttHistogram

# Pauses down to 0.1 ms matter here (a young collection is ~0.1-1 ms): finer low buckets.
GC_BUCKETS_S: tuple[float, ...] = (0.0001, 0.00025, *DURATION_BUCKETS_S)


class GcPauses:
    """Installed with `install`, removed with `remove`; `hists[gen]` counts each pause."""

    def __init__(self) -> None:
        self.hists = {gen: RttHistogram(GC_BUCKETS_S) for gen in (0, 1, 2)}
        self.longest_s = 0.0
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        took = time.perf_counter() - self._t0
        hist = self.hists.get(info.get("generation", 2))
        if hist is not None:
            hist.observe(took)
        if took > self.longest_s:
            self.longest_s = took

    def install(self) -> GcPauses:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
