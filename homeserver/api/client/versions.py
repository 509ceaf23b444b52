"""Discovery: supported versions, client well-known and capabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import not_found
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, AUTH_REQUIRED, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.config import Config
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"

# Only versions whose endpoints we serve: every path lives under /v3 (so no
# r0.x), and each version here is one whose changes to the endpoints we
# implement we have followed.
SUPPORTED_VERSIONS = ["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
                      "v1.9", "v1.10", "v1.11", "v1.12"]


async def get_versions(config: "Config", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/versions"""
    return 200, {"versions": SUPPORTED_VERSIONS, "unstable_features": {
        "uk.half-shot.msc2666.query_mutual_rooms": True,
        # simplified sliding sync (MSC4186), the flag Element X looks for
        "org.matrix.simplified_msc3575": True,
        # sync over a WebSocket at /_matrix/client/unstable/stream, after the
        # Matrix WebSockets draft (docs/websocket.md); the web client uses it
        "org.matrix.websockets_draft": True}}


async def get_wellknown(config: "Config", req: HttpRequest) -> tuple[int, Any]:
    """GET /.well-known/matrix/client"""
    if not config.serve_client_wellknown:
        raise not_found("No .well-known configured")
    return 200, {"m.homeserver": {"base_url": config.public_baseurl}}


async def get_capabilities(config: "Config", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/capabilities"""
    password = config.password_config["enabled"]
    return 200, {"capabilities": {
        "m.change_password": {"enabled": password},
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        "m.3pid_changes": {"enabled": True},
        "m.get_login_token": {"enabled": False},
        "m.room_versions": {
            "default": config.default_room_version,
            "available": {version: "stable" for version in KNOWN_ROOM_VERSIONS},
        },
    }}


ENDPOINTS = (
    Endpoint("GET", "/_matrix/client/versions", get_versions, auth=AUTH_NONE),
    Endpoint("GET", "/.well-known/matrix/client", get_wellknown, auth=AUTH_NONE),
    Endpoint("GET", f"{CLIENT_V3}/capabilities", get_capabilities, auth=AUTH_REQUIRED,
             allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    # what these endpoints read is the config alone
    router.add_endpoints(hs.config, ENDPOINTS)
