"""Room aliases and the published room directory.

The rules (who may create, delete, publish; what is listed) are in
``rooms/directory.py``; these handlers parse, call and serialise.

Resolving an alias and reading a room's directory visibility need no login
(the spec gives them no security). ``GET /publicRooms`` is open too, as the
spec has it (Synapse asks for a token unless ``allow_public_rooms_without_auth``);
``POST /publicRooms`` needs one.

Other servers: an alias of another server is asked of that server
(/_matrix/federation/v1/query/directory), and ``?server=`` on /publicRooms
lists that server's directory (/_matrix/federation/v1/publicRooms, POST when
the client filters). Their 404 (or 403: they do not share it) is passed on;
an unreachable server is 502, as on Synapse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_server_name
from homeserver.errors import Codes, MatrixError, bad_json, invalid_param
from homeserver.federation.edus import query_remote
from homeserver.http.parse import (
    get_bool,
    get_int,
    get_object,
    get_str,
    query_bool,
    query_int,
    query_str,
)
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, AUTH_OPTIONAL, Endpoint, Router
from homeserver.rooms.directory import PublicRoomsQuery

if TYPE_CHECKING:
    from homeserver.appservice.handler import AppServiceHandler
    from homeserver.federation.client import FederationClient
    from homeserver.rooms.directory import RoomDirectory
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


def parse_public_rooms_body(body: dict[str, Any]) -> PublicRoomsQuery:
    """The validated body of POST /publicRooms."""
    # null reads as absent: some clients send it
    limit = get_int(body, "limit") if body.get("limit") is not None else None
    if limit is not None and limit < 0:
        raise invalid_param("'limit' must not be negative")
    search_filter = get_object(body, "filter") if body.get("filter") is not None else {}
    room_types = search_filter.get("room_types")
    types: frozenset[str | None] | None = None
    if room_types is not None:
        if not isinstance(room_types, list) or not all(
                t is None or isinstance(t, str) for t in room_types):
            raise bad_json("'filter.room_types' must be a list of strings and nulls")
        types = frozenset(room_types) or None
    # an application service's own list, or ours and theirs together
    instance_id = get_str(body, "third_party_instance_id", None)
    all_networks = get_bool(body, "include_all_networks", False)
    if instance_id is not None and all_networks:
        raise invalid_param("include_all_networks and third_party_instance_id "
                            "cannot be used together")
    return PublicRoomsQuery(limit=limit, since=get_str(body, "since", None),
                            search_term=get_str(search_filter, "generic_search_term", None),
                            room_types=types, third_party_instance_id=instance_id,
                            include_all_networks=all_networks)


@dataclass(frozen=True)
class Directory:
    """What the directory endpoints use: our server name (whose aliases and
    list are answered here), the room directory, and the federation client
    (another server's aliases and list are asked of it)."""

    hostname: str
    directory: "RoomDirectory"
    federation_client: "FederationClient"
    # application services' own room lists
    app_services: "AppServiceHandler | None" = None


def remote_server(d: Directory, req: HttpRequest) -> str | None:
    """The other server whose directory the client asks for, if any."""
    server = query_str(req.args, "server", None)
    if server is None or server == d.hostname:
        return None
    if not is_valid_server_name(server):
        raise invalid_param("Invalid server name")
    return server


def check_remote_rooms(answer: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(answer.get("chunk"), list):
        raise MatrixError(502, Codes.UNKNOWN, "The server sent a malformed room list")
    return answer


async def put_alias(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/directory/room/{roomAlias}"""
    room_id = get_str(req.json(), "room_id")
    assert req.requester is not None
    await d.directory.create_alias(req.user_id, req.params["roomAlias"], room_id,
                                   req.requester.app_service)
    return 200, {}


async def get_alias(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/directory/room/{roomAlias}"""
    target = await d.directory.lookup_alias(req.params["roomAlias"])
    return 200, {"room_id": target.room_id, "servers": list(target.servers)}


async def delete_alias(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/directory/room/{roomAlias}"""
    assert req.requester is not None
    await d.directory.delete_alias(req.user_id, req.params["roomAlias"],
                                   req.requester.app_service)
    return 200, {}


async def get_room_aliases(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/aliases"""
    aliases = await d.directory.get_local_aliases(req.user_id, req.params["roomId"])
    return 200, {"aliases": aliases}


async def get_visibility(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/directory/list/room/{roomId}"""
    return 200, {"visibility": await d.directory.get_visibility(req.params["roomId"])}


async def put_visibility(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/directory/list/room/{roomId}"""
    visibility = get_str(req.json(allow_empty=True), "visibility", "public")
    if visibility not in ("public", "private"):
        raise invalid_param("'visibility' must be 'public' or 'private'")
    await d.directory.set_visibility(req.user_id, req.params["roomId"], visibility)
    return 200, {}


async def get_public_rooms(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/publicRooms"""
    server = remote_server(d, req)
    limit = query_int(req.args, "limit", None)
    if limit is not None and limit < 0:
        raise invalid_param("'limit' must not be negative")
    instance_id = query_str(req.args, "third_party_instance_id", None)
    all_networks = query_bool(req.args, "include_all_networks", False)
    if instance_id is not None and all_networks:
        raise invalid_param("include_all_networks and third_party_instance_id "
                            "cannot be used together")
    query = PublicRoomsQuery(limit=limit, since=query_str(req.args, "since", None),
                             third_party_instance_id=instance_id,
                             include_all_networks=all_networks)
    if server is not None:
        args: dict[str, str | list[str]] = {}
        if limit is not None:
            args["limit"] = str(limit)
        if query.since is not None:
            args["since"] = query.since
        return 200, check_remote_rooms(await query_remote(
            d.federation_client, server, "/_matrix/federation/v1/publicRooms", args))
    return 200, await d.directory.list_public_rooms(query)


def remote_public_rooms_body(query: PublicRoomsQuery, body: dict[str, Any]) -> dict[str, Any]:
    """The client's body as validated, passed on as the spec's fields."""
    remote_body: dict[str, Any] = {}
    if query.limit is not None:
        remote_body["limit"] = query.limit
    if query.since is not None:
        remote_body["since"] = query.since
    if isinstance(body.get("filter"), dict):
        remote_body["filter"] = body["filter"]
    for key in ("include_all_networks", "third_party_instance_id"):
        if body.get(key) is not None:
            remote_body[key] = body[key]
    return remote_body


async def post_public_rooms(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/publicRooms"""
    server = remote_server(d, req)
    body = req.json(allow_empty=True)
    query = parse_public_rooms_body(body)
    if server is not None:
        return 200, check_remote_rooms(await query_remote(
            d.federation_client, server, "/_matrix/federation/v1/publicRooms",
            body=remote_public_rooms_body(query, body)))
    return 200, await d.directory.list_public_rooms(query)


async def put_appservice_listing(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}"""
    visibility = get_str(req.json(allow_empty=True), "visibility", "public")
    if visibility not in ("public", "private"):
        raise invalid_param("'visibility' must be 'public' or 'private'")
    return await _set_appservice_listing(d, req, visibility)


async def delete_appservice_listing(d: Directory, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}"""
    return await _set_appservice_listing(d, req, "private")


async def _set_appservice_listing(d: Directory, req: HttpRequest,
                                  visibility: str) -> tuple[int, Any]:
    assert req.requester is not None
    if d.app_services is None or req.requester.app_service is None:
        raise MatrixError(403, Codes.FORBIDDEN,
                          "Only application services can change their room lists")
    await d.app_services.set_listed(req.requester.app_service, req.params["networkId"],
                                    req.params["roomId"], visibility)
    return 200, {}


_ALIAS = f"{CLIENT_V3}/directory/room/{{roomAlias}}"
_LIST = f"{CLIENT_V3}/directory/list/room/{{roomId}}"
ENDPOINTS = (
    Endpoint("PUT", _ALIAS, put_alias),
    Endpoint("GET", _ALIAS, get_alias, auth=AUTH_NONE),
    Endpoint("DELETE", _ALIAS, delete_alias),
    Endpoint("GET", f"{CLIENT_V3}/rooms/{{roomId}}/aliases", get_room_aliases),
    Endpoint("GET", _LIST, get_visibility, auth=AUTH_NONE),
    Endpoint("PUT", _LIST, put_visibility),
    Endpoint("GET", f"{CLIENT_V3}/publicRooms", get_public_rooms, auth=AUTH_OPTIONAL,
             allow_guest=True),
    Endpoint("POST", f"{CLIENT_V3}/publicRooms", post_public_rooms, allow_guest=True),
    Endpoint("PUT", f"{CLIENT_V3}/directory/list/appservice/{{networkId}}/{{roomId}}",
             put_appservice_listing),
    Endpoint("DELETE", f"{CLIENT_V3}/directory/list/appservice/{{networkId}}/{{roomId}}",
             delete_appservice_listing),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Directory(hs.hostname, hs.room_directory, hs.federation_client,
                                   hs.appservice_handler), ENDPOINTS)
