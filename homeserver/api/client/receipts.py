"""Receipts and read markers: thin endpoints over ``edu/receipts.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.edu.receipts import ReceiptHandler
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


async def post_receipt(receipts: "ReceiptHandler", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""
    # Older clients send no body at all: the same as {}.
    body = req.json(allow_empty=True)
    await receipts.post_receipt(req.user_id, req.params["roomId"], req.params["receiptType"],
                                req.params["eventId"], body.get("thread_id"))
    return 200, {}


async def post_read_markers(receipts: "ReceiptHandler", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""
    await receipts.post_read_markers(req.user_id, req.params["roomId"], req.json())
    return 200, {}


_ROOM = f"{CLIENT_V3}/rooms/{{roomId}}"
ENDPOINTS = (
    Endpoint("POST", f"{_ROOM}/receipt/{{receiptType}}/{{eventId}}", post_receipt),
    Endpoint("POST", f"{_ROOM}/read_markers", post_read_markers),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.receipts, ENDPOINTS)
