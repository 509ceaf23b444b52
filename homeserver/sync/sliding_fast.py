"""The sliding sync fast path: a woken connection answered from memory.

300 users holding a sliding sync connection on one room are woken by every
message into it, and each woken request would read the database a dozen
times (its connection, its room list, account data, the timeline, counts)
and write its new position. Two things spare most of it:

- ``ConnectionMemory``: what the connection's last response was built
  from, kept per connection after its position is written: the
  connection's state as the database has it for that position (what each
  room was sent), the user's memberships, their account data, and each sent
  room's unread counts. A request naming that position skips the
  connection's load, and, when nothing happened since that could change
  them (``quiet``), the room list's and the account data's reads too.
- ``fast_rooms``: the rooms of the response from ``SyncMemory`` (the plain
  events ``sync/recent.py`` keeps, the push verdicts of each, the ignore
  lists), when every room to send has only plain messages from others
  since it was last sent, few enough for its timeline, from senders whose
  member events the connection already holds ($LAZY), with no relations
  yet. Their entries are what the full build (``sync/sliding.py``) would
  answer: the new events, ``limited`` false, no state, the unread counts
  carried forward by the new events' push verdicts. Anything else (a room
  sent for the first time, a state change, a redaction, an own message, a
  receipt of the user's, a write of unknown reach, events from before this
  process started) is None, and the full build answers.

``quiet(user, since, until)``: nothing in (since, until] concerns the
user's memberships, their own data, or the state of any of their rooms:
only plain events and others' receipts. Then the room list and account
data read for the last response still hold.

The positions are written after the responses (``PositionWriter``), many
in one transaction: a restart, or another process, loads the connection
from the database.
A forget (``/forget``) takes no stream position: a connection's fast
responses keep a forgotten kicked room in its list until the next full
build.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.rooms.client_format import client_event
from homeserver.rooms.ignored import is_hidden
from homeserver.storage.sliding_sync import ConnectionState, ListRoom, PositionSave, SentRoom
from homeserver.storage.streams import PRESENCE
from homeserver.sync.room_builder import MAX_COUNTED_UNREAD
from homeserver.sync.sliding_request import RoomConfig
from homeserver.sync.tokens import pagination_token

if TYPE_CHECKING:
    from homeserver.events.model import Event
    from homeserver.storage.sliding_sync import SlidingSyncStore
    from homeserver.sync.memory import SyncMemory
    from homeserver.sync.sliding import Candidate

logger = logging.getLogger(__name__)

# connections remembered (those in use at once)
MAX_CONNECTIONS = 20_000
# positions written in one transaction
MAX_SAVES_AT_ONCE = 500

# (notification count, highlight count) of a room as of its sent_upto
Counts = tuple[int, int]


@dataclass
class Remembered:
    """What the response at ``pos_nid`` of a connection was built from."""

    user_id: str
    device_id: str
    conn_id: str
    pos_nid: int
    state: ConnectionState
    # the user's memberships (no heads) and account data as of the
    # position's stream position
    rooms: list[ListRoom]
    global_data: dict[str, Any]
    room_data: dict[str, Any]
    # room ID -> unread counts as of the room's sent_upto (joined rooms)
    counts: dict[str, Counts] = field(default_factory=dict)
    # what the request asked (lists, subscriptions, extensions)
    asked: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class UserLists:
    """A user's memberships (no heads) and account data as of a position."""

    as_of: int
    rooms: list[ListRoom]
    global_data: dict[str, Any]
    room_data: dict[str, Any]


