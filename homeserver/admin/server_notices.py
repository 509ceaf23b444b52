"""Server notices (Synapse's ``POST /_synapse/admin/v1/send_server_notice`` and
its ``server_notices`` config).

A notice comes from the system user ``@<system_mxid_localpart>``, created
when first needed with the configured display name and avatar, into a room
of its own with each user: private, named ``room_name`` (topic and avatar if
configured), where the user's power is -10 so they read and cannot write,
tagged ``m.server_notice`` for the user so clients show it apart. The user
is invited (``auto_join``: joined at once). The room is remembered per user
(migration 0037); if the user left it, the next notice opens a new one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.rooms.creation import RoomCreation
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.storage import Stores
    from homeserver.storage.user_moderation import UserModerationStore

NOTICE_TAG = "m.server_notice"
# Synapse's SERVER_NOTICE_ROOM_USER_DEFAULT_POWER_LEVEL: users read, cannot write
USER_POWER = -10


class ServerNotices:
    def __init__(self, ctx: "ServerContext", stores: "Stores", store: "UserModerationStore",
                 room_creation: "RoomCreation", membership: "MembershipHandler",
                 event_creator: "EventCreator") -> None:
        self.ctx = ctx
        self.stores = stores
        self.store = store
        self.room_creation = room_creation
        self.membership = membership
        self.event_creator = event_creator
        self.config: dict[str, Any] = ctx.config.server_notices or {}

    @property
    def system_user(self) -> str | None:
        localpart = self.config.get("system_mxid_localpart")
        return f"@{localpart}:{self.ctx.hostname}" if localpart else None

    async def send(self, admin: str, user_id: str, event_type: str, content: dict[str, Any],
                   state_key: str | None) -> str:
        system = self.system_user
        if system is None:
            raise MatrixError(400, Codes.UNKNOWN,
                              "Server notices are not enabled on this server")
        if not self.ctx.is_mine(user_id):
            raise MatrixError(400, Codes.UNKNOWN,
                              "Server notices can only be sent to local users")
        target = await self.stores.users.get_user(user_id)
        if target is None:
            raise not_found("User not found")
        if target.deactivated:
            raise MatrixError(400, Codes.UNKNOWN, "User is deactivated")
        await self._ensure_system_user(system)
        room_id = await self._notice_room(system, user_id)
        event_id: str = await self.event_creator.send(system, room_id, event_type, content,
                                                      state_key=state_key)
        log_admin_action(admin, "send_server_notice", user_id, event_type=event_type,
                         event_id=event_id)
        return event_id

    async def _ensure_system_user(self, system: str) -> None:
        if await self.stores.users.get_user(system) is not None:
            return
        try:
            await self.stores.db.run_interaction(
                "create_server_notices_user", UserStore.create_user_txn, system, None,
                self.ctx.now_ms(), False, False, None,
                self.config.get("system_mxid_display_name"))
        except UserExists:
            return
        avatar = self.config.get("system_mxid_avatar_url")
        if avatar:
            await self.stores.profiles.set_avatar_url(system, avatar)

    async def _notice_room(self, system: str, user_id: str) -> str:
        room_id = await self.store.notice_room(user_id)
        if room_id is not None and await self._still_usable(room_id, system, user_id):
            return room_id
        request = CreateRoomRequest(
            room_version=KNOWN_ROOM_VERSIONS[self.ctx.config.default_room_version],
            preset="private_chat", name=self.config.get("room_name"),
            topic=self.config.get("room_topic"),
            power_level_content_override={"users_default": USER_POWER})
        room_id = await self.room_creation.create_room(system, request)
        avatar = self.config.get("room_avatar_url")
        if avatar:
            await self.event_creator.send(system, room_id, "m.room.avatar", {"url": avatar},
                                          state_key="")
        await self.membership.update_membership(system, room_id, user_id, "invite")
        if self.config.get("auto_join"):
            await self.membership.update_membership(user_id, room_id, user_id, "join")
        await self.stores.account_data.put_room_account_data(
            user_id, room_id, "m.tag", {"tags": {NOTICE_TAG: {}}})
        await self.store.set_notice_room(user_id, room_id)
        return room_id

    async def _still_usable(self, room_id: str, system: str, user_id: str) -> bool:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return False
        ours = await self.stores.rooms.get_membership(system, room.room_nid)
        theirs = await self.stores.rooms.get_membership(user_id, room.room_nid)
        return (ours is not None and ours.membership == "join" and theirs is not None
                and theirs.membership in ("join", "invite"))
