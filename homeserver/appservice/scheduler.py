"""The push side: every event of interest to a service, in transactions.

Each service with a URL has one ``ServiceQueue``. It follows the global
event stream from its stored position (``storage/appservice.py``):

1. Wake: the write hub says the stream is persisted further
   (``on_persisted``, on the reactor, as soon as the commit's positions
   count as finished), or a backoff timer fires.
2. Send what is pending first: a stored, unacknowledged transaction goes
   again with the same ID until the service answers 2xx. Only one
   transaction is ever in flight.
3. Make the next transaction from everything persisted after the position
   (at most ``BATCH`` events): the events come from memory (``feed.py``,
   filled by the write hub at each commit) when the queue is within what
   it holds, else from the database (catching up after a restart or a long
   backoff). Keep those of interest (``interest.py``, room verdicts
   cached), and in ONE database transaction store them as the next
   transaction, move the position past them, and delete the transactions
   acknowledged since the last one. Send it (step 2) at once, and as soon
   as the service answers, make the next from whatever arrived meanwhile.
4. Caught up: delete the acknowledged transactions ``ACK_DELAY_S`` later
   (their own commit), unless the next transaction made does it first. A
   graceful stop does it at once.

So a busy service costs one database commit and one HTTP request per
transaction, and an event waits at most for the transaction in flight to be
answered before it is in the next one.

Ephemeral data (typing, public read receipts) goes to services registered
with ``receive_ephemeral`` when it concerns a room of interest: it is held
in memory until the next transaction is made, then stored with it (so a
retried transaction carries it again). Data not yet in a transaction when
the server stops is dropped: it is ephemeral.

A failed send backs off exponentially (``initial_backoff_s`` doubling to
``max_backoff_s``); new events meanwhile wait in the stream and go in the
next transaction. A restart finds the position and the stored transactions
where the last run left them, so nothing is lost, and a transaction sent
again carries the ID it had (services drop a repeated ID): that is also what
a crash between an answer and the deletion of its transaction costs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.appservice.client import AppServiceError
from homeserver.appservice.feed import EventFeed
from homeserver.rooms.client_format import client_event
from homeserver.worker_loop import WorkerLoop

if TYPE_CHECKING:
    from homeserver.appservice.client import AppServiceClient
    from homeserver.appservice.interest import Interest
    from homeserver.appservice.registration import ApplicationService, AppServices
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.storage import Stores
    from homeserver.storage.appservice import PendingTxn
    from homeserver.storage.hub import Committed
    from homeserver.storage.streams import StreamTracker

logger = logging.getLogger(__name__)

# events read from the stream (and at most put in one transaction) at a time
BATCH = 100
# ephemeral data held for a service that is down: past this, newer is dropped
MAX_EPHEMERAL = 1000
# a queue that has caught up deletes the acknowledged transactions this long
# after (unless the next transaction made does it first)
ACK_DELAY_S = 1.0


class AppServiceScheduler:
    """The queues of every service, woken by the write hub."""

    def __init__(self, ctx: "ServerContext", stores: "Stores", tracker: "StreamTracker",
                 services: "AppServices", client: "AppServiceClient",
                 interest: "Interest") -> None:
        self.ctx = ctx
        self.stores = stores
        self.tracker = tracker
        self.client = client
        self.interest = interest
        # attributes so tests can shorten them
        self.initial_backoff_s = 1.0
        self.max_backoff_s = 300.0
        self.queues = [ServiceQueue(self, s) for s in services.services if s.url]
        self._running = False
        # the highest committed position that carried events (database threads)
        self._events_upto = 0
        # the events not yet looked at by every queue (filled on commit)
        self.feed = EventFeed()

    async def start(self) -> None:
        self._running = True
        # before the positions are read: a new service starts at or above it
        self.feed.start(self.tracker.persisted_upto)
        for q in self.queues:
            q.position = await self.stores.appservice.get_position(
                q.service.id, self.tracker.persisted_upto)
            q.wake()

    async def stop(self) -> None:
        self._running = False
        loops = [d for d in (q.stop() for q in self.queues) if d is not None]
        if loops:
            await defer.DeferredList(loops, consumeErrors=True)
        for q in self.queues:
            await q.store_acknowledged()
        await self.client.close()

    def on_commit(self, committed: "Committed") -> None:
        """Write hub, database thread: note how far events go, and keep them
        for the queues."""
        if committed.events and self.queues:
            self.feed.add(committed.events)
            top = max(committed.positions)
            if top > self._events_upto:
                self._events_upto = top

    def on_ephemeral(self, room_id: str, edu: dict[str, Any]) -> None:
        """Typing or a receipt changed in ``room_id`` (``edu`` in the client
        format, with ``room_id``): queued for the services that want it."""
        if not self._running:
            return
        for q in self.queues:
            if q.service.receive_ephemeral:
                self.ctx.run_in_background(q.add_ephemeral(room_id, edu))

    def on_typing(self, room_id: str, user_ids: list[str]) -> None:
        self.on_ephemeral(room_id, {"type": "m.typing", "room_id": room_id,
                                    "content": {"user_ids": user_ids}})

    def on_receipt(self, room_id: str, receipt_type: str, user_id: str, event_id: str,
                   data: dict[str, Any]) -> None:
        if receipt_type == "m.read.private":
            return  # never beyond the user's own clients
        self.on_ephemeral(room_id, {"type": "m.receipt", "room_id": room_id, "content": {
            event_id: {receipt_type: {user_id: data}}}})

    def on_persisted(self, upto: int) -> None:
        """Write hub, reactor: the stream is persisted up to ``upto``."""
        if not self._running:
            return
        for q in self.queues:
            if self._events_upto > q.position:
                q.wake()

    def moved(self) -> None:
        """A queue moved its position: what every queue is past leaves memory."""
        self.feed.trim(min(q.position for q in self.queues))


class ServiceQueue(WorkerLoop):
    """One service's transactions, one at a time, in stream order."""

    def __init__(self, scheduler: AppServiceScheduler, service: "ApplicationService") -> None:
        super().__init__(scheduler.ctx)
        self.scheduler = scheduler
        self.service = service
        self.position = 0
        # stored transactions not yet acknowledged (None: read them first)
        self._pending: list["PendingTxn"] | None = None
        # ephemeral data of interest, not yet in a transaction
        self.ephemeral: list[dict[str, Any]] = []
        # the service acknowledged the transactions up to this ID; their rows
        # are not deleted yet
        self._acked_upto: int | None = None
        # caught up with acknowledgements to store: when (the timer) and now
        self._acks_timer: Any = None
        self._store_acks_now = False

    def describe(self) -> str:
        return f"application service {self.service.id}: queue"

    def backoff_limits(self) -> tuple[float, float]:
        return (self.scheduler.initial_backoff_s, self.scheduler.max_backoff_s)

    async def add_ephemeral(self, room_id: str, edu: dict[str, Any]) -> None:
        if await self.scheduler.interest.cached_room_of_interest(self.service, room_id):
            if len(self.ephemeral) < MAX_EPHEMERAL:
                self.ephemeral.append(edu)
            self.wake()

    async def process(self) -> bool:
        """Send what is owed, until caught up (False: the loop rests)."""
        store = self.scheduler.stores.appservice
        if self._pending is None:
            self._pending = await store.get_pending_txns(self.service.id)
        while self._pending:
            if not await self._send(self._pending[0]):
                return False
            self._pending.pop(0)
        while not self.stopped:
            made = await self._make()
            if made is None:
                break
            pending, events = made
            if pending is None:
                continue  # nothing of interest there: the position moved on
            self._pending.append(pending)
            if not await self._send(pending, events):
                return False
            self._pending.pop(0)
        if self._acked_upto is not None:
            if self._store_acks_now:
                await self.store_acknowledged()
            elif self._acks_timer is None:
                # a moment later: a service sent one event at a time would
                # otherwise cost two commits per transaction
                self._acks_timer = self.ctx.clock.callLater(ACK_DELAY_S, self._acks_due)
        return False

    def _acks_due(self) -> None:
        self._acks_timer = None
        self._store_acks_now = True
        self.wake()

    def stop(self) -> "defer.Deferred[Any] | None":
        if self._acks_timer is not None and self._acks_timer.active():
            self._acks_timer.cancel()
        self._acks_timer = None
        return super().stop()

    async def store_acknowledged(self) -> None:
        """Delete the transactions the service acknowledged (when no new
        transaction does it on the way)."""
        acked = self._acked_upto
        if acked is None:
            return
        try:
            await self.scheduler.stores.appservice.complete_txns(self.service.id, acked)
        except Exception:
            # they stay stored: sent again with their IDs, which the service drops
            logger.exception("%s: could not delete acknowledged transactions",
                             self.describe())
            return
        if self._acked_upto == acked:
            self._acked_upto = None
            self._store_acks_now = False

    async def _make(self) -> "tuple[PendingTxn | None, dict[str, Event]] | None":
        """Store the next transaction and move the position past what it
        covers: (the transaction, or None if nothing there interests the
        service; its events by ID). None: nothing to make."""
        sched = self.scheduler
        upto = sched.tracker.persisted_upto
        if upto <= self.position and not self.ephemeral:
            return None
        batch, new_pos = await self._read(upto)
        wanted = await sched.interest.events_of_interest(self.service, batch)
        ephemeral, self.ephemeral = self.ephemeral, []
        acked = self._acked_upto
        try:
            made = await sched.stores.appservice.advance(
                self.service.id, new_pos, [e.event_id for e in wanted], ephemeral,
                acked_upto=acked)
        except BaseException:
            self.ephemeral[:0] = ephemeral
            raise
        if self._acked_upto == acked:
            self._acked_upto = None
            self._store_acks_now = False
        self.position = new_pos
        sched.moved()
        return made, {e.event_id: e for e in wanted}

    async def _read(self, upto: int) -> "tuple[list[Event], int]":
        """The events after the position up to ``upto`` (at most ``BATCH``),
        and the position past them."""
        if upto <= self.position:
            return [], self.position
        sched = self.scheduler
        fed = sched.feed.read(self.position, upto, BATCH)
        if fed is not None:
            positions = [pos for pos, _ in fed]
            events = [event for _, event in fed]
        else:
            rows = await sched.stores.appservice.get_events_after(self.position, upto, BATCH)
            positions = [pos for pos, _ in rows]
            found = await sched.stores.events.get_events([eid for _, eid in rows])
            events = [found[eid] for _, eid in rows if eid in found]
        return events, positions[-1] if len(positions) == BATCH else upto

    async def _send(self, pending: "PendingTxn",
                    events: "dict[str, Event] | None" = None) -> bool:
        """Send one stored transaction; False (and a backoff timer) if it
        failed. ``events``: its events, when the caller holds them."""
        sched = self.scheduler
        if events is None:
            events = await sched.stores.events.get_events(pending.event_ids)
        now = sched.ctx.now_ms()
        body = [client_event(events[eid], events[eid].room_id, now)
                for eid in pending.event_ids if eid in events]
        try:
            await sched.client.push_transaction(self.service, pending.txn_id, body,
                                                pending.ephemeral)
        except AppServiceError as e:
            if self.stopped:
                return False
            logger.info("application service %s: transaction %d failed: %s",
                        self.service.id, pending.txn_id, e)
            self.back_off()
            return False
        # deleted with the next transaction made, or when the queue rests
        self._acked_upto = pending.txn_id
        self.succeeded()
        return True