class ConnectionMemory:
    """The newest ``Remembered`` of each connection (user, device,
    ``conn_id``), and the newest ``UserLists`` of each user (what a new
    connection of theirs starts from), a bounded number of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_connection: OrderedDict[tuple[str, str, str], Remembered] = OrderedDict()
        self._by_user: OrderedDict[str, UserLists] = OrderedDict()

    def user_lists(self, user_id: str) -> UserLists | None:
        with self._lock:
            return self._by_user.get(user_id)

    def put_user_lists(self, user_id: str, lists: UserLists) -> None:
        with self._lock:
            old = self._by_user.get(user_id)
            if old is not None and old.as_of > lists.as_of:
                return
            self._by_user[user_id] = lists
            self._by_user.move_to_end(user_id)
            while len(self._by_user) > MAX_CONNECTIONS:
                self._by_user.popitem(last=False)

    def get(self, user_id: str, device_id: str, conn_id: str,
            pos_nid: int) -> Remembered | None:
        key = (user_id, device_id, conn_id)
        with self._lock:
            found = self._by_connection.get(key)
            if found is None or found.pos_nid != pos_nid:
                return None
            self._by_connection.move_to_end(key)
            return found

    def put(self, remembered: Remembered) -> None:
        key = (remembered.user_id, remembered.device_id, remembered.conn_id)
        with self._lock:
            self._by_connection[key] = remembered
            self._by_connection.move_to_end(key)
            while len(self._by_connection) > MAX_CONNECTIONS:
                self._by_connection.popitem(last=False)

    def forget(self, user_id: str, device_id: str, conn_id: str,
               pos_nid: int | None = None) -> None:
        """Forget the connection (with ``pos_nid``: only if that is the
        position remembered)."""
        key = (user_id, device_id, conn_id)
        with self._lock:
            found = self._by_connection.get(key)
            if found is not None and (pos_nid is None or found.pos_nid == pos_nid):
                del self._by_connection[key]


# a connection: (user ID, device ID, conn_id)
ConnectionKey = tuple[str, str, str]


class PositionWriter:
    """Writes connections' new positions after their responses are sent.

    A response carries its new position at once: its NID is given here
    (``next_nid``: the time in milliseconds times 1,000, or one more than
    the last given, so NIDs grow across restarts too), and its write is
    queued. The writes that queue while one transaction is under way go
    together in the next: one commit for the responses of the many
    connections a message wakes (a save built on a position still queued
    goes after it, in the same transaction or the next:
    ``SlidingSyncStore.save_positions``). A connection's next request is
    answered from memory when it names the position remembered
    (``ConnectionMemory``); any other first waits for the connection's
    queued writes (``settled``) and reads the database. A write that failed
    (the connection was replaced meanwhile, the database went away, the
    process died before it) forgets the remembered position and leaves it
    unknown: the client gets ``M_UNKNOWN_POS`` and starts over, as the MSC
    allows. ``flush`` waits for all (a clean stop)."""

    def __init__(self, store: "SlidingSyncStore") -> None:
        self.store = store
        self._pending: list[tuple[ConnectionKey, PositionSave,
                                  defer.Deferred[int | None]]] = []
        self._writing = False
        self._last_nid = 0
        # per connection: its writes not finished, and who waits for them
        self._unsettled: dict[ConnectionKey, int] = {}
        self._waiters: dict[ConnectionKey, list[defer.Deferred[None]]] = {}
        self._flush_waiters: list[defer.Deferred[None]] = []

    def next_nid(self) -> int:
        """A new position (or connection) NID: never one given before (by
        the wall clock, not the reactor's, which a test may hold still)."""
        nid = max(self._last_nid + 1, int(time.time() * 1000) * 1000)
        self._last_nid = nid
        return nid

    def submit(self, key: ConnectionKey, save: PositionSave) -> "defer.Deferred[int | None]":
        """Queue ``save``; the Deferred fires with ``SlidingSyncStore.
        save_positions``'s answer for it (before ``settled`` waiters wake)."""
        done: defer.Deferred[int | None] = defer.Deferred()
        self._pending.append((key, save, done))
        self._unsettled[key] = self._unsettled.get(key, 0) + 1
        if not self._writing:
            defer.ensureDeferred(self._drain())
        return done

    async def settled(self, key: ConnectionKey) -> None:
        """Wait until the connection's queued writes are finished."""
        if self._unsettled.get(key):
            waiter: defer.Deferred[None] = defer.Deferred()
            self._waiters.setdefault(key, []).append(waiter)
            await waiter

    async def flush(self) -> None:
        """Wait until every queued write is finished."""
        if self._writing or self._pending:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._flush_waiters.append(waiter)
            await waiter

    async def _drain(self) -> None:
        self._writing = True
        try:
            while self._pending:
                batch = self._pending[:MAX_SAVES_AT_ONCE]
                del self._pending[:MAX_SAVES_AT_ONCE]
                try:
                    results: list[int | None] | None = await self.store.save_positions(
                        [s for _, s, _ in batch])
                except Exception:
                    logger.exception("sliding sync: writing %d positions failed", len(batch))
                    results = None
                for k, (key, _, done) in enumerate(batch):
                    done.callback(results[k] if results is not None else None)
                    left = self._unsettled[key] - 1
                    if left:
                        self._unsettled[key] = left
                    else:
                        del self._unsettled[key]
                        for waiter in self._waiters.pop(key, []):
                            waiter.callback(None)
        finally:
            self._writing = False
            waiters, self._flush_waiters = self._flush_waiters, []
            for waiter in waiters:
                waiter.callback(None)


def quiet(memory: "SyncMemory", user_id: str, rooms: list[ListRoom], since: int,
          until: int) -> bool:
    """Whether (since, until] holds only plain events and writes that
    concern neither the user's memberships and own data nor the state of
    their rooms (module doc)."""
    found = memory.plain_events(since, until)
    if found is None:
        return False
    _, scopes, receipts = found
    mine = {r.room_id for r in rooms}
    for room_id, target in scopes:
        if room_id == PRESENCE:
            continue  # no presence in these responses
        if room_id is None or target == user_id or room_id in mine:
            return False
    return not any(r[1] == user_id and r[0] in mine for r in receipts)


def fast_rooms(memory: "SyncMemory", user_id: str, candidates: list["Candidate"],
               conn: ConnectionState, remembered: Remembered, since: int, end: int,
               common_of: Any, now_ms: int,
               ) -> tuple[dict[str, Any], dict[str, SentRoom], dict[str, Counts]] | None:
    """The rooms of the response (entries, what to record, unread counts)
    from memory, or None when the full build must answer (module doc).
    ``common_of(candidate, initial)`` gives an entry's common keys."""
    found = memory.plain_events(since, end)
    ignored = memory.ignored(user_id)
    if found is None or ignored is None:
        return None
    by_room: dict[str, list[tuple[int, "Event"]]] = {}
    for pos, room_id, event in found[0]:
        by_room.setdefault(room_id, []).append((pos, event))
    out: dict[str, Any] = {}
    sent: dict[str, SentRoom] = {}
    counts_out: dict[str, Counts] = {}
    for c in candidates:
        r = c.room
        prev = conn.rooms.get(r.room_id)
        if prev is None or r.membership != "join" or prev.membership != "join" \
                or r.membership_pos > prev.sent_upto:
            return None  # first sent, or a membership change
        if c.config.timeline_limit > prev.timeline_limit \
                or RoomConfig.state_from_json(prev.required_state) != c.config.required_state:
            return None  # more asked than before
        if r.last_pos is None or r.last_pos <= prev.sent_upto:
            continue  # nothing new
        if prev.sent_upto < since:
            return None  # news from before the range
        events = by_room.get(r.room_id, [])
        if not events or len(events) > c.config.timeline_limit:
            return None
        if any(e.sender == user_id or is_hidden(e, ignored) or pos <= r.membership_pos
               for pos, e in events):
            return None  # transaction IDs, hidden events: the full build
        if not memory.unchanged_since(r.room_id, prev.sent_upto,
                                      [e.event_id for _, e in events]):
            return None  # relations to them
        if c.config.lazy_members and any(e.sender not in prev.lazy_members
                                         for _, e in events):
            return None  # a sender's member event the connection lacks
        counts = remembered.counts.get(r.room_id)
        if counts is None:
            return None
        notifications, highlights = counts
        for _, e in events:
            verdicts = memory.push_verdicts(e.event_id)
            if verdicts is None:
                return None
            notify, highlight = verdicts.get(user_id, (0, 0))
            notifications += notify
            highlights += highlight
        notifications = min(notifications, MAX_COUNTED_UNREAD)
        room: dict[str, Any] = dict(common_of(c, False))
        timeline = []
        for _, e in events:
            entry = client_event(e, r.room_id, now_ms)
            entry["unsigned"]["membership"] = "join"
            timeline.append(entry)
        room["timeline"] = timeline
        room["limited"] = False
        room["prev_batch"] = pagination_token(events[0][0] - 1)
        room["num_live"] = sum(1 for pos, _ in events if pos > since)
        room["notification_count"] = notifications
        room["highlight_count"] = highlights
        out[r.room_id] = room
        sent[r.room_id] = SentRoom(end, r.membership, c.config.timeline_limit,
                                   c.config.state_json(), dict(prev.lazy_members))
        counts_out[r.room_id] = (notifications, highlights)
    return out, sent, counts_out
