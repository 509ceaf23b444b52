"""Spaces and shared rooms: the space hierarchy and mutual rooms.

- GET /_matrix/client/v1/rooms/{roomId}/hierarchy: the walk of a space's
  children (``rooms/hierarchy.py`` holds the design).
- GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (Matrix 1.15, MSC3266;
  also at its unstable ``im.nheko.summary`` paths): what a client shows of a
  room before joining; with or without an access token.
- GET /_matrix/client/v1/mutual_rooms?user_id= (Matrix 1.19; MSC2666's
  unstable and earlier ``/user/mutual_rooms`` paths answer the same): the
  rooms both the requester and ``user_id`` are joined to, by room ID, in
  batches of ``MUTUAL_ROOMS_BATCH``. The batch token is opaque (the other
  user and the last room ID given, base64): it never expires, and rooms
  joined meanwhile appear only if they sort after it, which the spec allows.
  Our own user, an invalid user ID or a bad token is 400 M_INVALID_PARAM; a
  user we share nothing with (or who does not exist) gets an empty list.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_room_id, parse_user_id
from homeserver.errors import invalid_param
from homeserver.http.parse import query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_OPTIONAL, Endpoint, Router
from homeserver.rooms.hierarchy import HierarchyHandler

if TYPE_CHECKING:
    from homeserver.rooms.directory import RoomDirectory
    from homeserver.server import HomeServer
    from homeserver.storage.rooms import RoomStore

CLIENT_V1 = "/_matrix/client/v1"
MSC3266 = "/_matrix/client/unstable/im.nheko.summary"
MSC2666 = "/_matrix/client/unstable/uk.half-shot.msc2666"
MUTUAL_ROOMS_BATCH = 100


def _encode_batch(user_id: str, after: str) -> str:
    raw = json.dumps([user_id, after], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_batch(token: str, user_id: str) -> str:
    """The last room ID of the previous batch; 400 for a token that is not ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise invalid_param("Invalid batch token") from None
    if (not isinstance(value, list) or len(value) != 2 or value[0] != user_id
            or not isinstance(value[1], str)):
        raise invalid_param("Invalid batch token")
    return value[1]


def query_flag(req: HttpRequest, name: str) -> bool:
    """A boolean query parameter, ``true`` or ``false`` in any case: matrix-nio
    sends Python's ``True`` for ``suggested_only``."""
    raw = query_str(req.args, name, None)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise invalid_param(f"Query parameter {name!r} must be 'true' or 'false'")
    return raw.lower() == "true"


@dataclass(frozen=True)
class Spaces:
    """What the endpoints use: the hierarchy walker and the room store."""

    hierarchy: HierarchyHandler
    rooms: "RoomStore"
    # a {roomIdOrAlias} that is an alias
    directory: "RoomDirectory"


async def get_hierarchy(spaces: Spaces, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/hierarchy"""
    room_id = req.params["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"{room_id} is not a valid room ID")
    limit = query_int(req.args, "limit", None)
    if limit is not None and limit <= 0:
        raise invalid_param("'limit' must be a positive integer")
    max_depth = query_int(req.args, "max_depth", None)
    if max_depth is not None and max_depth < 0:
        raise invalid_param("'max_depth' must be a non-negative integer")
    body = await spaces.hierarchy.get_hierarchy(
        req.user_id, room_id, suggested_only=query_flag(req, "suggested_only"),
        max_depth=max_depth, limit=limit, from_token=query_str(req.args, "from", None))
    return 200, body


async def get_room_summary(spaces: Spaces, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/room_summary/{roomIdOrAlias}"""
    target = req.params["roomIdOrAlias"]
    via = [v.decode("utf-8", "replace") for v in req.args.get(b"via", [])]
    if target.startswith("#"):
        found = await spaces.directory.lookup_alias(target)
        room_id, via = found.room_id, [*via, *found.servers]
    elif is_valid_room_id(target):
        room_id = target
    else:
        raise invalid_param(f"{target!r} is not a room ID or alias")
    user_id = req.requester.user_id if req.requester is not None else None
    body = await spaces.hierarchy.room_summary(user_id, room_id, via)
    if req.raw.path.startswith(MSC3266.encode()):
        # the names the unstable prefix used before the spec settled them
        for key in ("room_version", "encryption"):
            if key in body:
                body[f"im.nheko.summary.{key}"] = body[key]
    return 200, body


async def get_mutual_rooms(spaces: Spaces, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/mutual_rooms"""
    other = query_str(req.args, "user_id")
    if parse_user_id(other) is None:
        raise invalid_param("The user ID provided was invalid")
    if other == req.user_id:
        raise invalid_param("You cannot request a list of shared rooms with yourself")
    token = query_str(req.args, "from", None)
    after = _decode_batch(token, other) if token is not None else None
    mine = set(await spaces.rooms.get_rooms_for_user(req.user_id))
    shared = sorted(r for r in await spaces.rooms.get_rooms_for_user(other) if r in mine)
    rest = [r for r in shared if after is None or r > after]
    batch = rest[:MUTUAL_ROOMS_BATCH]
    body: dict[str, Any] = {"joined": batch, "count": len(shared)}
    if len(rest) > len(batch):
        body["next_batch"] = _encode_batch(other, batch[-1])
    return 200, body


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V1}/rooms/{{roomId}}/hierarchy", get_hierarchy),
    Endpoint("GET", f"{CLIENT_V1}/room_summary/{{roomIdOrAlias}}", get_room_summary,
             auth=AUTH_OPTIONAL),
    Endpoint("GET", f"{MSC3266}/rooms/{{roomIdOrAlias}}/summary", get_room_summary,
             auth=AUTH_OPTIONAL),
    Endpoint("GET", f"{MSC3266}/summary/{{roomIdOrAlias}}", get_room_summary,
             auth=AUTH_OPTIONAL),
    Endpoint("GET", f"{CLIENT_V1}/mutual_rooms", get_mutual_rooms),
    Endpoint("GET", f"{CLIENT_V1}/user/mutual_rooms", get_mutual_rooms),
    Endpoint("GET", f"{MSC2666}/user/mutual_rooms", get_mutual_rooms),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Spaces(hs.hierarchy, hs.stores.rooms, hs.room_directory), ENDPOINTS)
