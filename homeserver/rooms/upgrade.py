"""Upgrading a room to another room version: POST /rooms/{roomId}/upgrade.

Client-server API, "Room upgrades" (server behaviour), done as Synapse does:

1. The upgrader must be able to send ``m.room.tombstone`` in the old room
   (403 M_FORBIDDEN; an unknown room is 404). One upgrade of a room at a time
   (400 while another is in progress).
2. The new room is created (``rooms/creation.py``, preset ``private_chat``,
   whose state the copied state replaces) with ``predecessor`` in its create
   content, and the old room's ``type`` and ``m.federate: false`` copied.
   Up to v11 ``predecessor.event_id`` is the tombstone's ID, as on Synapse
   (clients and SyTest follow the link): the new room's ID is chosen first,
   the tombstone naming it is sent (step 4 comes first), then the room is
   created with that ID. v12 targets omit it, as Synapse does, since the new
   room ID is the hash of the create event (their tombstone comes after). ``additional_creators``
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

7. The local members' ``m.direct`` entries, tags and push rules about the
   old room (a ``room`` rule, or an override/underride named after it) are
   copied to the new one (``copy_user_state``), as Synapse does.

When this server joins a room over federation that replaces one we are in
(``on_joined_over_federation``, after the old room's tombstone named it),
steps 5 and 7 happen here too: our aliases and directory listing move to it,
our users' ``m.direct``, tags and push rules are copied, as Synapse does.

Not done: inviting the old room's members (Synapse does not either).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.events.identifiers import generate_room_id
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
    from homeserver.appservice.handler import AppServiceHandler
    from homeserver.context import ServerContext
    from homeserver.rooms.creation import RoomCreation
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

TOMBSTONE = "m.room.tombstone"
DIRECT = "m.direct"
TAG = "m.tag"
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
        # told when aliases move (their cached room verdicts: appservice/interest.py)
        self.app_services: "AppServiceHandler | None" = None
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

        send = self.event_creator.send
        # up to v11 the new room's ID is ours to choose: the tombstone names
        # it first, and the new room's predecessor names the tombstone (as
        # on Synapse); a v12 room's ID is the hash of its create event
        chosen_id = None if new_version.room_id_from_create_event \
            else generate_room_id(self.ctx.hostname)
        tombstone_id: str | None = None
        if chosen_id is not None:
            tombstone_id = await self._send_tombstone(user_id, room, chosen_id)
        new_room_id = await self.room_creation.create_room(user_id, CreateRoomRequest(
            room_version=new_version,
            preset="private_chat",
            creation_content=self._creation_content(room, old_state, request, tombstone_id),
            initial_state=tuple(self._copied_state(old_state, new_levels)),
        ), room_id=chosen_id)
        logger.info("upgraded %s to %s (version %s)", room.room_id, new_room_id,
                    new_version.identifier)
        await self._copy_bans(user_id, old_state, new_room_id)
        if tombstone_id is None:
            await self._send_tombstone(user_id, room, new_room_id)
        await self._move_aliases(user_id, room, new_room_id, old_state.get(CANONICAL_ALIAS))
        if self.app_services is not None:
            self.app_services.aliases_changed()
        await self._move_directory_listing(room, new_room_id)
        await self.copy_user_state(room.room_id, new_room_id,
                                   await self._local_members(room))

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

    async def _send_tombstone(self, user_id: str, room: RoomInfo, new_room_id: str) -> str:
        return await self.event_creator.send(
            user_id, room.room_id, TOMBSTONE,
            {"body": "This room has been replaced", "replacement_room": new_room_id},
            state_key="")

    @staticmethod
    def _creation_content(room: RoomInfo, old_state: dict[tuple[str, str], Event],
                          request: UpgradeRequest, tombstone_id: str | None) -> dict[str, Any]:
        predecessor: dict[str, Any] = {"room_id": room.room_id}
        if tombstone_id is not None:
            predecessor["event_id"] = tombstone_id
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

    async def _local_members(self, room: RoomInfo) -> list[str]:
        return [u for u in await self.stores.rooms.get_members(room.room_nid)
                if self.ctx.is_mine(u)]

    async def copy_user_state(self, old_room_id: str, new_room_id: str,
                              user_ids: list[str]) -> None:
        """What each of ``user_ids`` had about the old room, about the new
        one too: its place in their ``m.direct`` and their tags on it."""
        account_data = self.stores.account_data
        for user_id in user_ids:
            direct = await account_data.get_global_account_data(user_id, DIRECT)
            for key, rooms in (direct or {}).items():
                if isinstance(rooms, list) and old_room_id in rooms and \
                        new_room_id not in rooms:
                    await account_data.put_global_account_data(
                        user_id, DIRECT, {**(direct or {}), key: [*rooms, new_room_id]})
                    break
            tags = await account_data.get_room_account_data(user_id, old_room_id, TAG)
            if tags is not None and isinstance(tags.get("tags"), dict) and tags["tags"]:
                await account_data.put_room_account_data(user_id, new_room_id, TAG,
                                                         {"tags": dict(tags["tags"])})
            await self._copy_room_push_rules(user_id, old_room_id, new_room_id)

    async def _copy_room_push_rules(self, user_id: str, old_room_id: str,
                                    new_room_id: str) -> None:
        """The user's enabled rules about the old room (a ``room`` rule, or an
        override/underride named after it, as clients mute a room), made for
        the new one."""
        store = self.stores.push_rules
        ruleset = await store.get_ruleset(user_id)
        for kind in ("override", "room", "underride"):
            for rule in ruleset.get(kind, []):
                if rule.get("default") or not rule.get("enabled", True) or \
                        rule.get("rule_id") != old_room_id:
                    continue
                conditions = [
                    {**c, "pattern": new_room_id}
                    if isinstance(c, dict) and c.get("key") == "room_id"
                    and c.get("pattern") == old_room_id else c
                    for c in rule.get("conditions", [])] if kind != "room" else []
                await store.add_rule(user_id, kind, new_room_id, conditions, None,
                                     list(rule.get("actions", [])))

    async def on_joined_over_federation(self, room_id: str) -> None:
        """This server just joined ``room_id`` through another server: if
        it replaces a room we were in, what was ours about the old room moves
        to it as if we had upgraded it (Synapse's
        transfer_room_state_on_room_upgrade): our aliases, its place in our
        published directory, our users' ``m.direct`` and tags.

        Only when the old room's tombstone names this room: the create
        event's ``predecessor`` alone is the new room's creator's word, and
        anyone can create a room claiming to replace one of ours."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return
        state = await self.event_creator.get_current_state(room.room_nid)
        create = state.get(CREATE)
        predecessor = create.content.get("predecessor") if create is not None else None
        old_room_id = predecessor.get("room_id") if isinstance(predecessor, dict) else None
        if not isinstance(old_room_id, str) or old_room_id == room_id:
            return
        old_room = await self.stores.rooms.get_room(old_room_id)
        if old_room is None:
            return
        ids = await self.stores.rooms.get_current_state_ids(old_room.room_nid,
                                                             [(TOMBSTONE, "")])
        tombstone = await self.stores.events.get_event(ids[(TOMBSTONE, "")]) \
            if ids else None
        if tombstone is None or tombstone.content.get("replacement_room") != room_id:
            logger.info("not moving anything from %s to %s: no tombstone names it",
                        old_room_id, room_id)
            return
        logger.info("moving our state of %s to its replacement %s", old_room_id, room_id)
        await self.copy_user_state(old_room_id, room_id, await self._local_members(old_room))
        await self._move_directory_listing(old_room, room_id)
        await self.stores.directory.move_aliases(old_room.room_nid, room.room_nid)

    async def _move_directory_listing(self, room: RoomInfo, new_room_id: str) -> None:
        directory = self.stores.directory
        if not await directory.is_room_public(room.room_nid):
            return
        new_room = await self.stores.rooms.get_room(new_room_id)
        assert new_room is not None
        now = self.ctx.now_ms()
        await directory.set_room_public(new_room.room_nid, True, now)
        await directory.set_room_public(room.room_nid, False, now)
