"""Queries other servers make of ours: version, profile, alias, room directory,
device lists and OpenID user info.

Everything but /version and /openid/userinfo is signed by the asking server
(``AUTH_FEDERATION``). /version says who we are to anyone; /openid/userinfo
is called by third-party services (integration managers) that hold only the
OpenID token a user gave them, so the token is its only credential.

Answers cover our own users, aliases and rooms only: a question about
another server's is 400 (Synapse's answer), one about an unknown thing 404.
The public room list is served only with ``allow_public_rooms_over_federation``
(off by default, as on Synapse): otherwise 403.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import parse_user_id
from homeserver.api.client.directory import parse_public_rooms_body
from homeserver.api.client.profile import check_key_name, profile_fields
from homeserver.api.federation import FEDERATION_V1
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.http.parse import query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, AUTH_NONE, Endpoint, Router
from homeserver.rooms import directory
from homeserver.rooms.directory import PublicRoomsQuery

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.e2e.keys import E2eKeyHandler
    from homeserver.rooms.directory import RoomDirectory
    from homeserver.server import HomeServer
    from homeserver.storage import Stores



def server_version() -> str:
    try:
        return importlib.metadata.version("homeserver")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class Queries:
    """What the query endpoints use."""

    ctx: "ServerContext"
    stores: "Stores"
    e2e_keys: "E2eKeyHandler"
    room_directory: "RoomDirectory"
    version: str

    def local_user(self, user_id: str) -> str:
        parsed = parse_user_id(user_id)
        if parsed is None:
            raise invalid_param("Invalid user ID")
        if parsed[1] != self.ctx.hostname:
            raise invalid_param("User is not hosted on this homeserver")
        return user_id

    def check_public_rooms_allowed(self) -> None:
        if not self.ctx.config.allow_public_rooms_over_federation:
            raise forbidden("This server does not share its room directory over federation")


async def get_version(queries: Queries, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/version"""
    return 200, {"server": {"name": "homeserver", "version": queries.version}}


async def query_profile(queries: Queries, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/query/profile"""
    if not queries.ctx.config.allow_profile_lookup_over_federation:
        raise forbidden("Profile lookup over federation is disabled on this homeserver")
    user_id = queries.local_user(query_str(req.args, "user_id"))
    field = query_str(req.args, "field", None)
    if field is not None:
        check_key_name(field)
    profile = await queries.stores.profiles.get_profile(user_id)
    if profile is None:
        raise not_found("Profile was not found")
    fields = profile_fields(profile)
    if field is None:
        return 200, fields
    if field not in fields:
        raise not_found(f"The user has no {field}")
    return 200, {field: fields[field]}


async def query_directory(queries: Queries, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/query/directory"""
    alias = query_str(req.args, "room_alias")
    parsed = directory.parse_room_alias(alias)
    if parsed is None:
        raise invalid_param("Invalid room alias")
    if parsed[1] != queries.ctx.hostname:
        raise invalid_param("Room alias is not hosted on this homeserver")
    target = await queries.room_directory.resolve_alias(alias)
    return 200, {"room_id": target.room_id, "servers": list(target.servers)}


async def get_public_rooms(queries: Queries, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/publicRooms"""
    queries.check_public_rooms_allowed()
    limit = query_int(req.args, "limit", None)
    if limit is not None and limit < 0:
        raise invalid_param("'limit' must not be negative")
    if limit == 0:
        limit = None  # the federation API's 0 is "no limit"
    query = PublicRoomsQuery(limit=limit, since=query_str(req.args, "since", None))
    return 200, await queries.room_directory.list_public_rooms(query)


async def post_public_rooms(queries: Queries, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/federation/v1/publicRooms"""
    queries.check_public_rooms_allowed()
    query = parse_public_rooms_body(req.json(allow_empty=True))
    if query.limit == 0:
        query = PublicRoomsQuery(limit=None, since=query.since,
                                 search_term=query.search_term, room_types=query.room_types)
    return 200, await queries.room_directory.list_public_rooms(query)


async def get_user_devices(queries: Queries, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/user/devices/{userId}"""
    user_id = queries.local_user(req.params["userId"])
    if await queries.stores.users.get_user(user_id) is None:
        raise not_found("Unknown user")
    # devices with their keys, and the stream_id of the user's
    # m.device_list_update chain (e2e/keys.py)
    return 200, await queries.e2e_keys.local_device_list(user_id)


async def get_openid_userinfo(queries: Queries, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/openid/userinfo"""
    token = query_str(req.args, "access_token", None)
    user_id = (await queries.stores.openid.get_user_for_token(token, queries.ctx.now_ms())
               if token else None)
    if user_id is None:
        raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token unknown or expired")
    return 200, {"sub": user_id}


_V1 = FEDERATION_V1
ENDPOINTS = (
    Endpoint("GET", f"{_V1}/version", get_version, auth=AUTH_NONE),
    Endpoint("GET", f"{_V1}/query/profile", query_profile, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/query/directory", query_directory, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/publicRooms", get_public_rooms, auth=AUTH_FEDERATION),
    Endpoint("POST", f"{_V1}/publicRooms", post_public_rooms, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/user/devices/{{userId}}", get_user_devices,
             auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/openid/userinfo", get_openid_userinfo, auth=AUTH_NONE),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    queries = Queries(hs.ctx, hs.stores, hs.e2e_keys, hs.room_directory, server_version())
    router.add_endpoints(queries, ENDPOINTS)
