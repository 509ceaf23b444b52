"""Per-destination queues of outbound PDUs and EDUs. (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homeserver.events.model import Event
    from homeserver.server import HomeServer


class FederationSender:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def notify_new_events(self, room_id: str, events: "list[tuple[Event, int]]") -> None:
        pass

    def send_edu(self, destination: str, edu_type: str, content: dict[str, Any],
                 key: Any = None) -> None:
        pass

    def wake_destination(self, destination: str) -> None:
        pass
