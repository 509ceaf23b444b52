"""Changing a user's membership of a room: join, invite, leave, kick, ban, unban.

Every change is an ``m.room.member`` event made by ``EventCreator``, so the
auth rules decide who may do what (a banned user cannot rejoin, a kick needs
the kick level and a higher level than the target...). A join or an invite
carries the target's display name and avatar, as clients expect.

Only rooms this server already knows can be joined: joining over federation
(and room aliases) comes with the federation work. Users of other servers
cannot be invited yet for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.errors import forbidden, not_found
from homeserver.storage.events import NewEventTxn

if TYPE_CHECKING:
    from homeserver.server import HomeServer


class MembershipHandler:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs
        self.stores = hs.stores

    async def _profile_content(self, user_id: str) -> dict[str, Any]:
        if not self.hs.is_mine(user_id):
            return {}
        profile = await self.stores.profiles.get_profile(user_id)
        if profile is None or profile.deactivated:
            return {}
        out: dict[str, Any] = {}
        if profile.displayname is not None:
            out["displayname"] = profile.displayname
        if profile.avatar_url is not None:
            out["avatar_url"] = profile.avatar_url
        return out

    async def check_invitee(self, user_id: str) -> None:
        """Raise unless ``user_id`` can be invited (a local user, for now)."""
        if not self.hs.is_mine(user_id):
            raise forbidden("Inviting users of other servers is not supported yet")
        if await self.stores.profiles.get_profile(user_id) is None:
            raise not_found("Unknown user")

    async def update_membership(self, sender: str, room_id: str, target: str,
                                membership: str, *, reason: str | None = None,
                                is_direct: bool | None = None,
                                txn_id: NewEventTxn | None = None) -> str:
        """Send the ``m.room.member`` event; returns its event ID."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if membership == "invite":
            await self.check_invitee(target)
        content: dict[str, Any] = {"membership": membership}
        if membership in ("join", "invite"):
            content.update(await self._profile_content(target))
        if reason is not None:
            content["reason"] = reason
        if is_direct is not None:
            content["is_direct"] = is_direct
        return await self.hs.event_creator.send(sender, room_id, "m.room.member", content,
                                                state_key=target, txn_id=txn_id)
