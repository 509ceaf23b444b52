"""Device keys for end-to-end encryption: upload, query, claim, changes.

Thin servlets over ``e2e/keys.py`` (which has the design).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.e2e.keys import parse_claim, parse_query, parse_timeout
from homeserver.errors import invalid_param, missing_param
from homeserver.http.parse import query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.e2e.keys import E2eKeyHandler
    from homeserver.server import HomeServer
    from homeserver.storage.e2e_keys import E2eKeyStore
    from homeserver.sync.handler import SyncHandler

CLIENT_V3 = "/_matrix/client/v3"

# An upload of device keys and ~50 signed one-time keys is ~20 KiB; a claim or
# query of a big room's members is larger than the usual JSON limit.
MAX_KEYS_BODY = 1024 * 1024


@dataclass(frozen=True)
class KeysApi:
    """What the key endpoints use."""

    handler: "E2eKeyHandler"
    store: "E2eKeyStore"
    # /keys/changes takes sync tokens
    sync_handler: "SyncHandler"


async def upload_keys(api: KeysApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/keys/upload"""
    assert req.requester is not None
    device_id = req.requester.device_id
    if device_id is None:
        raise invalid_param("Uploading keys needs a device (this access token has none)")
    return 200, await api.handler.upload(req.user_id, device_id, req.json(allow_empty=True))


async def query_keys(api: KeysApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/keys/query"""
    body = req.json()
    return 200, await api.handler.query(req.user_id, parse_query(body), parse_timeout(body))


async def claim_keys(api: KeysApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/keys/claim"""
    body = req.json()
    return 200, await api.handler.claim(parse_claim(body), parse_timeout(body))


async def key_changes(api: KeysApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/keys/changes"""
    from_text = query_str(req.args, "from", None)
    to_text = query_str(req.args, "to", None)
    if from_text is None:
        raise missing_param("from")
    if to_text is None:
        raise missing_param("to")
    since = api.sync_handler.parse_since(from_text).global_pos
    until = api.sync_handler.parse_since(to_text).global_pos
    changed, left = await api.store.get_key_changes(req.user_id, since, until)
    return 200, {"changed": sorted(changed), "left": sorted(left)}


ENDPOINTS = (
    Endpoint("POST", f"{CLIENT_V3}/keys/upload", upload_keys, allow_guest=True,
             max_body=MAX_KEYS_BODY),
    Endpoint("POST", f"{CLIENT_V3}/keys/query", query_keys, allow_guest=True,
             max_body=MAX_KEYS_BODY),
    Endpoint("POST", f"{CLIENT_V3}/keys/claim", claim_keys, allow_guest=True,
             max_body=MAX_KEYS_BODY),
    Endpoint("GET", f"{CLIENT_V3}/keys/changes", key_changes, allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(KeysApi(hs.e2e_keys, hs.stores.e2e_keys, hs.sync_handler), ENDPOINTS)
