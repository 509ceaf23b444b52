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

The positions are still written, one transaction per response, as before:
a restart, or another process, loads the connection from the database.
A forget (``/forget``) takes no stream position: a connection's fast
responses keep a forgotten kicked room in its list until the next full
build.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.python.failure import Failure

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

    def forget(self, user_id: str, device_id: str, conn_id: str) -> None:
        with self._lock:
            self._by_connection.pop((user_id, device_id, conn_id), None)


class PositionWriter:
    """Writes connections' new positions; those that arrive while a write is
    under way go together in the next one: one commit for the responses of
    the many connections a message wakes, rather than one each."""

    def __init__(self, store: "SlidingSyncStore") -> None:
        self.store = store
        self._pending: list[tuple[PositionSave, defer.Deferred[int | None]]] = []
        self._writing = False

    async def save(self, save: PositionSave) -> int | None:
        """``SlidingSyncStore.save_position_txn``'s answer for ``save``."""
        done: defer.Deferred[int | None] = defer.Deferred()
        self._pending.append((save, done))
        if not self._writing:
            defer.ensureDeferred(self._drain())
        return await done

    async def _drain(self) -> None:
        self._writing = True
        try:
            while self._pending:
                batch = self._pending[:MAX_SAVES_AT_ONCE]
                del self._pending[:MAX_SAVES_AT_ONCE]
                try:
                    results = await self.store.save_positions([s for s, _ in batch])
                except Exception:
                    failure = Failure()
                    for _, done in batch:
                        if not done.called:  # a client that went away cancelled it
                            done.errback(failure)
                    continue
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.called:
                        done.callback(result)
        finally:
            self._writing = False


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
