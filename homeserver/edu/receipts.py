"""Receipts and read markers: where a user has read up to in a room.

Three markers, all pointing at an event of the room:

- ``m.read``: the public read receipt, sent to the room's members in the
  ``m.receipt`` ephemeral event of /sync;
- ``m.read.private``: the same, seen only by its owner (it clears their
  notification counts without telling anyone);
- ``m.fully_read``: the read marker ("read up to here" line), stored as the
  user's room account data of type ``m.fully_read``, never under ``m.receipt``.

Receipts may be threaded (``thread_id``: ``"main"`` or a thread root's event
ID) and then coexist with the unthreaded one. A receipt or read marker that
would move backwards (to an event at or before the one it points at now) is
accepted and ignored, as Synapse does: a stale tab must not rewind it.

The rules for a write: the user must be joined to the room (403 M_FORBIDDEN
otherwise, whether or not the room exists) and the event must be in the room
(404 M_NOT_FOUND). Each accepted write wakes /sync (the room's members for a
receipt, the user for the read marker). An accepted ``m.read`` receipt of a
local user is sent to the other servers in the room as an ``m.receipt`` EDU
(``EduHandler.send_receipt``); receipts from other servers arrive through
``federation/edus.py`` and are stored in the same table. A local user's
receipt also tells their pushers, which send the new unread count
(``push/pushers.py``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from homeserver.errors import bad_json, forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_storable_text

if TYPE_CHECKING:
    from homeserver.appservice.scheduler import AppServiceScheduler
    from homeserver.context import ServerContext
    from homeserver.federation.edus import EduHandler
    from homeserver.push.pushers import PusherPool
    from homeserver.storage import Stores
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MARKER_TYPES = (FULLY_READ, READ, READ_PRIVATE)

# A thread ID is "main" or an event ID; event IDs are at most 255 bytes.
MAX_THREAD_ID_BYTES = 255


def check_thread_id(thread_id: Any) -> str | None:
    """A receipt's ``thread_id`` (None: unthreaded), or 400 M_INVALID_PARAM."""
    if thread_id is None:
        return None
    if not isinstance(thread_id, str) or not thread_id:
        raise invalid_param("thread_id field must be a non-empty string")
    if len(thread_id.encode("utf-8", "surrogatepass")) > MAX_THREAD_ID_BYTES \
            or not is_storable_text(thread_id):
        raise invalid_param("thread_id is not a valid thread ID")
    return thread_id


class ReceiptHandler:
    # sends our users' m.read receipts to other servers; set by
    # HomeServer._wire_late (it is built after us)
    edu_handler: "EduHandler"
    # application services with receive_ephemeral hear of receipts: set by
    # HomeServer._wire_late (None: no services)
    app_services: "AppServiceScheduler | None" = None

    def __init__(self, ctx: "ServerContext", stores: "Stores", notifier: "Notifier",
                 pushers: "PusherPool") -> None:
        self.ctx = ctx
        self.stores = stores
        self.notifier = notifier
        self.pushers = pushers

    async def post_receipt(self, user_id: str, room_id: str, receipt_type: str,
                           event_id: str, thread_id: str | None) -> None:
        """Set ``user_id``'s receipt (or read marker, for m.fully_read)."""
        if receipt_type not in MARKER_TYPES:
            raise invalid_param(
                f"Receipt type must be one of {', '.join(MARKER_TYPES)}")
        if receipt_type == FULLY_READ:
            if thread_id is not None:
                raise invalid_param(f"thread_id is not allowed for {FULLY_READ}")
            await self.post_read_markers(user_id, room_id, {FULLY_READ: event_id})
            return
        thread = check_thread_id(thread_id)
        await self._check_events(user_id, room_id, [event_id])
        await self._write_receipt(user_id, room_id, receipt_type, event_id, thread)

    async def post_read_markers(self, user_id: str, room_id: str,
                                body: dict[str, Any]) -> None:
        """Set any of the read marker, the receipt and the private receipt at once."""
        wanted: dict[str, str] = {}
        for marker in MARKER_TYPES:
            value = body.get(marker)
            if value is None:
                continue
            if not isinstance(value, str):
                raise bad_json(f"'{marker}' must be an event ID (a string)")
            wanted[marker] = value
        # Checked before anything is written: a bad event fails the whole request.
        await self._check_events(user_id, room_id, list(wanted.values()))
        fully_read = wanted.pop(FULLY_READ, None)
        if fully_read is not None:
            await self._write_fully_read(user_id, room_id, fully_read)
        for receipt_type, event_id in wanted.items():
            await self._write_receipt(user_id, room_id, receipt_type, event_id, None)

    # -- internals -------------------------------------------------------------

    async def _check_events(self, user_id: str, room_id: str, event_ids: list[str]) -> None:
        """The user is joined to the room and every event is in it."""
        stores = self.stores
        room = await stores.rooms.get_room(room_id)
        membership = None if room is None else await stores.rooms.get_membership(
            user_id, room.room_nid)
        if room is None or membership is None or membership.membership != "join":
            raise forbidden(f"User {user_id} is not in room {room_id}")
        for event_id in dict.fromkeys(event_ids):
            position = await stores.events.get_event_position(event_id)
            if position is None or position.room_nid != room.room_nid:
                raise not_found(f"Event {event_id} not found in room {room_id}")

    async def _write_receipt(self, user_id: str, room_id: str, receipt_type: str,
                             event_id: str, thread_id: str | None) -> None:
        ts = self.ctx.now_ms()
        stream_pos = await self.stores.receipts.upsert_receipt(
            room_id, user_id, receipt_type, thread_id, event_id, {"ts": ts})
        if stream_pos is None:
            logger.debug("Ignoring %s receipt of %s in %s: not after the current one",
                         receipt_type, user_id, room_id)
            return
        self.notifier.notify_room(room_id, stream_pos)
        if self.app_services is not None:
            self.app_services.on_receipt(room_id, receipt_type, user_id, event_id, {"ts": ts})
        if self.ctx.is_mine(user_id):
            # the receipt may have cleared notifications: the phone's badge follows
            self.pushers.on_receipt(user_id)
            data: dict[str, Any] = {"ts": ts}
            if thread_id is not None:
                data["thread_id"] = thread_id
            self.edu_handler.send_receipt(room_id, receipt_type, user_id, event_id, data)

    async def _write_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        account_data = self.stores.account_data
        current = await account_data.get_room_account_data(user_id, room_id, FULLY_READ)
        current_id = current.get("event_id") if isinstance(current, dict) else None
        if current_id == event_id:
            return
        if isinstance(current_id, str) and not await self._is_after(event_id, current_id):
            return
        stream_pos = await account_data.put_room_account_data(
            user_id, room_id, FULLY_READ, {"event_id": event_id})
        self.notifier.notify_users([user_id], stream_pos)

    async def _is_after(self, event_id: str, other_id: str) -> bool:
        """Whether ``event_id`` comes after ``other_id`` in the stream (True when
        either has no stream position: then we cannot tell, and take the new one)."""
        events = self.stores.events
        new = await events.get_event_position(event_id)
        old = await events.get_event_position(other_id)
        if new is None or old is None or new.stream_ordering is None \
                or old.stream_ordering is None:
            return True
        return new.stream_ordering > old.stream_ordering
