"""Admin repairs of a room (Synapse's room admin API): make a user room
admin, read and clear forward extremities, find the event nearest a time,
and join a local user to a room.

Make room admin (``POST /rooms/{roomIdOrAlias}/make_room_admin``), as on
Synapse: the local member with the highest power level (in v12+ rooms, a
local creator first) who is joined sends a new ``m.room.power_levels``
giving the user the same level as theirs (100 if the room has none); if the
user is neither joined nor invited and the room is not public, that member
invites them. Without any such local member the answer is 400.

Forward extremities: the room's current DAG tips. ``DELETE`` keeps only the
newest (by stream order) so the next event has one prev_event, as Synapse's
does, under the room's write lock so no send races it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

POWER_LEVELS = ("m.room.power_levels", "")
CREATE = ("m.room.create", "")
JOIN_RULES = ("m.room.join_rules", "")


def _level(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


class RoomTools:
    def __init__(self, ctx: "ServerContext", stores: "Stores", event_creator: "EventCreator",
                 membership: "MembershipHandler") -> None:
        self.ctx = ctx
        self.stores = stores
        self.event_creator = event_creator
        self.membership = membership

    async def resolve(self, room_id_or_alias: str) -> RoomInfo:
        """The room a room ID or a local alias names (404 M_NOT_FOUND)."""
        room_id = room_id_or_alias
        if room_id_or_alias.startswith("#"):
            mapping = await self.stores.directory.get_alias(room_id_or_alias)
            if mapping is None:
                raise not_found(f"Room alias {room_id_or_alias} not found")
            room_id = mapping.room_id
        elif not room_id_or_alias.startswith("!"):
            raise MatrixError(400, Codes.INVALID_PARAM,
                              f"{room_id_or_alias} was not legal room ID or room alias")
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        return room

    async def make_room_admin(self, admin: str, room: RoomInfo, user_id: str) -> None:
        if not self.ctx.is_mine(user_id) or await self.stores.users.get_user(user_id) is None:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "Can only grant room admin to a local user who exists")
        ids = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [CREATE, POWER_LEVELS, JOIN_RULES, ("m.room.member", user_id)])
        if CREATE not in ids:
            raise MatrixError(400, Codes.UNKNOWN, "Server not in room")
        events = await self.stores.events.get_events(list(ids.values()))
        state = {k: events[v] for k, v in ids.items() if v in events}
        create = state[CREATE]
        power = state.get(POWER_LEVELS)
        users_power = power.content.get("users") if power is not None else None
        if not isinstance(users_power, dict):
            users_power = {}
        rv = KNOWN_ROOM_VERSIONS.get(room.room_version)
        candidates = sorted((u for u in users_power if isinstance(u, str) and self.ctx.is_mine(u)),
                            key=lambda u: _level(users_power[u]), reverse=True)
        if power is None or (rv is not None and rv.privileged_creators):
            extra = create.content.get("additional_creators")
            creators = [create.sender, *(extra if isinstance(extra, list) else [])]
            candidates = [c for c in creators if isinstance(c, str) and self.ctx.is_mine(c)] \
                + candidates
        sender = None
        for candidate in candidates:
            m = await self.stores.rooms.get_membership(candidate, room.room_nid)
            if m is not None and m.membership == "join":
                sender = candidate
                break
        if sender is None:
            raise MatrixError(400, Codes.UNKNOWN, "No local admin user in room")
        content = dict(power.content) if power is not None else {}
        new_users = dict(users_power)
        new_users[user_id] = _level(users_power[sender]) if sender in users_power else 100
        content["users"] = new_users
        try:
            await self.event_creator.send(sender, room.room_id, "m.room.power_levels", content,
                                          state_key="")
        except MatrixError as e:
            if e.status != 403:
                raise
            raise MatrixError(400, Codes.UNKNOWN, "No local admin user in room with power "
                              "to update power levels.") from None
        log_admin_action(admin, "make_room_admin", room.room_id, user_id=user_id, via=sender)
        member = state.get(("m.room.member", user_id))
        if member is not None and member.membership in ("join", "invite"):
            return
        join_rules = state.get(JOIN_RULES)
        if join_rules is not None and join_rules.content.get("join_rule") == "public":
            return
        await self.membership.update_membership(sender, room.room_id, user_id, "invite")

    async def forward_extremities(self, room: RoomInfo) -> list[dict[str, Any]]:
        found = await self.stores.admin_rooms.forward_extremities(room.room_nid)
        return [{"event_id": event_id, "state_group": snapshot, "depth": depth,
                 "received_ts": ts} for event_id, snapshot, depth, ts in found]

    async def delete_forward_extremities(self, admin: str, room: RoomInfo) -> int:
        async with self.event_creator.room_lock(room.room_id):
            deleted = await self.stores.admin_rooms.delete_extra_forward_extremities(
                room.room_nid)
        if deleted is None:
            raise MatrixError(400, Codes.UNKNOWN,
                              f"No forward extremity event found for room {room.room_id}")
        log_admin_action(admin, "delete_forward_extremities", room.room_id, deleted=deleted)
        return deleted

    async def join_user(self, admin: str, room_id_or_alias: str, user_id: str,
                        via: list[str]) -> str:
        """``POST /join/{roomIdOrAlias}``: join a local user, as themselves;
        to a room that is not public, the admin (a member) invites them first."""
        if not self.ctx.is_mine(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "This endpoint can only be used with "
                              "local users")
        if await self.stores.users.get_user(user_id) is None:
            raise not_found("User not found")
        room = await self.resolve(room_id_or_alias)
        ids = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [JOIN_RULES, ("m.room.member", user_id)])
        events = await self.stores.events.get_events(list(ids.values()))
        rules = events.get(ids.get(JOIN_RULES, ""))
        member = events.get(ids.get(("m.room.member", user_id), ""))
        public = rules is not None and rules.content.get("join_rule") == "public"
        if not public and (member is None or member.membership not in ("invite", "join")):
            # as on Synapse: the admin, a member, invites the user first
            mine = await self.stores.rooms.get_membership(admin, room.room_nid)
            if mine is None or mine.membership != "join":
                raise MatrixError(403, Codes.FORBIDDEN, "You are not in this room")
            await self.membership.update_membership(admin, room.room_id, user_id, "invite")
        await self.membership.update_membership(user_id, room.room_id, user_id, "join", via=via)
        log_admin_action(admin, "join_user", room.room_id, user_id=user_id)
        return room.room_id
