"""Purging a room's history before a point (Synapse's
``POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]``).

The message events before the point are deleted and the state events before
it leave the timeline (they stay for the room's state), in one transaction
(``storage/admin_rooms.py purge_history_txn``): a crash purges all or nothing.
Other servers in the room still have the history, and a client paginating
back past the point gets it again through /backfill.

As on Synapse, ``delete_local_events: false`` (the default) keeps the events
whose ID names this server, which only the old room versions' IDs do; the
purge's status is kept in memory (``purge_history_status``), for a day.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, not_found

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

STATUS_LIFETIME_MS = 24 * 3600 * 1000


class HistoryPurger:
    def __init__(self, ctx: "ServerContext", stores: "Stores") -> None:
        self.ctx = ctx
        self.stores = stores
        # purge_id -> (status, error, room_id, started or finished at)
        self._statuses: dict[str, tuple[str, str | None, str, int]] = {}
        self._running: set[str] = set()

    async def start(self, admin: str, room_id: str, event_id: str | None, ts: int | None,
                    delete_local_events: bool) -> str:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if event_id is None and ts is None:
            raise MatrixError(400, Codes.UNKNOWN,
                              "must specify purge_up_to_event_id or purge_up_to_ts")
        point = await self.stores.admin_rooms.purge_point(room.room_nid, event_id, ts)
        if point is None:
            if event_id is not None:
                raise MatrixError(404, Codes.NOT_FOUND, "Event is not in this room")
            raise MatrixError(400, Codes.UNKNOWN, "There is no history to purge")
        if room_id in self._running:
            raise MatrixError(400, Codes.UNKNOWN,
                              f"History purge already in progress for {room_id}")
        purge_id = secrets.token_urlsafe(12)
        self._forget_old()
        self._statuses[purge_id] = ("active", None, room_id, self.ctx.now_ms())
        self._running.add(room_id)
        log_admin_action(admin, "purge_history", room_id, purge_id=purge_id,
                         up_to=point[1], delete_local_events=delete_local_events)
        keep = None if delete_local_events else ":" + self.ctx.hostname
        self.ctx.run_in_background(self._run(purge_id, room_id, room.room_nid, point[0], keep))
        return purge_id

    async def _purge(self, room_nid: int, before: int, keep: str | None) -> int:
        count = await self.stores.admin_rooms.purge_history(room_nid, before, keep)
        self.stores.events.cache.clear()
        await self.stores.state.garbage_collect()
        return count

    async def purge_expired(self, room_id: str, room_nid: int, before_ts: int) -> int | None:
        """The retention purge (``admin/retention_jobs.py``): the room's
        messages sent before ``before_ts``, local ones too, but never its
        latest event. None when an admin's purge of the room is running."""
        if room_id in self._running:
            return None
        point = await self.stores.admin_rooms.purge_point(room_nid, None, before_ts)
        if point is None:
            return 0
        self._running.add(room_id)
        try:
            return await self._purge(room_nid, point[0], None)
        finally:
            self._running.discard(room_id)

    async def _run(self, purge_id: str, room_id: str, room_nid: int, before: int,
                   keep: str | None) -> None:
        try:
            count = await self._purge(room_nid, before, keep)
            logger.info("purged %d events of %s (%s)", count, room_id, purge_id)
            self._statuses[purge_id] = ("complete", None, room_id, self.ctx.now_ms())
        except Exception as e:
            logger.exception("purging history of %s failed", room_id)
            self._statuses[purge_id] = ("failed", str(e), room_id, self.ctx.now_ms())
        finally:
            self._running.discard(room_id)

    def tasks(self) -> dict[str, tuple[str, str | None, str, int]]:
        """purge ID -> (status, error, room ID, when it last changed) of the
        purges of the last day."""
        return dict(self._statuses)

    def status(self, purge_id: str) -> tuple[str, str | None]:
        found = self._statuses.get(purge_id)
        if found is None:
            raise not_found(f"purge id '{purge_id}' not found")
        return found[0], found[1]

    def _forget_old(self) -> None:
        cutoff = self.ctx.now_ms() - STATUS_LIFETIME_MS
        for purge_id, (status, _, _, at) in list(self._statuses.items()):
            if status != "active" and at < cutoff:
                del self._statuses[purge_id]
