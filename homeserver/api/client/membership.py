"""Room membership: join, knock, invite, leave, kick, ban, unban, forget, and who is where.

The auth rules decide every change (``rooms/membership.py``). Joining and
knocking take a room ID or any server's alias (another server's is asked of
it); a room this server is not in is joined through the servers the alias
names, then ``via``/``server_name``, then those we know of
(``federation/membership.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.api.client.rooms import parse_token
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_valid_user_id
from homeserver.http.parse import get_str, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.rooms.third_party_invites import parse_signed, parse_third_party_invite

if TYPE_CHECKING:
    from homeserver.rooms.access import RoomReader
    from homeserver.rooms.directory import RoomDirectory
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.rooms.third_party_invites import ThirdPartyInvites
    from homeserver.server import HomeServer
    from homeserver.storage import Stores

CLIENT_V3 = "/_matrix/client/v3"


def reason_of(body: dict[str, Any]) -> str | None:
    reason: str | None = get_str(body, "reason", None)
    return reason


def target_of(body: dict[str, Any]) -> str:
    user_id: str = get_str(body, "user_id")
    if not is_valid_user_id(user_id):
        raise invalid_param(f"{user_id!r} is not a valid user ID")
    return user_id


def via_of(req: HttpRequest) -> list[str]:
    """Servers to join through: ``via`` (v1.12) and the older ``server_name``."""
    return [v.decode("utf-8", "replace")
            for name in (b"via", b"server_name") for v in req.args.get(name, [])]


@dataclass(frozen=True)
class MembershipApi:
    """What the membership endpoints use."""

    stores: "Stores"
    membership: "MembershipHandler"
    reader: "RoomReader"
    # a {roomIdOrAlias} that is an alias
    directory: "RoomDirectory"
    # invites by e-mail address, and joins that redeem them
    third_party_invites: "ThirdPartyInvites"


async def join(api: MembershipApi, req: HttpRequest, room_id: str,
               via: list[str] | None = None) -> tuple[int, Any]:
    body = req.json(allow_empty=True)
    signed = body.get("third_party_signed")
    if signed is not None:
        # a third-party invite's signed block: the invite is made first
        signed = parse_signed(signed)
        sender = signed.get("sender")
        if not isinstance(sender, str) or not is_valid_user_id(sender):
            raise invalid_param("'third_party_signed.sender' must be a user ID")
        await api.third_party_invites.exchange(sender, req.user_id, room_id, signed)
    assert req.requester is not None
    await api.membership.update_membership(req.user_id, room_id, req.user_id, "join",
                                           reason=reason_of(body),
                                           via=(via or []) + via_of(req), extra_content=body,
                                           guest=req.requester.is_guest)
    return 200, {"room_id": room_id}


async def post_join_room_id(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/join"""
    return await join(api, req, req.params["roomId"])


async def room_of(api: MembershipApi, target: str) -> tuple[str, list[str]]:
    """The room a ``{roomIdOrAlias}`` names and, for an alias, the
    servers its directory entry lists (an unknown alias is 404)."""
    if target.startswith("#"):
        found = await api.directory.lookup_alias(target)
        return found.room_id, list(found.servers)
    if not target.startswith("!") or len(target) < 2:
        raise invalid_param(f"{target!r} is not a room ID or alias")
    return target, []


