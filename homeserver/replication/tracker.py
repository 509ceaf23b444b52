"""The global stream as several processes see it (docs/scale-out.md).

Positions come from one PostgreSQL sequence, whoever takes them. The
processes that take them (the stream writers: main, and the event writers
of ``stream_writers.events``) each publish their own *frontier*: the
position at or below which nothing of theirs is in flight any more, and
above which everything they take later lies. A process's "persisted up to"
is the minimum of the writers' frontiers it has heard (Synapse's
``MultiWriterIdGenerator``): every write at or below it has committed, and
its record has reached this process, because each writer publishes a
commit's record before the frontier that covers it.

A writer with nothing in flight may claim as its frontier any position
already handed out (it heard of it, so whatever it takes next lies above):
it moves its frontier up to the highest position it has heard of whenever
it is idle, so an idle writer does not hold the others back.

- ``ReaderStreamTracker``: a sync reader, which takes no position (it
  fails loudly if something tries: a forgotten write path must not break
  the ordering promise);
- ``WriterStreamTracker``: main or an event writer, with event writers
  configured: its own positions in flight (``StreamTracker``) and the
  frontiers of the others.

A token another process handed out may run ahead of what this process has
heard: a read from it waits (``wait_for``).
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Txn
from homeserver.storage.streams import IN_FLIGHT_WAIT_S, StreamTracker

# how long a request carrying a token another process handed out waits for
# this process to reach it (replication lags by milliseconds normally)
CATCH_UP_TIMEOUT_S = 10.0


class ReaderStreamTracker(StreamTracker):
    """Positions as the stream writers publish them."""

    def __init__(self, clock: object, allocated: Callable[[], Awaitable[int]],
                 writers: Sequence[str] = ("main",)) -> None:
        super().__init__()
        self._clock = clock
        # the highest position handed out, read from the database
        self._allocated = allocated
        self._frontiers = dict.fromkeys(writers, 0)

    def allocate(self, txn: Txn) -> int:
        raise RuntimeError("a reader process writes nothing on the global stream")

    def allocate_many(self, txn: Txn, count: int) -> list[int]:
        raise RuntimeError("a reader process writes nothing on the global stream")

    def saw(self, position: int) -> None:
        """A record at ``position`` arrived: it exists (tokens up to it are ours)."""
        self._max = max(self._max, position)

    def advance(self, upto: int, writer: str = "main") -> bool:
        """``writer``'s frontier is ``upto``; True if our "persisted up to" moved."""
        if writer not in self._frontiers:
            return False
        self._frontiers[writer] = max(self._frontiers[writer], upto)
        self._max = max(self._max, upto)
        new = min(self._frontiers.values())
        if new <= self._persisted:
            return False
        self._persisted = new
        self._wake_readers(new)
        return True

    def frontiers(self) -> dict[str, int]:
        return dict(self._frontiers)

    async def wait_for(self, position: int) -> None:
        await _wait_for(self, self._allocated, self._clock, position)

    async def writes_before_ended(self, clock: Any,
                                  timeout_s: float = IN_FLIGHT_WAIT_S) -> None:
        await _writes_before_ended(self, self._allocated, clock, timeout_s)


class WriterStreamTracker(StreamTracker):
    """A stream writer's positions with other writers about (module docstring).

    ``persisted_upto`` is the minimum of every writer's frontier, this
    process's own included; ``on_frontier(upto)`` hears each advance of this
    process's own frontier (the publisher says it on Redis).
    """

    def __init__(self, name: str, writers: Sequence[str], clock: Any,
                 allocated: Callable[[], Awaitable[int]]) -> None:
        super().__init__()
        self.name = name
        self._clock = clock
        self._allocated = allocated
        self._frontiers = dict.fromkeys(writers, 0)
        self._frontiers[name] = 0
        self._local = 0
        self.on_frontier: Callable[[int], None] | None = None

    @property
    def local_frontier(self) -> int:
        return self._local

    def frontiers(self) -> dict[str, int]:
        return dict(self._frontiers)

    def reset(self, current: int) -> None:
        """Start from ``current``, the highest position in the database."""
        with self._lock:
            self._max = max(self._max, current)
            moved = self._idle_bump_locked()
        self._after(moved)

    def finished(self, positions: list[int]) -> int | None:
        with self._lock:
            self._done.update(positions)
            while self._in_flight and self._in_flight[0] in self._done:
                self._done.discard(heapq.heappop(self._in_flight))
            if self._in_flight:
                local = self._in_flight[0] - 1
                moved = local > self._local
                if moved:
                    self._local = local
            else:
                moved = self._idle_bump_locked()
        return self._after(moved)

    def saw(self, position: int) -> None:
        """Another writer's record at ``position`` arrived."""
        with self._lock:
            self._max = max(self._max, position)

    def advance(self, upto: int, writer: str) -> bool:
        """``writer``'s frontier is ``upto``; True if our "persisted up to" moved."""
        if writer == self.name or writer not in self._frontiers:
            return False
        self._frontiers[writer] = max(self._frontiers[writer], upto)
        with self._lock:
            self._max = max(self._max, upto)
            moved = self._idle_bump_locked()
        before = self._persisted
        self._after(moved)
        return self._persisted > before

    def _idle_bump_locked(self) -> bool:
        """With nothing of ours in flight, our frontier may be anything
        handed out already: whatever we take next lies above it."""
        if self._in_flight or self._max <= self._local:
            return False
        self._local = self._max
        return True

    def _after(self, moved: bool) -> int | None:
        """Our frontier moved (or another's did): the new minimum, if it advanced."""
        self._frontiers[self.name] = self._local
        if moved and self.on_frontier is not None:
            self.on_frontier(self._local)
        new = min(self._frontiers.values())
        if new <= self._persisted:
            return None
        self._persisted = new
        self._wake_readers(new)
        return new

    async def wait_for(self, position: int) -> None:
        await _wait_for(self, self._allocated, self._clock, position)

    async def writes_before_ended(self, clock: Any,
                                  timeout_s: float = IN_FLIGHT_WAIT_S) -> None:
        await _writes_before_ended(self, self._allocated, clock, timeout_s)


async def _wait_for(tracker: StreamTracker, allocated: Callable[[], Awaitable[int]],
                    clock: Any, position: int) -> None:
    """``wait_for`` with other processes writing: a token's position may be
    one this process has not heard of yet; one never handed out is not
    waited for (the token is refused at once)."""
    if position <= tracker.persisted_upto:
        return
    if position > tracker.max_allocated and position > await allocated():
        return
    await tracker._wait_persisted(position, clock, CATCH_UP_TIMEOUT_S)
    if position > tracker.persisted_upto:
        # answering from here would go back behind the client's token
        raise MatrixError(503, Codes.UNKNOWN,
                          "This server process is catching up; retry in a moment")


async def _writes_before_ended(tracker: StreamTracker, allocated: Callable[[], Awaitable[int]],
                               clock: Any, timeout_s: float) -> None:
    """``StreamTracker.writes_before_ended`` with other processes writing:
    every position the database has handed out so far, by any writer, not
    only those this process has heard of. A client's send answered by one
    process is then in the /messages it asks another for next (a record
    still on its way over Redis is waited for, as a write in flight here)."""
    handed_out = max(tracker.max_allocated, await allocated())
    if handed_out > tracker.persisted_upto:
        await tracker._wait_persisted(handed_out, clock, timeout_s)
