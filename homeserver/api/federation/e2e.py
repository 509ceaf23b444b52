"""End-to-end encryption queries other servers make of ours: the device keys
of our users (POST /user/keys/query) and their one-time keys (POST
/user/keys/claim). Signed by the asking server (``AUTH_FEDERATION``);
questions about other servers' users are ignored (nothing is answered for
them). The design is in ``e2e/keys.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.api.federation import FEDERATION_V1
from homeserver.e2e.keys import parse_claim, parse_query
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

MAX_KEYS_BODY = 1024 * 1024


def register_routes(hs: "HomeServer", router: Router) -> None:
    handler = hs.e2e_keys

    async def query_keys(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/federation/v1/user/keys/query"""
        query = {u: d for u, d in parse_query(req.json()).items() if hs.is_mine(u)}
        device_keys: dict[str, dict[str, dict[str, Any]]] = {u: {} for u in query}
        device_keys.update(await hs.stores.e2e_keys.get_device_keys(query))
        answer: dict[str, Any] = {"device_keys": device_keys}
        # the user-signing key stays private to its owner's server
        signing = await hs.cross_signing.cross_signing_keys_for_query("", list(query))
        answer["master_keys"] = signing.get("master_keys", {})
        answer["self_signing_keys"] = signing.get("self_signing_keys", {})
        await hs.cross_signing.add_signatures_to_device_keys(device_keys)
        return 200, answer

    async def claim_keys(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/federation/v1/user/keys/claim"""
        query = {u: d for u, d in parse_claim(req.json()).items() if hs.is_mine(u)}
        return 200, {"one_time_keys": await handler.claim_local(query)}

    router.add("POST", f"{FEDERATION_V1}/user/keys/query", query_keys, auth=AUTH_FEDERATION,
               max_body=MAX_KEYS_BODY)
    router.add("POST", f"{FEDERATION_V1}/user/keys/claim", claim_keys, auth=AUTH_FEDERATION,
               max_body=MAX_KEYS_BODY)
