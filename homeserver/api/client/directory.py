"""Room aliases and the published room directory.

The rules (who may create, delete, publish; what is listed) are in
``rooms/directory.py``; these handlers parse, call and serialise.

Resolving an alias and reading a room's directory visibility need no login
(the spec gives them no security). ``GET /publicRooms`` is open too, as the
spec has it (Synapse asks for a token unless ``allow_public_rooms_without_auth``);
``POST /publicRooms`` needs one. The directories of other servers need
federation: asking for one (``server``) is 400 M_INVALID_PARAM for now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.errors import bad_json, invalid_param
from homeserver.http.parse import get_int, get_object, get_str, query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, AUTH_OPTIONAL, Router
from homeserver.rooms import directory
from homeserver.rooms.directory import PublicRoomsQuery

if TYPE_CHECKING:
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
    # include_all_networks and third_party_instance_id: no application
    # services publish rooms here yet, so there is only our own list
    return PublicRoomsQuery(limit=limit, since=get_str(body, "since", None),
                            search_term=get_str(search_filter, "generic_search_term", None),
                            room_types=types)


def register_routes(hs: "HomeServer", router: Router) -> None:

    def check_server(req: HttpRequest) -> None:
        server = query_str(req.args, "server", None)
        if server is not None and server != hs.hostname:
            raise invalid_param("Listing the rooms of other servers is not supported yet")

    async def put_alias(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/client/v3/directory/room/{roomAlias}"""
        room_id = get_str(req.json(), "room_id")
        await directory.create_alias(hs, req.user_id, req.params["roomAlias"], room_id)
        return 200, {}

    async def get_alias(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v3/directory/room/{roomAlias}"""
        target = await directory.resolve_alias(hs, req.params["roomAlias"])
        return 200, {"room_id": target.room_id, "servers": list(target.servers)}

    async def delete_alias(req: HttpRequest) -> tuple[int, Any]:
        """DELETE /_matrix/client/v3/directory/room/{roomAlias}"""
        await directory.delete_alias(hs, req.user_id, req.params["roomAlias"])
        return 200, {}

    async def get_room_aliases(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v3/rooms/{roomId}/aliases"""
        aliases = await directory.get_local_aliases(hs, req.user_id, req.params["roomId"])
        return 200, {"aliases": aliases}

    async def get_visibility(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v3/directory/list/room/{roomId}"""
        return 200, {"visibility": await directory.get_visibility(hs, req.params["roomId"])}

    async def put_visibility(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/client/v3/directory/list/room/{roomId}"""
        visibility = get_str(req.json(allow_empty=True), "visibility", "public")
        if visibility not in ("public", "private"):
            raise invalid_param("'visibility' must be 'public' or 'private'")
        await directory.set_visibility(hs, req.user_id, req.params["roomId"], visibility)
        return 200, {}

    async def get_public_rooms(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v3/publicRooms"""
        check_server(req)
        limit = query_int(req.args, "limit", None)
        if limit is not None and limit < 0:
            raise invalid_param("'limit' must not be negative")
        query = PublicRoomsQuery(limit=limit, since=query_str(req.args, "since", None))
        return 200, await directory.list_public_rooms(hs, query)

    async def post_public_rooms(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/publicRooms"""
        check_server(req)
        query = parse_public_rooms_body(req.json(allow_empty=True))
        return 200, await directory.list_public_rooms(hs, query)

    alias_path = f"{CLIENT_V3}/directory/room/{{roomAlias}}"
    router.add("PUT", alias_path, put_alias)
    router.add("GET", alias_path, get_alias, auth=AUTH_NONE)
    router.add("DELETE", alias_path, delete_alias)
    router.add("GET", f"{CLIENT_V3}/rooms/{{roomId}}/aliases", get_room_aliases)
    list_path = f"{CLIENT_V3}/directory/list/room/{{roomId}}"
    router.add("GET", list_path, get_visibility, auth=AUTH_NONE)
    router.add("PUT", list_path, put_visibility)
    router.add("GET", f"{CLIENT_V3}/publicRooms", get_public_rooms, auth=AUTH_OPTIONAL,
               allow_guest=True)
    router.add("POST", f"{CLIENT_V3}/publicRooms", post_public_rooms, allow_guest=True)
