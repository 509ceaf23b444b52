"""End-to-end encryption queries other servers make of ours: the device keys
of our users (POST /user/keys/query) and their one-time keys (POST
/user/keys/claim). Signed by the asking server (``AUTH_FEDERATION``);
questions about other servers' users are ignored (nothing is answered for
them). The design is in ``e2e/keys.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.api.federation import FEDERATION_V1
from homeserver.e2e.keys import parse_claim, parse_query
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.e2e.cross_signing import CrossSigning
    from homeserver.e2e.keys import E2eKeyHandler
    from homeserver.server import HomeServer
    from homeserver.storage.e2e_keys import E2eKeyStore

DeviceKeys = dict[str, dict[str, dict[str, Any]]]

MAX_KEYS_BODY = 1024 * 1024


@dataclass(frozen=True)
class E2eQueries:
    """What the key endpoints use."""

    ctx: "ServerContext"
    store: "E2eKeyStore"
    keys: "E2eKeyHandler"
    cross_signing: "CrossSigning"


async def query_keys(e2e: E2eQueries, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/federation/v1/user/keys/query"""
    query = {u: d for u, d in parse_query(req.json()).items() if e2e.ctx.is_mine(u)}
    device_keys: DeviceKeys = {u: {} for u in query}
    device_keys.update(await e2e.store.get_device_keys(query))
    answer: dict[str, Any] = {"device_keys": device_keys}
    # the user-signing key stays private to its owner's server
    signing = await e2e.cross_signing.cross_signing_keys_for_query("", list(query))
    answer["master_keys"] = signing.get("master_keys", {})
    answer["self_signing_keys"] = signing.get("self_signing_keys", {})
    await e2e.cross_signing.add_signatures_to_device_keys(device_keys)
    return 200, answer


async def claim_keys(e2e: E2eQueries, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/federation/v1/user/keys/claim"""
    query = {u: d for u, d in parse_claim(req.json()).items() if e2e.ctx.is_mine(u)}
    return 200, {"one_time_keys": await e2e.keys.claim_local(query)}


ENDPOINTS = (
    Endpoint("POST", f"{FEDERATION_V1}/user/keys/query", query_keys, auth=AUTH_FEDERATION,
             max_body=MAX_KEYS_BODY),
    Endpoint("POST", f"{FEDERATION_V1}/user/keys/claim", claim_keys, auth=AUTH_FEDERATION,
             max_body=MAX_KEYS_BODY),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(E2eQueries(hs.ctx, hs.stores.e2e_keys, hs.e2e_keys, hs.cross_signing),
                         ENDPOINTS)
