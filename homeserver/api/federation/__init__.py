"""The server-server API: /_matrix/federation/* and /_matrix/key/*.

Every route but the key ones authenticates its origin with the X-Matrix
header (``AUTH_FEDERATION``); handlers read ``req.origin``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.http.router import Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

FEDERATION_V1 = "/_matrix/federation/v1"
FEDERATION_V2 = "/_matrix/federation/v2"


def register_federation_routes(hs: "HomeServer", router: Router) -> None:
    from homeserver.api.federation import events, hierarchy, keys, membership, queries

    keys.register_routes(hs, router)
    events.register_routes(hs, router)
    membership.register_routes(hs, router)
    queries.register_routes(hs, router)
    hierarchy.register_routes(hs, router)
    from homeserver.api.federation import e2e, media, third_party_invites
    media.register_routes(hs, router)
    e2e.register_routes(hs, router)
    third_party_invites.register_routes(hs, router)
