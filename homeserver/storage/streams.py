"""The global stream: one monotonic position for everything persisted.

Every write a client may later need to hear about through /sync (events,
receipts, account data, to-device messages, presence, device-list changes)
takes its position from this one stream, inside the transaction that stores
it, so "is there anything new for this user since position X?" is a single
comparison per table.

On PostgreSQL the position comes from the ``global_stream_seq`` sequence:
sequences live outside transactions, so concurrent writers never conflict on
it (a rolled-back writer leaves a gap, which is harmless). On SQLite it is a
counter row in ``stream_positions``; SQLite has one writer at a time, so the
row serialises nothing that is not serialised already.

The "persisted up to" rule. On PostgreSQL, position 6 can commit while 5 is
still in flight; a reader that read "everything up to 6" then would skip 5
for ever. So the ``StreamTracker`` of each Database records every position
handed out (allocation and registration happen under one lock, so the set of
in-flight positions is never missing an allocated one) until the
transaction holding it commits or rolls back. ``persisted_upto`` is the
highest position below which nothing is in flight: /sync reads up to it, and
the notifier wakes readers only once it has passed the write they wait for.
"""

from __future__ import annotations

import heapq
import threading
from typing import Any

from twisted.internet import defer

from homeserver.storage.database import Database, Txn

# how long a read waits for the writes in flight before it to end
IN_FLIGHT_WAIT_S = 2.0


