"""Presence: PUT and GET /presence/{userId}/status.

A user sets only their own presence; they can read their own and that of
the users they share a joined room with (``edu/presence.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_user_id
from homeserver.edu.presence import PRESENCE_STATES
from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.edu.presence import PresenceHandler
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"

# Characters; a status line, not a document (every member of every shared
# room receives it).
MAX_STATUS_MSG_LENGTH = 1024


def parse_presence_body(body: dict[str, Any]) -> tuple[str, str | None]:
    """(presence, status message or None) from a PUT body."""
    presence = body.get("presence")
    if not isinstance(presence, str):
        raise bad_json("'presence' must be one of " + ", ".join(PRESENCE_STATES))
    if presence not in PRESENCE_STATES:
        raise invalid_param("'presence' must be one of " + ", ".join(PRESENCE_STATES))
    status_msg = body.get("status_msg")
    if status_msg is None:
        return presence, None
    if not isinstance(status_msg, str):
        raise bad_json("'status_msg' must be a string or null")
    if len(status_msg) > MAX_STATUS_MSG_LENGTH:
        raise invalid_param(
            f"'status_msg' may not be longer than {MAX_STATUS_MSG_LENGTH} characters")
    return presence, status_msg or None


async def put_status(presence: "PresenceHandler", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/presence/{userId}/status"""
    if req.params["userId"] != req.user_id:
        raise forbidden("You cannot set the presence state of another user")
    state, status_msg = parse_presence_body(req.json())
    await presence.set_status(req.user_id, state, status_msg)
    return 200, {}


async def get_status(presence: "PresenceHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/presence/{userId}/status"""
    user_id = req.params["userId"]
    if not is_valid_user_id(user_id):
        raise invalid_param(f"{user_id} is not a valid user ID")
    return 200, await presence.get_status(req.user_id, user_id)


_STATUS = f"{CLIENT_V3}/presence/{{userId}}/status"
ENDPOINTS = (
    Endpoint("PUT", _STATUS, put_status, allow_guest=True),
    Endpoint("GET", _STATUS, get_status, allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.presence, ENDPOINTS)
