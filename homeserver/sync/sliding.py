"""Simplified sliding sync (MSC4186): the room list, windows and extensions.

One request of a connection (user, device, ``conn_id``) is answered so:

1. ``pos`` names a row of the connection's positions (``storage/
   sliding_sync.py``): with it come the global stream position the client
   has and, per room, up to where it was sent the room and with which room
   config (from memory when this process wrote that position:
   ``sliding_fast.py``). No ``pos``: a new connection. A ``pos`` that is not
   this user's, device's and conn_id's, or that was forgotten, is 400
   ``M_UNKNOWN_POS`` and the client starts over.
2. ``until`` is the stream's "persisted up to" (as for /sync). The room list
   is every room the user has a membership of, less rooms they left
   themselves (unless this connection was sent the room before they left)
   and forgotten ones, sorted by ``bump_stamp`` (the newest "proper" event,
   kept in memory: ``recency.py``), newest first, as Synapse does. Each list
   filters it and takes its ranges; room subscriptions add rooms by ID. A
   room matched by several rules gets the superset of their configs
   (``sliding_request.py``). The memberships and account data are read
   again only when something since the last build could have changed them.
3. A matched room is sent when the connection was never sent it (``initial``),
   when something happened in it since it was last sent, when the user's
   membership changed, or when its config asks for more than before (a
   larger ``timeline_limit``: the newest events again, ``expanded_timeline``;
   a wider ``required_state``: the state it adds).
4. The rooms to send are read together (``_rooms``): timelines and state in
   one transaction, then counts, heroes and the client format once for all.
   A timeline of events after the user's join from senders they do not
   ignore is taken as read; others go through the room reader's gate
   (history visibility, ignored users). ``required_state`` is the room's
   state at the response's end: all that the config matches for an initial
   room, the entries that changed since it was last sent otherwise, plus
   with lazy members the member events of the timeline's senders and
   targets. Unread counts and stripped state are /sync's
   (``sync/room_builder.py``). Woken rooms with only others' plain messages
   are answered from memory (``sliding_fast.py``).
5. The extensions (to-device, e2ee, account data, receipts, typing) read the
   same stores as /sync, over (since, until], scoped to the rooms of the lists
   and subscriptions they name.
6. Nothing to say and a ``timeout``: wait on the notifier, as /sync does,
   and build again. The response carries the new ``pos``; the position and
   every room sent are written after it, in one transaction shared with the
   other connections' saves queued at the time (``sliding_fast.py``
   ``PositionWriter``; a failed write makes the ``pos`` unknown).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.errors import Codes, MatrixError
from homeserver.events.model import Event
from homeserver.http.request import Requester
from homeserver.push.rules import client_ruleset
from homeserver.rooms.access import ReadAccess, SerializeAhead, txn_scope
from homeserver.rooms.ignored import is_hidden
from homeserver.storage.database import Txn
from homeserver.storage.push_rules import PUSH_RULES_TYPE, PushRuleStore
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.relations import AggregationRows, RelationStore
from homeserver.storage.rooms import Membership, RoomInfo, RoomStore
from homeserver.storage.sliding_sync import (
    ConnectionState,
    ListRoom,
    PositionSave,
    SentRoom,
    SlidingSyncStore,
)
from homeserver.storage.sync import SyncStore
from homeserver.sync.encoder import one_time_keys_count, unread_section
from homeserver.sync.room_builder import MAX_COUNTED_UNREAD
from homeserver.sync.sliding_fast import (
    ConnectionMemory,
    PositionWriter,
    Remembered,
    UserLists,
    fast_rooms,
    quiet,
)
from homeserver.sync.sliding_request import (
    MEMBER,
    WILDCARD,
    ExtensionConfig,
    ListConfig,
    RoomConfig,
    RoomFilters,
    SlidingRequest,
)
from homeserver.sync.tokens import StreamToken, pagination_token

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.edu.presence import PresenceHandler
    from homeserver.edu.typing import TypingManager
    from homeserver.rooms.access import RoomReader
    from homeserver.storage import Stores
    from homeserver.sync.handler import SyncHandler
    from homeserver.sync.memory import SyncMemory
    from homeserver.sync.notifier import Notifier
    from homeserver.sync.recency import RoomRecency
    from homeserver.sync.room_builder import RoomBuilder

logger = logging.getLogger(__name__)

MAX_TIMEOUT_MS = 10 * 60 * 1000
# a connection not used for this long is forgotten
CONNECTION_LIFETIME_MS = 7 * 24 * 3600 * 1000
# idle connections are looked for at most this often (as new ones start)
EXPIRE_EVERY_MS = 10 * 60 * 1000
# users whose sorted room list is kept
MAX_SORTED_USERS = 10_000
# member events remembered per room for $LAZY (past this, they are sent again)
MAX_LAZY_HELD = 1000
DIRECT = "m.direct"
NAMING_KEYS = (("m.room.name", ""), ("m.room.avatar", ""))
TAG = "m.tag"
# "<pos NID>_<sync token>"
_POS = re.compile(r"([0-9]{1,18})_(s[0-9]{1,18}_[0-9]{1,18}_[0-9a-z]{1,12})")


def unknown_pos(msg: str = "Unknown or expired pos; start a new connection") -> MatrixError:
    return MatrixError(400, Codes.UNKNOWN_POS, msg)


@dataclass
class Candidate:
    """A room the request matched."""

    room: ListRoom
    config: RoomConfig
    lists: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """A joined or left room to build, and what its build found."""

    c: Candidate
    prev: SentRoom | None
    initial: bool
    membership_changed: bool
    expanded: bool
    widened: bool
    old_config: RoomConfig
    # the timeline's end (the leave, for a room left), and its start (None:
    # the newest events whatever was sent)
    room_end: int
    timeline_since: int | None
    common: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    limited: bool = False
    now_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    before_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    wanted: dict[tuple[str, str], str] = field(default_factory=dict)
    state_events: list[Event] = field(default_factory=list)
    naming_changed: bool = False
    members_changed: bool = False
    # $LAZY: the member events the client holds after this response
    lazy: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ahead:
    """What a response's rooms read in the window's transaction besides
    their timelines and state (``SlidingSyncHandler._rooms``)."""

    # room NID -> its unread push actions (after the user's read receipt)
    unread: dict[int, list[tuple[int, bool, str | None]]]
    # room NID -> membership -> count, of the rooms sent as new
    member_counts: dict[int, dict[str, int]]
    # room NID -> heroes, of the rooms sent as new with no name event
    heroes: dict[int, list[str]]
    # the events the reads below cover (the timelines' rows, the state the
    # entries may carry)
    covered: frozenset[str]
    txn_ids: dict[str, str]
    # state event ID -> the ID of the one it replaced
    replaced: dict[str, str]
    aggregations: AggregationRows


@dataclass
class SortedRooms:
    """A user's room list with heads, sorted, as of a recency generation
    (``SlidingSyncHandler._sorted_rooms``)."""

    # the memberships it was built from (the same list object while they hold)
    base: list[ListRoom]
    generation: int
    rooms: list[ListRoom]
    by_id: dict[str, ListRoom]


@dataclass
class Built:
    body: dict[str, Any]
    # rooms sent, to record with the new position
    sent: dict[str, SentRoom]
    until: StreamToken
    has_data: bool
    # what it was built from, for the next request (sync/sliding_fast.py)
    rooms: list[ListRoom]
    global_data: dict[str, Any]
    room_data: dict[str, Any]
    # room ID -> unread counts of the joined rooms sent
    counts: dict[str, tuple[int, int]]


class SlidingSyncHandler:
    """Answers ``POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync``."""

    def __init__(self, ctx: "ServerContext", stores: "Stores", sync: "SyncHandler",
                 builder: "RoomBuilder", room_reader: "RoomReader", typing: "TypingManager",
                 presence: "PresenceHandler", notifier: "Notifier",
                 recency: "RoomRecency", memory: "SyncMemory") -> None:
        self.ctx = ctx
        self.stores = stores
        self.sync = sync
        self.builder = builder
        self.room_reader = room_reader
        self.typing = typing
        self.presence = presence
        self.notifier = notifier
        self.recency = recency
        self.memory = memory
        self.connections = ConnectionMemory()
        self.positions = PositionWriter(stores.sliding_sync)
        self._expired_at = -EXPIRE_EVERY_MS
        # user ID -> their sorted room list (``_sorted_rooms``)
        self._sorted: OrderedDict[str, SortedRooms] = OrderedDict()

    async def handle(self, requester: Requester, req: SlidingRequest) -> dict[str, Any]:
        user_id = requester.user_id
        device_id = requester.device_id or ""
        key = (user_id, device_id, req.conn_id)
        store = self.stores.sliding_sync
        since: StreamToken | None = None
        base_pos: int | None = None
        remembered: Remembered | None = None
        start: tuple[str, str, str] | None = None
        expire_before: int | None = None
        now = self.ctx.now_ms()
        if req.pos is not None:
            m = _POS.fullmatch(req.pos)
            if m is None:
                raise unknown_pos()
            base_pos = int(m.group(1))
            try:
                token = self.sync.parse_since(m.group(2))
            except MatrixError:
                raise unknown_pos() from None
            # the connection as its last response left it, when this process
            # gave that response (sync/sliding_fast.py; its write may still be
            # queued: the writer keeps the order); else from the database,
            # once the connection's queued writes are done
            remembered = self.connections.get(user_id, device_id, req.conn_id, base_pos)
            if remembered is not None:
                conn = remembered.state
            else:
                await self.positions.settled(key)
                loaded = await store.load_connection(user_id, device_id, req.conn_id,
                                                     base_pos)
                if loaded is None:
                    raise unknown_pos()
                conn = loaded
            since = StreamToken(conn.stream_pos, token.typing_pos, token.epoch)
        else:
            # a new connection, created (replacing any of the same conn_id)
            # by the write of its first position
            self.connections.forget(user_id, device_id, req.conn_id)
            conn = ConnectionState(self.positions.next_nid(), 0, {})
            start = key
            # connections idle for long are forgotten as new ones start (their
            # clients get M_UNKNOWN_POS and start over, as the MSC allows),
            # looked for at most every EXPIRE_EVERY_MS
            if now - self._expired_at >= EXPIRE_EVERY_MS:
                self._expired_at = now
                expire_before = now - CONNECTION_LIFETIME_MS
        await self.presence.user_syncing(user_id, req.set_presence)
        try:
            built = await self._long_poll(requester, req, conn, since, remembered)
        finally:
            self.presence.sync_ended(user_id, req.set_presence)
        end = built.until.global_pos
        now = self.ctx.now_ms()
        pos_nid = self.positions.next_nid()
        counts = dict(remembered.counts) if remembered is not None else {}
        counts.update(built.counts)
        self.connections.put(Remembered(
            user_id, device_id, req.conn_id, pos_nid,
            ConnectionState(conn.connection_nid, end, {**conn.rooms, **built.sent}),
            built.rooms, built.global_data, built.room_data, counts,
            (req.lists, req.subscriptions, req.extensions)))
        # written after the response: the connection's next request waits
        # for it; one that failed leaves the position unknown (M_UNKNOWN_POS)
        written = self.positions.submit(key, PositionSave(
            conn.connection_nid, base_pos, end, list(built.sent.items()), now,
            pos_nid=pos_nid, start=start, expire_before_ms=expire_before))

        def after(result: int | None) -> None:
            if result is None:
                # a new connection of the same conn_id replaced it, a retry of
                # an older position forgot this one, or the write failed
                self.connections.forget(user_id, device_id, req.conn_id, pos_nid)

        written.addCallback(after)
        written.addErrback(lambda f: logger.error("sliding sync position: %s", f.value))
        return {"pos": f"{pos_nid}_{built.until}", **built.body}

    async def flush(self) -> None:
        """Wait until the positions of the responses sent are written (a
        clean stop: the clients' next requests after a restart find them)."""
        await self.positions.flush()

    async def _long_poll(self, requester: Requester, req: SlidingRequest,
                         conn: ConnectionState, since: StreamToken | None,
                         remembered: Remembered | None) -> Built:
        timeout = min(req.timeout_ms, MAX_TIMEOUT_MS)
        clock = self.ctx.clock
        deadline = clock.seconds() + timeout / 1000
        # a client polling again at once, asking what it asked before, with
        # no extension and nothing written since its last response (this
        # process's): a build would find nothing, so it waits first
        idle = since is not None and remembered is not None and timeout > 0 \
            and not any(ext.enabled for ext in req.extensions.values()) \
            and remembered.asked == (req.lists, req.subscriptions, req.extensions)
        while True:
            counter = self.notifier.counter(requester.user_id)
            built: Built | None = None
            if idle and since is not None \
                    and self.sync.current_token().global_pos == since.global_pos:
                idle = False
            else:
                built = await self._build(requester, req, conn, since, remembered)
                if since is None or built.has_data:
                    return built
            remaining = deadline - clock.seconds()
            woken = remaining > 0 and await self.notifier.wait(
                requester.user_id, counter, int(remaining * 1000), presence=False)
            if not woken:
                if built is None:
                    built = await self._build(requester, req, conn, since, remembered)
                return built

    # -- one build ------------------------------------------------------------

    async def _build(self, requester: Requester, req: SlidingRequest,
                     conn: ConnectionState, since: StreamToken | None,
                     remembered: Remembered | None) -> Built:
        user_id = requester.user_id
        until = self.sync.current_token()
        end = until.global_pos
        # the room list and account data the connection's last response (or
        # the user's last one) was built from, when nothing since changed
        # them; else read again
        if remembered is not None and since is not None:
            known: UserLists | None = UserLists(since.global_pos, remembered.rooms,
                                                remembered.global_data, remembered.room_data)
        else:
            known = self.connections.user_lists(user_id)
        lists_hold = known is not None and known.as_of <= end and quiet(
            self.memory, user_id, known.rooms, known.as_of, end)
        is_quiet = lists_hold and remembered is not None and since is not None
        if lists_hold:
            assert known is not None
            base = known.rooms
            global_data, room_data = known.global_data, known.room_data
        else:
            base = await self.stores.sliding_sync.get_room_list(user_id)
            global_data, room_data = \
                await self.stores.account_data.get_account_data_since(user_id, 0, end)
        self.connections.put_user_lists(user_id, UserLists(end, base, global_data, room_data))
        all_rooms, by_id = await self._sorted_rooms(user_id, base, end)
        ignored = await self.room_reader.ignored.get(user_id)
        if any(r.membership in ("leave", "invite") for r in base):
            rooms = [r for r in all_rooms if self._in_room_list(r, conn, user_id)
                     # the spec: invites from ignored users are not sent
                     and not (r.membership == "invite" and ignored and r.sender in ignored)]
        else:
            rooms = all_rooms  # (read only) nothing to leave out

        candidates: dict[str, Candidate] = {}
        lists_body: dict[str, Any] = {}
        list_rooms: dict[str, list[str]] = {}
        for key, lc in req.lists.items():
            matching = await self._filter(rooms, lc.filters, global_data, room_data, user_id)
            window = _window(matching, lc)
            list_rooms[key] = [r.room_id for r in window]
            ops = [{"op": "SYNC", "range": [s, e],
                    "room_ids": [r.room_id for r in matching[s:e + 1]]}
                   for s, e in (lc.ranges or ((0, max(len(matching) - 1, 0)),))]
            lists_body[key] = {"count": len(matching), "ops": ops}
            for r in window:
                c = candidates.get(r.room_id)
                if c is None:
                    candidates[r.room_id] = Candidate(r, lc.config, [key])
                else:
                    c.config = c.config.combine(lc.config)
                    c.lists.append(key)
        subscribed: list[str] = []
        for room_id, config in req.subscriptions.items():
            sub = by_id.get(room_id)
            if sub is None or not _may_see(sub):
                continue  # the MSC: ignore rooms the user may not see
            subscribed.append(room_id)
            c = candidates.get(room_id)
            if c is None:
                candidates[room_id] = Candidate(sub, config)
            else:
                c.config = c.config.combine(config)

        since_pos = since.global_pos if since is not None else None
        dms = _dm_rooms(global_data)
        fast = None
        if is_quiet:
            assert remembered is not None and since_pos is not None
            fast = fast_rooms(self.memory, user_id, list(candidates.values()), conn,
                              remembered, since_pos, end,
                              lambda c, initial: _common(c, initial, dms), self.ctx.now_ms())
        # the rooms sent initially are known before they are built: the
        # extensions (which cover them in full) are read alongside
        initial_rooms = {rid for rid, c in candidates.items()
                         if _is_initial(c.room, conn.rooms.get(rid))}
        extensions: dict[str, Any] = {}

        async def read_extensions() -> None:
            extensions.update(await self._extensions(
                requester, req, since, until, list_rooms, subscribed, initial_rooms,
                global_data, room_data, all_rooms, is_quiet))

        wants_extensions = any(ext.enabled for ext in req.extensions.values())
        if fast is not None:
            out_rooms, sent, counts = fast
            if wants_extensions:
                await read_extensions()
        elif not wants_extensions:
            out_rooms, sent, counts = await self._rooms(
                requester, list(candidates.values()), conn, since_pos, end, dms)
        else:
            built_rooms: list[tuple[dict[str, Any], dict[str, SentRoom],
                                    dict[str, tuple[int, int]]]] = []

            async def read_rooms() -> None:
                built_rooms.append(await self._rooms(
                    requester, list(candidates.values()), conn, since_pos, end, dms))

            await gather([read_rooms(), read_extensions()])
            out_rooms, sent, counts = built_rooms[0]
        has_data = bool(out_rooms) or any(_ext_has_data(k, v) for k, v in extensions.items())
        body: dict[str, Any] = {"lists": lists_body, "rooms": out_rooms,
                                "extensions": extensions}
        return Built(body, sent, until, has_data, base, global_data, room_data, counts)

    @staticmethod
    def _in_room_list(r: ListRoom, conn: ConnectionState, user_id: str) -> bool:
        """The MSC's server list: not rooms the user left themselves (they
        know), unless this connection had the room before the leave; kicks
        and bans are kept (the user may not know)."""
        if r.membership != "leave" or r.sender != user_id:
            return True
        prev = conn.rooms.get(r.room_id)
        return prev is not None and prev.sent_upto < r.membership_pos

    async def _filter(self, rooms: list[ListRoom], f: RoomFilters,
                      global_data: dict[str, Any], room_data: dict[str, Any],
                      user_id: str) -> list[ListRoom]:
        out = rooms
        if f.is_invite is not None:
            out = [r for r in out if (r.membership == "invite") == f.is_invite]
        if f.is_dm is not None:
            dms = _dm_rooms(global_data)
            out = [r for r in out if (r.room_id in dms) == f.is_dm]
        if f.tags is not None or f.not_tags is not None:
            def tags_of(room_id: str) -> set[str]:
                tags = (room_data.get(room_id, {}).get(TAG) or {}).get("tags")
                return set(tags) if isinstance(tags, dict) else set()
            if f.not_tags:
                out = [r for r in out if not tags_of(r.room_id) & set(f.not_tags)]
            if f.tags:
                out = [r for r in out if tags_of(r.room_id) & set(f.tags)]
        if f.spaces is not None:
            spaces = [r.room_nid for r in rooms
                      if r.room_id in f.spaces and r.membership == "join"]
            children = await self.stores.sliding_sync.get_space_children(spaces)
            out = [r for r in out if r.room_id in children]
        if f.is_encrypted is not None or f.room_types is not None \
                or f.not_room_types is not None:
            state = await self._filter_state(out)
            if f.is_encrypted is not None:
                out = [r for r in out
                       if ("m.room.encryption" in state.get(r.room_id, {})) == f.is_encrypted]
            if f.room_types is not None:
                out = [r for r in out if _room_type(state, r) in f.room_types]
            if f.not_room_types is not None:
                out = [r for r in out if _room_type(state, r) not in f.not_room_types]
        return out

    async def _filter_state(self, rooms: list[ListRoom]) -> dict[str, dict[str, Any]]:
        """Room ID -> type -> content of its create and encryption events:
        the current state of rooms the user is or was in, the stripped state
        of invites and knocks (all they may see)."""
        types = ("m.room.create", "m.room.encryption")
        held = [r for r in rooms if r.membership not in ("invite", "knock")]
        by_nid = await self.stores.sliding_sync.get_current_state_contents(
            [r.room_nid for r in held], types)
        out = {r.room_id: by_nid.get(r.room_nid, {}) for r in held}
        for r in rooms:
            if r.membership in ("invite", "knock"):
                stripped = await self.builder.stripped_state(r.event_id)
                out[r.room_id] = {e["type"]: e.get("content") or {} for e in stripped
                                  if e.get("type") in types and e.get("state_key") == ""}
        return out

    # -- the room list --------------------------------------------------------------

    async def _sorted_rooms(self, user_id: str, base: list[ListRoom], end: int,
                            ) -> tuple[list[ListRoom], dict[str, ListRoom]]:
        """The user's memberships ``base`` with their heads, sorted by
        ``bump_stamp`` (newest first), and by room ID.

        Kept per user (``SortedRooms``) while ``base`` is the same list:
        rebuilt in full when the memberships were read again, else only the
        rooms whose heads moved since (``RoomRecency.changed_since``) are
        taken again, and the list sorted again. Built in full (and not kept)
        while a head is newer than ``end`` (a commit not yet counted as
        persisted: its room's newest position is clamped to ``end``)."""
        generation = self.recency.generation
        cached = self._sorted.get(user_id)
        if cached is not None and cached.base is base and self.recency.max_pos <= end:
            changed = self.recency.changed_since(cached.generation)
            if changed is not None:
                mine = {rid: cached.by_id[rid].room_nid for rid in changed
                        if rid in cached.by_id}
                if not mine:
                    cached.generation = generation
                    self._sorted.move_to_end(user_id)
                    return cached.rooms, cached.by_id
                heads = await self.recency.heads(mine)
                by_id = dict(cached.by_id)
                for rid, (last, bump) in heads.items():
                    by_id[rid] = dataclasses.replace(by_id[rid], last_pos=last, bump_pos=bump)
                if self.recency.max_pos <= end:
                    rooms = sorted(by_id.values(), key=_order, reverse=True)
                    self._keep_sorted(user_id, SortedRooms(base, generation, rooms, by_id))
                    return rooms, by_id
        rooms = await self._with_heads(base, end)
        rooms.sort(key=_order, reverse=True)
        by_id = {r.room_id: r for r in rooms}
        if self.recency.max_pos <= end:
            self._keep_sorted(user_id, SortedRooms(base, generation, rooms, by_id))
        return rooms, by_id

    def _keep_sorted(self, user_id: str, entry: "SortedRooms") -> None:
        self._sorted[user_id] = entry
        self._sorted.move_to_end(user_id)
        while len(self._sorted) > MAX_SORTED_USERS:
            self._sorted.popitem(last=False)

    async def _with_heads(self, rooms: list[ListRoom], end: int) -> list[ListRoom]:
        """The user's memberships with each room's newest and newest bump
        positions (``sync/recency.py``), the newest clamped to ``end``: a
        room is sent up to ``end``, so a newer event is news for the next
        response."""
        heads = await self.recency.heads({r.room_id: r.room_nid for r in rooms})
        out = []
        for r in rooms:
            last, bump = heads[r.room_id]
            if last is not None and last > end:
                last = end
            out.append(ListRoom(r.room_id, r.room_nid, r.room_version, r.membership,
                                r.event_id, r.membership_pos, r.sender, last, bump))
        return out

    # -- the rooms of a response ----------------------------------------------------

    async def _rooms(self, requester: Requester, candidates: list[Candidate],
                     conn: ConnectionState, since_pos: int | None, end: int,
                     dms: set[str],
                     ) -> tuple[dict[str, Any], dict[str, SentRoom], dict[str, tuple[int, int]]]:
        """The entries of the rooms to send, and what to record of them.

        Which rooms need building is decided without the database
        (``_plan``); then what they all need is read at once: their
        timelines and state in one transaction, the events in one read,
        unread and member counts, heroes, and the client format of every
        event in one pass (``RoomReader.serialize_many``)."""
        user_id = requester.user_id
        out_rooms: dict[str, Any] = {}
        sent: dict[str, SentRoom] = {}
        counts: dict[str, tuple[int, int]] = {}
        plans: list[Plan] = []
        for c in candidates:
            prev = conn.rooms.get(c.room.room_id)
            r = c.room
            if r.membership in ("invite", "knock"):
                body = await self._invite(c, prev, dms)
                if body is not None:
                    out_rooms[r.room_id] = body
                    sent[r.room_id] = SentRoom(r.membership_pos, r.membership,
                                               c.config.timeline_limit,
                                               c.config.state_json(), {})
                continue
            plan = _plan(c, prev, end, dms)
            if plan is not None:
                plans.append(plan)
        if not plans:
            return out_rooms, sent, {}

        # the timelines and the state (now, and as last sent) in one go
        asks = [p for p in plans if p.c.config.timeline_limit > 0]
        state_asks = [(p.c.room.room_nid, p.room_end) for p in plans]
        state_asks += [(p.c.room.room_nid, p.prev.sent_upto) for p in plans
                       if not p.initial and p.prev is not None]
        # and, in the same transaction, what the rooms' entries read besides
        # (``Ahead``): one round trip for the window
        ignored = await self.room_reader.ignored.get(user_id)
        scope = txn_scope(requester)
        joined_rooms = [p.c.room for p in plans if p.c.room.membership == "join"]
        first_counted = [p for p in plans if p.initial or p.membership_changed]
        page_of = {id(p): k for k, p in enumerate(asks)}

        def also(txn: Txn, pages: list[list[tuple[int, str]]], people: list[set[str]],
                 states: list[dict[tuple[str, str], str]]) -> Ahead:
            read_upto = ReceiptStore.own_receipt_positions_txn(
                txn, user_id, [r.room_id for r in joined_rooms]) if joined_rooms else {}
            after = {r.room_nid: read_upto.get(r.room_id, r.membership_pos)
                     for r in joined_rooms}
            unread_rows = PushRuleStore.unread_actions_many_txn(
                txn, after, user_id, end, MAX_COUNTED_UNREAD) if after else {}
            counts = SyncStore.member_counts_many_txn(
                txn, [p.c.room.room_nid for p in first_counted]) if first_counted else {}
            # the state events the entries may carry: those the configs
            # match, the naming ones, the members of the timelines' people
            state_ids: set[str] = set()
            for p, now_ids in zip(plans, states, strict=False):
                cfg = p.c.config
                state_ids.update(v for k, v in now_ids.items()
                                 if cfg.matches(k[0], k[1], user_id) or k in NAMING_KEYS)
                k = page_of.get(id(p))
                if cfg.lazy_members and k is not None:
                    state_ids.update(now_ids[(MEMBER, u)] for u in people[k]
                                     if (MEMBER, u) in now_ids)
            unnamed = [p.c.room.room_nid for p, now_ids in zip(plans, states, strict=False)
                       if (p.initial or p.membership_changed)
                       and ("m.room.name", "") not in now_ids]
            heroes = SlidingSyncStore.heroes_many_txn(txn, unnamed, user_id) \
                if unnamed else {}
            timeline_ids = [eid for page in pages for _, eid in page]
            covered = [*timeline_ids, *state_ids]
            # relations: not asked of the events that memory knows got none
            # (every relation after the oldest of a page was seen there)
            related_ids = []
            for p, page in zip(asks, pages, strict=True):
                ids = [eid for _, eid in page]
                if page and not self.memory.members_unchanged_since(
                        p.c.room.room_id, (), min(pos for pos, _ in page), ids):
                    related_ids.extend(ids)
            return Ahead(
                unread_rows, counts, heroes, frozenset(covered),
                RoomStore.txn_ids_for_events_txn(txn, user_id, scope, covered)
                if covered else {},
                SlidingSyncStore.replaced_state_txn(txn, list(state_ids)) if state_ids else {},
                RelationStore.aggregation_rows_txn(txn, related_ids, user_id, sorted(ignored))
                if related_ids else AggregationRows())

        pages, states, ahead = await self.stores.sliding_sync.read_window(
            [(p.c.room.room_nid, p.room_end, p.timeline_since,
              p.c.config.timeline_limit + 1) for p in asks], state_asks, also)
        hero_member_ids = [states[k][(MEMBER, h)] for k, p in enumerate(plans)
                           for h in ahead.heroes.get(p.c.room.room_nid, [])
                           if (MEMBER, h) in states[k]]
        # the events, all in one read (mostly from the event cache)
        fetched = await self.stores.events.get_events(
            [*(eid for page in pages for _, eid in page), *ahead.covered,
             *ahead.replaced.values(), *hero_member_ids])
        for p, page in zip(asks, pages, strict=True):
            await self._timeline(requester, p, page, fetched, ignored)
        for p in plans:
            if p.c.config.timeline_limit == 0:
                last = p.c.room.last_pos if p.c.room.membership == "join" \
                    else p.c.room.membership_pos
                p.limited = p.timeline_since is None or last is None or last > p.timeline_since
        now_states = states[:len(plans)]
        before_states = iter(states[len(plans):])
        for p, now_ids in zip(plans, now_states, strict=True):
            p.now_ids = now_ids
            if not p.initial and p.prev is not None:
                p.before_ids = next(before_states)
            _wanted_state(p, user_id)
        plans = [p for p in plans if p.initial or p.events or p.wanted or p.expanded
                 or p.membership_changed]  # else nothing the user may see happened
        if not plans:
            return out_rooms, sent, {}

        # what every room sent needs, read for all of them at once, the
        # independent reads side by side
        counted = [p for p in plans if p.initial or p.members_changed or p.membership_changed]
        naming = {p.c.room.room_id: {k: p.now_ids[k] for k in NAMING_KEYS if k in p.now_ids}
                  for p in plans}
        unread: dict[int, dict[str, int]] = {}
        members: dict[int, dict[str, int]] = {}
        state_events: dict[str, Event] = {}
        hero_ids: dict[int, list[str]] = {}
        hero_events: dict[str, Event] = {}
        formatted: list[list[dict[str, Any]]] = []
        memberships: dict[str, str] = {}

        # unread counts after the user's read receipt, else their join (as /sync)
        unread.update({nid: unread_section(len(found), sum(1 for _, h, _ in found if h))
                       for nid, found in ahead.unread.items()})
        members.update(ahead.member_counts)

        async def read_members() -> None:
            members.update(await self.stores.sync.get_member_counts_many(
                [p.c.room.room_nid for p in counted if p.c.room.room_nid not in members]))

        async def read_state_and_format() -> None:
            state_events.update(await self.stores.events.get_events(
                [eid for p in plans
                 for eid in [*p.wanted.values(), *naming[p.c.room.room_id].values()]]))
            for p in plans:
                p.state_events = [state_events[v] for v in p.wanted.values()
                                  if v in state_events]
            unnamed = [p for p in counted
                       if not _name(state_events, naming[p.c.room.room_id])]
            hero_ids.update({nid: ids for nid, ids in ahead.heroes.items()})
            hero_ids.update(await self.stores.sliding_sync.get_heroes_many(
                [p.c.room.room_nid for p in unnamed if p.c.room.room_nid not in hero_ids],
                user_id))
            hero_events.update(await self.stores.events.get_events(
                [p.now_ids[(MEMBER, h)] for p in unnamed
                 for h in hero_ids.get(p.c.room.room_nid, []) if (MEMBER, h) in p.now_ids]))
            formatted.extend(await self.room_reader.serialize_many(
                requester, [(p.c.room.room_id, [*p.events, *p.state_events]) for p in plans],
                SerializeAhead(ahead.covered, ahead.txn_ids,
                               {eid: fetched[old] for eid, old in ahead.replaced.items()
                                if old in fetched}, ahead.aggregations)))

        async def read_memberships() -> None:
            memberships.update(await self._memberships_at(user_id, plans))

        await gather([read_members(), read_state_and_format(), read_memberships()])
        for p, both in zip(plans, formatted, strict=True):
            r = p.c.room
            room: dict[str, Any] = dict(p.common)
            if p.expanded:
                room["expanded_timeline"] = True
                room["unstable_expanded_timeline"] = True
            if p.events:
                timeline = both[:len(p.events)]
                for event, entry in zip(p.events, timeline, strict=True):
                    membership = memberships.get(event.event_id)
                    if membership is not None:
                        entry["unsigned"]["membership"] = membership
                room["timeline"] = timeline
            if p.state_events:
                room["required_state"] = both[len(p.events):]
            room["limited"] = p.limited
            room["prev_batch"] = pagination_token(p.positions[0] - 1 if p.positions
                                                  else p.room_end)
            room["num_live"] = 0 if since_pos is None else sum(1 for pos in p.positions
                                                               if pos > since_pos)
            names = naming[r.room_id]
            name = _name(state_events, names)
            if p.naming_changed:
                if name:
                    room["name"] = name
                elif not p.initial:
                    room["name"] = None  # the name was removed (the MSC)
                avatar_event = state_events.get(names.get(("m.room.avatar", ""), ""))
                avatar = avatar_event.content.get("url") if avatar_event is not None else None
                if isinstance(avatar, str) and avatar:
                    room["avatar"] = avatar
            if p.initial or p.members_changed or p.membership_changed:
                member_counts = members.get(r.room_nid, {})
                room["joined_count"] = member_counts.get("join", 0)
                room["invited_count"] = member_counts.get("invite", 0)
                if not name:
                    heroes = _heroes(hero_ids.get(r.room_nid, []), p.now_ids, hero_events)
                    if heroes:
                        room["heroes"] = heroes
            if r.membership == "join":
                counts_u = unread.get(r.room_nid) or {"notification_count": 0,
                                                      "highlight_count": 0}
                room["notification_count"] = counts_u["notification_count"]
                room["highlight_count"] = counts_u["highlight_count"]
                counts[r.room_id] = (counts_u["notification_count"],
                                     counts_u["highlight_count"])
            else:
                room["notification_count"] = 0
                room["highlight_count"] = 0
            out_rooms[r.room_id] = room
            sent[r.room_id] = SentRoom(p.room_end, r.membership, p.c.config.timeline_limit,
                                       p.c.config.state_json(), p.lazy)
        return out_rooms, sent, counts

    async def _invite(self, c: Candidate, prev: SentRoom | None,
                      dms: set[str]) -> dict[str, Any] | None:
        """An invite's or knock's entry: its stripped state, when new."""
        r = c.room
        membership_changed = prev is not None and (
            prev.membership != r.membership or r.membership_pos > prev.sent_upto)
        if prev is not None and not membership_changed:
            return None
        stripped = await self.builder.stripped_state(r.event_id)
        return {**_common(c, prev is None, dms), "invite_state": stripped,
                "stripped_state": stripped}

    async def _timeline(self, requester: Requester, p: "Plan", page: list[tuple[int, str]],
                        fetched: dict[str, Event], ignored: frozenset[str]) -> None:
        """The plan's timeline from the rows read for it: as they are when
        the user was joined before all of them and ignores none of their
        senders (a member sees everything after their join: no history
        visibility to apply) and retention is off, else through the room
        reader's gate."""
        r = p.c.room
        limit = p.c.config.timeline_limit
        rows = [(pos, fetched[eid]) for pos, eid in page if eid in fetched]
        # (with retention on, expired messages are left out by the gate)
        plain = self.room_reader.retention is None and r.membership == "join" \
            and len(rows) == len(page) and all(
            pos > r.membership_pos and not is_hidden(e, ignored) for pos, e in rows)
        if plain:
            events = [e for _, e in rows]
            positions = [pos for pos, _ in rows]
            limited = len(events) > limit
        else:
            info = RoomInfo(r.room_nid, r.room_id, r.room_version, None)
            access = ReadAccess(info, Membership(r.membership, r.event_id, 0, r.membership_pos,
                                                 False),
                                None if r.membership == "join" else r.membership_pos, None)
            found = await self.room_reader.paginate(
                requester.user_id, access, from_pos=p.room_end, to_pos=p.timeline_since,
                backwards=True, limit=limit + 1, current_state_visible=True)
            events, positions = list(found.events), list(found.positions)
            limited = len(events) > limit or not found.exhausted
        p.events, p.positions = events[:limit][::-1], positions[:limit][::-1]
        p.limited = limited

    async def _memberships_at(self, user_id: str, plans: list["Plan"]) -> dict[str, str]:
        """Event ID -> the user's membership at each timeline event
        (``unsigned.membership``, MSC4115): their membership now for events
        at or after their newest membership event, else read from the state
        after the event (all such events in one read)."""
        out: dict[str, str] = {}
        older: list[str] = []
        for p in plans:
            r = p.c.room
            for event, pos in zip(p.events, p.positions, strict=True):
                if pos >= r.membership_pos:
                    out[event.event_id] = r.membership
                else:
                    older.append(event.event_id)
        if older:
            key = (MEMBER, user_id)
            at = await self.stores.events.get_state_at_events(older, [key])
            members = await self.stores.events.get_events(
                [ids[key] for ids in at.values() if key in ids])
            for event_id in older:
                member = members.get(at.get(event_id, {}).get(key, ""))
                out[event_id] = member.membership if member is not None \
                    and isinstance(member.membership, str) else "leave"
        return out


    # -- extensions ---------------------------------------------------------------

    async def _extensions(self, requester: Requester, req: SlidingRequest,
                          since: StreamToken | None, until: StreamToken,
                          list_rooms: dict[str, list[str]], subscribed: list[str],
                          initial_rooms: set[str], global_data: dict[str, Any],
                          room_data: dict[str, Any], all_rooms: list[ListRoom],
                          quiet_range: bool) -> dict[str, Any]:
        """The extensions asked for. With ``quiet_range`` (``sliding_fast.
        quiet``: (since, until] holds nothing that concerns the user's
        memberships, own data, devices or to-device messages, nor any
        membership of their rooms), what the range cannot have changed is
        not read: no device list changes, no account data changes; receipts
        are read only for rooms that memory says got one."""
        user_id = requester.user_id
        device_id = requester.device_id
        end = until.global_pos
        since_pos = since.global_pos if since is not None else None
        out: dict[str, Any] = {}
        memory = self.memory

        async def to_device() -> None:
            ext: ExtensionConfig | None = req.extensions.get("to_device")
            if ext is not None and ext.enabled and device_id is not None:
                ext_since = ext.since or 0
                if ext_since > end:
                    ext_since = end
                if quiet_range and not memory.to_device_pending(user_id, device_id):
                    # none stored for the device: none came in the range (a
                    # to-device write is not quiet), and none before (a
                    # message marks the device; a mark dropped by a read
                    # racing a newer message leaves that message's write in
                    # the next range, which is then not quiet)
                    out["to_device"] = {"next_batch": str(end), "events": []}
                    return
                store = self.stores.to_device
                if ext.since is not None:
                    await store.delete_messages_upto(user_id, device_id, ext_since)
                messages, upto = await store.get_messages(user_id, device_id, ext_since, end,
                                                          ext.limit)
                if not messages and upto >= end:
                    memory.set_to_device_pending(user_id, device_id, False)
                out["to_device"] = {"next_batch": str(upto), "events": messages}

        async def e2ee() -> None:
            ext: ExtensionConfig | None = req.extensions.get("e2ee")
            if ext is not None and ext.enabled:
                counts = await self.builder.key_counts(requester)
                e2ee: dict[str, Any] = {
                    "device_one_time_keys_count": one_time_keys_count(counts),
                    "device_unused_fallback_key_types": counts.unused_fallback,
                }
                if since_pos is not None and quiet_range:
                    e2ee["device_lists"] = {"changed": [], "left": []}
                elif since_pos is not None:
                    e2ee["device_lists"] = await self._device_lists(user_id, since_pos, end,
                                                                    all_rooms)
                out["e2ee"] = e2ee

        async def account_data() -> None:
            ext: ExtensionConfig | None = req.extensions.get("account_data")
            if ext is not None and ext.enabled:
                scope = _scope(ext, list_rooms, subscribed)
                if since_pos is None:
                    changed_global = dict(global_data)
                    if PUSH_RULES_TYPE not in changed_global:
                        changed_global[PUSH_RULES_TYPE] = {"global": client_ruleset(
                            await self.stores.push_rules.get_ruleset(user_id))}
                    changed_rooms = room_data
                elif quiet_range:
                    changed_global, changed_rooms = {}, {}
                else:
                    changed_global, changed_rooms = \
                        await self.stores.account_data.get_account_data_since(
                            user_id, since_pos, end)
                rooms_out: dict[str, list[dict[str, Any]]] = {}
                for room_id in scope:
                    data = room_data.get(room_id) if room_id in initial_rooms \
                        else changed_rooms.get(room_id)
                    if data:
                        rooms_out[room_id] = [{"type": t, "content": v} for t, v in data.items()]
                out["account_data"] = {
                    "global": [{"type": t, "content": v} for t, v in changed_global.items()],
                    "rooms": rooms_out}

        async def receipts() -> None:
            ext: ExtensionConfig | None = req.extensions.get("receipts")
            if ext is not None and ext.enabled:
                scope = _scope(ext, list_rooms, subscribed)
                receipts = {}
                fresh = [r for r in scope if r in initial_rooms or since_pos is None]
                if fresh:
                    receipts.update(await self.stores.receipts.get_receipt_events(
                        fresh, None, end, user_id))
                rest = [r for r in scope if r not in fresh]
                if rest and since_pos is not None and quiet_range:
                    # only the rooms that got a receipt in the range
                    found = memory.plain_events(since_pos, end)
                    got = {receipt[0] for receipt in found[2]} if found is not None \
                        else set(rest)
                    rest = [r for r in rest if r in got]
                if rest and since_pos is not None:
                    receipts.update(await self.stores.receipts.get_receipt_events(
                        rest, since_pos, end, user_id))
                out["receipts"] = {"rooms": {
                    room_id: {"type": "m.receipt", "content": content}
                    for room_id, content in receipts.items()}}

        async def typing() -> None:
            ext: ExtensionConfig | None = req.extensions.get("typing")
            if ext is not None and ext.enabled:
                scope = _scope(ext, list_rooms, subscribed)
                typing_since = since.typing_pos if since is not None else 0
                fresh = [r for r in scope if r in initial_rooms or since is None]
                typing = self.typing.get_typing(fresh, 0) if fresh else {}
                rest = [r for r in scope if r not in fresh]
                if rest:
                    typing.update(self.typing.get_typing(rest, typing_since))
                out["typing"] = {"rooms": {
                    room_id: {"type": "m.typing", "content": {"user_ids": users}}
                    for room_id, users in typing.items()}}

        # each reads its own store: all at once (those asked for)
        readers = {"to_device": to_device, "e2ee": e2ee, "account_data": account_data,
                   "receipts": receipts, "typing": typing}
        asked = [read() for name, read in readers.items()
                 if (ext := req.extensions.get(name)) is not None and ext.enabled]
        if len(asked) == 1:
            await asked[0]
        elif asked:
            await gather(asked)
        return out

    async def _device_lists(self, user_id: str, since: int, end: int,
                            rooms: list[ListRoom]) -> dict[str, list[str]]:
        """``changed``: users whose devices changed and who share a room with
        the user, and users who newly share one (the client starts tracking
        them); ``left``: users who no longer share any room with the user
        (it stops), as /sync's device_lists."""
        changed = await self.stores.sync.get_device_list_changes(user_id, since, end)
        held = [r.room_nid for r in rooms if r.membership == "join"
                or (r.membership in ("leave", "ban") and r.membership_pos > since)]
        moves = await self.stores.sliding_sync.get_membership_changes(held, since, end)
        candidates = set(moves) - {user_id}
        left_rooms = [r.room_nid for r in rooms if r.membership in ("leave", "ban")
                      and since < r.membership_pos <= end]
        for nid in left_rooms:
            candidates.update(await self.stores.rooms.get_members(nid))
        candidates.discard(user_id)
        still = await self.stores.rooms.get_room_mates(user_id, candidates) \
            if candidates else set()
        changed |= {u for u in candidates & still if moves.get(u) == "join"}
        left = candidates - still
        return {"changed": sorted(changed - left), "left": sorted(left)}


async def gather(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``coros`` at once (independent reads: the database pool runs
    them side by side); the first error is raised as it was."""
    try:
        await defer.gatherResults([defer.ensureDeferred(c) for c in coros],
                                  consumeErrors=True)
    except defer.FirstError as e:
        e.subFailure.raiseException()


def _ext_has_data(name: str, body: dict[str, Any]) -> bool:
    if name == "to_device":
        return bool(body["events"])
    if name == "e2ee":
        lists = body.get("device_lists") or {}
        return bool(lists.get("changed") or lists.get("left"))
    if name == "account_data":
        return bool(body["global"] or body["rooms"])
    return bool(body["rooms"])


def _scope(ext: ExtensionConfig, list_rooms: dict[str, list[str]],
           subscribed: list[str]) -> list[str]:
    """The rooms an extension covers: those of the lists and subscriptions
    it names (``*``: all)."""
    out: dict[str, None] = {}
    for key, room_ids in list_rooms.items():
        if WILDCARD in ext.lists or key in ext.lists:
            out.update(dict.fromkeys(room_ids))
    for room_id in subscribed:
        if WILDCARD in ext.rooms or room_id in ext.rooms:
            out[room_id] = None
    return list(out)


def _window(rooms: list[ListRoom], lc: ListConfig) -> list[ListRoom]:
    if lc.ranges is None:
        return rooms
    seen: dict[str, ListRoom] = {}
    for start, stop in lc.ranges:
        for r in rooms[start:stop + 1]:
            seen.setdefault(r.room_id, r)
    return list(seen.values())


def _order(r: ListRoom) -> tuple[int, str]:
    return (_bump(r), r.room_id)


def _bump(r: ListRoom) -> int:
    """The room's bump_stamp: its newest "proper" event while the user is in
    it; for a room they are not in, their membership (as Synapse)."""
    if r.membership == "join" and r.bump_pos is not None:
        return r.bump_pos
    return r.membership_pos


def _may_see(r: ListRoom) -> bool:
    return r.membership in ("join", "invite", "knock", "leave", "ban")


def _dm_rooms(global_data: dict[str, Any]) -> set[str]:
    direct = global_data.get(DIRECT)
    out: set[str] = set()
    if isinstance(direct, dict):
        for rooms in direct.values():
            if isinstance(rooms, list):
                out.update(r for r in rooms if isinstance(r, str))
    return out


def _room_type(state: dict[str, dict[str, Any]], r: ListRoom) -> str | None:
    t = state.get(r.room_id, {}).get("m.room.create", {}).get("type")
    return t if isinstance(t, str) else None


def _common(c: Candidate, initial: bool, dms: set[str]) -> dict[str, Any]:
    """What every room entry carries."""
    r = c.room
    common: dict[str, Any] = {"membership": r.membership, "bump_stamp": _bump(r)}
    if c.lists:
        common["lists"] = c.lists
    if initial:
        common["initial"] = True
    if r.room_id in dms:
        common["is_dm"] = True
    return common


def _is_initial(r: ListRoom, prev: SentRoom | None) -> bool:
    """Whether the room is sent as new (``initial``): never sent on this
    connection, or joined since it was sent as an invite, knock or leave
    (the client has no state of it)."""
    if prev is None:
        return True
    return r.membership == "join" and prev.membership != "join"


def _plan(c: Candidate, prev: SentRoom | None, end: int, dms: set[str]) -> Plan | None:
    """Whether a joined or left room is to be built (None: nothing new for
    this connection), decided from the room list and what was sent."""
    r = c.room
    membership_changed = prev is not None and (
        prev.membership != r.membership or r.membership_pos > prev.sent_upto)
    initial = _is_initial(r, prev)
    old_state = RoomConfig.state_from_json(prev.required_state) if prev else ()
    old_config = RoomConfig(prev.timeline_limit if prev else 0, old_state)
    expanded = not initial and c.config.timeline_limit > old_config.timeline_limit
    widened = not initial and old_config.required_state != c.config.required_state
    last = r.last_pos if r.membership == "join" else r.membership_pos
    changed = prev is not None and last is not None and last > prev.sent_upto
    if not (initial or changed or expanded or membership_changed or widened):
        return None
    assert prev is not None or initial
    return Plan(c, prev, initial, membership_changed, expanded, widened, old_config,
                room_end=end if r.membership == "join" else r.membership_pos,
                timeline_since=None if (initial or expanded or prev is None)
                else prev.sent_upto,
                common=_common(c, initial, dms))


def _wanted_state(p: Plan, user_id: str) -> None:
    """The state events the room's entry carries (``p.wanted``), whether its
    naming and its members changed, and the lazy members the client holds
    after it (``p.lazy``)."""
    now_ids, before, cfg = p.now_ids, p.before_ids, p.c.config
    p.naming_changed = p.members_changed = p.initial
    if p.initial:
        wanted = {k: v for k, v in now_ids.items() if cfg.matches(k[0], k[1], user_id)}
    else:
        wanted = {k: v for k, v in now_ids.items()
                  if before.get(k) != v and cfg.matches(k[0], k[1], user_id)}
        p.naming_changed = any(before.get(k) != now_ids.get(k) for k in NAMING_KEYS)
        p.members_changed = any(k[0] == MEMBER and before.get(k) != v
                                for k, v in now_ids.items()) or any(
            k[0] == MEMBER and k not in now_ids for k in before)
        if p.widened:
            wanted.update({k: v for k, v in now_ids.items()
                           if cfg.matches(k[0], k[1], user_id)
                           and not p.old_config.matches(k[0], k[1], user_id)})
    if cfg.lazy_members:
        # the member events of the timeline's people, those the client
        # does not hold already (as of the response it built on)
        held = dict(p.prev.lazy_members) if p.prev is not None and not p.initial \
            and not p.widened else {}
        people = {e.sender for e in p.events}
        people.update(e.state_key for e in p.events
                      if e.type == MEMBER and e.state_key is not None)
        for person in people:
            eid = now_ids.get((MEMBER, person))
            if eid is not None and held.get(person) != eid:
                wanted[(MEMBER, person)] = eid
        held.update({k[1]: v for k, v in wanted.items() if k[0] == MEMBER})
        if len(held) <= MAX_LAZY_HELD:
            p.lazy.update(held)
    p.wanted = wanted


def _name(events: dict[str, Event], naming: dict[tuple[str, str], str]) -> str | None:
    """The room's name from its ``m.room.name`` event (None: none, or empty)."""
    event = events.get(naming.get(("m.room.name", ""), ""))
    name = event.content.get("name") if event is not None else None
    return name if isinstance(name, str) and name else None


def _heroes(hero_ids: list[str], state: dict[tuple[str, str], str],
            events: dict[str, Event]) -> list[dict[str, Any]]:
    out = []
    for hero in hero_ids:
        entry: dict[str, Any] = {"user_id": hero}
        event = events.get(state.get((MEMBER, hero), ""))
        if event is not None:
            if isinstance(event.content.get("displayname"), str):
                entry["displayname"] = event.content["displayname"]
            if isinstance(event.content.get("avatar_url"), str):
                entry["avatar_url"] = event.content["avatar_url"]
        out.append(entry)
    return out
