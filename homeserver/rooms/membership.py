"""Changing a user's membership of a room: join, knock, invite, leave, kick, ban, unban.

Every change is an ``m.room.member`` event made by ``EventCreator``, so the
auth rules decide who may do what (a banned user cannot rejoin, a kick needs
the kick level and a higher level than the target, a knock needs a v7+ room
whose join rule is ``knock`` or, v10+, ``knock_restricted``...). A join, a
knock or an invite carries the target's display name and avatar, as clients
expect. Where Synapse refuses more than the auth rules, so do we: a kick
needs a target in the room (not one who left or is banned), and a change
identical to the current member event sends nothing (joining twice is
idempotent).

Knocking (client-server API, "Knocking on rooms"): the knock is membership
``knock``; a member with the invite level may then invite the knocker (an
invite over a knock), who joins; the knocker rescinds with a leave.

Restricted joins (v8+ ``restricted``, v10+ ``knock_restricted``): a user
joined to one of the rooms of the join rule's ``allow`` list
(``{"type": "m.room_membership", "room_id": ...}``) may join without an
invite. The join event names, in ``join_authorised_via_users_server``, a
local joined user with the invite level; as Synapse does, we pick the local
member with the highest power level (403 if the user is in none of the
allowed rooms, 400 M_UNABLE_TO_GRANT_JOIN if no local member could invite).
Only rooms this server knows are checked: allowed rooms elsewhere need
federation.

Guests (client-server API, "Guest Access") join only a room whose current
``m.room.guest_access`` is ``can_join``; being a guest is a local notion no
auth rule sees, so it is checked here, on the room's state as this server
holds it (as Synapse does: a room on another server that we do not hold
yet has no such state, so a guest cannot join it). When a room stops
allowing guests, ``kick_guests`` makes its local guests leave, as the spec
requires.

A room no local user is in is joined, knocked on or left (an invite
rejected) through another server: ``federation/membership.py``. Users of
other servers are invited with their server's countersignature
(``rooms/creator.py`` asks for it before persisting the invite).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from homeserver.admin.user_moderation import fake_event_id
from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.events.identifiers import server_name_of
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.auth import AUTHORISING_USER, JOIN_RULES
from homeserver.rooms.power_levels import (
    CREATE,
    POWER_LEVELS,
    get_named_level,
    get_user_power_level,
)
from homeserver.rooms.visibility import (
    GUEST_ACCESS_KEY,
    GUEST_ACCESS_TYPE,
    guest_access_allows_join,
)
from homeserver.storage.events import NewEventTxn
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.admin.user_moderation import UserModeration
    from homeserver.appservice.handler import AppServiceHandler
    from homeserver.context import ServerContext
    from homeserver.federation.membership import FederationMembership
    from homeserver.moderation.gate import ModerationGate
    from homeserver.rooms.creator import EventCreator
    from homeserver.storage import Stores
    from homeserver.storage.hub import Committed

logger = logging.getLogger(__name__)

# the allow-list entry of a restricted join rule that we can check
ROOM_MEMBERSHIP_ALLOW = "m.room_membership"

# keys of a join request's body that never go into the member event as they
# are: the server decides them (or, for a third-party invite, checks them)
_NOT_CLIENT_CONTENT = frozenset({"membership", AUTHORISING_USER, "third_party_signed",
                                 "reason", "is_direct"})


_SUSPENDED_ACTIONS = {"invite": "Sending invites", "join": "Joining rooms",
                      "knock": "Knocking on rooms"}


class MembershipHandler:
    # built after this handler and calling back into it: set by HomeServer._wire_late
    federation_membership: "FederationMembership"
    # users of application services' namespaces are asked of them: set by
    # HomeServer._wire_late (None: no services)
    app_services: "AppServiceHandler | None" = None
    # shadow-banned users' invites reach nobody: set by HomeServer._wire_late
    user_moderation: "UserModeration | None" = None
    # spam checker modules' user_may_join_room / user_may_invite: set by
    # HomeServer._wire_late
    gate: "ModerationGate | None" = None

    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 event_creator: "EventCreator") -> None:
        self.ctx = ctx
        self.stores = stores
        self.event_creator = event_creator

    async def _profile_content(self, user_id: str) -> dict[str, Any]:
        if not self.ctx.is_mine(user_id):
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
        """Raise unless ``user_id`` can be invited (a user of another server
        is checked by its server, which countersigns the invite)."""
        if not self.ctx.is_mine(user_id):
            return
        if await self.stores.profiles.get_profile(user_id) is None:
            # a user of an application service's namespace: the service is
            # asked, and may register it before answering
            if self.app_services is None or not await self.app_services.ask_for_user(user_id) \
                    or await self.stores.profiles.get_profile(user_id) is None:
                raise not_found("Unknown user")

    async def _remote_servers(self, room_id: str, room: RoomInfo | None,
                              user_id: str) -> list[str]:
        """Servers to ask about a room we are not in: the sender of the
        user's invite (or knock answer) first, then the room's members'."""
        out: list[str] = []
        if room is None:
            return out
        current = await self.stores.rooms.get_membership(user_id, room.room_nid)
        if current is not None:
            event = await self.stores.events.get_event(current.event_id)
            if event is not None:
                out.append(server_name_of(event.sender))
        for member in await self.stores.rooms.get_members(room.room_nid):
            out.append(server_name_of(member))
        return [s for s in dict.fromkeys(out) if s != self.ctx.hostname]

    async def update_membership(self, sender: str, room_id: str, target: str,
                                membership: str, *, reason: str | None = None,
                                is_direct: bool | None = None,
                                txn_id: NewEventTxn | None = None,
                                via: list[str] | None = None,
                                extra_content: dict[str, Any] | None = None,
                                kick: bool = False, guest: bool = False) -> str:
        """Send the ``m.room.member`` event; returns its event ID.

        ``guest``: the sender is a guest account (a join needs guest access).

        A user joining, knocking on or leaving a room no local user is in
        goes through another server (``federation/membership.py``): ``via``
        names candidates, after the inviter's server and the room's.

        ``extra_content``: the rest of a join request's body, which goes into
        the member event (as on Synapse, a client may put its own keys there
        or its own display name), except the keys the server decides.

        A change that would change nothing (the same sender, membership and
        content as the current member event) sends no new event and returns
        the current one, as on Synapse: joining twice is idempotent.
        ``kick``: a leave sent by a moderator through /kick, which needs a
        target in the room (``_check_kick_target``)."""
        if membership in ("join", "invite", "knock") and \
                await self.stores.admin_rooms.room_blocked_by(room_id) is not None:
            # a server admin shut the room down (homeserver/admin/room_deletion.py)
            raise forbidden("This room has been blocked on this server")
        if self.user_moderation is not None and membership != "leave":
            # a suspended user may only leave (admin/user_moderation.py)
            self.user_moderation.refuse_if_suspended(
                sender, _SUSPENDED_ACTIONS.get(membership, "Changing membership"))
        room = await self.stores.rooms.get_room(room_id)
        if guest and membership == "join" and not await self._guests_may_join(room):
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
        extra = {k: v for k, v in (extra_content or {}).items()
                 if k not in _NOT_CLIENT_CONTENT}
        if self.gate is not None and self.gate.has_modules and membership == "join" \
                and sender == target:
            current = None if room is None else await self.stores.rooms.get_membership(
                target, room.room_nid)
            await self.gate.check_join(target, room_id,
                                       current is not None and current.membership == "invite")
        if self.gate is not None and self.gate.has_modules and membership == "knock" \
                and sender == target:
            await self.gate.check_knock(target, room_id)
        if sender == target and membership in ("join", "knock", "leave") and \
                await self._needs_remote(room):
            return await self._remote_membership(sender, room_id, room, membership,
                                                 reason, via or [], extra)
        if room is None:
            raise not_found("Unknown room")
        if membership == "invite":
            await self.check_invitee(target)
            if self.user_moderation is not None and \
                    self.user_moderation.is_shadow_banned(sender):
                # seems to succeed, reaches nobody (admin/user_moderation.py)
                return fake_event_id()
            if self.gate is not None and sender != target:
                await self.gate.check_invite(sender, target, room_id)
        if kick:
            await self._check_kick_target(room, target)
        content: dict[str, Any] = {"membership": membership}
        if membership in ("join", "invite", "knock"):
            content.update(await self._profile_content(target))
        if membership == "join":
            content.update(extra)
            content["membership"] = membership
        if membership == "join" and sender == target:
            authoriser = await self._restricted_join_authoriser(room, target)
            if authoriser is not None:
                content[AUTHORISING_USER] = authoriser
        if reason is not None:
            content["reason"] = reason
        if is_direct is not None:
            content["is_direct"] = is_direct
        return await self.event_creator.send(sender, room_id, "m.room.member", content,
                                             state_key=target, txn_id=txn_id,
                                             dedupe_state=True)

    async def _check_kick_target(self, room: RoomInfo, target: str) -> None:
        """A kick needs a target who is joined, invited or knocking: the
        auth rules would let a moderator "kick" a user who already left,
        never came or is banned (which would unban them), and Synapse
        refuses that with 403 (/unban is the way to lift a ban)."""
        current = await self.stores.rooms.get_membership(target, room.room_nid)
        if current is None or current.membership in ("leave", "ban"):
            raise forbidden(f"{target} is not in the room")

    async def _guests_may_join(self, room: RoomInfo | None) -> bool:
        if room is None:
            return False
        ids = await self.stores.rooms.get_current_state_ids(room.room_nid, [GUEST_ACCESS_KEY])
        event = await self.stores.events.get_event(ids[GUEST_ACCESS_KEY]) if ids else None
        return event is not None and guest_access_allows_join(event.content)

    async def kick_guests(self, room_id: str) -> None:
        """Make the local guests joined to ``room_id`` leave, if its current
        ``m.room.guest_access`` no longer lets guests join."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None or await self._guests_may_join(room):
            return
        local = await self.stores.rooms.get_local_members(room_id, self.ctx.hostname)
        for user_id in local:
            user = await self.stores.users.get_user(user_id)
            if user is None or not user.is_guest:
                continue
            try:
                await self.event_creator.send(user_id, room_id, "m.room.member",
                                              {"membership": "leave"}, state_key=user_id)
            except MatrixError as e:
                logger.info("guest %s not removed from %s: %s", user_id, room_id, e)

    def on_commit(self, committed: "Committed") -> None:
        """Write hub, database thread: a committed ``m.room.guest_access``
        that shuts guests out (ours or another server's) makes the room's
        local guests leave, once back on the reactor."""
        rooms = {event.room_id for event, _ in committed.events
                 if event.type == GUEST_ACCESS_TYPE and event.state_key == ""
                 and not guest_access_allows_join(event.content)}
        for room_id in rooms:
            self.ctx.reactor.callFromThread(self.ctx.run_in_background,
                                            self.kick_guests(room_id))

    async def profile_changed(self, user_id: str) -> None:
        """Carry a new display name or avatar into the user's member event in
        every room they are joined to (as Synapse does: other members, here
        and on other servers, see the change)."""
        profile = await self._profile_content(user_id)
        for room_id in await self.stores.rooms.get_rooms_for_user(user_id):
            room = await self.stores.rooms.get_room(room_id)
            if room is None:
                continue
            ids = await self.stores.rooms.get_current_state_ids(
                room.room_nid, [("m.room.member", user_id)])
            current = await self.stores.events.get_event(ids[("m.room.member", user_id)]) \
                if ids else None
            if current is None or current.membership != "join":
                continue
            content = {k: v for k, v in current.content.items()
                       if k not in ("displayname", "avatar_url")}
            content.update(profile)
            if content == current.content:
                continue
            try:
                await self.event_creator.send(user_id, room_id, "m.room.member", content,
                                              state_key=user_id)
            except MatrixError as e:
                logger.info("profile change of %s not sent to %s: %s", user_id, room_id, e)

    async def _needs_remote(self, room: RoomInfo | None) -> bool:
        """Whether a change of one's own membership must go through another
        server: we do not hold the room's state (or the room at all), or no
        local user is in it while users of other servers are."""
        if room is None:
            return True
        if not await self.stores.rooms.get_current_state_ids(room.room_nid, [CREATE]):
            return True
        if await self.stores.rooms.get_local_members(room.room_id, self.ctx.hostname):
            return False
        return bool(await self.stores.rooms.get_members(room.room_nid))

    async def _remote_membership(self, user_id: str, room_id: str, room: RoomInfo | None,
                                 membership: str, reason: str | None, via: list[str],
                                 extra: dict[str, Any]) -> str:
        fm = self.federation_membership
        servers = list(via) + await self._remote_servers(room_id, room, user_id)
        content: dict[str, Any] = {}
        if membership in ("join", "knock"):
            content.update(await self._profile_content(user_id))
        if membership == "join":
            content.update(extra)
        if reason is not None:
            content["reason"] = reason
        if membership == "join":
            await fm.join_remote(user_id, room_id, servers, content)
        elif membership == "knock":
            await fm.knock_remote(user_id, room_id, servers, content)
        else:
            current = await self.stores.rooms.get_membership(user_id, room.room_nid) \
                if room is not None else None
            if current is None or current.membership not in ("invite", "knock"):
                raise forbidden("You are not in this room")
            return await fm.leave_remote(user_id, room_id, servers,
                                         invite_event_id=current.event_id)
        member = await self.stores.rooms.get_room(room_id)
        assert member is not None
        joined = await self.stores.rooms.get_membership(user_id, member.room_nid)
        return joined.event_id if joined is not None else ""

    async def _restricted_join_authoriser(self, room: RoomInfo, user_id: str) -> str | None:
        """The ``join_authorised_via_users_server`` of ``user_id``'s join, or
        None when the join needs none (not a restricted room, or the user is
        already invited or joined). Raises when the join cannot be allowed."""
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        if not rv.restricted_join_rule:
            return None
        ids = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [JOIN_RULES, POWER_LEVELS, CREATE])
        events = await self.stores.events.get_events(list(ids.values()))
        state = {k: events[v] for k, v in ids.items() if v in events}
        join_rules = state.get(JOIN_RULES)
        rule = join_rules.content.get("join_rule") if join_rules is not None else None
        if not (rule == "restricted"
                or (rv.knock_restricted_join_rule and rule == "knock_restricted")):
            return None
        assert join_rules is not None
        current = await self.stores.rooms.get_membership(user_id, room.room_nid)
        if current is not None and current.membership in ("join", "invite"):
            return None
        if not await self._is_in_an_allowed_room(user_id, join_rules.content.get("allow")):
            raise forbidden("You do not belong to any of the required rooms to join this room.")
        local_members = [u for u in await self.stores.rooms.get_members(room.room_nid)
                         if self.ctx.is_mine(u)]
        if local_members:
            chosen = max(local_members, key=lambda u: get_user_power_level(u, state, rv))
            if get_user_power_level(chosen, state, rv) >= get_named_level("invite", state, rv):
                return chosen
        raise MatrixError(400, Codes.UNABLE_TO_GRANT_JOIN,
                          "Unable to find a user which could issue an invite")

    async def _is_in_an_allowed_room(self, user_id: str, allow: Any) -> bool:
        if not isinstance(allow, list):
            return False
        for entry in allow:
            if not isinstance(entry, dict) or entry.get("type") != ROOM_MEMBERSHIP_ALLOW:
                continue
            allowed_id = entry.get("room_id")
            if not isinstance(allowed_id, str):
                continue
            allowed = await self.stores.rooms.get_room(allowed_id)
            if allowed is None:
                continue
            membership = await self.stores.rooms.get_membership(user_id, allowed.room_nid)
            if membership is not None and membership.membership == "join":
                return True
        return False
