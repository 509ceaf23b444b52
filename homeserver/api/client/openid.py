"""OpenID tokens: POST /user/{userId}/openid/request_token.

A user asks for a token to prove their identity to a third party (an
integration manager, a widget); the third party sends it to our
/_matrix/federation/v1/openid/userinfo and learns the user ID. The token
proves nothing else: it is not an access token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import forbidden
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.server import HomeServer
    from homeserver.storage.openid import OpenIdStore

CLIENT_V3 = "/_matrix/client/v3"

# Synapse's lifetime of an OpenID token.
OPENID_TOKEN_LIFETIME_MS = 3_600_000


@dataclass(frozen=True)
class OpenId:
    """What the endpoint uses: the server's name and clock, the token store."""

    ctx: "ServerContext"
    store: "OpenIdStore"


async def request_token(openid: OpenId, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/user/{userId}/openid/request_token"""
    if req.params["userId"] != req.user_id:
        raise forbidden("Cannot request an OpenID token for another user")
    req.json(allow_empty=True)  # the body is an empty object; it must be JSON
    token = secrets.token_urlsafe(32)
    now = openid.ctx.now_ms()
    await openid.store.add_token(token, req.user_id, now + OPENID_TOKEN_LIFETIME_MS, now)
    return 200, {"access_token": token, "token_type": "Bearer",
                 "matrix_server_name": openid.ctx.hostname,
                 "expires_in": OPENID_TOKEN_LIFETIME_MS // 1000}


ENDPOINTS = (
    Endpoint("POST", f"{CLIENT_V3}/user/{{userId}}/openid/request_token", request_token),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(OpenId(hs.ctx, hs.stores.openid), ENDPOINTS)
