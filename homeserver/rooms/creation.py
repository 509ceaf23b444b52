"""Creating a room: the events of POST /createRoom, in the spec's order.

1. ``m.room.create`` (``creation_content`` merged in; in v12 the room ID is
   derived from it, earlier we pick ``!opaque:server``);
2. the creator's join;
3. ``m.room.power_levels``: Synapse's defaults, then
   ``power_level_content_override`` on top (top-level keys replaced), or
   the ``initial_state`` one instead;
4. the preset's ``m.room.join_rules``, ``m.room.history_visibility`` and
   ``m.room.guest_access``, which ``initial_state`` entries of the same type
   and state key replace;
5. the rest of ``initial_state``;
6. ``m.room.name`` and ``m.room.topic``;
7. the invites (``is_direct`` on each when asked).

Presets (client-server API, "Creation"): ``private_chat`` and
``trusted_private_chat`` are invite-only with ``shared`` history and guests
allowed to join; ``public_chat`` is public, ``shared``, no guests: it sends
no ``m.room.guest_access`` at all, as Synapse does (a room without one is
closed to guests), so its state is what clients and SyTest expect.
``trusted_private_chat`` gives the invitees the creator's power: level 100 up
to v11, a place among ``additional_creators`` in v12. Without a preset,
``visibility: public`` means ``public_chat`` and anything else
``private_chat``. As on Synapse, invites need level 0 in private rooms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.events.room_versions import RoomVersion

if TYPE_CHECKING:
    from homeserver.moderation.gate import ModerationGate
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.directory import RoomDirectory
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.rooms.third_party_invites import ThirdPartyInviteRequest, ThirdPartyInvites

PRESETS = ("private_chat", "trusted_private_chat", "public_chat")

_PRESET_STATE: dict[str, dict[str, str]] = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared",
                     "guest_access": "can_join"},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared",
                             "guest_access": "can_join"},
    "public_chat": {"join_rule": "public", "history_visibility": "shared"},
}


@dataclass(frozen=True)
class StateEvent:
    type: str
    state_key: str
    content: dict[str, Any]


@dataclass(frozen=True)
class CreateRoomRequest:
    """A validated POST /createRoom body."""

    room_version: RoomVersion
    preset: str
    visibility: str = "private"
    name: str | None = None
    topic: str | None = None
    invite: tuple[str, ...] = ()
    invite_3pid: tuple["ThirdPartyInviteRequest", ...] = ()
    is_direct: bool = False
    creation_content: dict[str, Any] = field(default_factory=dict)
    initial_state: tuple[StateEvent, ...] = ()
    power_level_content_override: dict[str, Any] | None = None
    room_alias_name: str | None = None


def default_power_levels(creator: str, request: CreateRoomRequest) -> dict[str, Any]:
    rv = request.room_version
    users: dict[str, int] = {}
    if not rv.privileged_creators:
        users[creator] = 100
        if request.preset == "trusted_private_chat":
            for invitee in request.invite:
                users[invitee] = 100
    content: dict[str, Any] = {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if rv.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0 if request.preset in ("private_chat", "trusted_private_chat") else 50,
        "historical": 100,
    }
    if request.power_level_content_override:
        content.update(request.power_level_content_override)
    return content


def create_content(creator: str, request: CreateRoomRequest) -> dict[str, Any]:
    rv = request.room_version
    content = dict(request.creation_content)
    content["room_version"] = rv.identifier
    if not rv.implicit_room_creator:
        content["creator"] = creator
    if rv.privileged_creators and request.preset == "trusted_private_chat" and request.invite:
        extra = content.get("additional_creators")
        others = list(extra) if isinstance(extra, list) else []
        for invitee in request.invite:
            if invitee not in others and invitee != creator:
                others.append(invitee)
        content["additional_creators"] = others
    return content


class RoomCreation:
    """POST /createRoom's use case: the events of a new room, in the spec's
    order (module docstring). Built once by ``server.py`` (``hs.room_creation``)."""

    # built after this and needing federation: set by HomeServer._wire_late
    third_party_invites: "ThirdPartyInvites"
    # spam checker modules' user_may_create_room: set by HomeServer._wire_late
    gate: "ModerationGate | None" = None

    def __init__(self, event_creator: "EventCreator", membership: "MembershipHandler",
                 directory: "RoomDirectory") -> None:
        self.event_creator = event_creator
        self.membership = membership
        # the new room's alias and its place in the published list
        self.directory = directory

    async def create_room(self, creator: str, request: CreateRoomRequest,
                          room_id: str | None = None) -> str:
        """Create the room and send its initial events; returns the room ID
        (``room_id`` if given: an ID chosen beforehand, up to v11)."""
        if self.membership.user_moderation is not None:
            self.membership.user_moderation.refuse_if_suspended(creator, "Creating rooms")
        if self.gate is not None:
            await self.gate.check_create_room(creator)
        for invitee in request.invite:
            # refuse before anything exists rather than leave a half-made room
            await self.membership.check_invitee(invitee)
        alias = await self.directory.check_new_room_alias(request.room_alias_name, creator)
        creator_events = self.event_creator
        room_id = await creator_events.create_room(request.room_version, creator,
                                                   create_content(creator, request), room_id)
        await self.membership.update_membership(creator, room_id, creator, "join")

        async def send_state(event_type: str, content: dict[str, Any], state_key: str = "") -> None:
            await creator_events.send(creator, room_id, event_type, content, state_key=state_key)

        # an initial_state power-levels event takes the defaults' place, right
        # after the join, as on Synapse (room upgrades copy theirs this way)
        levels = None
        for item in request.initial_state:
            if (item.type, item.state_key) == ("m.room.power_levels", ""):
                levels = item.content
        await send_state("m.room.power_levels",
                         levels if levels is not None else default_power_levels(creator, request))

        if alias is not None:
            await self.directory.create_alias_for_new_room(creator, room_id, alias)

        preset = _PRESET_STATE[request.preset]
        state: dict[tuple[str, str], dict[str, Any]] = {
            ("m.room.join_rules", ""): {"join_rule": preset["join_rule"]},
            ("m.room.history_visibility", ""): {"history_visibility": preset["history_visibility"]},
        }
        if "guest_access" in preset:
            state[("m.room.guest_access", "")] = {"guest_access": preset["guest_access"]}
        for item in request.initial_state:
            if (item.type, item.state_key) != ("m.room.power_levels", ""):
                state[(item.type, item.state_key)] = item.content
        for (event_type, state_key), content in state.items():
            await send_state(event_type, content, state_key)
        if request.name is not None:
            await send_state("m.room.name", {"name": request.name})
        if request.topic is not None:
            # with the Matrix 1.15 text block beside the plain form (MSC3765)
            await send_state("m.room.topic", {"topic": request.topic,
                                              "m.topic": {"m.text": [{"body": request.topic}]}})
        for invitee in request.invite:
            await self.membership.update_membership(creator, room_id, invitee, "invite",
                                                    is_direct=request.is_direct or None)
        for invite_3pid in request.invite_3pid:
            await self.third_party_invites.invite(creator, room_id, invite_3pid)
        if request.visibility == "public":
            await self.directory.publish_new_room(room_id)
        return room_id
