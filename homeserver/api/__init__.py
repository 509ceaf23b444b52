"""The HTTP APIs. Each module registers its routes; nothing imports ``api``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.http.router import Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer


def register_all_routes(hs: "HomeServer", router: Router) -> None:
    from homeserver.api.client import register_client_routes
    from homeserver.api.federation import register_federation_routes
    from synapse_compat.admin import register_admin_routes

    register_client_routes(hs, router)
    register_admin_routes(hs, router)
    register_federation_routes(hs, router)
    from homeserver.api import media
    media.register_routes(hs, router)
