"""Inbound EDUs and queries from other servers. (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homeserver.server import HomeServer


class EduHandler:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs

    async def on_edu(self, origin: str, edu_type: str, content: Any) -> None:
        pass
