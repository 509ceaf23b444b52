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

Batching, per room and across rooms. A room's requests wait in its queue;
its writer (``_drain``) takes all of them as one batch, reads the room's
context once, builds and authorises each event in order (a request that
fails, fails alone), then hands the built events to the process-wide group
writer (``_GroupCommit``) and waits, still holding the room's lock. The
group writer has one transaction in flight at a time: the batches that the
writers of other rooms hand it meanwhile are persisted together in the next
one (``EventStore.persist_event_groups``: one commit, and the per-batch
index work done once for all of them). A busy room makes batches of many
messages; many quiet rooms make groups of many batches: either way a commit
serves many messages. The group's transaction failing fails every request
in it, as a batch's did.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.errors import Codes, MatrixError, not_found
from homeserver.events.builder import build_create_event, build_event
from homeserver.events.canonical import CanonicalJSONError
from homeserver.events.hashes import reference_hash_base64
from homeserver.events.identifiers import generate_room_id
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.validation import MAX_PDU_BYTES, ValidationError
from homeserver.rooms.auth import auth_types_for_event, check_auth_rules
from homeserver.rooms.power_levels import CREATE
from homeserver.storage.events import NewEventTxn, PersistedEvent
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.edu.presence import PresenceHandler
    from homeserver.edu.typing import TypingManager
    from homeserver.federation.membership import FederationMembership
    from homeserver.storage import Stores
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

# prev_events of a new event: the room's newest forward extremities, at most
MAX_PREV_EVENTS = 10
# events of one room persisted in one transaction, at most
MAX_BATCH = 100
# events of all rooms persisted in one group transaction, at most (a room's
# batch is never split: a group holds at least one whole batch)
MAX_GROUP = 500


def event_error(e: ValueError) -> MatrixError:
    """The client's error for an event the builder refused."""
    if isinstance(e, ValidationError) and f"over {MAX_PDU_BYTES}" in str(e):
        return MatrixError(413, Codes.TOO_LARGE,
                           f"Event is too large (limit is {MAX_PDU_BYTES} bytes)")
    return MatrixError(400, Codes.BAD_JSON, f"Invalid event: {e}")


class _SendRequest:
    """One event waiting in its room's queue, and the caller's answer."""

    def __init__(self, sender: str, event_type: str, content: dict[str, Any],
                 state_key: str | None, txn_id: NewEventTxn | None, dedupe_state: bool,
                 redacts: str | None) -> None:
        self.sender = sender
        self.event_type = event_type
        self.content = content
        self.state_key = state_key
        self.txn_id = txn_id
        self.txn_key = (txn_id.user_id, txn_id.scope, txn_id.txn_id) if txn_id else None
        self.dedupe_state = dedupe_state
        self.redacts = redacts
        self.auth_keys: set[tuple[str, str]] = set()
        # cancelling the caller's wait (a client that went away) does not
        # take the event out of the batch: it is sent all the same
        self.result: defer.Deferred[str] = defer.Deferred()
        # retries of this request (same transaction ID) queued beside it
        self.followers: list[_SendRequest] = []

    def succeed(self, event_id: str) -> None:
        if not self.result.called:
            self.result.callback(event_id)
        for follower in self.followers:
            follower.succeed(event_id)

    def fail(self, error: BaseException) -> None:
        if not self.result.called:
            self.result.errback(error)
        for follower in self.followers:
            follower.fail(error)


# a room's built batch waiting for the group writer, and the room writer's wait
_Batch = tuple[int, list[tuple[Event, NewEventTxn | None]], "defer.Deferred[list[PersistedEvent]]"]


class _GroupCommit:
    """The process-wide writer: the built batches of several rooms in one
    transaction, one transaction in flight at a time (group commit)."""

    def __init__(self, ctx: "ServerContext", stores: "Stores") -> None:
        self.ctx = ctx
        self.stores = stores
        # (room NID, its events in order, the room writer's wait)
        self._waiting: list[_Batch] = []
        self._running = False

    async def persist(self, room_nid: int,
                      events: list[tuple[Event, NewEventTxn | None]]) -> list[PersistedEvent]:
        """Persist one room's batch with whatever other rooms have ready.
        The caller holds the room's lock, so a room is never twice in a group."""
        done: defer.Deferred[list[PersistedEvent]] = defer.Deferred()
        self._waiting.append((room_nid, events, done))
        if not self._running:
            self._running = True
            self.ctx.run_in_background(self._run())
        return await done

    async def _run(self) -> None:
        try:
            while self._waiting:
                group: list[_Batch] = []
                count = 0
                while self._waiting and (not group or count < MAX_GROUP):
                    group.append(self._waiting.pop(0))
                    count += len(group[-1][1])
                try:
                    persisted = await self.stores.events.persist_event_groups(
                        [(room_nid, events) for room_nid, events, _ in group],
                        now_ms=self.ctx.now_ms())
                except Exception as e:  # the transaction failed: all of the group
                    for _, _, done in group:
                        done.errback(e)
                else:
                    for (_, _, done), result in zip(group, persisted, strict=True):
                        done.callback(result)
        finally:
            self._running = False
            waiting, self._waiting = self._waiting, []
            for _, _, done in waiting:  # only after a BaseException
                done.errback(MatrixError(500, Codes.UNKNOWN, "Event not sent"))


