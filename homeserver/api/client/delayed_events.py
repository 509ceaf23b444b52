"""Delayed events management (MSC4140; ``rooms/delayed_events.py`` holds the design).

- GET  .../delayed_events: the requester's scheduled events.
- POST .../delayed_events/{delayId} with ``{"action": "cancel"|"restart"|"send"}``,
  and the newer one-path-per-action forms ``.../{delayId}/cancel`` (``restart``,
  ``send``) with no body. The delay ID is the secret: no access token is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, invalid_param
from homeserver.http.parse import get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_OPTIONAL, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.rooms.delayed_events import DelayedEvents
    from homeserver.server import HomeServer

MSC4140 = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
ACTIONS = ("cancel", "restart", "send")


async def get_delayed_events(delayed: "DelayedEvents", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events"""
    return 200, {"delayed_events": await delayed.list_for(req.user_id)}


async def act(delayed: "DelayedEvents", delay_id: str, action: str) -> tuple[int, Any]:
    if action == "cancel":
        await delayed.cancel(delay_id)
    elif action == "restart":
        await delayed.restart(delay_id)
    else:
        await delayed.send_now(delay_id)
    return 200, {}


async def post_update(delayed: "DelayedEvents", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}"""
    body = req.json()
    if "action" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "'action' is missing")
    action = get_str(body, "action")
    if action not in ACTIONS:
        raise invalid_param("'action' is not one of 'cancel', 'restart', 'send'")
    return await act(delayed, req.params["delayId"], action)


async def post_cancel(delayed: "DelayedEvents", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}/cancel"""
    return await act(delayed, req.params["delayId"], "cancel")


async def post_restart(delayed: "DelayedEvents", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}/restart"""
    return await act(delayed, req.params["delayId"], "restart")


async def post_send(delayed: "DelayedEvents", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}/send"""
    return await act(delayed, req.params["delayId"], "send")


ENDPOINTS = (
    Endpoint("GET", MSC4140, get_delayed_events),
    Endpoint("POST", f"{MSC4140}/{{delayId}}", post_update, auth=AUTH_OPTIONAL),
    Endpoint("POST", f"{MSC4140}/{{delayId}}/cancel", post_cancel, auth=AUTH_OPTIONAL),
    Endpoint("POST", f"{MSC4140}/{{delayId}}/restart", post_restart, auth=AUTH_OPTIONAL),
    Endpoint("POST", f"{MSC4140}/{{delayId}}/send", post_send, auth=AUTH_OPTIONAL),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.delayed_events, ENDPOINTS)
