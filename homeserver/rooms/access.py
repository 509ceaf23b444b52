"""Who may read what of a room, and reading it in the client format.

A user reads a room they are joined to in full. A user who has left (or was
banned) reads it as it was when they left: the state at their membership
event and the timeline up to it. Anyone reads a ``world_readable`` room.
Everyone else gets 403 M_FORBIDDEN, whether or not the room exists, so the
answer does not tell a stranger which rooms there are.

Per-event history visibility (``joined``/``invited``/``shared`` against the
reader's membership at each event) is not applied yet: a member sees the
whole timeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.events.model import Event
from homeserver.http.errors import forbidden
from homeserver.http.request import Requester
from homeserver.rooms.client_format import client_event
from homeserver.storage.rooms import Membership, RoomInfo

if TYPE_CHECKING:
    from homeserver.server import HomeServer

StateKey = tuple[str, str]


def txn_scope(requester: Requester) -> str:
    """What a client transaction ID is unique within: the device, else the token."""
    if requester.device_id is not None:
        return requester.device_id
    return f"token:{requester.access_token_id}"


@dataclass(frozen=True)
class ReadAccess:
    room: RoomInfo
    membership: Membership | None
    # the last stream position the reader may see (None: up to now)
    until_stream: int | None
    # the state the reader sees (None: the current state)
    snapshot_nid: int | None


class RoomReader:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs
        self.stores = hs.stores

    async def check_read(self, user_id: str, room_id: str) -> ReadAccess:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise forbidden("You are not allowed to view this room.")
        membership = await self.stores.rooms.get_membership(user_id, room.room_nid)
        if membership is not None and membership.membership == "join":
            return ReadAccess(room, membership, None, None)
        if membership is not None and membership.membership in ("leave", "ban"):
            pos = await self.stores.events.get_event_position(membership.event_id)
            snapshot = pos.snapshot_nid if pos is not None else None
            return ReadAccess(room, membership, membership.stream_ordering, snapshot)
        visibility = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [("m.room.history_visibility", "")])
        if visibility:
            event = await self.stores.events.get_event(
                visibility[("m.room.history_visibility", "")])
            if event is not None and event.content.get("history_visibility") == \
                    "world_readable":
                return ReadAccess(room, membership, None, None)
        raise forbidden("You are not allowed to view this room.")

    async def get_state(self, access: ReadAccess,
                        event_type: str | None = None) -> dict[StateKey, Event]:
        if access.snapshot_nid is None:
            ids = await self.stores.rooms.get_current_state_ids(access.room.room_nid,
                                                                event_type=event_type)
        else:
            ids = await self.stores.state.get_snapshot_ids(access.snapshot_nid, event_type)
        events = await self.stores.events.get_events(list(ids.values()))
        return {k: events[v] for k, v in ids.items() if v in events}

    async def get_state_event(self, access: ReadAccess, event_type: str,
                              state_key: str) -> Event | None:
        if access.snapshot_nid is None:
            ids = await self.stores.rooms.get_current_state_ids(
                access.room.room_nid, [(event_type, state_key)])
            event_id = ids.get((event_type, state_key))
            return await self.stores.events.get_event(event_id) if event_id else None
        state = await self.get_state(access, event_type)
        return state.get((event_type, state_key))

    async def serialize(self, requester: Requester, room_id: str,
                        events: Iterable[Event]) -> list[dict[str, Any]]:
        """``events`` in the client format, as ``requester`` sees them."""
        events = list(events)
        own = [e.event_id for e in events if e.sender == requester.user_id]
        txn_ids = await self.stores.rooms.get_txn_ids_for_events(
            requester.user_id, txn_scope(requester), own)
        replaced = await self.stores.events.get_replaced_state(
            [e.event_id for e in events if e.is_state()])
        now = self.hs.now_ms()
        return [client_event(e, room_id, now, transaction_id=txn_ids.get(e.event_id),
                             replaced=replaced.get(e.event_id)) for e in events]
