"""Sync filters: upload one, get its ID, download it again.

A filter is checked against the spec's schema (``filter_schema.py``) and
stored as sent; what it means is applied by /sync and /messages when used.
IDs are small integers per user, as strings; uploading the same filter
again returns the same ID.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from homeserver.errors import forbidden, not_found
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.sync.filter_schema import check_filter

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.storage.filters import FilterStore

CLIENT_V3 = "/_matrix/client/v3"

# Stored IDs are 64-bit; anything longer cannot name one.
_FILTER_ID = re.compile(r"[0-9]{1,18}")


async def post_filter(store: "FilterStore", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/user/{userId}/filter"""
    if req.params["userId"] != req.user_id:
        raise forbidden("Cannot create filters for other users")
    body = req.json()
    check_filter(body)
    filter_id = await store.add_filter(req.user_id, body)
    return 200, {"filter_id": str(filter_id)}


async def get_filter(store: "FilterStore", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/user/{userId}/filter/{filterId}"""
    raw_id = req.params["filterId"]
    # Another user's filters are not there for you: 404, as for unknown IDs.
    if req.params["userId"] != req.user_id or not _FILTER_ID.fullmatch(raw_id):
        raise not_found("No such filter")
    filter_json = await store.get_filter(req.user_id, int(raw_id))
    if filter_json is None:
        raise not_found("No such filter")
    return 200, filter_json


ENDPOINTS = (
    Endpoint("POST", f"{CLIENT_V3}/user/{{userId}}/filter", post_filter),
    Endpoint("GET", f"{CLIENT_V3}/user/{{userId}}/filter/{{filterId}}", get_filter),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    # the filter store is all these endpoints use
    router.add_endpoints(hs.stores.filters, ENDPOINTS)
