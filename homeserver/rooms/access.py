"""Who may read what of a room, and reading it in the client format.

Two gates. The room gate (``check_read``): a user reads a room they are
joined to; a user who has left (or was banned) reads it as it was when they
left: the state at their membership event and the timeline up to it; anyone
reads a ``world_readable`` room (peeking). Everyone else gets 403
M_FORBIDDEN, whether or not the room exists, so the answer does not tell a
stranger which rooms there are. Invitees are outsiders until they join, as
on Synapse.

The event gate (``filter_visible``): every timeline event that goes out
(``/messages``, ``/event``, ``/context``, ``timestamp_to_event``) passes the
history visibility rules of ``rooms/visibility.py``, judged on the state
after each event (its snapshot) and the reader's later memberships. State
reads (``/state``, ``/members``) are not filtered per event: they show the
state the room gate allows (now, or at the reader's leave). The gate
gives events back as the reader may have them: an erased sender's
(``UserStore.get_erased``) comes back redacted to a reader who was not
joined when it was sent, so callers use what it returns, not their input.

Timeline pages (``paginate``) scan the stream in batches, dropping what the
``RoomEventFilter`` or the visibility rules refuse, until the page is full;
the next token points after the last event *scanned*, so a client never
sees the same hidden stretch twice.

Both gates also drop the non-state events of users the reader ignores
(``rooms/ignored.py``) and, with retention on, expired messages
(``rooms/retention.py``).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.errors import forbidden
from homeserver.events.model import Event
from homeserver.glob import compile_glob
from homeserver.http.request import Requester
from homeserver.rooms.client_format import client_event, redacted_by
from homeserver.rooms.ignored import is_hidden
from homeserver.rooms.relations import (
    aggregation_rows_for,
    bundle_aggregations,
    bundle_aggregations_many,
)
from homeserver.rooms.visibility import (
    HISTORY_VISIBILITY_KEY,
    HISTORY_VISIBILITY_TYPE,
    MEMBER_TYPE,
    VisibilityAtEvent,
    can_peek,
    filter_events_for_client,
    history_visibility_of,
)
from homeserver.storage.relations import AggregationRows
from homeserver.storage.rooms import Membership, RoomInfo

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.rooms.ignored import IgnoredUsers
    from homeserver.rooms.retention import RoomRetention
    from homeserver.storage import Stores

StateKey = tuple[str, str]

# A page scans at most this many batches before returning what it has.
MAX_SCAN_BATCHES = 5


def scan_batch(limit: int) -> int:
    """How many rows ``paginate`` reads at a time for a page of ``limit``."""
    return min(max(2 * limit, 20), 1000)


@dataclass(frozen=True)
class SerializeAhead:
    """What ``serialize`` reads about each event, read for many rooms' events
    at once (an initial sync): for the events of ``covered``, their
    transaction IDs, the state they replaced and their aggregation rows
    (absent: none). ``serialize`` asks the database only about the others."""

    covered: frozenset[str]
    txn_ids: dict[str, str]
    replaced: dict[str, Event]
    aggregations: AggregationRows


def txn_scope(requester: Requester) -> str:
    """What a client transaction ID is unique within: the device, else the token."""
    if requester.device_id is not None:
        return requester.device_id
    return f"token:{requester.access_token_id}"


# -- RoomEventFilter ----------------------------------------------------------------


def _strings(value: Any) -> tuple[str, ...] | None:
    # non-strings dropped: they could never match, and must not crash a match
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))


def type_matches(event_type: str, pattern: str) -> bool:
    """The spec's rule for filter types: ``*`` matches any run of characters;
    nothing else is special. The matcher cannot backtrack: a filter is the
    client's to write, and an event type the sender's."""
    if "*" not in pattern:
        return event_type == pattern
    return compile_glob(pattern, question_mark=False).matches(event_type)


@dataclass(frozen=True)
class RoomEventFilter:
    """The parts of a ``RoomEventFilter`` that room reads apply (pure)."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RoomEventFilter:
        """From a filter already checked against the spec's schema."""
        limit = body.get("limit")
        contains_url = body.get("contains_url")
        return cls(
            limit=limit if isinstance(limit, int) else None,
            types=_strings(body.get("types")),
            not_types=_strings(body.get("not_types")) or (),
            senders=_strings(body.get("senders")),
            not_senders=_strings(body.get("not_senders")) or (),
            contains_url=contains_url if isinstance(contains_url, bool) else None,
            lazy_load_members=body.get("lazy_load_members") is True,
        )

    def matches(self, event: Event) -> bool:
        if any(type_matches(event.type, p) for p in self.not_types):
            return False
        if self.types is not None and not any(
                type_matches(event.type, p) for p in self.types):
            return False
        if event.sender in self.not_senders:
            return False
        if self.senders is not None and event.sender not in self.senders:
            return False
        if self.contains_url is not None:
            return isinstance(event.content.get("url"), str) == self.contains_url
        return True


