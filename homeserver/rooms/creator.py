"""Creating the events of local users: one writer per room.

``EventCreator.send`` is step 3 and 4 of the main walk (docs: ARCHITECTURE.md,
"The main walk"). Under the room's write lock it:

1. returns the earlier event if this client transaction ID was seen before
   (the IDs are in the database, so a retry after a restart is caught too);
2. reads the room's forward extremities (the new event's ``prev_events``;
   ``depth`` is one more than the deepest of them) and, from the current
   state, the events ``auth_types_for_event`` names (its ``auth_events``);
3. builds, hashes and signs the event (``events/builder.py``) and checks it
   against the current state with the auth rules (``rooms/auth.py``): a
   failure is 403 M_FORBIDDEN and nothing is stored;
4. persists it with everything it changes in one transaction
   (``storage/events.py``).

The lock is per room: many rooms proceed in parallel, and within a room the
state an event was authorised against is the state it is persisted onto.
Locks of idle rooms are dropped, so the map holds only busy rooms.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.events.builder import build_create_event, build_event
from homeserver.events.canonical import CanonicalJSONError
from homeserver.events.hashes import reference_hash_base64
from homeserver.events.identifiers import generate_room_id
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.validation import MAX_PDU_BYTES, ValidationError
from homeserver.http.errors import Codes, MatrixError, not_found
from homeserver.rooms.auth import auth_types_for_event, check_auth_rules
from homeserver.rooms.power_levels import CREATE
from homeserver.storage.events import NewEventTxn
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.server import HomeServer

logger = logging.getLogger(__name__)

# prev_events of a new event: the room's newest forward extremities, at most
MAX_PREV_EVENTS = 10


def event_error(e: ValueError) -> MatrixError:
    """The client's error for an event the builder refused."""
    if isinstance(e, ValidationError) and f"over {MAX_PDU_BYTES}" in str(e):
        return MatrixError(413, Codes.TOO_LARGE,
                           f"Event is too large (limit is {MAX_PDU_BYTES} bytes)")
    return MatrixError(400, Codes.BAD_JSON, f"Invalid event: {e}")


class EventCreator:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs
        self.stores = hs.stores
        self._locks: dict[str, defer.DeferredLock] = {}

    @asynccontextmanager
    async def room_lock(self, room_id: str) -> AsyncIterator[None]:
        """Hold the write lock of ``room_id``."""
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = defer.DeferredLock()
        await lock.acquire()
        try:
            yield
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(room_id, None)

    async def create_room(self, room_version: RoomVersion, sender: str,
                          content: dict[str, Any]) -> str:
        """Create a room with its ``m.room.create`` event; returns the room ID.

        A v12 room ID is the hash of the create event, so the same user
        creating two rooms with the same content in the same millisecond
        would make the same room twice: creations are serialised per sender,
        and a taken room ID moves the timestamp on by a millisecond.
        """
        async with self.room_lock("create:" + sender):
            now = self.hs.now_ms()
            while True:
                room_id = None if room_version.room_id_from_create_event \
                    else generate_room_id(self.hs.hostname)
                try:
                    _, event, room_id = build_create_event(
                        room_version=room_version, sender=sender, content=content,
                        origin=self.hs.hostname, origin_server_ts=now,
                        signing_key=self.hs.signing_key, room_id=room_id)
                except ValueError as e:
                    raise event_error(e) from e
                if await self.stores.rooms.get_room(room_id) is None:
                    break
                now += 1
            check_auth_rules(event, {})
            persisted = await self.stores.events.persist_event(
                event, room_nid=None, now_ms=now, new_room_id=room_id)
            self.hs.notifier.on_new_event(room_id, event.type, event.state_key,
                                          persisted.stream_ordering)
        return room_id

    async def send(self, sender: str, room_id: str, event_type: str, content: dict[str, Any],
                   *, state_key: str | None = None, txn_id: NewEventTxn | None = None,
                   dedupe_state: bool = False, redacts: str | None = None) -> str:
        """Create, authorise and persist an event; returns its event ID.

        ``dedupe_state``: a state event identical (sender and content) to the
        current one is not sent again; the current one's ID is returned.
        ``redacts``: the event an ``m.room.redaction`` redacts (the builder
        puts it where the room version wants it).
        """
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        async with self.room_lock(room_id):
            return await self._send_locked(room, sender, event_type, content, state_key,
                                           txn_id, dedupe_state, redacts)

    async def _send_locked(self, room: RoomInfo, sender: str, event_type: str,
                           content: dict[str, Any], state_key: str | None,
                           txn_id: NewEventTxn | None, dedupe_state: bool,
                           redacts: str | None = None) -> str:
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        skeleton: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
        if state_key is not None:
            skeleton["state_key"] = state_key
        auth_keys = auth_types_for_event(rv, skeleton)
        wanted = set(auth_keys) | {CREATE}
        if state_key is not None:
            wanted.add((event_type, state_key))
        earlier, state_ids, extremities = await self.stores.rooms.get_send_context(
            room.room_nid, wanted,
            (txn_id.user_id, txn_id.scope, txn_id.txn_id) if txn_id is not None else None)
        if earlier is not None:
            return earlier
        state_events = await self.stores.events.get_events(list(state_ids.values()))
        state = {k: state_events[v] for k, v in state_ids.items() if v in state_events}

        if dedupe_state and state_key is not None:
            current = state.get((event_type, state_key))
            if current is not None and current.sender == sender and current.content == content:
                return current.event_id

        extremities = extremities[:MAX_PREV_EVENTS]
        prev_ids = [x.event_id for x in extremities]
        depth = max((x.depth for x in extremities), default=0) + 1
        auth_ids = sorted(state_ids[k] for k in auth_keys if k in state_ids)

        reference_hashes = None
        if not rv.event_ids_are_hashes:
            refs = await self.stores.events.get_events(prev_ids + auth_ids)
            reference_hashes = {eid: reference_hash_base64(ev.json, rv)
                                for eid, ev in refs.items()}
        try:
            _, event = build_event(
                room_version=rv, room_id=room.room_id, sender=sender, event_type=event_type,
                content=content, state_key=state_key, prev_event_ids=prev_ids,
                auth_event_ids=auth_ids, depth=depth, origin=self.hs.hostname,
                origin_server_ts=self.hs.now_ms(), signing_key=self.hs.signing_key,
                reference_hashes=reference_hashes, redacts=redacts)
        except (ValidationError, CanonicalJSONError, ValueError) as e:
            raise event_error(e) from e
        check_auth_rules(event, state)
        persisted = await self.stores.events.persist_event(
            event, room_nid=room.room_nid, now_ms=self.hs.now_ms(), txn_id=txn_id)
        self.hs.notifier.on_new_event(room.room_id, event.type, event.state_key,
                                      persisted.stream_ordering)
        if state_key is None:
            # a user who posts is active, and no longer typing
            self.hs.typing.stopped_by_message(sender, room.room_id)
            self.hs.run_in_background(self.hs.presence.user_activity(sender))
        return event.event_id

    async def get_current_state(self, room_nid: int) -> dict[tuple[str, str], Event]:
        ids = await self.stores.rooms.get_current_state_ids(room_nid)
        events = await self.stores.events.get_events(list(ids.values()))
        return {k: events[v] for k, v in ids.items() if v in events}
