"""GET /sync: the client's view of everything new, long-polling.

Thin: parses the query (``since``, ``timeout``, ``full_state``,
``set_presence``, ``filter``) and hands it to ``sync/handler.py``. A client
that disconnects while its request waits cancels the wait, so the notifier
forgets it at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.errors import invalid_param
from homeserver.http.parse import query_str
from homeserver.http.request import HttpRequest, until_done_or_gone
from homeserver.http.router import Endpoint, Router
from homeserver.sync.handler import SyncParams

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.sync.filter import FilterCache
    from homeserver.sync.handler import SyncHandler

CLIENT_V3 = "/_matrix/client/v3"

PRESENCE_STATES = ("online", "unavailable", "offline")


def parse_timeout(text: str | None) -> int:
    if text is None:
        return 0
    if not text.isdigit() or len(text) > 12:
        raise invalid_param("timeout must be a non-negative integer of milliseconds")
    return int(text)


def parse_bool(text: str | None, name: str) -> bool:
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise invalid_param(f"{name} must be true or false")


def parse_set_presence(text: str | None) -> str | None:
    if text is not None and text not in PRESENCE_STATES:
        raise invalid_param("set_presence must be one of online, unavailable, offline")
    return text


class SyncEndpoints:
    """What /sync uses: the filter cache and the sync handler."""

    def __init__(self, filters: "FilterCache", handler: "SyncHandler") -> None:
        self.filters = filters
        self.handler = handler


async def get_sync(ctx: SyncEndpoints, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/sync"""
    params = SyncParams(
        since=query_str(req.args, "since", None),
        timeout_ms=parse_timeout(query_str(req.args, "timeout", None)),
        full_state=parse_bool(query_str(req.args, "full_state", None), "full_state"),
        filter=await ctx.filters.load(req.user_id, query_str(req.args, "filter", None)),
        set_presence=parse_set_presence(query_str(req.args, "set_presence", None)),
    )
    assert req.requester is not None
    d = defer.ensureDeferred(ctx.handler.sync(req.requester, params))

    return await until_done_or_gone(req, d)


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/sync", get_sync, allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(SyncEndpoints(hs.filter_cache, hs.sync_handler), ENDPOINTS)
