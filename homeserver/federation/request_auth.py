"""The X-Matrix Authorization header. (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.http.request import HttpRequest
    from homeserver.server import HomeServer


class FederationAuth:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs

    async def authenticate(self, req: "HttpRequest") -> str:
        """The origin server of ``req`` (401 M_UNAUTHORIZED if unsigned or
        wrongly signed, 403 M_FORBIDDEN if not allowed to federate)."""
        raise NotImplementedError
