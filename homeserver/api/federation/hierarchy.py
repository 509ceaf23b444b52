"""GET /_matrix/federation/v1/hierarchy/{roomId}: a space and its children,
for another server walking the space for its users.

Signed by the asking server (``AUTH_FEDERATION``). What it may see is in
``rooms/hierarchy.py``; a room we are not in, or one it may not see, is 404
M_NOT_FOUND (Synapse's answer), so the answer never tells which private rooms
exist here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_room_id
from homeserver.api.federation import FEDERATION_V1
from homeserver.errors import invalid_param
from homeserver.http.parse import query_bool
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.rooms.hierarchy import HierarchyHandler
    from homeserver.server import HomeServer


async def get_hierarchy(hierarchy: "HierarchyHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/hierarchy/{roomId}"""
    room_id = req.params["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"{room_id} is not a valid room ID")
    return 200, await hierarchy.federation_hierarchy(
        req.origin, room_id, query_bool(req.args, "suggested_only", False))


ENDPOINTS = (
    Endpoint("GET", f"{FEDERATION_V1}/hierarchy/{{roomId}}", get_hierarchy,
             auth=AUTH_FEDERATION),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.hierarchy, ENDPOINTS)
