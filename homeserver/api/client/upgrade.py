"""Room upgrades: POST /rooms/{roomId}/upgrade (the walk is in ``rooms/upgrade.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, invalid_param
from homeserver.events.identifiers import is_valid_user_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.parse import get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Router
from homeserver.rooms.upgrade import UpgradeRequest

if TYPE_CHECKING:
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


def parse_upgrade(body: dict[str, Any]) -> UpgradeRequest:
    """The validated body of POST /upgrade."""
    version_id = get_str(body, "new_version")
    version = KNOWN_ROOM_VERSIONS.get(version_id)
    if version is None:
        raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION,
                          f"Your homeserver does not support room version {version_id!r}")
    creators = body.get("additional_creators")
    if creators is None:
        return UpgradeRequest(version)
    if not isinstance(creators, list) or not all(
            isinstance(u, str) and is_valid_user_id(u) for u in creators):
        raise invalid_param("'additional_creators' must be a list of user IDs")
    return UpgradeRequest(version, tuple(dict.fromkeys(creators)))


def register_routes(hs: "HomeServer", router: Router) -> None:
    upgrader = hs.room_upgrader

    async def post_upgrade(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/rooms/{roomId}/upgrade"""
        request = parse_upgrade(req.json())
        hs.ratelimiters["message"].ratelimit(req.user_id)
        new_room_id = await upgrader.upgrade(req.user_id, req.params["roomId"], request)
        return 200, {"replacement_room": new_room_id}

    router.add("POST", f"{CLIENT_V3}/rooms/{{roomId}}/upgrade", post_upgrade)
