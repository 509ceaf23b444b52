"""Which events a service is sent (the spec's "events of interest", as
Synapse decides them):

- the sender, or a membership event's ``state_key``, is in its user
  namespace (its own user included);
- the room ID is in its room namespace;
- one of the room's local aliases is in its alias namespace;
- one of the room's joined local users is in its user namespace.

The room-wide facts (aliases, members) are read once per room per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.appservice.registration import ApplicationService
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.storage import Stores


class Interest:
    def __init__(self, ctx: "ServerContext", stores: "Stores") -> None:
        self.ctx = ctx
        self.stores = stores

    async def events_of_interest(self, service: "ApplicationService",
                                 events: list["Event"]) -> list["Event"]:
        by_room: dict[str, bool] = {}
        out = []
        for event in events:
            if self._direct(service, event):
                out.append(event)
                continue
            room_id = event.room_id
            if room_id not in by_room:
                by_room[room_id] = await self.room_of_interest(service, room_id)
            if by_room[room_id]:
                out.append(event)
        return out

    @staticmethod
    def _direct(service: "ApplicationService", event: "Event") -> bool:
        if service.is_interested_in_user(event.sender):
            return True
        if event.type == "m.room.member" and event.state_key is not None and \
                service.is_interested_in_user(event.state_key):
            return True
        return service.is_interested_in_room(event.room_id)

    async def room_of_interest(self, service: "ApplicationService", room_id: str) -> bool:
        """Whether everything in the room interests the service (its room
        namespace, an alias of its namespace, one of its users joined)."""
        if service.is_interested_in_room(room_id):
            return True
        if service.aliases:
            room = await self.stores.rooms.get_room(room_id)
            if room is not None:
                aliases = await self.stores.directory.get_aliases_for_room(room.room_nid)
                if any(service.is_interested_in_alias(a) for a in aliases):
                    return True
        members = await self.stores.rooms.get_local_members(room_id, self.ctx.hostname)
        return any(service.is_interested_in_user(m) for m in members)