class EventCreator:
    # built after this creator and needing it: set by HomeServer._wire_late
    typing: "TypingManager"
    presence: "PresenceHandler"
    federation_membership: "FederationMembership"

    def __init__(self, ctx: "ServerContext", stores: "Stores", notifier: "Notifier") -> None:
        self.ctx = ctx
        self.stores = stores
        self.notifier = notifier
        self._locks: dict[str, defer.DeferredLock] = {}
        # room ID -> requests waiting for the room's writer
        self._queues: dict[str, list[_SendRequest]] = {}
        self._group = _GroupCommit(ctx, stores)

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
                          content: dict[str, Any], room_id: str | None = None) -> str:
        """Create a room with its ``m.room.create`` event; returns the room ID.

        ``room_id``: the ID, chosen beforehand (up to v11, where IDs are
        random: a room upgrade names the new room in the old one first).

        A v12 room ID is the hash of the create event, so the same user
        creating two rooms with the same content in the same millisecond
        would make the same room twice: creations are serialised per sender,
        and a taken room ID moves the timestamp on by a millisecond.
        """
        chosen = room_id
        if chosen is not None and room_version.room_id_from_create_event:
            raise ValueError("a v12 room ID is the hash of its create event")
        async with self.room_lock("create:" + sender):
            now = self.ctx.now_ms()
            while True:
                if chosen is not None:
                    room_id = chosen
                elif room_version.room_id_from_create_event:
                    room_id = None
                else:
                    room_id = generate_room_id(self.ctx.hostname)
                try:
                    _, event, room_id = build_create_event(
                        room_version=room_version, sender=sender, content=content,
                        origin=self.ctx.hostname, origin_server_ts=now,
                        signing_key=self.ctx.signing_key, room_id=room_id)
                except ValueError as e:
                    raise event_error(e) from e
                if await self.stores.rooms.get_room(room_id) is None:
                    break
                if chosen is not None:
                    raise MatrixError(400, Codes.ROOM_IN_USE, "That room ID is taken")
                now += 1
            check_auth_rules(event, {})
            persisted = await self.stores.events.persist_event(
                event, room_nid=None, now_ms=now, new_room_id=room_id)
            self.notifier.on_new_event(room_id, event.type, event.state_key,
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

        The request joins the room's queue; the room's writer takes every
        request waiting there as one batch (``_send_batch``).
        """
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        request = _SendRequest(sender, event_type, content, state_key, txn_id, dedupe_state,
                               redacts)
        queue = self._queues.get(room_id)
        if queue is None:
            queue = self._queues[room_id] = [request]
            self.ctx.run_in_background(self._drain(room, queue))
        else:
            queue.append(request)
        return await request.result

    async def _drain(self, room: RoomInfo, queue: list[_SendRequest]) -> None:
        """The room's writer: batches until its queue is empty."""
        try:
            while queue:
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                try:
                    async with self.room_lock(room.room_id):
                        await self._send_batch(room, batch)
                except Exception as e:  # the batch's transaction failed: all of it
                    for request in batch:
                        request.fail(e)
        finally:
            if self._queues.get(room.room_id) is queue:
                del self._queues[room.room_id]
            for request in queue:  # only after a BaseException
                request.fail(MatrixError(500, Codes.UNKNOWN, "Event not sent"))

    async def _send_batch(self, room: RoomInfo, batch: list[_SendRequest]) -> None:
        """Build, authorise and persist ``batch`` in order, in one transaction.

        Each event's prev_event is the one before it in the batch (the first
        one's are the room's forward extremities), and each is authorised
        against the state the ones before it left. A request that fails
        (bad content, refused by the auth rules) fails alone.
        """
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        wanted: set[tuple[str, str]] = {CREATE}
        for request in batch:
            skeleton: dict[str, Any] = {"type": request.event_type, "sender": request.sender,
                                        "content": request.content}
            if request.state_key is not None:
                skeleton["state_key"] = request.state_key
                wanted.add((request.event_type, request.state_key))
            request.auth_keys = auth_types_for_event(rv, skeleton)
            wanted |= request.auth_keys
        txn_keys = [request.txn_key for request in batch if request.txn_key is not None]
        earlier, state_ids, extremities = await self.stores.rooms.get_send_context(
            room.room_nid, wanted, txn_keys)
        state_events = await self.stores.events.get_events(list(state_ids.values()))
        state = {k: state_events[v] for k, v in state_ids.items() if v in state_events}

        extremities = extremities[:MAX_PREV_EVENTS]
        prev_ids = [x.event_id for x in extremities]
        depth = max((x.depth for x in extremities), default=0)
        built: list[tuple[_SendRequest, Event]] = []
        in_batch: dict[tuple[str, str, str], _SendRequest] = {}
        known: dict[str, Event] = {}
        for request in batch:
            key = request.txn_key
            if key is not None and key in earlier:
                request.succeed(earlier[key])
                continue
            if key is not None and key in in_batch:  # a retry while the first was queued
                in_batch[key].followers.append(request)
                continue
            try:
                event = await self._build(room, rv, request, state, state_ids, prev_ids,
                                          depth + 1, known)
            except MatrixError as e:
                request.fail(e)
                continue
            if event is None:  # an unchanged state event, deduplicated
                continue
            built.append((request, event))
            if key is not None:
                in_batch[key] = request
            known[event.event_id] = event
            prev_ids, depth = [event.event_id], event.depth
            if event.state_key is not None:
                state[(event.type, event.state_key)] = event
                state_ids[(event.type, event.state_key)] = event.event_id

        if built:
            persisted = await self._group.persist(
                room.room_nid, [(event, request.txn_id) for request, event in built])
            for (request, event), done in zip(built, persisted, strict=True):
                self.notifier.on_new_event(room.room_id, event.type, event.state_key,
                                           done.stream_ordering)
                request.succeed(event.event_id)
            senders = {event.sender for _, event in built if event.state_key is None}
            for sender in senders:
                # a user who posts is active; typing stays as the client set
                # it (clients stop it themselves; Synapse does not stop it on
                # a send, and SyTest's SYN-516 expects it still there)
                self.ctx.run_in_background(self.presence.user_activity(sender))
            for _, event in built:
                if event.type == "m.room.member" and event.state_key is not None \
                        and event.content.get("membership") != "join":
                    self.typing.left_room(event.state_key, room.room_id)

    async def _build(self, room: RoomInfo, rv: RoomVersion, request: _SendRequest,
                     state: dict[tuple[str, str], Event], state_ids: dict[tuple[str, str], str],
                     prev_ids: list[str], depth: int, known: dict[str, Event]) -> Event | None:
        """One event of a batch, built and authorised (None: deduplicated state)."""
        state_key = request.state_key
        if request.dedupe_state and state_key is not None:
            current = state.get((request.event_type, state_key))
            if (current is not None and current.sender == request.sender
                    and current.content == request.content):
                request.succeed(current.event_id)
                return None
        auth_ids = sorted(state_ids[k] for k in request.auth_keys if k in state_ids)
        reference_hashes = None
        if not rv.event_ids_are_hashes:
            wanted_refs = [e for e in prev_ids + auth_ids if e not in known]
            refs = dict(await self.stores.events.get_events(wanted_refs))
            refs.update((e, known[e]) for e in prev_ids + auth_ids if e in known)
            reference_hashes = {eid: reference_hash_base64(ev.json, rv)
                                for eid, ev in refs.items()}
        try:
            _, event = build_event(
                room_version=rv, room_id=room.room_id, sender=request.sender,
                event_type=request.event_type, content=request.content, state_key=state_key,
                prev_event_ids=prev_ids, auth_event_ids=auth_ids, depth=depth,
                origin=self.ctx.hostname, origin_server_ts=self.ctx.now_ms(),
                signing_key=self.ctx.signing_key, reference_hashes=reference_hashes,
                redacts=request.redacts)
        except (ValidationError, CanonicalJSONError, ValueError) as e:
            raise event_error(e) from e
        check_auth_rules(event, state)
        if (event.type == "m.room.member" and event.membership == "invite"
                and state_key is not None and not self.ctx.is_mine(state_key)):
            # the invitee's server countersigns (and may refuse) first
            event = await self.federation_membership.send_invite(event, room, state)
        return event

    async def get_current_state(self, room_nid: int) -> dict[tuple[str, str], Event]:
        ids = await self.stores.rooms.get_current_state_ids(room_nid)
        events = await self.stores.events.get_events(list(ids.values()))
        return {k: events[v] for k, v in ids.items() if v in events}
