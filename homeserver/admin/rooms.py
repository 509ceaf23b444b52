"""Admin reads of rooms (Synapse's room admin API): the list with search,
order and paging; one room's details, members and current state.

Rooms are summarised from the database in one pass (``AdminRoomStore``) and
searched and ordered here: fine for thousands of rooms; a server with far more
would want Synapse's room_stats table, kept by a persist hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import not_found
from homeserver.storage.admin_rooms import RoomSummary

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.rooms.access import RoomEventFilter, RoomReader
    from homeserver.storage import Stores


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def room_fields(s: RoomSummary) -> dict[str, Any]:
    """A room as the list endpoint shows it."""
    state = s.state
    create = state.get("m.room.create", {})
    return {
        "room_id": s.room_id,
        "name": _str_or_none(state.get("m.room.name", {}).get("name")),
        "canonical_alias": _str_or_none(state.get("m.room.canonical_alias", {}).get("alias")),
        "joined_members": s.joined_members,
        "joined_local_members": s.joined_local_members,
        "version": s.version,
        "creator": s.creator,
        "encryption": _str_or_none(state.get("m.room.encryption", {}).get("algorithm")),
        "federatable": create.get("m.federate", True) is not False,
        "public": s.public,
        "join_rules": _str_or_none(state.get("m.room.join_rules", {}).get("join_rule")),
        "guest_access": _str_or_none(state.get("m.room.guest_access", {}).get("guest_access")),
        "history_visibility": _str_or_none(
            state.get("m.room.history_visibility", {}).get("history_visibility")),
        "state_events": s.state_events,
        "room_type": _str_or_none(create.get("type")),
    }


# order_by -> (field, largest first): Synapse's RoomSortOrder
ROOM_ORDERS: dict[str, tuple[str, bool]] = {
    "alphabetical": ("name", False), "size": ("joined_members", True),
    "name": ("name", False), "canonical_alias": ("canonical_alias", False),
    "joined_members": ("joined_members", True),
    "joined_local_members": ("joined_local_members", True),
    "version": ("version", True), "creator": ("creator", False),
    "encryption": ("encryption", False), "federatable": ("federatable", False),
    "public": ("public", False), "join_rules": ("join_rules", False),
    "guest_access": ("guest_access", False),
    "history_visibility": ("history_visibility", False),
    "state_events": ("state_events", True),
}


@dataclass(frozen=True)
class RoomListQuery:
    start: int = 0
    limit: int = 100
    order_by: str = "name"
    backwards: bool = False
    search_term: str | None = None
    public_rooms: bool | None = None
    empty_rooms: bool | None = None


def _matches(room: dict[str, Any], term: str) -> bool:
    lowered = term.lower()
    alias = room["canonical_alias"] or ""
    return (lowered in (room["name"] or "").lower()
            or lowered in alias[1:].split(":", 1)[0].lower()
            or term in room["room_id"])


class AdminRooms:
    def __init__(self, ctx: "ServerContext", stores: "Stores", reader: "RoomReader") -> None:
        self.ctx = ctx
        self.stores = stores
        self.reader = reader

    async def list_rooms(self, q: RoomListQuery) -> tuple[list[dict[str, Any]], int]:
        rooms = [room_fields(s) for s in
                 await self.stores.admin_rooms.room_summaries(self.ctx.hostname)]
        if q.search_term:
            rooms = [r for r in rooms if _matches(r, q.search_term)]
        if q.public_rooms is not None:
            rooms = [r for r in rooms if r["public"] == q.public_rooms]
        if q.empty_rooms is not None:
            rooms = [r for r in rooms if (r["joined_members"] == 0) == q.empty_rooms]
        field, largest_first = ROOM_ORDERS[q.order_by]
        # stable sorts: room ID first, then the field (absent values last)
        rooms.sort(key=lambda r: r["room_id"])
        present = [r for r in rooms if r[field] is not None]
        absent = [r for r in rooms if r[field] is None]
        present.sort(key=lambda r: r[field], reverse=largest_first != q.backwards)
        rooms = present + absent if not q.backwards else absent + present
        return rooms[q.start:q.start + q.limit], len(rooms)

    async def summary(self, room_id: str) -> RoomSummary:
        found = await self.stores.admin_rooms.room_summaries(self.ctx.hostname, room_id)
        if not found:
            raise not_found("Room not found")
        return found[0]

    async def details(self, room_id: str) -> dict[str, Any]:
        s = await self.summary(room_id)
        body = room_fields(s)
        body["avatar"] = _str_or_none(s.state.get("m.room.avatar", {}).get("url"))
        body["topic"] = _str_or_none(s.state.get("m.room.topic", {}).get("topic"))
        body["joined_local_devices"] = await self._local_devices(s.room_nid)
        body["forgotten"] = False
        tombstone = s.state.get("m.room.tombstone")
        body["tombstoned"] = tombstone is not None
        body["replacement_room"] = _str_or_none((tombstone or {}).get("replacement_room"))
        return body

    async def _local_devices(self, room_nid: int) -> int:
        count = 0
        for user_id in await self.stores.admin_rooms.get_members(room_nid):
            if self.ctx.is_mine(user_id):
                count += len(await self.stores.devices.get_devices(user_id))
        return count

    async def members(self, room_id: str) -> list[str]:
        s = await self.summary(room_id)
        return await self.stores.admin_rooms.get_members(s.room_nid)

    async def messages(self, room_id: str, from_pos: int, to_pos: int | None,
                       backwards: bool, limit: int,
                       event_filter: "RoomEventFilter") -> tuple[list["Event"], int]:
        """A page of the room's timeline as an admin sees it: every event,
        whatever the history visibility; and the position to go on from."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        kept: list[Event] = []
        pos = from_pos
        while len(kept) < limit:
            rows = await self.stores.events.get_room_events(
                room.room_nid, from_pos=pos, to_pos=to_pos, backwards=backwards,
                limit=max(limit, 20))
            for row_pos, event in rows:
                pos = row_pos - 1 if backwards else row_pos
                if event_filter.matches(event):
                    kept.append(event)
                    if len(kept) >= limit:
                        break
            if len(rows) < max(limit, 20):
                break
        return kept, pos

    async def context(self, room_id: str, event_id: str, limit: int,
                      event_filter: "RoomEventFilter") -> dict[str, Any]:
        """``GET /rooms/{roomId}/context/{eventId}`` as an admin sees it: the
        event, up to ``limit`` events around it (half before), the state
        after the last of them, and the tokens to page on."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        pos = await self.stores.events.get_event_position(event_id)
        event = await self.stores.events.get_event(event_id) if pos is not None else None
        if pos is None or event is None or pos.room_nid != room.room_nid \
                or pos.stream_ordering is None:
            raise not_found("Event not found.")
        before_limit = limit // 2
        before, start = await self.messages(room_id, pos.stream_ordering - 1, None, True,
                                            before_limit, event_filter) \
            if before_limit else ([], pos.stream_ordering - 1)
        after, end = await self.messages(room_id, pos.stream_ordering, None, False,
                                         limit - before_limit, event_filter) \
            if limit - before_limit else ([], pos.stream_ordering)
        last = after[-1] if after else event
        last_pos = await self.stores.events.get_event_position(last.event_id)
        state: dict[Any, Event] = {}
        if last_pos is not None and last_pos.snapshot_nid is not None:
            state = await self.reader.get_state_at_snapshot(last_pos.snapshot_nid)
        return {"event": event, "events_before": before, "events_after": after,
                "state": list(state.values()), "start": start, "end": end}

    async def state(self, room_id: str) -> list["Event"]:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        ids = await self.stores.rooms.get_current_state_ids(room.room_nid)
        events = await self.stores.events.get_events(list(ids.values()))
        return [events[i] for i in ids.values() if i in events]