async def post_join(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/join/{roomIdOrAlias}"""
    room_id, servers = await room_of(api, req.params["roomIdOrAlias"])
    return await join(api, req, room_id, servers)


async def post_knock(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/knock/{roomIdOrAlias}"""
    body = req.json(allow_empty=True)
    room_id, servers = await room_of(api, req.params["roomIdOrAlias"])
    await api.membership.update_membership(req.user_id, room_id, req.user_id, "knock",
                                           reason=reason_of(body),
                                           via=servers + via_of(req))
    return 200, {"room_id": room_id}


async def post_invite(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/invite"""
    body = req.json()
    if "user_id" not in body and ("medium" in body or "address" in body
                                  or "id_server" in body):
        # invite by third-party identifier
        await api.third_party_invites.invite(req.user_id, req.params["roomId"],
                                             parse_third_party_invite(body))
        return 200, {}
    await api.membership.update_membership(req.user_id, req.params["roomId"],
                                           target_of(body), "invite", reason=reason_of(body))
    return 200, {}


async def post_leave(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/leave"""
    body = req.json(allow_empty=True)
    await api.membership.update_membership(req.user_id, req.params["roomId"], req.user_id,
                                           "leave", reason=reason_of(body))
    return 200, {}


async def act_on_other(api: MembershipApi, req: HttpRequest,
                       new_membership: str, kick: bool = False) -> tuple[int, Any]:
    """Change another user's membership to ``new_membership`` (kick, ban)."""
    body = req.json()
    await api.membership.update_membership(req.user_id, req.params["roomId"],
                                           target_of(body), new_membership,
                                           reason=reason_of(body), kick=kick)
    return 200, {}


async def post_kick(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/kick"""
    return await act_on_other(api, req, "leave", kick=True)


async def post_ban(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/ban"""
    return await act_on_other(api, req, "ban")


async def post_unban(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/unban"""
    stores = api.stores
    body = req.json()
    target = target_of(body)
    room = await stores.rooms.get_room(req.params["roomId"])
    if room is None:
        raise not_found("Unknown room")
    current = await stores.rooms.get_membership(target, room.room_nid)
    if current is None or current.membership != "ban":
        raise forbidden(f"{target} is not banned from this room")
    await api.membership.update_membership(req.user_id, room.room_id, target, "leave",
                                           reason=reason_of(body))
    return 200, {}


async def post_forget(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/forget"""
    stores = api.stores
    room = await stores.rooms.get_room(req.params["roomId"])
    if room is None:
        raise not_found("Unknown room")
    current = await stores.rooms.get_membership(req.user_id, room.room_nid)
    if current is None:
        raise not_found("You have never been in this room")
    if current.membership in ("join", "invite", "knock"):
        raise MatrixError(400, Codes.UNKNOWN, "You must leave the room before forgetting it")
    await stores.rooms.forget(req.user_id, room.room_nid)
    return 200, {}


async def get_joined_rooms(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/joined_rooms"""
    return 200, {"joined_rooms": await api.stores.rooms.get_rooms_for_user(req.user_id)}


async def get_joined_members(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/joined_members"""
    access = await api.reader.check_read(req.user_id, req.params["roomId"])
    if access.snapshot_nid is not None:
        raise forbidden("You are not in this room.")
    state = await api.reader.get_state(access, "m.room.member")
    joined: dict[str, dict[str, Any]] = {}
    for (_, user_id), event in sorted(state.items()):
        if event.membership != "join":
            continue
        # both keys always, null when unset, as Synapse answers (clients and
        # SyTest read them without checking they are there)
        profile: dict[str, Any] = {}
        for key, out in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
            value = event.content.get(key)
            profile[out] = value if isinstance(value, str) else None
        joined[user_id] = profile
    return 200, {"joined": joined}


async def get_members(api: MembershipApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/members"""
    assert req.requester is not None
    room_id = req.params["roomId"]
    wanted = query_str(req.args, "membership", None)
    unwanted = query_str(req.args, "not_membership", None)
    at = query_str(req.args, "at", None)
    access = await api.reader.check_read(req.user_id, room_id)
    state = await api.reader.get_members_at(access,
                                            parse_token(at) if at is not None else None)
    events = [e for _, e in sorted(state.items())
              if (wanted is None or e.membership == wanted)
              and (unwanted is None or e.membership != unwanted)]
    return 200, {"chunk": await api.reader.serialize(req.requester, room_id, events)}


_ROOM = f"{CLIENT_V3}/rooms/{{roomId}}"
ENDPOINTS = (
    Endpoint("POST", f"{_ROOM}/join", post_join_room_id, allow_guest=True),
    Endpoint("POST", f"{CLIENT_V3}/join/{{roomIdOrAlias}}", post_join, allow_guest=True),
    Endpoint("POST", f"{CLIENT_V3}/knock/{{roomIdOrAlias}}", post_knock),
    Endpoint("POST", f"{_ROOM}/invite", post_invite),
    Endpoint("POST", f"{_ROOM}/leave", post_leave, allow_guest=True),
    Endpoint("POST", f"{_ROOM}/kick", post_kick),
    Endpoint("POST", f"{_ROOM}/ban", post_ban),
    Endpoint("POST", f"{_ROOM}/unban", post_unban),
    Endpoint("POST", f"{_ROOM}/forget", post_forget),
    Endpoint("GET", f"{CLIENT_V3}/joined_rooms", get_joined_rooms),
    Endpoint("GET", f"{_ROOM}/joined_members", get_joined_members),
    Endpoint("GET", f"{_ROOM}/members", get_members, allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(MembershipApi(hs.stores, hs.membership, hs.room_reader,
                                       hs.room_directory, hs.third_party_invites), ENDPOINTS)
