"""Third-party invites over federation: the identity server's ``/3pid/onbind``
callback and ``exchange_third_party_invite`` (``rooms/third_party_invites.py``
has the use cases)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from homeserver.api.federation import FEDERATION_V1
from homeserver.errors import Codes, MatrixError
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, AUTH_NONE, Endpoint, Router
from homeserver.rooms.third_party_invites import parse_signed

if TYPE_CHECKING:
    from homeserver.rooms.third_party_invites import ThirdPartyInvites
    from homeserver.server import HomeServer

logger = logging.getLogger(__name__)


async def post_onbind(tpi: "ThirdPartyInvites", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/federation/v1/3pid/onbind

    An identity server tells us an address was bound to one of our users;
    each invite it stored for the address becomes an invite of that user.
    Not authenticated: each invite's ``signed`` block is what the auth rules
    check. The last failure, if any, is the answer, after all were tried."""
    body = req.json()
    invites = body.get("invites", [])
    if not isinstance(invites, list):
        raise MatrixError(400, Codes.BAD_JSON, "'invites' must be a list")
    failure: MatrixError | None = None
    for invite in invites:
        try:
            if not isinstance(invite, dict):
                raise MatrixError(400, Codes.BAD_JSON, "an invite must be an object")
            sender, mxid, room_id = (invite.get("sender"), invite.get("mxid"),
                                     invite.get("room_id"))
            if not (isinstance(sender, str) and isinstance(mxid, str)
                    and isinstance(room_id, str)):
                raise MatrixError(400, Codes.BAD_JSON,
                                  "an invite needs sender, mxid and room_id")
            await tpi.exchange(sender, mxid, room_id, parse_signed(invite.get("signed")))
        except MatrixError as e:
            logger.info("third-party invite of onbind not exchanged: %s", e)
            failure = e
    if failure is not None:
        raise failure
    return 200, {}


async def put_exchange_third_party_invite(tpi: "ThirdPartyInvites",
                                          req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}"""
    await tpi.on_exchange(req.params["roomId"], req.json())
    return 200, {}


ENDPOINTS = (
    Endpoint("POST", f"{FEDERATION_V1}/3pid/onbind", post_onbind, auth=AUTH_NONE),
    Endpoint("PUT", f"{FEDERATION_V1}/exchange_third_party_invite/{{roomId}}",
             put_exchange_third_party_invite, auth=AUTH_FEDERATION),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.third_party_invites, ENDPOINTS)
