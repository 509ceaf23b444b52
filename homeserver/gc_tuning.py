"""The garbage collector, tuned for a server holding many waiting requests.

CPython's collector scans its oldest generation whenever the objects that
survived younger collections grow by a quarter of it. A server with 1,000
long-polls (or WebSockets) in flight has a steady stream of such survivors,
each request's objects living for its wait: in the fanout bench (1,000
receivers of one room at 5 messages/s) the process ran a full collection
about twice a second, each scanning some 200,000 objects for 100-150 ms,
about a sixth of its CPU.

So, once the server has started (``tune``):

- what start-up allocated (modules, classes, the configuration, caches as
  first filled) is collected once and then frozen (``gc.freeze``): it lives
  as long as the process and no collection scans it again;
- the young generation is collected every ``GEN0_THRESHOLD`` allocations
  (CPython's default is 700): fewer, slightly bigger collections;
- the oldest generation is no longer collected by the allocation counters
  but by a timer: at most once per ``FULL_INTERVAL_S``, and only when
  younger collections happened since (an idle server skips it). Garbage in
  reference cycles waits that long at most; everything else is freed at
  once by reference counting, as always.

Synapse does the same in spirit (``synapse/metrics/_gc.py``: the automatic
collector off, generations collected on a timer with a minimum interval).
The collection counts and times stay visible in ``python_gc_*`` metrics.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

logger = logging.getLogger(__name__)

GEN0_THRESHOLD = 5_000
GEN1_THRESHOLD = 20
# gen-1 collections before an automatic full one: never, in practice
GEN2_THRESHOLD_OFF = 1_000_000
FULL_INTERVAL_S = 60.0


class GcTuning:
    """Holds the timer of the periodic full collection (``stop`` ends it)."""

    def __init__(self, clock: Any) -> None:
        from twisted.internet import task

        self.full_collections = 0
        self._loop = task.LoopingCall(self.collect_full)
        self._loop.clock = clock

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD_OFF)
        self._loop.start(FULL_INTERVAL_S, now=False)

    def collect_full(self) -> None:
        """A full collection, if younger ones ran since the last (else
        nothing new can have reached the oldest generation)."""
        if gc.get_count()[2] == 0:
            return
        gc.collect(2)
        self.full_collections += 1

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()


def tune(clock: Any) -> GcTuning:
    """Tune the collector for this process (call once the server is up)."""
    tuning = GcTuning(clock)
    tuning.start()
    return tuning
