"""(being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.http.router import Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer


def register_routes(hs: "HomeServer", router: Router) -> None:
    pass
