"""Upgrading a room to another room version: POST /rooms/{roomId}/upgrade.

Client-server API, "Room upgrades" (server behaviour), done as Synapse does:

1. The upgrader must be able to send ``m.room.tombstone`` in the old room
   (403 M_FORBIDDEN; an unknown room is 404). One upgrade of a room at a time
   (400 while another is in progress).
2. The new room is created (``rooms/creation.py``, preset ``private_chat``,
   whose state the copied state replaces) with ``predecessor`` in its create
   content, and the old room's ``type`` and ``m.federate: false`` copied.
   Up to v11 ``predecessor.event_id`` is the old room's newest event (Synapse
   puts the tombstone's ID there, building the tombstone before the new room;
   our event creator builds and stores in one step, and the spec asks only
   for "the last known event"); v12 targets omit it, as Synapse does, since
   the new room ID is the hash of the create event. ``additional_creators``
   come from the request, never from the old room (spec, v1.16).
3. The state Synapse copies: join rules, name, topic, history visibility,
   guest access, avatar, encryption, server ACL, power levels (and the
   children of a space). The power levels are fixed up (integers written as
   strings become integers) and the upgrader is raised to the level needed
   to send all of that (the highest of ``state_default``, ``ban`` and the
   ``events`` levels); in v12 targets the creators are taken out of
   ``users`` instead (they have infinite power, and the auth rules refuse
   them there). Bans are copied too. (A v12 creator upgrading to an older
   version keeps that raised level: their power was not in ``users``.)
4. ``m.room.tombstone`` is sent in the old room.
5. Local aliases move to the new room (their creator becomes the upgrader,
   as on Synapse), and so do the local aliases of ``m.room.canonical_alias``
   (the old room keeps the others); a room published in the directory is
   published in its new place instead.
6. The old room's ``events_default`` and ``invite`` go up to
   ``max(users_default + 1, 50)``, so ordinary members cannot talk or invite
   there any more; then the new room gets the old room's power levels back
   (undoing the upgrader's temporary raise).

A user's tags and ``m.direct`` entry for the old room follow them when they
join the new one (``rooms/membership.py``).

Not done yet: copying the upgrader's room push rules, inviting the old
room's members (Synapse does not either).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.rooms.creation import CreateRoomRequest, StateEvent
from homeserver.rooms.power_levels import (
    CREATE,
    POWER_LEVELS,
    get_send_level,
    get_user_power_level,
    parse_level,
)
from homeserver.rooms.power_levels import creators as room_creators
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.rooms.creation import RoomCreation
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

TOMBSTONE = "m.room.tombstone"
CANONICAL_ALIAS = ("m.room.canonical_alias", "")
SPACE_CHILD = "m.space.child"

# the state copied into the new room, as Synapse copies it
TRANSFERRED_STATE: tuple[tuple[str, str], ...] = (
    ("m.room.join_rules", ""),
    ("m.room.name", ""),
    ("m.room.topic", ""),
    ("m.room.history_visibility", ""),
    ("m.room.guest_access", ""),
    ("m.room.avatar", ""),
    ("m.room.encryption", ""),
    ("m.room.server_acl", ""),
    POWER_LEVELS,
)


@dataclass(frozen=True)
class UpgradeRequest:
    """A validated POST /upgrade body."""

    new_version: RoomVersion
    # None: not given (no additional creators)
    additional_creators: tuple[str, ...] | None = None


def fixed_power_levels(content: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """A copy of power-levels ``content`` with every level a JSON integer
    (v1-v9 accept ``"50"``; v10+ do not), dropping values that are no level."""
    out: dict[str, Any] = {}
    for key, value in content.items():
        if isinstance(value, dict):
            sub: dict[str, int] = {}
            for sub_key, sub_value in value.items():
                level = parse_level(sub_value, room_version)
                if level is not None:
                    sub[sub_key] = level
            out[key] = sub
        else:
            level = parse_level(value, room_version)
            if level is not None:
                out[key] = level
    return out


def _level(content: dict[str, Any], key: str, default: int) -> int:
    value = content.get(key, default)
    return value if isinstance(value, int) else default


def restricted_old_room_levels(content: dict[str, Any]) -> dict[str, Any] | None:
    """The old room's power levels with ``events_default`` and ``invite``
    raised to ``max(users_default + 1, 50)``; None if nothing changes."""
    restricted = max(_level(content, "users_default", 0) + 1, 50)
    out = dict(content)
    changed = False
    for key in ("invite", "events_default"):
        if _level(content, key, 0) < restricted:
            out[key] = restricted
            changed = True
    return out if changed else None


def _is_local_alias(ctx: "ServerContext", alias: Any) -> bool:
    return isinstance(alias, str) and alias.startswith("#") and ctx.is_mine(alias)


class RoomUpgrader:
    """POST /rooms/{roomId}/upgrade's use case. Built once by ``server.py``
    (``hs.room_upgrader``): the rooms being upgraded are remembered here."""

    def __init__(self, ctx: "ServerContext", stores: "Stores", event_creator: "EventCreator",
                 membership: "MembershipHandler", room_creation: "RoomCreation") -> None:
        self.ctx = ctx
        self.stores = stores
        self.event_creator = event_creator
        self.membership = membership
        self.room_creation = room_creation
        self._in_progress: set[str] = set()

    async def upgrade(self, user_id: str, room_id: str, request: UpgradeRequest) -> str:
        """Upgrade ``room_id`` for ``user_id``; returns the new room's ID."""
        if room_id in self._in_progress:
            raise MatrixError(400, Codes.UNKNOWN,
                              "An upgrade for this room is currently in progress")
        self._in_progress.add(room_id)  # before any await: no two get past the check
        try:
            room = await self.stores.rooms.get_room(room_id)
            if room is None:
                raise not_found(f"Unknown room id {room_id}")
            return await self._upgrade(user_id, room, request)
        finally:
            self._in_progress.discard(room_id)

    async def _upgrade(self, user_id: str, room: RoomInfo, request: UpgradeRequest) -> str:
        old_version = KNOWN_ROOM_VERSIONS[room.room_version]
        new_version = request.new_version
        old_state = await self.event_creator.get_current_state(room.room_nid)
        self._check_may_upgrade(user_id, old_state, old_version)

        old_levels_event = old_state.get(POWER_LEVELS)
        old_levels = fixed_power_levels(old_levels_event.content, old_version) \
            if old_levels_event is not None else None
        creators = {user_id, *(request.additional_creators or ())} \
            if new_version.privileged_creators else set()
        new_levels = self._new_room_levels(user_id, old_levels, new_version, creators)

        new_room_id = await self.room_creation.create_room(user_id, CreateRoomRequest(
            room_version=new_version,
            preset="private_chat",
            creation_content=await self._creation_content(room, old_state, request),
            initial_state=tuple(self._copied_state(old_state, new_levels)),
        ))
        logger.info("upgraded %s to %s (version %s)", room.room_id, new_room_id,
                    new_version.identifier)
        await self._copy_bans(user_id, old_state, new_room_id)

        send = self.event_creator.send
        await send(user_id, room.room_id, TOMBSTONE,
                   {"body": "This room has been replaced", "replacement_room": new_room_id},
                   state_key="")
        await self._move_aliases(user_id, room, new_room_id, old_state.get(CANONICAL_ALIAS))
        await self._move_directory_listing(room, new_room_id)

        if old_levels is not None:
            restricted = restricted_old_room_levels(old_levels)
            if restricted is not None:
                try:
                    await send(user_id, room.room_id, POWER_LEVELS[0], restricted,
                               state_key="")
                except MatrixError as e:
                    logger.warning("could not restrict the power levels of %s: %s",
                                   room.room_id, e.msg)
            final = self._without_creators(old_levels, creators)
            if new_levels is not None and not new_version.privileged_creators and \
                    user_id in room_creators(old_state, old_version):
                # a v12 creator's power was infinite, not in ``users``: in a
                # room without creator power they keep what they were given
                final = new_levels
            await send(user_id, new_room_id, POWER_LEVELS[0], final, state_key="",
                       dedupe_state=True)
        return new_room_id

    @staticmethod
    def _check_may_upgrade(user_id: str, state: dict[tuple[str, str], Event],
                           room_version: RoomVersion) -> None:
        member = state.get(("m.room.member", user_id))
        if member is None or member.membership != "join":
            raise forbidden("You are not in this room.")
        needed = get_send_level(TOMBSTONE, "", state, room_version)
        if get_user_power_level(user_id, state, room_version) < needed:
            raise forbidden("You don't have permission to upgrade this room.")

    async def _creation_content(self, room: RoomInfo, old_state: dict[tuple[str, str], Event],
                                request: UpgradeRequest) -> dict[str, Any]:
        predecessor: dict[str, Any] = {"room_id": room.room_id}
        if not request.new_version.room_id_from_create_event:
            extremities = await self.stores.rooms.get_forward_extremities(room.room_nid)
            if extremities:
                predecessor["event_id"] = extremities[0].event_id
        content: dict[str, Any] = {"predecessor": predecessor}
        if request.new_version.privileged_creators and request.additional_creators is not None:
            content["additional_creators"] = list(request.additional_creators)
        old_create = old_state.get(CREATE)
        if old_create is not None:
            if old_create.content.get("m.federate", True) is False:
                content["m.federate"] = False
            room_type = old_create.content.get("type")
            if room_type is not None:
                content["type"] = room_type
        return content

    @staticmethod
    def _without_creators(levels: dict[str, Any], creators: set[str]) -> dict[str, Any]:
        users = levels.get("users")
        if not creators or not isinstance(users, dict):
            return levels
        return {**levels, "users": {u: v for u, v in users.items() if u not in creators}}

    def _new_room_levels(self, user_id: str, old_levels: dict[str, Any] | None,
                         new_version: RoomVersion, creators: set[str]) -> dict[str, Any] | None:
        """The power levels the new room starts with: the old ones, with the
        upgrader able to send every copied event (v12: creators removed)."""
        if old_levels is None:
            return None
        if new_version.privileged_creators:
            return self._without_creators(old_levels, creators)
        events = old_levels.get("events")
        event_levels = [v for v in events.values() if isinstance(v, int)] \
            if isinstance(events, dict) else []
        needed = max(_level(old_levels, "state_default", 50), _level(old_levels, "ban", 50),
                     max(event_levels, default=0))
        users = old_levels.get("users")
        users = dict(users) if isinstance(users, dict) else {}
        current = users.get(user_id, _level(old_levels, "users_default", 0))
        if not isinstance(current, int) or current < needed:
            users[user_id] = needed
        return {**old_levels, "users": users}

    @staticmethod
    def _copied_state(old_state: dict[tuple[str, str], Event],
                      new_levels: dict[str, Any] | None) -> list[StateEvent]:
        out: list[StateEvent] = []
        for key in TRANSFERRED_STATE:
            if key == POWER_LEVELS:
                if new_levels is not None:
                    out.append(StateEvent(key[0], key[1], new_levels))
                continue
            event = old_state.get(key)
            if event is not None:
                out.append(StateEvent(key[0], key[1], dict(event.content)))
        create = old_state.get(CREATE)
        if create is not None and create.content.get("type") == "m.space":
            for (event_type, state_key), event in sorted(old_state.items()):
                # an emptied m.space.child is a removed child
                if event_type == SPACE_CHILD and event.content:
                    out.append(StateEvent(event_type, state_key, dict(event.content)))
        return out

    async def _copy_bans(self, user_id: str, old_state: dict[tuple[str, str], Event],
                         new_room_id: str) -> None:
        for (event_type, target), event in sorted(old_state.items()):
            if event_type != "m.room.member" or event.membership != "ban":
                continue
            reason = event.content.get("reason")
            try:
                await self.membership.update_membership(
                    user_id, new_room_id, target, "ban",
                    reason=reason if isinstance(reason, str) else None)
            except MatrixError as e:
                logger.warning("could not copy the ban of %s to %s: %s", target, new_room_id,
                               e.msg)

    async def _move_aliases(self, user_id: str, room: RoomInfo, new_room_id: str,
                            canonical: Event | None) -> None:
        new_room = await self.stores.rooms.get_room(new_room_id)
        assert new_room is not None
        directory = self.stores.directory
        now = self.ctx.now_ms()
        for alias in await directory.get_aliases_for_room(room.room_nid):
            # not atomic, but no one else can take the alias between the two:
            # creating an alias needs it free, and it is ours in between
            if await directory.delete_alias(alias) is not None:
                await directory.create_alias(alias, new_room.room_nid, user_id, now)
        if canonical is None:
            return
        old_content = dict(canonical.content)
        new_content: dict[str, Any] = {}
        if _is_local_alias(self.ctx, old_content.get("alias")):
            new_content["alias"] = old_content.pop("alias")
        alt = old_content.get("alt_aliases")
        if isinstance(alt, list) and alt:
            moved = [a for a in alt if _is_local_alias(self.ctx, a)]
            if moved:
                new_content["alt_aliases"] = moved
            kept = [a for a in alt if not _is_local_alias(self.ctx, a)]
            if kept:
                old_content["alt_aliases"] = kept
            else:
                del old_content["alt_aliases"]
        for target_room, content in ((room.room_id, old_content), (new_room_id, new_content)):
            try:
                await self.event_creator.send(user_id, target_room, CANONICAL_ALIAS[0],
                                              content, state_key="", dedupe_state=True)
            except MatrixError as e:
                logger.warning("could not update %s of %s: %s", CANONICAL_ALIAS[0],
                               target_room, e.msg)

    async def _move_directory_listing(self, room: RoomInfo, new_room_id: str) -> None:
        directory = self.stores.directory
        if not await directory.is_room_public(room.room_nid):
            return
        new_room = await self.stores.rooms.get_room(new_room_id)
        assert new_room is not None
        now = self.ctx.now_ms()
        await directory.set_room_public(new_room.room_nid, True, now)
        await directory.set_room_public(room.room_nid, False, now)
