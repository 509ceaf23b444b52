"""The full builder: a /sync response read from the database, room by room.

``RoomBuilder.build`` answers any sync the fast path (``sync/fast_path.py``)
does not: it asks the stream-indexed tables what changed for the user in the
range (rooms with new events or receipts, account data, to-device messages,
presence, device lists; ``storage/sync.py``) and then reads only those rooms,
a few at a time; an initial or ``full_state`` sync reads every room of the
user. Typing comes from memory (``edu/typing.py``).

Per joined room: the timeline is the newest ``limit`` events of the range
that the filter and history visibility let through (plus state events that
visibility hides but that are current state: a rejoining member learns who
came while it was away), ``limited`` when there were more or the user newly
joined, with ``prev_batch`` the pagination token just before them (the
room's end when an initial sync's timeline holds the whole room, as
Synapse). The state is the state at the start of the timeline: all of it for
an initial sync, a room the user newly joined (or joined and left since the
last sync), or ``full_state``; for an incremental ``limited`` timeline, the
entries that differ from the state at ``since``; otherwise nothing (every
change is in the timeline). With lazy-loaded members, member events are
those the gap changed and those of the timeline's senders, less those this
connection was already sent (``sync/lazy_members.py``, where what was read
of the room's members and summary is left for the fast path too). A room's
summary has heroes only
when it has neither name nor canonical alias.

Unread notification counts are the user's rows of ``event_push_actions``
(the push rules' verdict, written when each event was persisted:
``storage/push_rules.py``) after the user's read receipt. The counts it
finds are left in ``SyncMemory`` (``sync/memory.py``), from which the fast
path carries them forward; so are the devices left with unacknowledged
to-device messages. The response's shape is ``sync/encoder.py``'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.events.model import Event
from homeserver.http.request import Requester
from homeserver.push.rules import client_ruleset
from homeserver.rooms.access import ReadAccess, SerializeAhead, add_memberships
from homeserver.storage.e2e_keys import KeyCounts
from homeserver.storage.push_rules import PUSH_RULES_TYPE
from homeserver.storage.rooms import Membership, RoomInfo
from homeserver.storage.sync import RoomMembership
from homeserver.sync.encoder import (
    ephemeral_section,
    room_sections,
    sync_body,
    timeline_section,
    unread_section,
)
from homeserver.sync.filter import (
    apply_event_fields,
    room_event_matches,
    room_filter_blocks_all,
)
from homeserver.sync.lazy_members import RoomSummary, connection, summary_body, summary_dict
from homeserver.sync.tokens import StreamToken, pagination_token

if TYPE_CHECKING:
    from homeserver.e2e.keys import E2eKeyHandler
    from homeserver.edu.presence import PresenceHandler
    from homeserver.edu.typing import TypingManager
    from homeserver.rooms.access import RoomReader
    from homeserver.storage import Stores
    from homeserver.sync.filter import SyncFilter
    from homeserver.sync.handler import SyncParams
    from homeserver.sync.memory import SyncMemory

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]

MEMBER = "m.room.member"
# the state an invitee or knocker sees of the room (the spec's recommendation)
STRIPPED_STATE_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name",
                        "m.room.avatar", "m.room.canonical_alias", "m.room.encryption",
                        "m.room.topic")
MAX_COUNTED_UNREAD = 1000
# rooms read at once in an initial sync
ROOM_CONCURRENCY = 8


@dataclass
class Changes:
    """What the whole response needs to know before building rooms."""

    typing: dict[str, list[str]]
    receipts_since: int | None
    room_account_data: dict[str, dict[str, dict[str, Any]]]
    device_changed: set[str]
    device_left_candidates: set[str]
    # the user joined a room in this range: they need its members' presence
    newly_joined: bool = False
    # others who joined a room of the user in this range: their presence too
    newly_met: set[str] = field(default_factory=set)
    # rooms with receipts in the range (None: any room may have some)
    receipt_rooms: set[str] | None = None
    # read for every joined room at once (an initial sync): receipts by room
    # ID, (member counts, heroes) by room NID
    receipts: dict[str, dict[str, Any]] | None = None
    summaries: dict[int, tuple[dict[str, int], list[str]]] | None = None
    # with ``summaries``: the rooms among them that have a name or alias
    named: set[int] | None = None
    # read for every joined room at once too: room NID -> unread counts
    # (the room's and, per thread, ``unread_thread_notifications``)
    unread: dict[int, tuple[dict[str, int], dict[str, dict[str, int]]]] | None = None
    # read for every joined room at once too (``_read_ahead``): room ID -> its
    # timeline (events oldest first, their positions, limited), and room
    # NID -> the state at the timeline's start
    timelines: dict[str, tuple[list[Event], list[int], bool]] | None = None
    state_at_start: dict[int, dict[StateKey, str]] | None = None
    # and what serialising those timelines and states reads
    serialize_ahead: SerializeAhead | None = None
    # and the user's membership at each of those timelines' events
    # (``unsigned.membership``, MSC4115), event ID -> membership
    memberships: dict[str, str] | None = None


def _stripped(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key, "content": event.content,
            "sender": event.sender}


class RoomBuilder:
    """The full builder: reads what changed from the database, room by room."""

    def __init__(self, stores: "Stores", typing: "TypingManager",
                 presence: "PresenceHandler", room_reader: "RoomReader",
                 e2e_keys: "E2eKeyHandler", memory: "SyncMemory") -> None:
        self.stores = stores
        self.typing = typing
        self.presence = presence
        self.room_reader = room_reader
        self.e2e_keys = e2e_keys
        self.memory = memory
        self.sent_members = memory.sent_members
        self.facts = memory.facts

    async def key_counts(self, requester: Requester) -> KeyCounts:
        """The device's one-time key counts and unused fallback key types."""
        counts = self.e2e_keys.cached_counts(requester.user_id, requester.device_id)
        if counts is None:
            counts = await self.e2e_keys.key_counts(requester.user_id, requester.device_id)
        return counts

    async def build(self, requester: Requester, since: StreamToken | None,
                    until: StreamToken, params: "SyncParams") -> dict[str, Any]:
        """The response from ``since`` (None: an initial sync) to ``until``
        (the current token), read from the database."""
        user_id = requester.user_id
        device_id = requester.device_id
        f = params.filter
        since_pos = since.global_pos if since is not None else 0

        typing = self.typing.rooms_changed_since(since.typing_pos if since else 0)
        found = await self.stores.sync.get_changes(
            user_id, device_id, since_pos if since is not None else None, until.global_pos,
            extra_rooms=typing, all_rooms=params.full_state)
        until = replace(until, global_pos=found.until)
        end = found.until
        to_device = found.to_device
        if device_id is not None:
            self.memory.set_to_device_pending(user_id, device_id, bool(to_device))
        global_data = found.global_account_data
        memberships = found.memberships
        changes = Changes(
            typing=self.typing.get_typing(
                [m.room_id for m in memberships if m.membership == "join"],
                since.typing_pos if since else 0),
            receipts_since=since_pos if since is not None else None,
            room_account_data=found.room_account_data,
            device_changed=set(found.device_lists_changed), device_left_candidates=set(),
            receipt_rooms=found.receipt_rooms)

        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        leave: dict[str, Any] = {}
        knock: dict[str, Any] = {}
        joined = [m for m in memberships if m.membership == "join" and f.room_allowed(m.room_id)]
        unread_from = await self._unread_positions(user_id, joined)
        if since is None and len(joined) > 1:
            # what every room needs, in one read each instead of one per room
            changes.receipts = await self.stores.receipts.get_receipt_events(
                [m.room_id for m in joined], None, end, user_id)
            changes.summaries = await self.stores.sync.get_summaries(
                [m.room_nid for m in joined], user_id)
            changes.named = await self._named_rooms([m.room_nid for m in joined])
            changes.unread = await self._unread_counts_many(
                user_id, joined, unread_from, end, f.unread_thread_notifications)
            await self._read_ahead(requester, joined, end, f, changes)

        async def one_joined(m: RoomMembership) -> None:
            room = await self._joined_room(requester, m, since, end, f, params.full_state,
                                           changes, unread_from.get(m.room_id, 0))
            if room is not None:
                join[m.room_id] = room

        await self._gather([one_joined(m) for m in joined])

        for m in memberships:
            if not f.room_allowed(m.room_id) or m.membership == "join":
                continue
            is_new = since is None or m.stream_ordering > since_pos or params.full_state
            if m.membership == "invite" and is_new:
                if await self._invited_by_ignored(user_id, m.event_id):
                    continue
                invite[m.room_id] = {"invite_state": {
                    "events": await self._stripped_state(m.event_id)}}
            elif m.membership == "knock" and is_new:
                knock[m.room_id] = {"knock_state": {
                    "events": await self._stripped_state(m.event_id)}}
            elif m.membership in ("leave", "ban") and is_new:
                if since is None and not f.include_leave:
                    continue
                room = await self._left_room(requester, m, since, f, params.full_state,
                                             changes)
                if room is not None:
                    leave[m.room_id] = room

        presence: list[dict[str, Any]] = []
        if not f.presence.blocks_all():
            presence = await self.presence.get_presence_events(
                user_id, since_pos if since is not None and not changes.newly_joined else None,
                end, newly_met=changes.newly_met)
            presence = [p for p in presence if f.presence.matches(p["type"], p["sender"])]
        if (since is None or params.full_state) and PUSH_RULES_TYPE not in global_data:
            # a user who never changed a rule has the default ruleset, and
            # clients (Element) read it from here, as Synapse serves it
            global_data = dict(global_data)
            global_data[PUSH_RULES_TYPE] = {"global": client_ruleset(
                await self.stores.push_rules.get_ruleset(user_id))}
        account_data = [{"type": t, "content": c} for t, c in global_data.items()
                        if f.account_data.matches(t, user_id)]

        left: set[str] = set()
        if changes.device_left_candidates:
            still = await self.stores.rooms.get_room_mates(
                user_id, changes.device_left_candidates)
            left = changes.device_left_candidates - still - {user_id}
            changes.device_changed -= left
        return sync_body(str(until), join, invite, leave, knock, presence, account_data,
                         to_device, changes.device_changed, left,
                         await self.key_counts(requester))

    # -- pieces sliding sync (sync/sliding.py) shares --------------------------

    async def gather(self, coros: list[Any]) -> None:
        await self._gather(coros)

    async def state_ids_at(self, room_nid: int, pos: int) -> dict[StateKey, str]:
        """The room's state after its last event at or before ``pos``."""
        return await self._state_ids_at(room_nid, pos)

    async def stripped_state(self, event_id: str) -> list[dict[str, Any]]:
        """The stripped state an invite or knock ``event_id`` shows."""
        return await self._stripped_state(event_id)

    async def unread_positions(self, user_id: str,
                               joined: list[RoomMembership]) -> dict[str, int]:
        return await self._unread_positions(user_id, joined)

    async def unread_counts_many(self, user_id: str, after: dict[int, int],
                                 end: int) -> dict[int, dict[str, int]]:
        """``unread_counts`` of many rooms (room NID -> its read position) in
        one query."""
        rows = await self.stores.push_rules.get_unread_actions_many(
            after, user_id, end, MAX_COUNTED_UNREAD)
        return {nid: unread_section(len(found), sum(1 for _, h, _ in found if h))
                for nid, found in rows.items()}

    async def unread_counts(self, room_nid: int, user_id: str, after: int,
                            end: int) -> dict[str, int]:
        """``notification_count`` and ``highlight_count`` of the room."""
        counts, _ = await self._unread_counts(room_nid, user_id, after, end, False)
        return counts

    @staticmethod
    async def _gather(coros: list[Any]) -> None:
        """Run ``coros`` a few at a time (the database pool is small)."""
        for start in range(0, len(coros), ROOM_CONCURRENCY):
            await defer.gatherResults(
                [defer.ensureDeferred(c) for c in coros[start:start + ROOM_CONCURRENCY]],
                consumeErrors=True)

    async def _read_ahead(self, requester: Requester, joined: list[RoomMembership], end: int,
                          f: "SyncFilter", changes: Changes) -> None:
        """An initial sync's timelines and the state at their starts, for
        every joined room in a few queries rather than a few per room: the
        first page of rows of all rooms in one read (a room whose page the
        filter or history visibility thins reads on by itself), then the
        snapshots at each timeline's start and their contents; then what
        serialising them reads."""
        user_id = requester.user_id
        rooms = [m for m in joined if f.timeline_room_allowed(m.room_id)]
        timelines: dict[str, tuple[list[Event], list[int], bool]] = {}
        if rooms:
            # a page's worth of rows (the limit, and one more to tell "limited")
            asked = f.timeline_limit + 1
            first = await self.stores.events.get_newest_room_events_many(
                [m.room_nid for m in rooms], end, asked)
            # history visibility of what the pages hold from before the
            # user's join (a room's first events), for all rooms at once
            pages = [(self._access(m), [r for r in reversed(first.get(m.room_nid, []))
                                        if r[0] <= m.stream_ordering]) for m in rooms]
            visible = await self.room_reader.visible_many(user_id, pages, True)

            async def one(m: RoomMembership, seen: list[Event]) -> None:
                timelines[m.room_id] = await self._read_timeline(
                    user_id, self._access(m), end, None, f, first.get(m.room_nid, []),
                    asked, seen)

            await self._gather([one(m, seen) for m, seen in zip(rooms, visible, strict=True)])
        changes.timelines = timelines
        by_room = {m.room_id: m for m in rooms}
        changes.memberships = await self.room_reader.memberships_at_many(
            user_id, [(self._access(by_room[room_id]).membership, t[0], t[1])
                      for room_id, t in timelines.items()])
        if not any(f.state_room_allowed(m.room_id) for m in joined):
            return
        starts = {}
        for m in joined:
            if f.state_room_allowed(m.room_id):
                positions = timelines[m.room_id][1] if m.room_id in timelines else []
                starts[m.room_nid] = positions[0] - 1 if positions else end
        snapshots = await self.stores.events.get_snapshots_at_stream_many(starts)
        contents = await self.stores.state.get_snapshot_ids_many(
            {s for s in snapshots.values() if s is not None})
        changes.state_at_start = {
            nid: contents.get(s, {}) if s is not None else {} for nid, s in snapshots.items()}
        if f.event_format != "client":
            return
        # the state events each room's state section can hold (with lazy
        # members: the timeline's senders' and the user's, at most)
        state_ids: list[str] = []
        for m in joined:
            at_start = changes.state_at_start.get(m.room_nid)
            if not at_start:
                continue
            if not f.lazy_load_members:
                state_ids.extend(at_start.values())
                continue
            senders = {e.sender for e in timelines.get(m.room_id, ([], [], False))[0]}
            senders.add(user_id)
            state_ids.extend(eid for (t, key), eid in at_start.items()
                             if t != MEMBER or key in senders)
        state_events = await self.stores.events.get_events(state_ids)
        changes.serialize_ahead = await self.room_reader.read_ahead_for_serialize(
            requester, [*(e for t in timelines.values() for e in t[0]),
                        *state_events.values()])

    @staticmethod
    def _access(m: RoomMembership) -> ReadAccess:
        info = RoomInfo(m.room_nid, m.room_id, m.room_version, None)
        return ReadAccess(info, Membership(m.membership, m.event_id, 0, m.stream_ordering,
                                           False), None, None)

    async def _read_timeline(self, user_id: str, access: ReadAccess, end: int,
                             timeline_since: int | None, f: "SyncFilter",
                             first_rows: list[tuple[int, Event]] | None = None,
                             first_rows_limit: int | None = None,
                             first_visible: list[Event] | None = None,
                             ) -> tuple[list[Event], list[int], bool]:
        """The newest ``timeline_limit`` events of the range (oldest first),
        their positions, and whether there were more."""
        limit = f.timeline_limit
        page = await self.room_reader.paginate(
            user_id, access, from_pos=end, to_pos=timeline_since, backwards=True,
            limit=limit + 1, event_filter=f.timeline, current_state_visible=True,
            first_rows=first_rows, first_rows_limit=first_rows_limit,
            first_visible=first_visible)
        events, positions = list(page.events), list(page.positions)
        limited = len(events) > limit or not page.exhausted
        events, positions = events[:limit], positions[:limit]
        events.reverse()
        positions.reverse()
        return events, positions, limited

    async def _joined_room(self, requester: Requester, m: RoomMembership,
                           since: StreamToken | None, end: int, f: "SyncFilter",
                           full_state: bool, changes: Changes,
                           unread_from: int) -> dict[str, Any] | None:
        user_id = requester.user_id
        since_pos = since.global_pos if since is not None else None
        newly_joined = False
        if since_pos is not None and m.stream_ordering > since_pos:
            before = await self.stores.sync.get_memberships(user_id, since_pos,
                                                            room_nids=[m.room_nid])
            newly_joined = not before or before[0].membership != "join"
            if not newly_joined:
                # left and joined again since: a new join all the same (full
                # state, and its members' devices to fetch), as on Synapse
                newly_joined = await self.stores.sync.left_between(
                    user_id, m.room_nid, since_pos, m.stream_ordering)
        held = None if m.membership == "join" else (
            await self.stores.federation_events.get_event_info([m.event_id])).get(m.event_id)
        if held is not None and held.outlier:
            # an invite rejected (or knock rescinded) in a room we are not
            # in: we hold nothing of it but the leave, which is its timeline
            # (as Synapse shows an out-of-band membership)
            return await self._out_of_band_room(requester, m, f)
        access = self._access(m)
        timeline_since = None if newly_joined else since_pos
        state_since = None if (newly_joined or full_state) else since_pos
        room = await self._room_body(requester, access, m, end, timeline_since, state_since,
                                     f, changes, newly_joined=newly_joined)
        ephemeral = self._ephemeral(m.room_id, changes, f)
        receipts: dict[str, dict[str, Any]] = {}
        if changes.receipts is not None:
            receipts = changes.receipts
        elif newly_joined or full_state or changes.receipt_rooms is None \
                or m.room_id in changes.receipt_rooms:
            receipts = await self.stores.receipts.get_receipt_events(
                [m.room_id], None if newly_joined else changes.receipts_since, end, user_id)
        if m.room_id in receipts and f.ephemeral_room_allowed(m.room_id) \
                and room_event_matches(f.ephemeral, "m.receipt", None):
            ephemeral.append({"type": "m.receipt", "content": receipts[m.room_id]})
        room["ephemeral"] = ephemeral_section(ephemeral)
        if (since is not None and not newly_joined and not full_state
                and not room["timeline"]["events"] and not room["state"]["events"]
                and not ephemeral and not room["account_data"]["events"]):
            return None
        member_change = any(e.get("type") == MEMBER for e in
                            room["timeline"]["events"] + room["state"]["events"])
        if changes.summaries is not None and m.room_nid in changes.summaries:
            counts, heroes = changes.summaries[m.room_nid]
            room["summary"] = summary_dict(
                counts, None if m.room_nid in (changes.named or ()) else heroes)
        elif since is None or newly_joined or full_state or member_change:
            room["summary"] = await self._summary(m.room_nid, m.room_id, user_id, end)
        if changes.unread is not None and m.room_nid in changes.unread:
            room["unread_notifications"], threads = changes.unread[m.room_nid]
        else:
            room["unread_notifications"], threads = await self._unread_counts(
                m.room_nid, user_id, unread_from, end, f.unread_thread_notifications)
        if not f.unread_thread_notifications:
            self.memory.set_unread(user_id, m.room_id, end,
                                      room["unread_notifications"]["notification_count"],
                                      room["unread_notifications"]["highlight_count"])
        if f.unread_thread_notifications:
            room["unread_thread_notifications"] = threads
            main = room["unread_notifications"]
            total = main["notification_count"] + sum(
                t["notification_count"] for t in threads.values())
            if total < MAX_COUNTED_UNREAD:  # else the rows read were cut short
                self.memory.set_thread_unread(user_id, m.room_id, (
                    end, main["notification_count"], main["highlight_count"],
                    {root: (t["notification_count"], t["highlight_count"])
                     for root, t in threads.items()}))
        if since is not None and not newly_joined:
            # whoever joined in the range: the user gets their presence too
            # (an initial sync, or a room the user just joined, has it all)
            changes.newly_met.update(joined_by(
                room["timeline"]["events"] + room["state"]["events"], user_id))
        if newly_joined:
            changes.newly_joined = True
            members = await self.stores.rooms.get_members(m.room_nid)
            changes.device_changed.update(u for u in members if u != user_id)
        else:
            for e in room["timeline"]["events"]:
                if e.get("type") == MEMBER and e.get("state_key") != user_id:
                    target = e.get("state_key")
                    # someone new to track: joined, or invited or knocking
                    # (a client encrypting for the room needs their keys
                    # too), as Synapse reports them
                    if (e.get("content") or {}).get("membership") in ("join", "invite",
                                                                      "knock"):
                        changes.device_changed.add(target)
                    elif isinstance(target, str):
                        changes.device_left_candidates.add(target)
        return room

    async def _left_room(self, requester: Requester, m: RoomMembership,
                         since: StreamToken | None, f: "SyncFilter", full_state: bool,
                         changes: Changes) -> dict[str, Any] | None:
        held = (await self.stores.federation_events.get_event_info([m.event_id])).get(
            m.event_id)
        if held is not None and held.outlier:
            # an invite rejected (or knock rescinded) in a room we are not
            # in: we hold nothing of it but the leave, which is its timeline
            # (as Synapse shows an out-of-band membership)
            return await self._out_of_band_room(requester, m, f)
        info = RoomInfo(m.room_nid, m.room_id, m.room_version, None)
        access = ReadAccess(info, Membership(m.membership, m.event_id, 0, m.stream_ordering,
                                             False), m.stream_ordering, None)
        since_pos = since.global_pos if since is not None else None
        if since_pos is not None and not full_state \
                and await self._joined_in_range(m, requester.user_id, since_pos):
            # joined and left since the last sync: the client never had the
            # room's state, so it gets all of it, as a newly joined room would
            full_state = True
        room = await self._room_body(requester, access, m, m.stream_ordering, since_pos,
                                     None if full_state else since_pos, f, changes)
        room.pop("ephemeral", None)
        members = await self.stores.rooms.get_members(m.room_nid)
        changes.device_left_candidates.update(u for u in members if u != requester.user_id)
        return room

    async def _joined_in_range(self, m: RoomMembership, user_id: str, since_pos: int) -> bool:
        """Whether ``user_id`` joined the room after ``since_pos`` (and up to
        their current membership ``m``)."""
        event_ids = await self.stores.events.get_member_event_ids(
            m.room_nid, user_id, after=since_pos, until=m.stream_ordering)
        events = await self.stores.events.get_events(event_ids)
        return any(e.content.get("membership") == "join" for e in events.values())

    async def _out_of_band_room(self, requester: Requester, m: RoomMembership,
                                f: "SyncFilter") -> dict[str, Any] | None:
        event = await self.stores.events.get_event(m.event_id)
        events = [event] if event is not None and f.timeline_room_allowed(m.room_id) \
            and room_event_matches(f.timeline, event.type, event.sender, event.content) else []
        if f.event_format == "client":
            serialised = await self.room_reader.serialize(requester, m.room_id, events)
            # the user's own membership event: the membership it made (MSC4115)
            add_memberships(serialised, {m.event_id: m.membership})
            if f.event_fields is not None:
                serialised = [apply_event_fields(e, f.event_fields) for e in serialised]
        else:
            serialised = await self._serializer(requester, f)(m.room_id, events)
        return room_sections(
            timeline_section(serialised, False,
                             pagination_token(m.stream_ordering - 1)), [], [])

    async def _room_body(self, requester: Requester, access: ReadAccess,
                         m: RoomMembership, end: int, timeline_since: int | None,
                         state_since: int | None, f: "SyncFilter",
                         changes: Changes, newly_joined: bool = False) -> dict[str, Any]:
        """timeline, state and account_data of one room, up to ``end``.

        The timeline of a room the user newly joined is always ``limited``
        (unless the filter keeps no timeline at all), as on Synapse: the
        client has none of its history and should paginate for it."""
        user_id = requester.user_id
        room_id = m.room_id
        limit = f.timeline_limit
        events: list[Event] = []
        positions: list[int] = []
        limited = False
        read_ahead = changes.timelines.get(room_id) \
            if changes.timelines is not None and timeline_since is None else None
        if read_ahead is not None:
            events, positions, limited = read_ahead
        elif f.timeline_room_allowed(room_id):
            events, positions, limited = await self._read_timeline(
                user_id, access, end, timeline_since, f)
        start = positions[0] - 1 if positions else end
        if limit == 0 and timeline_since is not None:
            limited = limited and start > timeline_since
        if newly_joined and f.timeline_room_allowed(room_id) \
                and not room_filter_blocks_all(f.timeline):
            limited = True
        prev_batch = start
        if timeline_since is None and not limited:
            # the whole room is in the timeline: like Synapse, point the token
            # at its end, so paginating from it returns the same events again
            # (clients that page back from an initial sync expect events)
            prev_batch = end

        state: list[Event] = []
        looked_up: dict[str, str | None] | None = None
        if f.state_room_allowed(room_id):
            at_start = changes.state_at_start.get(access.room.room_nid) \
                if changes.state_at_start is not None and read_ahead is not None else None
            state, looked_up = await self._state(requester, room_id, access.room.room_nid,
                                                 start, state_since, limited, events, f,
                                                 at_start)

        serialize = self._serializer(requester, f)
        if f.event_format == "client":
            # the timeline and the state in one go (each serialisation reads
            # redactions, transaction IDs, replaced state and relations)
            extra: list[Event] = []
            if looked_up is not None:
                # what was read of the members is left for the fast path,
                # with the senders' member events this device already had
                missing = set(self.facts.missing(room_id, looked_up)) \
                    - {e.event_id for e in state}
                if missing:
                    extra = list((await self.stores.events.get_events(list(missing))).values())
            serialised = await self.room_reader.serialize(requester, room_id,
                                                          [*events, *state, *extra],
                                                          changes.serialize_ahead)
            serialised_timeline = serialised[:len(events)]
            serialised_state = serialised[len(events):len(events) + len(state)]
            memberships = changes.memberships if read_ahead is not None \
                and changes.memberships is not None else \
                await self.room_reader.memberships_at(user_id, access.membership, events,
                                                      positions)
            add_memberships(serialised_timeline, memberships)
            if looked_up is not None:
                self.facts.add_members(room_id, start, looked_up, serialised[len(events):],
                                       self.memory.members_unchanged_since)
            if f.event_fields is not None:
                serialised_timeline = [apply_event_fields(e, f.event_fields)
                                       for e in serialised_timeline]
                serialised_state = [apply_event_fields(e, f.event_fields)
                                    for e in serialised_state]
        else:
            serialised_timeline = await serialize(room_id, events)
            serialised_state = await serialize(room_id, state)
        account_data = []
        if f.room_account_data_room_allowed(room_id):
            account_data = [
                {"type": t, "content": c}
                for t, c in changes.room_account_data.get(room_id, {}).items()
                if room_event_matches(f.room_account_data, t, None)]
        return room_sections(
            timeline_section(serialised_timeline, limited, pagination_token(prev_batch)),
            serialised_state, account_data)

    async def _state(self, requester: Requester, room_id: str, room_nid: int, start: int,
                     state_since: int | None, limited: bool, timeline: list[Event],
                     f: "SyncFilter", at_start: dict[StateKey, str] | None = None,
                     ) -> tuple[list[Event], dict[str, str | None] | None]:
        """The state section: all of it at the timeline's start (``state_since``
        None), or what changed between ``state_since`` and the start when the
        timeline is ``limited`` (every change of the gap, members included).

        With lazy-loaded members, the members are those the gap changed plus
        the timeline's senders (and, in a full state, the user), leaving out
        senders whose member event this device was already sent (unless the
        filter asks for redundant members): ``SentMembers``. With them, also
        the senders' member event IDs it looked up (user -> ID or None).
        ``at_start``: the state at ``start``, when read already."""
        user_id = requester.user_id
        if state_since is not None and not limited and not f.lazy_load_members:
            return [], None
        if at_start is None:
            at_start = await self._state_ids_at(room_nid, start)
        if state_since is None:
            wanted = dict(at_start)
        elif limited:
            before = await self._state_ids_at(room_nid, state_since)
            wanted = {k: v for k, v in at_start.items() if before.get(k) != v}
        else:
            wanted = {}
        looked_up: dict[str, str | None] | None = None
        if f.lazy_load_members:
            device = connection(user_id, requester.device_id, f, room_id)
            sent = {} if state_since is None else self.sent_members.get(device)
            senders = {e.sender for e in timeline}
            if state_since is None:
                senders.add(user_id)
                # a full state's members are only the senders'
                wanted = {k: v for k, v in wanted.items() if k[0] != MEMBER}
            in_timeline = {e.event_id for e in timeline}
            looked_up = {}
            for sender in sorted(senders):
                eid = at_start.get((MEMBER, sender))
                looked_up[sender] = eid
                if eid is None or eid in in_timeline:
                    continue
                if sent.get(sender) == eid and not f.include_redundant_members:
                    continue
                wanted[(MEMBER, sender)] = eid
        events = await self.stores.events.get_events(list(wanted.values()))
        out = [events[v] for v in wanted.values() if v in events]
        out = [e for e in out if room_event_matches(f.state, e.type, e.sender, e.content)]
        if f.lazy_load_members:
            self.sent_members.record(device, state_since is None, {
                e.state_key: e.event_id for e in [*out, *timeline]
                if e.type == MEMBER and e.state_key is not None})
        return out, looked_up

    async def _state_ids_at(self, room_nid: int, pos: int) -> dict[StateKey, str]:
        snapshot = await self.stores.events.get_snapshot_at_stream(room_nid, pos)
        if snapshot is None:
            return {}
        return await self.stores.state.get_snapshot_ids(snapshot)

    def _serializer(self, requester: Requester, f: "SyncFilter") -> Any:
        async def serialize(room_id: str, events: list[Event]) -> list[dict[str, Any]]:
            if f.event_format == "federation":
                # the PDU as servers see it, plus its ID (which room versions
                # 3+ leave out of the PDU): a client still needs to name it
                out = [{**e.json, "event_id": e.event_id} for e in events]
            else:
                out = await self.room_reader.serialize(requester, room_id, events)
            if f.event_fields is not None:
                out = [apply_event_fields(e, f.event_fields) for e in out]
            return out
        return serialize

    def _ephemeral(self, room_id: str, changes: Changes,
                   f: "SyncFilter") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if room_id in changes.typing and f.ephemeral_room_allowed(room_id) \
                and room_event_matches(f.ephemeral, "m.typing", None):
            out.append({"type": "m.typing",
                        "content": {"user_ids": changes.typing[room_id]}})
        return out

    async def _invited_by_ignored(self, user_id: str, event_id: str) -> bool:
        """Whether the invite ``event_id`` comes from a user ``user_id``
        ignores: the spec says such invites are not sent to the client."""
        ignored = await self.room_reader.ignored.get(user_id)
        if not ignored:
            return False
        event = await self.stores.events.get_event(event_id)
        return event is not None and event.sender in ignored

    async def _stripped_state(self, event_id: str) -> list[dict[str, Any]]:
        remote = await self.stores.federation_events.get_remote_invite_state(event_id)
        if remote is not None:
            # an invite to a room on another server: the state it sent
            event = await self.stores.events.get_event(event_id)
            return remote + ([_stripped(event)] if event is not None else [])
        event = await self.stores.events.get_event(event_id)
        keys = [(t, "") for t in STRIPPED_STATE_TYPES]
        if event is not None:
            # the inviter's own member event, as Synapse's invite_room_state
            # has it (clients show who invited them)
            keys.append(("m.room.member", event.sender))
        state = await self.room_reader.get_state_at_event(event_id, keys)
        out = [_stripped(e) for e in state.values()
               if event is None or e.event_id != event.event_id]
        if event is not None:
            out.append(_stripped(event))
        return out

    async def _summary(self, room_nid: int, room_id: str, user_id: str,
                       end: int) -> dict[str, Any]:
        """The room's summary for ``user_id``, its parts read as of ``end`` and
        left for the fast path (``sync/lazy_members.py``)."""
        counts, candidates = await self.stores.sync.get_summary_parts(room_nid)
        named = bool(await self._named_rooms([room_nid]))
        summary = RoomSummary(end, counts, tuple(candidates), named)
        self.facts.add_summary(room_id, summary)
        return summary_body(summary, user_id)

    async def _named_rooms(self, room_nids: list[int]) -> set[int]:
        """The rooms of ``room_nids`` with a non-empty name or canonical
        alias: the spec wants heroes only for a room without either (and
        Synapse leaves them out otherwise), the client names it by them."""
        ids = await self.stores.sync.get_naming_event_ids(room_nids)
        events = await self.stores.events.get_events(
            [e for event_ids in ids.values() for e in event_ids])
        named = set()
        for nid, event_ids in ids.items():
            for event_id in event_ids:
                event = events.get(event_id)
                if event is None:
                    continue
                key = "name" if event.type == "m.room.name" else "alias"
                value = event.content.get(key)
                if isinstance(value, str) and value:
                    named.add(nid)
        return named

    # -- unread counts ------------------------------------------------------

    async def _unread_positions(self, user_id: str,
                                joined: list[RoomMembership]) -> dict[str, int]:
        """Per room, the stream position after which events are unread: the
        user's read receipt, else when they joined."""
        receipts = await self.stores.receipts.get_own_receipt_positions(
            user_id, [m.room_id for m in joined])
        return {m.room_id: receipts.get(m.room_id, m.stream_ordering) for m in joined}

    async def _unread_counts(self, room_nid: int, user_id: str, after: int, end: int,
                             by_thread: bool,
                             ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        if by_thread:
            return await self._unread_thread_counts(room_nid, user_id, end)
        rows = await self.stores.push_rules.get_unread_actions(room_nid, user_id, after, end,
                                                               MAX_COUNTED_UNREAD)
        return unread_section(len(rows), sum(1 for _, highlight, _ in rows if highlight)), {}

    async def _unread_thread_counts(self, room_nid: int, user_id: str, end: int,
                                    ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Unread counts per thread (``unread_thread_notifications``), with
        threaded read receipts: an event is read when the user's unthreaded
        receipt is at or after it, or the receipt of its own thread is (the
        ``"main"`` one for the main timeline, the root's for a thread). The
        thread of an event is its ``m.thread`` relation, as recorded with its
        push actions (``storage/push_rules.py``)."""
        reads = await self.stores.relations.get_read_positions(room_nid, user_id)
        floor = reads.get("")
        if floor is None:  # no unthreaded receipt: everything since the join
            membership = await self.stores.rooms.get_membership(user_id, room_nid)
            floor = membership.stream_ordering if membership is not None else end
        rows = await self.stores.push_rules.get_unread_actions(room_nid, user_id, floor, end,
                                                               MAX_COUNTED_UNREAD)
        return _thread_counts(rows, reads, floor)

    async def _unread_counts_many(
            self, user_id: str, joined: list[RoomMembership], unread_from: dict[str, int],
            end: int, by_thread: bool,
    ) -> dict[int, tuple[dict[str, int], dict[str, dict[str, int]]]]:
        """``_unread_counts`` of every joined room in two or three queries (an
        initial sync): room NID -> counts."""
        if not by_thread:
            rows = await self.stores.push_rules.get_unread_actions_many(
                {m.room_nid: unread_from.get(m.room_id, 0) for m in joined}, user_id, end,
                MAX_COUNTED_UNREAD)
            return {nid: (unread_section(len(found), sum(1 for _, h, _ in found if h)), {})
                    for nid, found in rows.items()}
        reads = await self.stores.relations.get_read_positions_many(
            [m.room_nid for m in joined], user_id)
        # no unthreaded receipt: everything since the join
        floors = {m.room_nid: reads[m.room_nid].get("", m.stream_ordering) for m in joined}
        rows = await self.stores.push_rules.get_unread_actions_many(
            floors, user_id, end, MAX_COUNTED_UNREAD)
        return {nid: _thread_counts(found, reads[nid], floors[nid])
                for nid, found in rows.items()}


def _thread_counts(rows: list[tuple[int, bool, str | None]], reads: dict[str, int],
                   floor: int) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The main timeline's and each thread's unread counts from the
    notifying ``rows`` after ``floor``, less those each thread's receipt
    (``reads``) covers."""
    main = unread_section(0, 0)
    threads: dict[str, dict[str, int]] = {}
    for pos, highlight, root in rows:
        if pos <= reads.get(root if root is not None else "main", floor):
            continue
        counts = main if root is None else threads.setdefault(root, unread_section(0, 0))
        counts["notification_count"] += 1
        if highlight:
            counts["highlight_count"] += 1
    return main, threads


def joined_by(events: list[dict[str, Any]], user_id: str) -> set[str]:
    """Who, other than ``user_id``, joined (rather than changed their name or
    avatar) in these serialised member events."""
    out = set()
    for e in events:
        target = e.get("state_key")
        if e.get("type") != MEMBER or target == user_id or not isinstance(target, str):
            continue
        if (e.get("content") or {}).get("membership") != "join":
            continue
        prev = (e.get("unsigned") or {}).get("prev_content") or {}
        if prev.get("membership") != "join":
            out.add(target)
    return out
