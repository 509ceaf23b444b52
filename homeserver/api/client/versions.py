"""Discovery: supported versions, client well-known and capabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import not_found
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, AUTH_REQUIRED, Endpoint, Router
from homeserver.rooms.delayed_events import MAX_PER_USER as MAX_DELAYED_PER_USER

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
        # delayed events (MSC4140), when max_event_delay_duration allows them
        "org.matrix.msc4140": bool(config.max_event_delay_duration),
        "uk.half-shot.msc2666.query_mutual_rooms": True,
        # room summaries before joining (MSC3266), at the unstable paths too
        "im.nheko.summary": True,
        # extended profile fields (MSC4133, Matrix 1.16), m.tz included
        "uk.tcpip.msc4133": True,
        "uk.tcpip.msc4133.stable": True,
        # simplified sliding sync (MSC4186), the flag Element X looks for
        "org.matrix.simplified_msc3575": True,
        # sync over a WebSocket at /_matrix/client/unstable/stream, after the
        # Matrix WebSockets draft (docs/websocket.md); the web client uses it
        "org.matrix.websockets_draft": True}}


async def get_wellknown(config: "Config", req: HttpRequest) -> tuple[int, Any]:
    """GET /.well-known/matrix/client"""
    if not config.serve_client_wellknown:
        raise not_found("No .well-known configured")
    body = dict(config.extra_well_known_client_content)
    body["m.homeserver"] = {"base_url": config.public_baseurl}
    return 200, body


async def get_server_wellknown(config: "Config", req: HttpRequest) -> tuple[int, Any]:
    """GET /.well-known/matrix/server"""
    if not config.serve_server_wellknown:
        raise not_found("No .well-known configured")
    name = config.server_name
    # a name without an explicit port is reached on 443 here, not 8448
    has_port = ":" in name and not name.endswith("]")
    return 200, {"m.server": name if has_port else f"{name}:443"}


async def get_capabilities(config: "Config", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/capabilities"""
    password = config.password_config["enabled"]
    return 200, {"capabilities": {
        "m.change_password": {"enabled": password},
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        "m.3pid_changes": {"enabled": True},
        "m.get_login_token": {"enabled": config.login_via_existing_session["enabled"]},
        # extended profiles: any field may be set (MSC4133, Matrix 1.16)
        "m.profile_fields": {"enabled": True},
        "uk.tcpip.msc4133.profile_fields": {"enabled": True},
        **({"org.matrix.msc4140.delayed_events": {
            "max_delay_ms": config.max_event_delay_duration,
            "max_scheduled": MAX_DELAYED_PER_USER}} if config.max_event_delay_duration else {}),
        "m.room_versions": {
            "default": config.default_room_version,
            "available": {version: "stable" for version in KNOWN_ROOM_VERSIONS},
        },
    }}


ENDPOINTS = (
    Endpoint("GET", "/_matrix/client/versions", get_versions, auth=AUTH_NONE),
    Endpoint("GET", "/.well-known/matrix/client", get_wellknown, auth=AUTH_NONE),
    Endpoint("GET", "/.well-known/matrix/server", get_server_wellknown, auth=AUTH_NONE),
    Endpoint("GET", f"{CLIENT_V3}/capabilities", get_capabilities, auth=AUTH_REQUIRED,
             allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    # what these endpoints read is the config alone
    router.add_endpoints(hs.config, ENDPOINTS)
