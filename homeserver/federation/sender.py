"""Per-destination queues of outbound PDUs and EDUs.

How an event reaches the other servers of its room
---------------------------------------------------
1. Ingest. Every transaction that persists timeline events calls the
   write hub's subscribers (storage/hub.py) on the database thread, right after the
   commit and *before* the stream tracker hears that its positions are
   done. Our listener hands the local events (sender on this server) to the
   reactor (``_ingest``), in the same FIFO as the tracker's ``finished``.
   So once ``StreamTracker.persisted_upto`` has passed a position, the
   local event there is in ``_pending`` or already queued. The event
   creator and the inbound pipeline also call ``notify_new_events``; it
   feeds the same ``_ingest``, which ignores positions it already has.
   With ``on_behalf_of`` it also takes a remote server's own events (a join
   that came to us by /send_join): those are forwarded to the other servers
   of the room, as Synapse does, but are not covered by the restart scan.
2. Enqueue. One enqueuer at a time takes *all* of ``_pending`` and, in one
   database transaction (``FederationQueueStore.enqueue``), writes a
   ``federation_pdu_queue`` row per (destination, event) and advances the
   persisted "enqueued up to" position to the ``persisted_upto`` read when it
   took the batch: every local event up to there is in that batch or in an
   earlier one (step 1). Destinations: servers of the users joined to the
   room at that moment, plus the server of the user a leave or ban is about
   (a kick or a withdrawn invite), minus us.
   A crash between an event's commit and this transaction loses nothing:
   ``start()`` enqueues the local events past the position again. A batch
   that wrote no row (rooms with no other server) leaves the stored
   position alone until it lags ``POSITION_LAG`` behind: such a batch then
   costs a read-only transaction, and a restart rescans at most that many
   positions of events that had nowhere to go.
3. Send. Each destination has one in-memory ``_Destination`` and at most one
   loop (``_run_queue``, started with ``ServerContext.run_in_background``)
   with at most one transaction in flight: the oldest 50 PDU rows (JSON
   read from ``events``), then up to 100 EDUs: to-device messages from
   ``device_federation_outbox`` first, then the in-memory EDUs (typing,
   receipts, presence: ephemeral, not persisted; a newer EDU with the same
   (type, key) replaces a queued one). On 200 the rows are deleted and the
   next batch goes. Per-PDU errors in the response are logged only.
   Destinations never wait for one another: one slow or hanging peer only
   holds up its own loop.

Failures and catch-up
---------------------
An unreachable destination (``RequestFailed``) or a 5xx/429 answer puts it
in backoff: ``federation.destination_min_retry_interval`` at first, times
``destination_retry_multiplier`` on each further failure, capped at
``destination_max_retry_interval``, each delay +-20 % jitter. The backoff is
persisted (``federation_destinations``); one timer per destination brings it
back. While a destination is in backoff new events only write queue rows:
no request, no timer. When it comes back (timer, restart, or it talked to
us: ``wake_destination``) with more than 50 PDUs waiting, only the latest
queued PDU of each room is sent (the peer fetches the gap with
/get_missing_events) and the rest are dropped. In-memory EDUs older than
ten minutes are dropped when a transaction is built (to-device messages are
never dropped that way). Any other 4xx refuses the transaction for good: its
contents are dropped (logged) so the queue moves on.

Transaction IDs are ``<ms at process start>-<counter>``: unique per
destination for ever as long as two starts do not fall in the same ms.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.federation.client import FederationError, RequestFailed
from homeserver.storage.federation_queue import NewPdu, server_of

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.federation.client import FederationClient
    from homeserver.storage.federation_queue import FederationQueueStore
    from homeserver.storage.hub import Committed
    from homeserver.storage.streams import StreamTracker
    from homeserver.storage.to_device import ToDeviceStore

logger = logging.getLogger(__name__)

# a destination that talked to us while our request to it failed: retry after
WOKEN_RETRY_MS = 1000
MAX_PDUS_PER_TXN = 50
MAX_EDUS_PER_TXN = 100
# EDUs (other than to-device) older than this are not worth delivering
EDU_MAX_AGE_MS = 10 * 60_000
# in-memory EDUs kept per destination at most (a dead peer's typing and
# presence must not grow without bound); the oldest go first
MAX_QUEUED_EDUS = 1000
# how long to wait before retrying after a database error while enqueueing
ENQUEUE_RETRY_S = 5.0
# how far the stored "enqueued up to" position may lag behind while only
# events of rooms with no other server go by (a crash rescans that many)
POSITION_LAG = 1000
TO_DEVICE_EDU = "m.direct_to_device"


@dataclass
class _Destination:
    """What the sender knows of one destination (reactor thread only)."""

    name: str
    # (edu_type, key) -> (the EDU, queued at ms); dict order is age order
    edus: dict[tuple[str | None, Any], tuple[dict[str, Any], int]] = field(
        default_factory=dict)
    # hints: there may be queued PDU rows / to-device outbox rows
    has_pdus: bool = False
    has_to_device: bool = False
    # the loop, while it runs
    loop: defer.Deferred[Any] | None = None
    # backoff: the nominal interval (0: healthy), when it started, and the
    # jittered moment the next try is due
    retry_interval: int = 0
    retry_last_ts: int = 0
    retry_at: int = 0
    timer: Any = None
    # it talked to us while a transaction to it was in flight: if that one
    # fails (it was down a moment ago), retry soon instead of backing off
    woken: bool = False


class FederationSender:
    def __init__(self, ctx: "ServerContext", stream_tracker: "StreamTracker",
                 queue: "FederationQueueStore", to_device: "ToDeviceStore",
                 client: "FederationClient") -> None:
        self.ctx = ctx
        # how far the stream is persisted: what may be enqueued
        self.stream_tracker = stream_tracker
        self.queue_store = queue
        self.to_device = to_device
        self.client = client
        self._destinations: dict[str, _Destination] = {}
        # stream position -> event to enqueue (ingested, not yet written)
        self._pending: dict[int, NewPdu] = {}
        # positions above _position already handed to the enqueuer, so that
        # notify_new_events and the commit listener do not enqueue twice
        self._taken: set[int] = set()
        # "enqueued up to", and what of it the database holds (written when
        # rows are, else at most POSITION_LAG positions behind)
        self._position = 0
        self._written_position = 0
        self._enqueuer: defer.Deferred[Any] | None = None
        self._enqueue_timer: Any = None
        self._running = False
        self._edu_counter = itertools.count()
        self._txn_prefix = str(int(time.time() * 1000))
        self._txn_counter = itertools.count(1)
        # Several processes (docs/scale-out.md): whether this one sends our
        # events (False: main with federation_sender_instances, which sends
        # only EDUs and to-device messages), and which destinations are its
        # own (None: all of them)
        self.pdus = True
        self.owns: Callable[[str], bool] | None = None
        # whether the to-device outbox is sent from here (main's: to-device
        # messages are not replicated to the sender processes)
        self.to_device_here = True
        # a federation sender process: enqueue an event once its position
        # counts as persisted here (a record arrives before its position
        # message; replication/roles.py kicks ``on_persisted``)
        self.enqueue_when_persisted = False
        # main without PDUs: tells the senders of rows it wrote
        self.on_forwarded: Callable[[list[str]], None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Resume after a restart: enqueue the local events committed past the
        persisted position, load backoff state, start the queues with work."""
        store = self.queue_store
        self._running = True
        if not self.pdus:
            # our events go out from the federation sender processes; the
            # to-device outbox stays here
            for destination in await store.get_destinations_with_to_device():
                q = self._queue(destination)
                q.has_to_device = True
                self._wake(q)
            return
        await self.rescan()

    async def rescan(self) -> None:
        """Enqueue the local events committed past the persisted position
        and wake every destination with work (at start; and on a federation
        sender process after it caught up from the database, which skipped
        records)."""
        if not self._running:
            return  # start() scans
        store = self.queue_store
        upto = self.stream_tracker.persisted_upto
        position = await store.get_position()
        if position is None:
            # a new database (or one from before federation): nothing owed
            await store.set_position(upto)
            position = upto
        after: int | None = position
        while after is not None and after < upto:
            events, last = await store.get_local_events_after(after, upto, self.ctx.hostname)
            pdus = [NewPdu(e.room_id, e.stream_ordering,
                           server_of(e.state_key) if e.event_type == "m.room.member"
                           and e.state_key is not None else None) for e in events]
            await store.enqueue(pdus, self.ctx.hostname, last if last is not None else upto)
            if pdus:
                logger.info("federation sender: re-enqueued %d events after restart", len(pdus))
            after = last
        self._position = self._written_position = max(position, upto)
        now = self.ctx.now_ms()
        for destination, (last_ts, interval) in (await store.get_retry_timings()).items():
            q = self._queue(destination)
            q.retry_last_ts, q.retry_interval = last_ts, interval
            q.retry_at = last_ts + interval
        for destination in await store.get_destinations_with_work():
            mine = self.owns is None or self.owns(destination)
            if not mine and not self.to_device_here:
                continue  # another sender's
            q = self._queue(destination)
            q.has_pdus, q.has_to_device = mine, self.to_device_here
            if q.retry_at > now:
                self._schedule_retry(q, q.retry_at - now)
            else:
                self._wake(q)

    async def stop(self) -> None:
        """Stop sending: cancel timers and in-flight transactions (what they
        carried stays queued), let a running enqueue finish."""
        self._running = False
        if self._enqueue_timer is not None and self._enqueue_timer.active():
            self._enqueue_timer.cancel()
        self._enqueue_timer = None
        loops = []
        for q in self._destinations.values():
            if q.timer is not None and q.timer.active():
                q.timer.cancel()
            q.timer = None
            if q.loop is not None:
                loops.append(q.loop)
                q.loop.cancel()
        if self._enqueuer is not None:
            loops.append(self._enqueuer)
        if loops:
            await defer.DeferredList(loops, consumeErrors=True)
        if self._position > self._written_position:
            # spare the next start a rescan (a crash instead rescans at most
            # POSITION_LAG positions of events that had nowhere to go)
            try:
                await self.queue_store.set_position(self._position)
                self._written_position = self._position
            except Exception:
                logger.exception("federation sender: could not store its position")

    # -- PDUs ------------------------------------------------------------------

    def notify_new_events(self, room_id: str, events: "list[tuple[Event, int]]", *,
                          on_behalf_of: str | None = None,
                          to_origin_too: bool = False) -> None:
        """Events were persisted at these stream positions: queue the local ones.

        (The commit listener has usually ingested them already; this is a
        no-op then.) ``on_behalf_of``: the events came from that server
        through us (a remote user's join or leave by /send_join,
        /send_leave, /send_knock): forward those of its users to every other
        server in the room, as the joining server sent them to us alone.
        ``to_origin_too``: that server has not got them either (an invite
        we made from a third-party invite of one of its users: the spec
        lets the invitee's server send it).
        """
        self._ingest(events, on_behalf_of, to_origin_too)

    def _on_commit(self, committed: "Committed") -> None:
        # database thread: only hand over to the reactor, in commit order
        if committed.events:
            self.ctx.reactor.callFromThread(self._ingest, list(committed.events))

    def _ingest(self, events: "list[tuple[Event, int]]",
                on_behalf_of: str | None = None, to_origin_too: bool = False) -> None:
        if not self.pdus:
            if on_behalf_of is not None:
                # a remote server's event forwarded through us: no restart
                # scan finds it, so its rows are written here and the
                # senders are told (server.py wires on_forwarded)
                self.ctx.run_in_background(self._enqueue_forwarded(
                    events, on_behalf_of, to_origin_too))
            return
        added = False
        for event, position in events:
            if position in self._pending or position in self._taken:
                continue
            forwarded = (on_behalf_of is not None and on_behalf_of != self.ctx.hostname
                         and server_of(event.sender) == on_behalf_of)
            # forwarded events are not in the restart scan's reach, so the
            # position says nothing about them
            if not forwarded and (position <= self._position
                                  or not self.ctx.is_mine(event.sender)):
                continue
            # a kicked, banned or uninvited user's server may have no one
            # left in the room: it hears of it all the same. An invitee's
            # server had the invite through /invite, and a server that is
            # not in the room has no use for it in a transaction (SyTest's
            # server cannot even take one), as with Synapse.
            target = None
            if event.type == "m.room.member" and event.state_key is not None \
                    and event.membership in ("leave", "ban"):
                target = server_of(event.state_key)
            self._pending[position] = NewPdu(
                event.room_id, position, target,
                on_behalf_of if forwarded and not to_origin_too else None)
            added = True
        if added and self._running:
            self._kick_enqueuer()

    def _kick_enqueuer(self) -> None:
        if self._enqueuer is None and self._pending and self._running:
            enqueuer = self.ctx.run_in_background(self._run_enqueuer())
            # (one that found nothing persisted yet ended at once)
            if not enqueuer.called:
                self._enqueuer = enqueuer

    async def _run_enqueuer(self) -> None:
        store = self.queue_store
        try:
            while self._pending and self._running:
                # every local event at a position <= upto is in this batch or
                # was enqueued before (module docstring, step 2)
                upto = self.stream_tracker.persisted_upto
                batch = self._pending
                if self.enqueue_when_persisted:
                    # only what is persisted here: the stored position then
                    # covers the whole batch, and a restart does not send
                    # it again (on_persisted kicks the rest)
                    batch = {p: v for p, v in batch.items() if p <= upto}
                    if not batch:
                        return
                    self._pending = {p: v for p, v in self._pending.items() if p > upto}
                else:
                    self._pending = {}
                self._taken.update(batch)
                pdus = [batch[p] for p in sorted(batch)]
                lazy = upto - self._written_position < POSITION_LAG
                try:
                    counts = await store.enqueue(pdus, self.ctx.hostname, upto,
                                                 lazy_position=lazy)
                except Exception:
                    logger.exception("federation sender: could not enqueue %d events;"
                                     " retrying", len(pdus))
                    self._taken.difference_update(batch)
                    self._pending.update(batch)
                    self._enqueue_timer = self.ctx.clock.callLater(ENQUEUE_RETRY_S,
                                                                  self._retry_enqueue)
                    return
                self._position = max(self._position, upto)
                if counts or not lazy:
                    self._written_position = max(self._written_position, upto)
                self._taken = {p for p in self._taken if p > self._position}
                for destination in counts:
                    q = self._queue(destination)
                    q.has_pdus = True
                    self._wake(q)
        finally:
            self._enqueuer = None

    async def _enqueue_forwarded(self, events: "list[tuple[Event, int]]", on_behalf_of: str,
                                 to_origin_too: bool) -> None:
        pdus = [NewPdu(event.room_id, position, None,
                       None if to_origin_too else on_behalf_of)
                for event, position in events if server_of(event.sender) == on_behalf_of]
        if not pdus:
            return
        counts = await self.queue_store.enqueue(pdus, self.ctx.hostname, None)
        if counts and self.on_forwarded is not None:
            self.on_forwarded(sorted(counts))

    def queued_elsewhere(self, destinations: list[str]) -> None:
        """Another process wrote queue rows for these destinations (a
        forwarded event): wake those of ours."""
        for destination in destinations:
            if self.owns is None or self.owns(destination):
                q = self._queue(destination)
                q.has_pdus = True
                self._wake(q)

    def on_persisted(self, upto: int) -> None:
        """Write hub, reactor: the stream is persisted up to ``upto``."""
        if self._pending:
            self._kick_enqueuer()

    def _retry_enqueue(self) -> None:
        self._enqueue_timer = None
        self._kick_enqueuer()

    # -- EDUs --------------------------------------------------------------------

    def send_edu(self, destination: str, edu_type: str, content: dict[str, Any],
                 key: Any = None) -> None:
        """Queue an EDU; with ``key``, it replaces a queued EDU of the same
        (destination, type, key)."""
        if destination == self.ctx.hostname:
            return
        if edu_type == "m.presence" and not self.ctx.config.presence["federation"]:
            return
        q = self._queue(destination)
        slot: tuple[str | None, Any] = (edu_type, key) if key is not None else (
            None, next(self._edu_counter))
        q.edus.pop(slot, None)
        q.edus[slot] = ({"edu_type": edu_type, "content": content}, self.ctx.now_ms())
        while len(q.edus) > MAX_QUEUED_EDUS:
            del q.edus[next(iter(q.edus))]
        self._wake(q)

    def on_new_to_device(self, destination: str) -> None:
        """To-device messages for ``destination`` were stored in the outbox."""
        q = self._queue(destination)
        q.has_to_device = True
        self._wake(q)

    # -- destinations ---------------------------------------------------------------

    def wake_destination(self, destination: str) -> None:
        """``destination`` talked to us: if it is in backoff, retry it now."""
        q = self._destinations.get(destination)
        if q is None:
            return
        if q.loop is not None:
            q.woken = True
        if q.retry_at == 0:
            return
        if q.timer is not None and q.timer.active():
            q.timer.cancel()
        q.timer = None
        q.retry_at = 0
        self._wake(q)

    def destination_counts(self) -> dict[tuple[str, ...], float]:
        """Destinations by state, for the metrics: ``sending`` (a transaction
        loop runs), ``queued`` (work waits, not in backoff), ``backoff``."""
        now = self.ctx.now_ms()
        counts: dict[tuple[str, ...], float] = {("sending",): 0.0, ("queued",): 0.0,
                                                ("backoff",): 0.0}
        for q in self._destinations.values():
            if q.loop is not None:
                counts[("sending",)] += 1
            elif q.retry_at > now:
                counts[("backoff",)] += 1
            elif q.has_pdus or q.has_to_device or q.edus:
                counts[("queued",)] += 1
        return counts

    def known_destinations(self) -> dict[str, tuple[int, int]]:
        """destination -> (retry_last_ts, retry_interval) of every destination
        this process has queued for (the admin API's destination list)."""
        return {name: (q.retry_last_ts, q.retry_interval)
                for name, q in self._destinations.items()}

    async def reset_backoff(self, destination: str) -> None:
        """An admin says ``destination`` is back: forget its backoff, send now."""
        await self.queue_store.set_retry_timings(destination, 0, 0)
        q = self._destinations.get(destination)
        if q is None:
            return
        q.retry_interval = q.retry_last_ts = 0
        self.wake_destination(destination)

    def is_down(self, destination: str) -> bool:
        """Whether ``destination`` is in backoff (it failed and its retry is
        not yet due): other requests to it may skip it."""
        q = self._destinations.get(destination)
        return q is not None and q.retry_at > self.ctx.now_ms()

    def _queue(self, destination: str) -> _Destination:
        q = self._destinations.get(destination)
        if q is None:
            q = self._destinations[destination] = _Destination(destination)
        return q

    def _wake(self, q: _Destination) -> None:
        """Start the destination's loop unless it runs or the peer is in backoff."""
        if not self._running or q.loop is not None or q.name == self.ctx.hostname:
            return
        if q.retry_at > self.ctx.now_ms():
            return
        if not (q.has_pdus or q.has_to_device or q.edus):
            return
        q.loop = self.ctx.run_in_background(self._run_queue(q))

    def _schedule_retry(self, q: _Destination, delay_ms: int) -> None:
        if q.timer is not None and q.timer.active():
            q.timer.cancel()
        q.timer = self.ctx.clock.callLater(max(0, delay_ms) / 1000, self._retry, q)

    def _retry(self, q: _Destination) -> None:
        q.timer = None
        q.retry_at = 0
        self._wake(q)

    async def _backoff(self, q: _Destination, reason: str) -> None:
        settings = self.ctx.config.federation
        minimum = int(settings["destination_min_retry_interval"])
        if q.retry_interval <= 0:
            interval = minimum
        else:
            interval = int(q.retry_interval * float(settings["destination_retry_multiplier"]))
        interval = max(minimum, min(interval, int(settings["destination_max_retry_interval"])))
        now = self.ctx.now_ms()
        delay = int(interval * random.uniform(0.8, 1.2))
        if q.woken:
            q.woken = False
            delay = min(delay, WOKEN_RETRY_MS)
        q.retry_interval, q.retry_last_ts, q.retry_at = interval, now, now + delay
        logger.info("federation sender: %s unreachable (%s); retrying in %.0f s",
                    q.name, reason, delay / 1000)
        try:
            await self.queue_store.set_retry_timings(q.name, now, interval)
        except Exception:
            logger.exception("federation sender: could not persist backoff of %s", q.name)
        if self._running:
            self._schedule_retry(q, delay)

    async def _run_queue(self, q: _Destination) -> None:
        try:
            await self._send_until_empty(q)
        except defer.CancelledError:
            pass  # stopping: what was in flight stays queued
        except Exception:
            logger.exception("federation sender: queue of %s failed", q.name)
        finally:
            q.loop = None

    async def _send_until_empty(self, q: _Destination) -> None:
        store = self.queue_store
        to_device_store = self.to_device
        if q.retry_interval > 0 and q.has_pdus and self.pdus:
            # back from backoff: catch up with the latest event per room only
            if await store.count_pdus(q.name, MAX_PDUS_PER_TXN + 1) > MAX_PDUS_PER_TXN:
                dropped = await store.keep_latest_per_room(q.name)
                logger.info("federation sender: %s is back; catching up, dropped %d"
                            " queued PDUs", q.name, dropped)
        while self._running:
            fetch_pdus = q.has_pdus and self.pdus
            fetch_to_device = q.has_to_device and self.to_device_here
            q.has_pdus = q.has_to_device = False
            pdu_rows = await store.get_pdus(q.name, MAX_PDUS_PER_TXN) if fetch_pdus else []
            to_device = (await to_device_store.get_outbox(q.name, MAX_EDUS_PER_TXN)
                         if fetch_to_device else [])
            if len(pdu_rows) == MAX_PDUS_PER_TXN:
                q.has_pdus = True
            if len(to_device) == MAX_EDUS_PER_TXN:
                q.has_to_device = True
            taken = self._take_edus(q, MAX_EDUS_PER_TXN - len(to_device))
            pdus = [pdu for _, pdu in pdu_rows if pdu]
            for pdu in pdus:
                # ours alone (as event_handler.pdu_for_federation says)
                pdu.pop("unsigned", None)
            edus = [{"edu_type": TO_DEVICE_EDU, "content": c} for _, c in to_device]
            edus += [edu for edu, _ in taken.values()]
            if not pdus and not edus:
                # rows whose events are gone: drop them
                await store.delete_pdus(q.name, [p for p, _ in pdu_rows])
                if q.has_pdus or q.has_to_device or q.edus:
                    continue
                return
            txn_id = f"{self._txn_prefix}-{next(self._txn_counter)}"
            body = {"origin": self.ctx.hostname, "origin_server_ts": self.ctx.now_ms(),
                    "pdus": pdus, "edus": edus}
            try:
                response = await self.client.put_json(
                    q.name, f"/_matrix/federation/v1/send/{txn_id}", body)
            except Exception as e:  # noqa: BLE001 - every failure backs off or drops
                if isinstance(e, defer.CancelledError) or not self._running:
                    # stopping (the client may report the cancelled request as a
                    # failed one): no fault of the peer, so no backoff
                    self._restore(q, taken, bool(pdu_rows), bool(to_device))
                    raise defer.CancelledError() from e
                if isinstance(e, FederationError) and e.code < 500 and e.code != 429:
                    logger.warning("federation sender: %s refused transaction %s (%s);"
                                   " dropping its %d PDUs and %d EDUs", q.name, txn_id, e,
                                   len(pdus), len(edus))
                    await self._acknowledged(q, pdu_rows, to_device)
                    continue
                if not isinstance(e, (RequestFailed, FederationError)):
                    logger.exception("federation sender: sending to %s failed", q.name)
                self._restore(q, taken, bool(pdu_rows), bool(to_device))
                await self._backoff(q, str(e) or type(e).__name__)
                return
            self._log_pdu_errors(q.name, txn_id, response)
            await self._acknowledged(q, pdu_rows, to_device)
            if q.retry_interval > 0:
                q.retry_interval = q.retry_at = 0
                await store.set_retry_timings(q.name, 0, 0)

    def _take_edus(self, q: _Destination, limit: int
                   ) -> dict[tuple[str | None, Any], tuple[dict[str, Any], int]]:
        """Take up to ``limit`` in-memory EDUs, oldest first, dropping stale ones."""
        oldest = self.ctx.now_ms() - EDU_MAX_AGE_MS
        taken: dict[tuple[str | None, Any], tuple[dict[str, Any], int]] = {}
        for slot in list(q.edus):
            if len(taken) >= limit:
                break
            edu, queued = q.edus.pop(slot)
            if queued >= oldest:
                taken[slot] = (edu, queued)
        return taken

    @staticmethod
    def _restore(q: _Destination,
                 taken: dict[tuple[str | None, Any], tuple[dict[str, Any], int]],
                 had_pdus: bool, had_to_device: bool) -> None:
        """A transaction failed: what it carried is queued again (in front,
        unless a newer EDU of the same key arrived meanwhile)."""
        q.edus = {**{s: v for s, v in taken.items() if s not in q.edus}, **q.edus}
        q.has_pdus = q.has_pdus or had_pdus
        q.has_to_device = q.has_to_device or had_to_device

    async def _acknowledged(self, q: _Destination, pdu_rows: list[tuple[int, Any]],
                            to_device: list[tuple[int, Any]]) -> None:
        await self.queue_store.delete_pdus(q.name, [p for p, _ in pdu_rows])
        if to_device:
            await self.to_device.delete_outbox([i for i, _ in to_device])

    @staticmethod
    def _log_pdu_errors(destination: str, txn_id: str, response: Any) -> None:
        results = response.get("pdus") if isinstance(response, dict) else None
        if not isinstance(results, dict):
            return
        for event_id, result in results.items():
            if isinstance(result, dict) and "error" in result:
                logger.info("federation sender: %s rejected %s in transaction %s: %s",
                            destination, event_id, txn_id, result["error"])
