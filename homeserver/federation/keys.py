"""Our signing keys and other servers' verify keys. (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homeserver.events.room_versions import RoomVersion
    from homeserver.server import HomeServer


class KeyRing:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs

    def own_key_response(self) -> dict[str, Any]:
        raise NotImplementedError

    async def verify_event_signatures(self, pdu: dict[str, Any],
                                      room_version: "RoomVersion") -> None:
        raise NotImplementedError

    async def verify_json_for_server(self, server_name: str, obj: dict[str, Any],
                                     minimum_valid_until_ts: int) -> None:
        raise NotImplementedError
