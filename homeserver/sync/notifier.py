"""The notifier: wakes waiting /sync requests and WebSockets, per user.

Every waiting reader waits on its user's ``UserStream``: a counter and the
Deferreds of the readers asleep on it. A write that a user must hear about
bumps that user's counter and wakes their readers; nobody polls the
database. The reader's protocol (``SyncHandler``) is race-free:

1. read ``counter(user)``;
2. compute the sync response up to the current token;
3. if it is empty, ``wait(user, counter_read_in_1, timeout)``: a write that
   landed during 2 has already bumped the counter, so the wait returns at
   once and the reader computes again.

Who hears about what:

- an event in a room: the room's local joined members (kept in a small
  per-room cache, dropped at each membership change of the room), plus the
  target of a membership event (an invitee, a user who left);
- receipts and typing in a room: the room's local joined members;
- a room's events, receipts and typing also wake whoever follows the room
  without being in it (``add_peeker``: the old ``/events?room_id=`` of a
  ``world_readable`` room);
- account data, to-device messages: their user;
- presence: the users who share a room with the user (the caller says who);
- a device-list change: the user and the users who share a room with them.

Writes on the global stream are announced only once the stream's "persisted
up to" position has passed them (``storage/streams.py``): a reader woken
earlier would read up to a lower position and miss the write, then sleep.

A wake bumps the counters at once but fires the waiters on a later reactor
turn (``_flush``): the writer that announced the write (a send into a room
of 1,000 members) answers its own request and goes on with its next batch
instead of building 1,000 sync responses first. Under load (a flush that
fired ``COALESCE_MIN_WAITERS`` or more) the next flush waits for the end of
a short tick (``COALESCE_TICK_S``), so a reader woken by several writes in
a row gets one response for all of them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.streams import StreamTracker

logger = logging.getLogger(__name__)

# the "room" of a pending wake that is for a presence change
PRESENCE_WAKE = "presence"
# Rooms whose local members are cached for waking (an entry is a frozenset).
ROOM_MEMBER_CACHE_SIZE = 50_000
# A flush that fired this many waiters or more makes the next one wait for the
# end of its tick: under load each reader gets one response per tick, not one
# per write (a message into a room of 1,000 members at 20 messages/s would
# otherwise cost 20,000 responses a second).
COALESCE_MIN_WAITERS = 200
COALESCE_TICK_S = 0.05


class UserStream:
    __slots__ = ("counter", "waiters", "deaf_to_presence")

    def __init__(self) -> None:
        self.counter = 0
        self.waiters: list[defer.Deferred[bool]] = []
        # waiters whose filter drops presence: a presence change does not wake them
        self.deaf_to_presence: set[defer.Deferred[bool]] = set()


class Notifier:
    """The per-user wake-ups; the stream tracker only to know how far the
    stream is persisted (the write hub tells it when that moves)."""

    def __init__(self, ctx: "ServerContext", tracker: "StreamTracker",
                 rooms: "RoomStore") -> None:
        self.ctx = ctx
        self.tracker = tracker
        self.rooms = rooms
        self._streams: dict[str, UserStream] = {}
        self._room_members: dict[str, frozenset[str]] = {}
        # bumped by every membership change: a member set loaded across one
        # may be stale and is not cached
        self._member_generation = 0
        # (stream position, sequence, room ID or None, users): announced once
        # the stream is persisted up to the position
        self._pending: list[tuple[int, int, str | None, tuple[str, ...]]] = []
        self._seq = itertools.count()
        # room ID -> user ID -> how many of their requests follow the room
        self._peekers: dict[str, dict[str, int]] = {}
        # waiters woken (their counters bumped) but not fired yet, and the
        # call that fires them (``_flush``)
        self._woken: list[defer.Deferred[bool]] = []
        self._flush_call: Any = None
        self._last_flush_at = 0.0
        self._last_flush_size = 0

    # -- readers ----------------------------------------------------------

    def waiting(self) -> int:
        """Requests waiting for something to happen (long-polls; the metrics)."""
        return sum(len(stream.waiters) for stream in self._streams.values())

    def counter(self, user_id: str) -> int:
        stream = self._streams.get(user_id)
        return stream.counter if stream is not None else 0

    def wait(self, user_id: str, after: int, timeout_ms: int, *,
             presence: bool = True) -> "defer.Deferred[bool]":
        """Fires True once ``user_id``'s counter passes ``after``, False at the
        timeout. Cancelling it (a client that went away) forgets the waiter.
        ``presence`` False: a presence change does not wake it (its filter
        drops presence; in a big room presence churn would wake it for
        nothing)."""
        stream = self._streams.get(user_id)
        if stream is None:
            stream = self._streams[user_id] = UserStream()
        if stream.counter > after:
            return defer.succeed(True)
        if timeout_ms <= 0:
            return defer.succeed(False)

        def cancel(d: defer.Deferred[bool]) -> None:
            self._forget(user_id, d)
            if timer.active():
                timer.cancel()

        d: defer.Deferred[bool] = defer.Deferred(cancel)
        stream.waiters.append(d)
        if not presence:
            stream.deaf_to_presence.add(d)

        def timed_out() -> None:
            self._forget(user_id, d)
            if not d.called:
                d.callback(False)

        timer = self.ctx.clock.callLater(timeout_ms / 1000, timed_out)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(stop_timer)
        return d

    def _forget(self, user_id: str, d: "defer.Deferred[bool]") -> None:
        stream = self._streams.get(user_id)
        if stream is None:
            return
        try:
            stream.waiters.remove(d)
        except ValueError:
            pass
        stream.deaf_to_presence.discard(d)
        if not stream.waiters and stream.counter == 0:
            del self._streams[user_id]

    def add_peeker(self, room_id: str, user_id: str) -> None:
        """``user_id`` follows ``room_id`` without being in it, until
        ``remove_peeker``: the room's wake-ups wake them too."""
        users = self._peekers.setdefault(room_id, {})
        users[user_id] = users.get(user_id, 0) + 1

    def remove_peeker(self, room_id: str, user_id: str) -> None:
        users = self._peekers.get(room_id)
        if users is None or user_id not in users:
            return
        users[user_id] -= 1
        if users[user_id] <= 0:
            del users[user_id]
        if not users:
            del self._peekers[room_id]

    def cached_members(self, room_id: str) -> frozenset[str] | None:
        """The room's local joined members if cached (None: not known here)."""
        return self._room_members.get(room_id)

    def waiting_count(self) -> int:
        return sum(len(s.waiters) for s in self._streams.values())

    # -- writers ----------------------------------------------------------

    def notify_users(self, user_ids: Iterable[str], stream_pos: int | None = None, *,
                     presence: bool = False) -> None:
        """Wake ``user_ids`` (once the global stream has reached ``stream_pos``);
        ``presence``: for a presence change only."""
        users = tuple(u for u in user_ids if self.ctx.is_mine(u))
        if not users:
            return
        room = PRESENCE_WAKE if presence else None
        if stream_pos is not None and stream_pos > self.tracker.persisted_upto:
            heapq.heappush(self._pending, (stream_pos, next(self._seq), room, users))
            return
        self._wake(users, presence=presence)

    def notify_room(self, room_id: str, stream_pos: int | None = None,
                    extra_users: Iterable[str] = ()) -> None:
        """Wake the room's local members and ``extra_users``."""
        extra = tuple(extra_users)
        if stream_pos is not None and stream_pos > self.tracker.persisted_upto:
            heapq.heappush(self._pending, (stream_pos, next(self._seq), room_id, extra))
            return
        self._wake_room(room_id, extra)

    def on_new_event(self, room_id: str, event_type: str, state_key: str | None,
                     stream_pos: int) -> None:
        """An event was persisted into the room's timeline at ``stream_pos``."""
        extra: tuple[str, ...] = ()
        if event_type == "m.room.member" and state_key is not None:
            self.membership_changed(room_id)
            extra = (state_key,)
        self.notify_room(room_id, stream_pos, extra)

    def device_list_changed(self, user_id: str, stream_pos: int) -> None:
        """``user_id`` added, renamed or removed a device: wake them and
        everyone who shares a room with them (their ``device_lists``)."""
        self.ctx.run_in_background(self._wake_sharing(user_id, stream_pos))

    async def _wake_sharing(self, user_id: str, stream_pos: int) -> None:
        users = await self.rooms.get_room_mates(user_id)
        self.notify_users(users | {user_id}, stream_pos)

    def membership_changed(self, room_id: str) -> None:
        """The room's members changed: forget the cached member set."""
        self._room_members.pop(room_id, None)
        self._member_generation += 1

    def wake_everyone(self) -> None:
        """Wake every waiting reader and forget the cached member sets: a
        reader process that may have missed writes caught up from the
        database (replication/follower.py), and each sync reads again."""
        self._room_members.clear()
        self._member_generation += 1
        # every stream, not only the waiting ones: a sync between reading
        # the counter and waiting must not sleep on the old count
        self._wake(list(self._streams))

    def _on_persisted(self, upto: int) -> None:
        while self._pending and self._pending[0][0] <= upto:
            _, _, room_id, users = heapq.heappop(self._pending)
            if room_id is None or room_id == PRESENCE_WAKE:
                self._wake(users, presence=room_id == PRESENCE_WAKE)
            else:
                self._wake_room(room_id, users)

    def _wake_room(self, room_id: str, extra: tuple[str, ...]) -> None:
        peekers = self._peekers.get(room_id)
        if peekers:
            extra = extra + tuple(peekers)
        members = self._room_members.get(room_id)
        if members is not None:
            self._wake(members.union(extra))
            return
        self.ctx.run_in_background(self._load_and_wake(room_id, extra))

    async def _load_and_wake(self, room_id: str, extra: tuple[str, ...]) -> None:
        generation = self._member_generation
        members = await self.rooms.get_local_members(room_id, self.ctx.hostname)
        if generation == self._member_generation:
            if len(self._room_members) >= ROOM_MEMBER_CACHE_SIZE:
                self._room_members.clear()
            self._room_members[room_id] = members
        self._wake(members.union(extra))

    def _wake(self, users: Iterable[str], *, presence: bool = False) -> None:
        """Bump the users' counters now; fire their waiters at the next flush."""
        woken = self._woken
        for user_id in users:
            stream = self._streams.get(user_id)
            if stream is None:
                if not self.ctx.is_mine(user_id):
                    continue
                stream = self._streams[user_id] = UserStream()
            stream.counter += 1
            waiters, stream.waiters = stream.waiters, []
            if presence and stream.deaf_to_presence:
                stream.waiters = [d for d in waiters if d in stream.deaf_to_presence]
                waiters = [d for d in waiters if d not in stream.deaf_to_presence]
            else:
                stream.deaf_to_presence.clear()
            woken.extend(waiters)
        if woken and self._flush_call is None:
            delay = 0.0
            if self._last_flush_size >= COALESCE_MIN_WAITERS:
                # under load: at most one flush per tick, so a reader woken by
                # several writes in a row gets one response for all of them
                delay = max(0.0, self._last_flush_at + COALESCE_TICK_S
                            - self.ctx.reactor.seconds())
            self._flush_call = self.ctx.reactor.callLater(delay, self._flush)

    def _flush(self) -> None:
        """Fire the waiters woken since the last flush."""
        self._flush_call = None
        woken, self._woken = self._woken, []
        self._last_flush_at = self.ctx.reactor.seconds()
        self._last_flush_size = len(woken)
        for d in woken:
            if not d.called:
                d.callback(True)
