"""Simplified sliding sync (MSC4186): the endpoint Element X syncs with.

Thin: reads ``pos`` and ``timeout`` from the query (where Synapse and
today's clients put them) or the body (the MSC's latest text), parses the
body (``sync/sliding_request.py``) and hands it to ``sync/sliding.py``. A
client that disconnects while its request waits cancels the wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.api.client.sync import parse_timeout
from homeserver.http.parse import query_str
from homeserver.http.request import HttpRequest, until_done_or_gone
from homeserver.http.router import Endpoint, Router
from homeserver.sync.sliding_request import parse_request

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.sync.sliding import SlidingSyncHandler

UNSTABLE = "/_matrix/client/unstable/org.matrix.simplified_msc3575"


async def post_sliding_sync(handler: "SlidingSyncHandler",
                            req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync"""
    timeout_text = query_str(req.args, "timeout", None)
    request = parse_request(
        req.json(allow_empty=True), query_str(req.args, "pos", None),
        parse_timeout(timeout_text) if timeout_text is not None else None)
    assert req.requester is not None
    d = defer.ensureDeferred(handler.handle(req.requester, request))
    return await until_done_or_gone(req, d)


ENDPOINTS = (
    Endpoint("POST", f"{UNSTABLE}/sync", post_sliding_sync, allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.sliding_sync, ENDPOINTS)
