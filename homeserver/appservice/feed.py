"""The events the service queues have yet to look at, kept in memory.

A queue that has caught up with the stream would otherwise read, for every
transaction, the event IDs after its position and then the events: two
database round trips, each waiting its turn in the pool behind the sends
that made the events. The write hub hands every committed transaction's
timeline events to ``add`` (database thread, right after the commit, before
the stream tracker can count the positions persisted), so by the time a
queue sees "persisted up to P", every event at or below P above ``low`` is
here.

- ``low``: below this the feed is incomplete (nothing is known before the
  scheduler starts; entries dropped to bound memory raise it). A queue whose
  position is below it reads the database (``read`` answers None).
- Entries at or below every queue's position are dropped (``trim``): no
  queue needs them again (a retried transaction keeps its event IDs and
  reads the events by ID).

The entries are the same set the database read finds: every event given a
stream position (timeline events, and out-of-band invites to our users);
backfilled events take positions below everyone's and never show.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.events.model import Event

# events held; past this the oldest go (a service down for long catches up
# from the database)
MAX_ENTRIES = 20_000
# "nothing known yet": above any position
UNKNOWN = 2**62


class EventFeed:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.low = UNKNOWN
        # the highest position dropped for space (before ``start`` too)
        self._dropped = 0
        self._positions: list[int] = []  # ascending, parallel to _events
        self._events: list["Event"] = []

    def add(self, events: Sequence[tuple["Event", int]]) -> None:
        """Database thread: a transaction committed these (event, position)s."""
        if not events:
            return
        with self._lock:
            for event, pos in events:
                if pos <= self.low and self.low != UNKNOWN:
                    continue
                if not self._positions or pos > self._positions[-1]:
                    self._positions.append(pos)
                    self._events.append(event)
                else:
                    i = bisect.bisect_left(self._positions, pos)
                    if i < len(self._positions) and self._positions[i] == pos:
                        continue
                    self._positions.insert(i, pos)
                    self._events.insert(i, event)
            excess = len(self._positions) - self.max_entries
            if excess > 0:
                self._dropped = max(self._dropped, self._positions[excess - 1])
                self._drop_upto(self._positions[excess - 1])

    def start(self, low: int) -> None:
        """Complete from ``low`` on: the stream's persisted position when the
        scheduler starts. Whatever committed above it was heard already or
        will be (the hub is subscribed before the server writes events)."""
        with self._lock:
            self.low = max(low, self._dropped)
            i = bisect.bisect_right(self._positions, low)
            del self._positions[:i]
            del self._events[:i]

    def read(self, after: int, upto: int, limit: int) -> list[tuple[int, "Event"]] | None:
        """Up to ``limit`` (position, event) in (after, upto], in stream order;
        None when the feed does not hold all of them (``after`` below ``low``)."""
        with self._lock:
            if after < self.low:
                return None
            i = bisect.bisect_right(self._positions, after)
            j = bisect.bisect_right(self._positions, upto, lo=i)
            j = min(j, i + limit)
            return list(zip(self._positions[i:j], self._events[i:j], strict=True))

    def trim(self, upto: int) -> None:
        """Every queue is at or past ``upto``: drop what lies there."""
        with self._lock:
            if self.low == UNKNOWN:
                return
            self._drop_upto(upto)

    def __len__(self) -> int:
        return len(self._positions)

    def _drop_upto(self, upto: int) -> None:
        i = bisect.bisect_right(self._positions, upto)
        del self._positions[:i]
        del self._events[:i]
        if self.low != UNKNOWN and upto > self.low:
            self.low = upto
