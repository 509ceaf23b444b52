"""Processes of their own for the background senders (docs/scale-out.md).

- ``federation_sender_instances: [fed1, fed2]`` (with ``send_federation:
  false``): those processes send our events to other servers, each the
  destinations whose SHA-256 hash of the server name falls to it
  (``writers.shard_owner``, as rooms fall to event writers). Each follows
  every writer's records like a sync reader and feeds its
  ``FederationSender``, whose queue is in the database
  (``federation_pdu_queue``) with a position of its own (a row of
  ``federation_sender_position`` per place in the list; its first start
  takes over the single sender's): a restart, or a catch-up from the
  database after missed records, rescans from there. Main keeps the
  EDUs (typing, receipts, presence, device lists: in memory there, not
  replicated) and the to-device outbox, sending them in transactions of its
  own; a remote server's event that main forwards (a join by /send_join)
  gets its queue rows written by main, which tells the senders on Redis
  (``invalidate`` of ``federation_queue``).
- ``pusher_instances: [push1]`` (with ``start_pushers: false``): those
  processes run the HTTP pushers, each the users whose hash falls to it,
  woken as the records' positions pass (the push actions are in the
  database, written in each event's transaction). Main tells them when a
  user's pushers change (``invalidate`` of ``pushers``); read receipts in
  the records update the badges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.replication.writers import shard_owner

if TYPE_CHECKING:
    from homeserver.server import HomeServer

_READ_RECEIPTS = ("m.read", "m.read.private")


def place_roles(hs: "HomeServer") -> None:
    """Which of the federation sender and the pushers run in this process,
    and what feeds them from the others (called once replication is built)."""
    worker = hs.worker
    sender = hs.federation_sender
    queue = hs.stores.federation_queue
    senders = worker.federation_senders
    if not worker.sends_federation:
        # a process that never sends (a reader, an event writer) keeps no
        # events for it either (its event creator still tells it of sends)
        sender.pdus = False
    if senders:
        if worker.sends_federation:
            me = worker.name

            def owns(destination: str) -> bool:
                return shard_owner(destination, senders) == me
            sender.owns = queue.owns = owns
            queue.slot = 2 + senders.index(me)
            if not worker.is_main:
                sender.to_device_here = False
                sender.enqueue_when_persisted = True
        publisher = hs.replication_publisher
        if worker.is_main and publisher is not None:
            sender.on_forwarded = lambda destinations: publisher.invalidate(
                "federation_queue", [[d] for d in destinations])
    pushers = worker.pushers
    if pushers and worker.runs_pushers:
        me = worker.name
        hs.pushers.owns = lambda user_id: shard_owner(user_id, pushers) == me
    elif pushers:
        hs.pushers.owns = lambda user_id: False  # none here
    if pushers and worker.is_main and hs.replication_publisher is not None:
        publisher = hs.replication_publisher
        hs.pushers.on_changed = lambda user_id: publisher.invalidate("pushers", [[user_id]])
    follower = hs.replication_follower
    if follower is None:
        return
    if worker.sends_federation and not worker.is_main:
        follower.on_reset.append(lambda: hs.run_in_background(sender.rescan()))
        follower.invalidators["federation_queue"] = lambda keys: sender.queued_elsewhere(
            [str(k[0]) for k in keys])
    if worker.runs_pushers and not worker.is_main:
        pool = hs.pushers
        follower.on_reset.append(lambda: hs.run_in_background(pool.reload()))
        follower.invalidators["pushers"] = lambda keys: [
            hs.run_in_background(pool.reload_user(str(k[0]))) for k in keys]


def subscribe_worker(hs: "HomeServer") -> None:
    """A worker's hub (fed by the records): what its roles hear."""
    worker = hs.worker
    hub = hs.db.hub
    if worker.sends_federation:
        hub.subscribe(hs.federation_sender._on_commit)
        hub.on_persisted(hs.federation_sender.on_persisted)
    if worker.runs_pushers:
        pool = hs.pushers
        hub.subscribe(pool.on_commit)
        hub.on_persisted(pool.on_persisted)

        def receipts(committed: Any) -> None:
            for _, _, user_id, receipt_type, _, _, _ in committed.receipts:
                if receipt_type in _READ_RECEIPTS and hs.ctx.is_mine(user_id):
                    hs.reactor.callFromThread(pool.on_receipt, user_id)
        hub.subscribe(receipts)


def place_media_jobs(hs: "HomeServer") -> None:
    """``media_instance_running_background_jobs``: media retention runs on
    that process only (main keeps the other retention jobs)."""
    hs.retention_jobs.place_media_job(hs.worker.media_jobs == hs.worker.name)


async def start_worker(hs: "HomeServer") -> None:
    """A worker's roles start once it follows the writers."""
    if hs.worker.media_jobs == hs.worker.name and hs.retention_jobs.active:
        await hs.retention_jobs.start()
    if hs.worker.sends_federation:
        await hs.federation_sender.start()
    if hs.worker.runs_pushers:
        await hs.pushers.start()
