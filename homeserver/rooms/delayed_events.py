"""Delayed events (MSC4140): events sent later, or never.

A client adds ``org.matrix.msc4140.delay=<ms>`` to ``PUT /send`` or
``PUT /state`` and gets a ``delay_id`` instead of an event ID; the event is
sent ``delay`` ms later unless cancelled, and each *restart* pushes its
time back to ``delay`` from now. Element Call uses this as a dead-man's
switch: it schedules the "left the call" state event and restarts it while
the client lives, so a client that vanishes leaves the call anyway.

Management (``/_matrix/client/unstable/org.matrix.msc4140/delayed_events``):
list one's own; ``cancel``, ``restart`` or ``send`` one by its ``delay_id``
(unguessable, so these need no access token, as on Synapse: a call
server can restart on a client's behalf).

Off unless ``max_event_delay_duration`` is set (Synapse's key); a user may
have ``MAX_PER_USER`` scheduled. Rows live in the database
(``storage/delayed_events.py``): one timer for the earliest, set at start
and moved when an earlier one is added or restarted. A due event is sent as
its user (state through the state path, messages with the transaction ID
``delay_id`` so a crash after sending and before deleting the row sends
nothing twice), then its row goes. An event the room refuses by then (the
user left, lost power) is logged and dropped. A state event sent by
another user for the same type and state key cancels the delayed ones that
would have overwritten it.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from homeserver.deadline_timer import DeadlineTimer
from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.rooms.access import txn_scope
from homeserver.storage.delayed_events import DelayedEvent, TooManyDelayedEvents
from homeserver.storage.events import NewEventTxn

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.http.request import Requester
    from homeserver.rooms.sending import RoomSender
    from homeserver.storage import Stores
    from homeserver.storage.hub import Committed

logger = logging.getLogger(__name__)

# delayed events one user may have scheduled (Synapse's default)
MAX_PER_USER = 100
# due events sent in one round
BATCH = 100
# the transaction ID scope of delayed message events
TXN_SCOPE = "org.matrix.msc4140"


class DelayedEvents:
    def __init__(self, ctx: "ServerContext", stores: "Stores", sender: "RoomSender",
                 max_delay_ms: int | None) -> None:
        self.ctx = ctx
        self.stores = stores
        self.store = stores.delayed_events
        self.sender = sender
        self.max_delay_ms = max_delay_ms
        self.timer = DeadlineTimer(ctx, lambda: ctx.run_in_background(self._send_due()))

    @property
    def enabled(self) -> bool:
        return bool(self.max_delay_ms)

    async def start(self) -> None:
        self.timer.start()
        self.timer.schedule(await self.store.get_next_send_ts())

    def stop(self) -> None:
        self.timer.stop()

    # -- the client side ---------------------------------------------------

    async def add(self, requester: "Requester", room_id: str, event_type: str,
                  state_key: str | None, content: dict[str, Any], delay_ms: int,
                  txn_id: str | None = None) -> str:
        """Schedule an event; its ``delay_id`` (a message send retried with
        the same ``txn_id`` gets the first one's)."""
        if not self.max_delay_ms:
            raise forbidden("Sending delayed events has been disallowed")
        if delay_ms < 0:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "org.matrix.msc4140.delay must not be negative")
        if delay_ms > self.max_delay_ms:
            raise forbidden(f"The requested delay ({delay_ms}ms) exceeds the allowed "
                            f"maximum ({self.max_delay_ms}ms)")
        # what a send now would refuse at once (no room, bad content) is
        # refused now; what depends on the room then is checked then
        await self.sender.require_room(room_id)
        now = self.ctx.now_ms()
        event = DelayedEvent("syd_" + secrets.token_urlsafe(15), requester.user_id,
                             requester.device_id, room_id, event_type, state_key, content,
                             delay_ms, now + delay_ms)
        txn_key = None if txn_id is None else \
            f"{requester.user_id}\n{txn_scope(requester)}\n{txn_id}"
        try:
            delay_id = await self.store.add(event, MAX_PER_USER, txn_key)
        except TooManyDelayedEvents:
            raise MatrixError(429, Codes.LIMIT_EXCEEDED,
                              f"At most {MAX_PER_USER} delayed events may be scheduled"
                              ) from None
        self.timer.schedule(event.send_ts)
        return delay_id

    async def list_for(self, user_id: str) -> list[dict[str, Any]]:
        return [e.client_format() for e in await self.store.for_user(user_id)]

    async def cancel(self, delay_id: str) -> None:
        if not await self.store.delete(delay_id):
            raise not_found("Delayed event not found")

    async def restart(self, delay_id: str) -> None:
        send_ts = await self.store.restart(delay_id, self.ctx.now_ms())
        if send_ts is None:
            raise not_found("Delayed event not found")
        self.timer.schedule(send_ts)

    async def send_now(self, delay_id: str) -> None:
        event = await self.store.get(delay_id)
        if event is None:
            raise not_found("Delayed event not found")
        await self._send(event)
        await self.store.delete(delay_id)

    # -- replaced state ------------------------------------------------------

    def on_commit(self, committed: "Committed") -> None:
        """The write hub, on the database thread: a local or remote state
        event cancels other users' delayed events for the same state."""
        changes = [(e.room_id, e.type, e.state_key, e.sender) for e, _ in committed.events
                   if e.is_state() and e.rejected_reason is None]
        if changes and self.timer.running:
            self.ctx.reactor.callFromThread(self.ctx.run_in_background,
                                            self._cancel_replaced(changes))

    async def _cancel_replaced(self, changes: list[tuple[str, str, str, str]]) -> None:
        for room_id, event_type, state_key, sender in changes:
            dropped = await self.store.cancel_state(room_id, event_type, state_key, sender)
            if dropped:
                logger.debug("%d delayed %s events in %s cancelled: %s set it",
                             dropped, event_type, room_id, sender)

    # -- the timer ------------------------------------------------------------

    async def _send_due(self) -> None:
        try:
            while self.timer.running:
                due = await self.store.get_due(self.ctx.now_ms(), BATCH)
                for event in due:
                    try:
                        await self._send(event)
                    except MatrixError as e:
                        logger.info("delayed event %s of %s in %s not sent: %s",
                                    event.delay_id, event.user_id, event.room_id, e)
                    await self.store.delete(event.delay_id)
                if len(due) < BATCH:
                    break
        except Exception:
            logger.exception("sending delayed events failed")
        self.timer.schedule(await self.store.get_next_send_ts())

    async def _send(self, event: DelayedEvent) -> None:
        creator = self.sender.event_creator
        if event.state_key is not None:
            await creator.send(event.user_id, event.room_id, event.event_type, event.content,
                               state_key=event.state_key, dedupe_state=True)
        else:
            await creator.send(event.user_id, event.room_id, event.event_type, event.content,
                               txn_id=NewEventTxn(event.user_id, TXN_SCOPE, event.delay_id))
