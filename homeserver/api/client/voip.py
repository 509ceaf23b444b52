"""VoIP: TURN server credentials for calls (client-server API, "Voice over IP").

Calls themselves need nothing from the server: ``m.call.*`` events are
ordinary room events and pass through untouched. What clients ask of us is
a TURN relay to use, with credentials (GET /voip/turnServer).

Credentials follow the TURN REST scheme that coturn implements
(``use-auth-secret`` with ``static-auth-secret``), as Synapse does: the
username is ``"<expiry, seconds since the epoch>:<user ID>"`` and the
password ``base64(HMAC-SHA1(turn_shared_secret, username))``; the TURN
server checks the HMAC and the expiry itself, so nothing is stored here.
``ttl`` is ``turn_user_lifetime`` in seconds.

With no ``turn_uris`` or no ``turn_shared_secret`` configured the answer is
``{}`` (Synapse's "no TURN server"). Guests get credentials only with
``turn_allow_guests`` (else 403 M_FORBIDDEN, as on Synapse).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from homeserver.errors import forbidden
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


def turn_credentials(secret: str, user_id: str, now_ms: int,
                     lifetime_ms: int) -> tuple[str, str]:
    """(username, password) by the TURN REST scheme, valid until now + lifetime."""
    expiry = (now_ms + lifetime_ms) // 1000
    username = f"{expiry}:{user_id}"
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return username, base64.b64encode(mac.digest()).decode("ascii")


async def get_turn_server(ctx: "ServerContext", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/voip/turnServer"""
    config = ctx.config
    assert req.requester is not None
    if req.requester.is_guest and not config.turn_allow_guests:
        raise forbidden("Guest access is not allowed")
    uris: list[str] = config.turn_uris
    secret: str | None = config.turn_shared_secret
    if not uris or not secret:
        return 200, {}
    lifetime_ms: int = config.turn_user_lifetime
    username, password = turn_credentials(secret, req.user_id, ctx.now_ms(), lifetime_ms)
    return 200, {"username": username, "password": password, "uris": list(uris),
                 "ttl": lifetime_ms // 1000}


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/voip/turnServer", get_turn_server, allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    # the config and the clock: the server context is all it reads
    router.add_endpoints(hs.ctx, ENDPOINTS)
