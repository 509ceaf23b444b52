"""Which events a service is sent (the spec's "events of interest", as
Synapse decides them):

- the sender, or a membership event's ``state_key``, is in its user
  namespace (its own user included);
- the room ID is in its room namespace;
- one of the room's local aliases is in its alias namespace;
- one of the room's joined local users is in its user namespace.

The room-wide verdict (aliases, members) is cached per service and room, and
kept true by what changes it, so a busy room is judged without the database:

- a membership event of one of the service's local users, as the stream
  passes it: a join sets the entry (the room interests it from here on),
  anything else drops it (another of its users may still be there); other
  users' memberships cannot change the verdict and leave it alone;
- an alias created, deleted or moved (the room directory, a room's
  creation, an upgrade: ``aliases_changed``) drops every entry.

An entry is also read again after ``ROOM_VERDICT_TTL_S``, a safety net for a
change none of those report. The cache is bounded; an entry dropped for
space is read again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.appservice.registration import ApplicationService
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.storage import Stores


# (service ID, room ID) entries kept, and for how long
MAX_CACHED_ROOMS = 100_000
ROOM_VERDICT_TTL_S = 600.0


class Interest:
    def __init__(self, ctx: "ServerContext", stores: "Stores") -> None:
        self.ctx = ctx
        self.stores = stores
        # (service ID, room ID) -> (whether the whole room interests it, when
        # that was read)
        self._rooms: dict[tuple[str, str], tuple[bool, float]] = {}
        # moves on at every change of the cache: a verdict read from the
        # database across a change is used but not kept (it may predate it)
        self._generation = 0

    def aliases_changed(self) -> None:
        """An alias was created or deleted: room verdicts may have changed."""
        self._rooms.clear()
        self._generation += 1

    async def events_of_interest(self, service: "ApplicationService",
                                 events: list["Event"]) -> list["Event"]:
        out = []
        for event in events:
            if event.type == "m.room.member" and event.state_key is not None and \
                    self.ctx.is_mine(event.state_key) and \
                    service.is_interested_in_user(event.state_key):
                key = (service.id, event.room_id)
                self._generation += 1
                if event.content.get("membership") == "join":
                    self._rooms[key] = (True, self.ctx.clock.seconds())
                else:
                    self._rooms.pop(key, None)
            if self._direct(service, event) or \
                    await self.cached_room_of_interest(service, event.room_id):
                out.append(event)
        return out

    async def cached_room_of_interest(self, service: "ApplicationService",
                                      room_id: str) -> bool:
        key = (service.id, room_id)
        now = self.ctx.clock.seconds()
        cached = self._rooms.get(key)
        if cached is not None and now - cached[1] < ROOM_VERDICT_TTL_S:
            return cached[0]
        generation = self._generation
        verdict = await self.room_of_interest(service, room_id)
        if generation != self._generation:
            return verdict
        if len(self._rooms) >= MAX_CACHED_ROOMS:
            self._rooms.clear()
        self._rooms[key] = (verdict, now)
        return verdict

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