NO_FILTER = RoomEventFilter()


# -- reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadAccess:
    room: RoomInfo
    membership: Membership | None
    # the last stream position the reader may see (None: up to now)
    until_stream: int | None
    # the state the reader sees (None: the current state)
    snapshot_nid: int | None


@dataclass(frozen=True)
class Page:
    """A page of the timeline, in the order read."""

    events: list[Event]
    # where the next page in the same direction starts (a stream position)
    next_pos: int
    # nothing further in this direction (as of now)
    exhausted: bool
    # the stream position of each of ``events``
    positions: tuple[int, ...] = ()


def add_memberships(serialised: Iterable[dict[str, Any]],
                    memberships: Mapping[str, str]) -> None:
    """Set ``unsigned.membership`` of serialised events from ``memberships``
    (event ID -> the reader's membership at it; ``RoomReader.memberships_at``)."""
    for entry in serialised:
        membership = memberships.get(entry.get("event_id", ""))
        if membership is not None:
            entry.setdefault("unsigned", {})["membership"] = membership


class RoomReader:
    def __init__(self, ctx: "ServerContext", stores: "Stores", ignored: "IgnoredUsers",
                 retention: "RoomRetention | None" = None) -> None:
        self.ctx = ctx
        self.stores = stores
        # the users each reader ignores: their events are left out (rooms/ignored.py)
        self.ignored = ignored
        # expired messages are left out (rooms/retention.py); None: retention is off
        self.retention = retention

    async def check_read(self, user_id: str, room_id: str) -> ReadAccess:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise forbidden("You are not allowed to view this room.")
        membership = await self.stores.rooms.get_membership(user_id, room.room_nid)
        if membership is not None and membership.membership == "join":
            return ReadAccess(room, membership, None, None)
        # a user who left reads the room as it was when they left; a banned
        # user reads nothing (unless the room is world-readable), as on Synapse
        if membership is not None and membership.membership == "leave":
            pos = await self.stores.events.get_event_position(membership.event_id)
            snapshot = pos.snapshot_nid if pos is not None else None
            return ReadAccess(room, membership, membership.stream_ordering, snapshot)
        visibility = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [HISTORY_VISIBILITY_KEY])
        if visibility:
            event = await self.stores.events.get_event(visibility[HISTORY_VISIBILITY_KEY])
            if can_peek(history_visibility_of(event)):
                return ReadAccess(room, membership, None, None)
        raise forbidden("You are not allowed to view this room.")

    # -- state ----------------------------------------------------------------

    async def get_state(self, access: ReadAccess,
                        event_type: str | None = None) -> dict[StateKey, Event]:
        if access.snapshot_nid is None:
            ids = await self.stores.rooms.get_current_state_ids(access.room.room_nid,
                                                                event_type=event_type)
        else:
            ids = await self.stores.state.get_snapshot_ids(access.snapshot_nid, event_type)
        return await self._events_of(ids)

    async def get_state_event(self, access: ReadAccess, event_type: str,
                              state_key: str) -> Event | None:
        if access.snapshot_nid is None:
            ids = await self.stores.rooms.get_current_state_ids(
                access.room.room_nid, [(event_type, state_key)])
            event_id = ids.get((event_type, state_key))
            return await self.stores.events.get_event(event_id) if event_id else None
        state = await self.get_state(access, event_type)
        return state.get((event_type, state_key))

    async def get_state_at_snapshot(self, snapshot_nid: int,
                                    event_type: str | None = None) -> dict[StateKey, Event]:
        return await self._events_of(
            await self.stores.state.get_snapshot_ids(snapshot_nid, event_type))

    async def get_members_at(self, access: ReadAccess,
                             at_pos: int | None) -> dict[StateKey, Event]:
        """The ``m.room.member`` state the reader sees, at the stream position
        ``at_pos`` (``/members?at=``) or as ``get_state`` gives it."""
        if at_pos is not None:
            if access.until_stream is not None:
                at_pos = min(at_pos, access.until_stream)
            snapshot = await self.stores.events.get_snapshot_at_stream(
                access.room.room_nid, at_pos)
            if snapshot is None:
                return {}
            return await self.get_state_at_snapshot(snapshot, MEMBER_TYPE)
        return await self.get_state(access, MEMBER_TYPE)

    async def get_state_at_event(self, event_id: str,
                                 keys: list[StateKey]) -> dict[StateKey, Event]:
        """The state after ``event_id``, only ``keys``."""
        ids = (await self.stores.events.get_state_at_events([event_id], keys)).get(event_id, {})
        return await self._events_of(ids)

    async def _events_of(self, ids: dict[StateKey, str]) -> dict[StateKey, Event]:
        events = await self.stores.events.get_events(list(ids.values()))
        return {k: events[v] for k, v in ids.items() if v in events}

    # -- the timeline ---------------------------------------------------------

    async def filter_visible(self, user_id: str, access: ReadAccess,
                             events: Sequence[tuple[int, Event]]) -> list[Event]:
        """Those of ``events`` ((stream position, event), oldest first) that
        history visibility lets ``user_id`` see, in the same order."""
        return (await self.filter_visible_many(user_id, [(access, events)]))[0]

    async def filter_visible_many(
            self, user_id: str, pages: Sequence[tuple[ReadAccess, Sequence[tuple[int, Event]]]],
    ) -> list[list[Event]]:
        """``filter_visible`` of the events of many rooms (an initial sync's
        first pages), each read once for all of them."""
        ignored = await self.ignored.get(user_id)
        kept = [[(p, e) for p, e in events if not is_hidden(e, ignored)]
                for _, events in pages]
        if self.retention is not None:
            kept = [await self.retention.drop_expired(page_access.room.room_id, events)
                    if events else events
                    for (page_access, _), events in zip(pages, kept, strict=True)]
        every = [e for events in kept for _, e in events]
        if not every:
            return [[] for _ in pages]
        ids = [e.event_id for e in every]
        state_ids = await self.stores.events.get_state_at_events(
            ids, [HISTORY_VISIBILITY_KEY, (MEMBER_TYPE, user_id)])
        state_events = await self.stores.events.get_events(
            [sid for m in state_ids.values() for sid in m.values()])
        exceptions = [e.event_id for e in every if e.state_key is not None and (
            (e.type == HISTORY_VISIBILITY_TYPE and e.state_key == "")
            or (e.type == MEMBER_TYPE and e.state_key == user_id))]
        replaced = await self.stores.events.get_replaced_state(exceptions)
        erased = await self.stores.users.get_erased({e.sender for e in every})
        out: list[list[Event]] = []
        for (access, _), events in zip(pages, kept, strict=True):
            if not events:
                out.append([])
                continue
            pairs = []
            for _, event in events:
                state = {k: state_events[v]
                         for k, v in state_ids.get(event.event_id, {}).items()
                         if v in state_events}
                pairs.append((event, VisibilityAtEvent.from_state_after(
                    user_id, event, state, replaced.get(event.event_id))))
            newest = max(pos for pos, _ in events)
            joined_after = await self._joined_after(user_id, access, newest)
            out.append(filter_events_for_client(user_id, pairs,
                                                joined_after_events=joined_after,
                                                erased_senders=erased))
        return out

    async def _joined_after(self, user_id: str, access: ReadAccess, pos: int) -> bool:
        """Whether ``user_id`` was joined at some point after stream position ``pos``."""
        if access.membership is not None and access.membership.membership == "join":
            return True
        later = await self.stores.events.get_member_event_ids(
            access.room.room_nid, user_id, after=pos, until=access.until_stream)
        events = await self.stores.events.get_events(later)
        return any(e.membership == "join" for e in events.values())

    async def _visible(self, user_id: str, access: ReadAccess,
                       events: Sequence[tuple[int, Event]],
                       current_state_visible: bool) -> list[Event]:
        """``filter_visible``, plus (``current_state_visible``, for a joined
        reader) the state events it hides that are the room's current state."""
        shown = await self.filter_visible(user_id, access, events)
        return await self._with_current_state(access, events, shown, current_state_visible)

    async def visible_many(
            self, user_id: str, pages: Sequence[tuple[ReadAccess, Sequence[tuple[int, Event]]]],
            current_state_visible: bool) -> list[list[Event]]:
        """``_visible`` of many rooms' events, the reads shared: what
        ``paginate`` takes as ``first_visible``."""
        shown = await self.filter_visible_many(user_id, pages)
        return [await self._with_current_state(access, events, visible, current_state_visible)
                for (access, events), visible in zip(pages, shown, strict=True)]

    async def _with_current_state(self, access: ReadAccess,
                                  events: Sequence[tuple[int, Event]], shown: list[Event],
                                  current_state_visible: bool) -> list[Event]:
        if not current_state_visible or access.membership is None \
                or access.membership.membership != "join":
            return shown
        by_id = {e.event_id: e for e in shown}  # as the gate gives them
        hidden_state = [e.event_id for _, e in events
                        if e.is_state() and e.event_id not in by_id]
        if not hidden_state:
            return shown
        current = await self.stores.rooms.get_current_state_among(access.room.room_nid,
                                                                  hidden_state)
        return [by_id.get(e.event_id, e) for _, e in events
                if e.event_id in by_id or e.event_id in current]

    async def paginate(self, user_id: str, access: ReadAccess, *, from_pos: int,
                       to_pos: int | None, backwards: bool, limit: int,
                       event_filter: RoomEventFilter = NO_FILTER,
                       current_state_visible: bool = False,
                       first_rows: Sequence[tuple[int, Event]] | None = None,
                       first_rows_limit: int | None = None,
                       first_visible: list[Event] | None = None) -> Page:
        """Up to ``limit`` events ``user_id`` may see that ``event_filter``
        matches: backwards, positions <= ``from_pos`` and > ``to_pos``, newest
        first; forwards, > ``from_pos`` and <= ``to_pos``, oldest first.
        A reader who left never reads past their leave.

        ``current_state_visible`` (a sync's timeline) also keeps state events
        that history visibility hides but that are the room's current state:
        a member sees the current state anyway, and a client that rejoined
        learns in its timeline who joined while it was away (as Synapse's
        sync does).

        ``first_rows``: the first batch of rows (``first_rows_limit`` of them
        asked for, ``scan_batch(limit)`` by default, from ``from_pos``), read
        already with other rooms'; ``first_visible``: what ``_visible`` says
        of those of them before the reader's join (``visible_many``)."""
        until = access.until_stream
        if until is not None:
            if backwards:
                from_pos = min(from_pos, until)
            else:
                to_pos = until if to_pos is None else min(to_pos, until)
        kept: list[Event] = []
        kept_positions: list[int] = []
        ignored = await self.ignored.get(user_id)
        pos = from_pos
        exhausted = False
        batch = scan_batch(limit)
        for scan in range(MAX_SCAN_BATCHES):
            if len(kept) >= limit:
                break
            asked = batch
            if scan == 0 and first_rows is not None:
                rows = list(first_rows)
                asked = first_rows_limit if first_rows_limit is not None else batch
            else:
                rows = await self.stores.events.get_room_events(
                    access.room.room_nid, from_pos=pos, to_pos=to_pos, backwards=backwards,
                    limit=batch)
            oldest_first = list(reversed(rows)) if backwards else rows
            if self.retention is not None:
                oldest_first = await self.retention.drop_expired(access.room.room_id,
                                                                 oldest_first)
            # A member sees everything after they joined: only older events
            # need the history visibility rules.
            joined_at = (access.membership.stream_ordering
                         if access.membership is not None
                         and access.membership.membership == "join" else None)
            to_check = [r for r in oldest_first if joined_at is None or r[0] <= joined_at]
            visible = {e.event_id: e for p, e in oldest_first if joined_at is not None
                       and p > joined_at}
            checked = not to_check
            for row_pos, event in rows:
                if not checked and (joined_at is None or row_pos <= joined_at):
                    # Only now, if the page is not full yet: a backward page
                    # of a member's newest events (a sync's timeline) mostly
                    # fills before it reaches the join, and skips the reads.
                    # As the gate gives them: an erased sender's event may
                    # come back redacted.
                    if scan == 0 and first_visible is not None:
                        shown = first_visible
                    else:
                        shown = await self._visible(user_id, access, to_check,
                                                    current_state_visible)
                    visible.update((e.event_id, e) for e in shown)
                    checked = True
                pos = row_pos - 1 if backwards else row_pos
                seen = visible.get(event.event_id)
                if seen is None:
                    continue
                event = seen
                if event_filter.matches(event) and not is_hidden(event, ignored):
                    kept.append(event)
                    kept_positions.append(row_pos)
                    if len(kept) >= limit:
                        break
            if len(rows) < asked and len(kept) < limit:
                exhausted = True
                break
        return Page(kept, pos, exhausted, tuple(kept_positions))

    # -- the client format ----------------------------------------------------

    async def memberships_at(self, user_id: str, membership: Membership | None,
                             events: Sequence[Event], positions: Sequence[int],
                             ) -> dict[str, str]:
        """Event ID -> ``user_id``'s membership at each of ``events`` (at
        stream ``positions``), the event's own change included: the
        ``unsigned.membership`` of MSC4115 (spec v1.11). Their membership now
        (``membership``, None: none) for events at or after their newest
        member event; for older ones it is read from the state after each
        event (all in one read). No member event then: ``leave``."""
        return await self.memberships_at_many(user_id, [(membership, events, positions)])

    async def memberships_at_many(
            self, user_id: str,
            rooms: Iterable[tuple[Membership | None, Sequence[Event], Sequence[int]]],
    ) -> dict[str, str]:
        """``memberships_at`` of several rooms' events ((membership, events,
        positions) per room) with one read for all of them."""
        out: dict[str, str] = {}
        older: list[str] = []
        for membership, events, positions in rooms:
            for event, pos in zip(events, positions, strict=True):
                if membership is not None and pos >= membership.stream_ordering:
                    out[event.event_id] = membership.membership
                elif membership is None:
                    out[event.event_id] = "leave"
                else:
                    older.append(event.event_id)
        if older:
            key = (MEMBER_TYPE, user_id)
            at = await self.stores.events.get_state_at_events(older, [key])
            members = await self.stores.events.get_events(
                [ids[key] for ids in at.values() if key in ids])
            for event_id in older:
                member = members.get(at.get(event_id, {}).get(key, ""))
                value = member.content.get("membership") if member is not None else None
                out[event_id] = value if isinstance(value, str) else "leave"
        return out

    async def serialize_at(self, requester: Requester, room_id: str,
                           membership: Membership | None, events: Sequence[Event],
                           positions: Sequence[int]) -> list[dict[str, Any]]:
        """``serialize``, each event with the requester's membership at it in
        ``unsigned.membership`` (``memberships_at``): what /messages,
        /context and /sync timelines give."""
        out = await self.serialize(requester, room_id, events)
        add_memberships(out, await self.memberships_at(requester.user_id, membership,
                                                        events, positions))
        return out

    async def read_ahead_for_serialize(self, requester: Requester,
                                       events: Sequence[Event]) -> SerializeAhead:
        """What ``serialize`` of ``events`` (of any rooms) would read, in three
        queries: hand it to each room's ``serialize``."""
        own = [e.event_id for e in events if e.sender == requester.user_id]
        txn_ids = await self.stores.rooms.get_txn_ids_for_events(
            requester.user_id, txn_scope(requester), own)
        replaced = await self.stores.events.get_replaced_state(
            [e.event_id for e in events if e.is_state()])
        rows = await aggregation_rows_for(self.stores, self.ignored, requester.user_id, events)
        return SerializeAhead(frozenset(e.event_id for e in events), txn_ids, replaced, rows)

    async def serialize(self, requester: Requester, room_id: str,
                        events: Iterable[Event],
                        ahead: SerializeAhead | None = None) -> list[dict[str, Any]]:
        """``events`` in the client format, as ``requester`` sees them
        (``ahead``: what was read already of some of them)."""
        events = list(events)
        redactions = await self.stores.events.get_events(
            [r for r in (redacted_by(e) for e in events) if r is not None])
        covered = ahead.covered if ahead is not None else frozenset()
        unread = [e for e in [*events, *redactions.values()] if e.event_id not in covered]
        own = [e.event_id for e in unread if e.sender == requester.user_id]
        read_txn_ids = await self.stores.rooms.get_txn_ids_for_events(
            requester.user_id, txn_scope(requester), own)
        read_replaced = await self.stores.events.get_replaced_state(
            [e.event_id for e in unread if e.is_state()])
        txn_ids: Mapping[str, str] = read_txn_ids
        replaced: Mapping[str, Event] = read_replaced
        if ahead is not None:  # (no copies: ahead may hold a thousand rooms' events)
            txn_ids = ChainMap(read_txn_ids, ahead.txn_ids)
            replaced = ChainMap(read_replaced, ahead.replaced)
        now = self.ctx.now_ms()
        because = {eid: client_event(r, room_id, now, transaction_id=txn_ids.get(eid))
                   for eid, r in redactions.items()}
        bundles = await bundle_aggregations(
            self.stores, self.ignored, requester.user_id, room_id, events, now,
            (covered, ahead.aggregations) if ahead is not None else None)
        out = []
        for e in events:
            by = redacted_by(e)
            out.append(client_event(e, room_id, now, transaction_id=txn_ids.get(e.event_id),
                                    replaced=replaced.get(e.event_id),
                                    redacted_because=because.get(by) if by else None,
                                    relations=bundles.get(e.event_id)))
        return out


    async def serialize_many(self, requester: Requester,
                             rooms: Sequence[tuple[str, Sequence[Event]]],
                             ahead: SerializeAhead | None = None,
                             ) -> list[list[dict[str, Any]]]:
        """``serialize`` of the events of several rooms ((room ID, events)),
        each read (redactions, transaction IDs, replaced state, relations)
        made once for all of them (``ahead``: what was read already of some
        of them); the lists in the order of ``rooms``."""
        events = [e for _, room_events in rooms for e in room_events]
        if not events:
            return [[] for _ in rooms]
        redactions = await self.stores.events.get_events(
            [r for r in (redacted_by(e) for e in events) if r is not None])
        covered = ahead.covered if ahead is not None else frozenset()
        own = [e.event_id for e in [*events, *redactions.values()]
               if e.sender == requester.user_id and e.event_id not in covered]
        now = self.ctx.now_ms()

        async def bundle() -> dict[str, dict[str, Any]]:
            if ahead is None or any(e.event_id not in covered for e in events):
                return await bundle_aggregations_many(
                    self.stores, self.ignored, requester.user_id, rooms, now)
            rows = ahead.aggregations
            if not (rows.edits or rows.threads or rows.references):
                return {}
            out: dict[str, dict[str, Any]] = {}
            for room_id, room_events in rooms:
                out.update(await bundle_aggregations(
                    self.stores, self.ignored, requester.user_id, room_id, room_events, now,
                    (covered, rows)))
            return out

        # three independent reads, side by side
        reads: list[defer.Deferred[Any]] = [
            defer.ensureDeferred(self.stores.rooms.get_txn_ids_for_events(
                requester.user_id, txn_scope(requester), own)),
            defer.ensureDeferred(self.stores.events.get_replaced_state(
                [e.event_id for e in events if e.is_state() and e.event_id not in covered])),
            defer.ensureDeferred(bundle())]
        try:
            txn_ids, replaced, bundles = await defer.gatherResults(reads, consumeErrors=True)
        except defer.FirstError as first:
            first.subFailure.raiseException()
        if ahead is not None:
            txn_ids = {**ahead.txn_ids, **txn_ids}
            replaced = {**ahead.replaced, **replaced}
        out = []
        for room_id, room_events in rooms:
            formatted = []
            for e in room_events:
                by = redacted_by(e)
                because = None
                if by is not None and by in redactions:
                    because = client_event(redactions[by], room_id, now,
                                           transaction_id=txn_ids.get(by))
                formatted.append(client_event(
                    e, room_id, now, transaction_id=txn_ids.get(e.event_id),
                    replaced=replaced.get(e.event_id), redacted_because=because,
                    relations=bundles.get(e.event_id)))
            out.append(formatted)
        return out