class StreamTracker:
    """Positions handed out and not yet committed (thread-safe).

    Positions are allocated on database threads (``next_stream_id_txn``);
    ``finished`` runs on the reactor thread; who hears that the position
    advanced is the Database's business (its write hub, storage/hub.py).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: list[int] = []  # a heap
        self._done: set[int] = set()  # finished while a lower one is in flight
        self._max = 0
        self._persisted = 0
        # (position, Deferred) of reads waiting for persisted_upto to reach it
        # (reactor thread only)
        self._read_waiters: list[tuple[int, defer.Deferred[None]]] = []

    def reset(self, current: int) -> None:
        """Start from ``current``, the highest position in the database."""
        with self._lock:
            self._max = max(self._max, current)
            if not self._in_flight:
                self._persisted = self._max

    @property
    def persisted_upto(self) -> int:
        return self._persisted

    @property
    def max_allocated(self) -> int:
        return self._max

    def allocate(self, txn: Txn) -> int:
        with self._lock:
            pos = _allocate_txn(txn)
            heapq.heappush(self._in_flight, pos)
            self._max = max(self._max, pos)
        txn.stream_ids.append(pos)
        return pos

    def allocate_many(self, txn: Txn, count: int) -> list[int]:
        with self._lock:
            positions = _allocate_many_txn(txn, count)
            for pos in positions:
                heapq.heappush(self._in_flight, pos)
            self._max = max(self._max, *positions)
        txn.stream_ids.extend(positions)
        return positions

    async def wait_for(self, position: int) -> None:
        """Return once ``persisted_upto`` has reached ``position``, or as soon
        as waiting cannot get it there. A process that allocates the
        positions itself has nothing to wait for; a reader process waits for
        replication (replication/tracker.py)."""
        return None

    def finished(self, positions: list[int]) -> int | None:
        """The transaction holding ``positions`` committed or rolled back;
        returns the new ``persisted_upto`` if it advanced, else None."""
        with self._lock:
            self._done.update(positions)
            while self._in_flight and self._in_flight[0] in self._done:
                self._done.discard(heapq.heappop(self._in_flight))
            new = self._in_flight[0] - 1 if self._in_flight else self._max
            advanced = new > self._persisted
            if advanced:
                self._persisted = new
        if advanced:
            self._wake_readers(new)
        return new if advanced else None

    async def writes_before_ended(self, clock: Any,
                                  timeout_s: float = IN_FLIGHT_WAIT_S) -> None:
        """Return once every write holding a position handed out before this
        call has ended (committed or rolled back), or after ``timeout_s``.

        A read "from now" reads up to ``persisted_upto``; one write in flight
        (presence, a device list) holds that below the writes after it, so a
        client's own message, sent and answered, could be missing from the
        /messages it asks for next. Waiting for the positions handed out so
        far first gives the client what it wrote (read-your-writes)."""
        await self.known_writes_ended(clock, timeout_s)

    async def known_writes_ended(self, clock: Any,
                                 timeout_s: float = IN_FLIGHT_WAIT_S) -> None:
        """``writes_before_ended`` for the positions this process knows were
        handed out (no database read, even with several processes): what a
        /sync waits for before it reads "from now"."""
        if self._max > self._persisted:
            await self._wait_persisted(self._max, clock, timeout_s)

    async def _wait_persisted(self, position: int, clock: Any, timeout_s: float) -> None:
        """Until ``persisted_upto`` reaches ``position`` or ``timeout_s`` passes."""
        d: defer.Deferred[None] = defer.Deferred()
        entry = (position, d)
        self._read_waiters.append(entry)
        timer = clock.callLater(timeout_s, lambda: None if d.called else d.callback(None))
        try:
            await d
        finally:
            if timer.active():
                timer.cancel()
            if entry in self._read_waiters:
                self._read_waiters.remove(entry)

    def _wake_readers(self, upto: int) -> None:
        if not self._read_waiters:
            return
        waiting, self._read_waiters = self._read_waiters, []
        for position, d in waiting:
            if position <= upto:
                if not d.called:
                    d.callback(None)
            else:
                self._read_waiters.append((position, d))


def _allocate_txn(txn: Txn) -> int:
    if txn.engine == "postgres":
        value = txn.select_value("SELECT nextval('global_stream_seq')")
    else:
        value = txn.select_value(
            "UPDATE stream_positions SET position = position + 1"
            " WHERE stream_name = 'global' RETURNING position")
    if value is None:  # pragma: no cover - migration 0002 creates both
        raise RuntimeError("global stream is missing; is the schema migrated?")
    return int(value)


# Who a write at a stream position may concern (``Txn.scopes``), for the
# sync fast path (sync/recent.py): (room ID, user ID) means the room's members
# and that user; (ONLY_USER, user ID) that user alone; (PRESENCE, user ID) the
# users who share a room with them, through the presence section only;
# (TO_DEVICE + device ID, user ID) a to-device message for that device.
ONLY_USER = ""
PRESENCE = "presence"
TO_DEVICE = "to_device:"


def _allocate_many_txn(txn: Txn, count: int) -> list[int]:
    if txn.engine == "postgres":
        return sorted(int(r[0]) for r in txn.select_all(
            "SELECT nextval('global_stream_seq') FROM generate_series(1, ?)", (count,)))
    last = int(txn.select_value(
        "UPDATE stream_positions SET position = position + ?"
        " WHERE stream_name = 'global' RETURNING position", (count,)))
    return list(range(last - count + 1, last + 1))


def next_stream_ids_txn(txn: Txn, count: int) -> list[int]:
    """Allocate ``count`` global stream positions, ascending, inside ``txn``."""
    tracker = txn.stream_tracker
    if tracker is None:
        return _allocate_many_txn(txn, count)
    return list(tracker.allocate_many(txn, count))


def next_stream_id_txn(txn: Txn) -> int:
    """Allocate the next global stream position, inside ``txn``."""
    tracker = txn.stream_tracker
    if tracker is None:
        return _allocate_txn(txn)
    return tracker.allocate(txn)


def current_stream_id_txn(txn: Txn) -> int:
    """The highest global stream position handed out so far (0 before any)."""
    if txn.engine == "postgres":
        value = txn.select_value(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM global_stream_seq")
    else:
        value = txn.select_value(
            "SELECT position FROM stream_positions WHERE stream_name = 'global'")
    return int(value or 0)


async def current_stream_id(db: Database) -> int:
    return await db.run_interaction("current_stream_id", current_stream_id_txn)
