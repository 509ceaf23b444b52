"""Typing notifications: PUT /rooms/{roomId}/typing/{userId}.

A user may only say that they themselves are typing, in a room they are
joined to (``edu/typing.py`` checks the membership).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.edu.typing import TypingManager
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


# The timeout when a client that starts typing gives none: the spec lists
# only `typing` as required, and Synapse assumes 30 seconds.
DEFAULT_TYPING_TIMEOUT_MS = 30_000


def parse_typing_body(body: dict[str, Any]) -> tuple[bool, int]:
    """(typing, timeout in ms) from the request body; the timeout is 0 when
    the user stops typing."""
    typing = body.get("typing")
    if not isinstance(typing, bool):
        raise bad_json("'typing' must be true or false")
    if not typing:
        return False, 0
    timeout = body.get("timeout")
    if timeout is None:
        return True, DEFAULT_TYPING_TIMEOUT_MS
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        raise bad_json("'timeout' must be an integer")
    if timeout < 0:
        raise invalid_param("'timeout' may not be negative")
    return True, timeout


async def put_typing(typing: "TypingManager", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
    if req.params["userId"] != req.user_id:
        raise forbidden("Cannot set another user's typing state")
    is_typing, timeout_ms = parse_typing_body(req.json())
    await typing.set_typing(req.user_id, req.params["roomId"], is_typing, timeout_ms)
    return 200, {}


ENDPOINTS = (
    Endpoint("PUT", f"{CLIENT_V3}/rooms/{{roomId}}/typing/{{userId}}", put_typing),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.typing, ENDPOINTS)
