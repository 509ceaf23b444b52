"""Receipts and read markers: thin endpoints over ``edu/receipts.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.request import HttpRequest
from homeserver.http.router import Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


def register_routes(hs: "HomeServer", router: Router) -> None:
    handler = hs.receipts

    async def post_receipt(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""
        # Older clients send no body at all: the same as {}.
        body = req.json(allow_empty=True)
        await handler.post_receipt(req.user_id, req.params["roomId"],
                                   req.params["receiptType"], req.params["eventId"],
                                   body.get("thread_id"))
        return 200, {}

    async def post_read_markers(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""
        await handler.post_read_markers(req.user_id, req.params["roomId"], req.json())
        return 200, {}

    room = f"{CLIENT_V3}/rooms/{{roomId}}"
    router.add("POST", f"{room}/receipt/{{receiptType}}/{{eventId}}", post_receipt)
    router.add("POST", f"{room}/read_markers", post_read_markers)
