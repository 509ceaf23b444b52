"""The push side: every event of interest to a service, in transactions.

Each service with a URL has one ``ServiceQueue``. It follows the global
event stream from its stored position (``storage/appservice.py``):

1. Wake: the write hub says the stream is persisted further
   (``on_persisted``), or a backoff timer fires.
2. Send what is pending first: a stored, unacknowledged transaction goes
   again with the same ID until the service answers 2xx; then its row is
   deleted. Only one transaction is ever in flight.
3. Read the next batch of events after the position (up to the persisted
   position, at most ``BATCH``), keep those of interest (``interest.py``),
   and in ONE database transaction store them as the next transaction and
   move the position past the batch. Then send it (step 2).

Ephemeral data (typing, public read receipts) goes to services registered
with ``receive_ephemeral`` when it concerns a room of interest: it is held
in memory until the next transaction is made, then stored with it (so a
retried transaction carries it again). Data not yet in a transaction when
the server stops is dropped: it is ephemeral.

A failed send backs off exponentially (``initial_backoff_s`` doubling to
``max_backoff_s``); new events meanwhile wait in the stream and go in the
next transaction. A restart finds the position and the stored transaction
where the last run left them, so nothing is lost, and a transaction sent
again carries the ID it had (services drop a repeated ID).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.appservice.client import AppServiceError
from homeserver.rooms.client_format import client_event
from homeserver.worker_loop import WorkerLoop

if TYPE_CHECKING:
    from homeserver.appservice.client import AppServiceClient
    from homeserver.appservice.interest import Interest
    from homeserver.appservice.registration import ApplicationService, AppServices
    from homeserver.context import ServerContext
    from homeserver.storage import Stores
    from homeserver.storage.appservice import PendingTxn
    from homeserver.storage.hub import Committed
    from homeserver.storage.streams import StreamTracker

logger = logging.getLogger(__name__)

# events read from the stream (and at most put in one transaction) at a time
BATCH = 100
# ephemeral data held for a service that is down: past this, newer is dropped
MAX_EPHEMERAL = 1000


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

    async def start(self) -> None:
        self._running = True
        for q in self.queues:
            q.position = await self.stores.appservice.get_position(
                q.service.id, self.tracker.persisted_upto)
            q.wake()

    async def stop(self) -> None:
        self._running = False
        loops = [d for d in (q.stop() for q in self.queues) if d is not None]
        if loops:
            await defer.DeferredList(loops, consumeErrors=True)
        await self.client.close()

    def on_commit(self, committed: "Committed") -> None:
        """Write hub, database thread: note how far events go."""
        if committed.events:
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
        """Send what is owed. True: there may be more to read."""
        sched = self.scheduler
        store = sched.stores.appservice
        if self._pending is None:
            self._pending = await store.get_pending_txns(self.service.id)
        while self._pending:
            if not await self._send(self._pending[0]):
                return False
            self._pending.pop(0)
        upto = sched.tracker.persisted_upto
        if upto <= self.position and not self.ephemeral:
            return False
        rows = await store.get_events_after(self.position, upto, BATCH) \
            if upto > self.position else []
        new_pos = rows[-1][0] if len(rows) == BATCH else max(upto, self.position)
        events = await sched.stores.events.get_events([eid for _, eid in rows])
        ordered = [events[eid] for _, eid in rows if eid in events]
        wanted = await sched.interest.events_of_interest(self.service, ordered)
        ephemeral, self.ephemeral = self.ephemeral, []
        made = await store.advance(self.service.id, new_pos, [e.event_id for e in wanted],
                                   ephemeral)
        self.position = new_pos
        if made is not None:
            self._pending.append(made)
            if not await self._send(made):
                return False
            self._pending.pop(0)
        return len(rows) == BATCH

    async def _send(self, pending: "PendingTxn") -> bool:
        """Send one stored transaction; False (and a backoff timer) if it failed."""
        sched = self.scheduler
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
        await sched.stores.appservice.complete_txn(self.service.id, pending.txn_id)
        self.succeeded()
        return True
