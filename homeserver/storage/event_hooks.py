"""Per-event work inside the transaction that persists a timeline event.

Indexes derived from events (relations, full-text search) must be written in
the same transaction as the event, so that a crash never leaves an event
without its index rows or the reverse. The stores that keep such indexes
register a function here at import; every path that stores an event into a
room's timeline (local sends, ``EventStore``; events from other servers and
backfilled history, ``FederationEventStore``) calls ``run_persist_hooks``
right after inserting the row.

A hook gets the transaction, the event and its NID. It must be cheap,
must not raise for odd content (an event from another server may hold
anything), and for a redaction (``event.type == "m.room.redaction"``) it
should drop what it derived from the redacted event.

A chain of plain messages persisted together (``EventStore.
persist_messages_txn``: a busy room's batch of local sends, or a run of
messages from another server) goes through ``run_message_batch_hooks``: a
hook registered with a ``batch`` function gets the whole batch at once (one
query for all of it instead of several per event); the others get each
event in turn. Such a batch holds events of one room, in order, none of
them a state event or a redaction, so the room's state is the same for all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeserver.events.model import Event
from homeserver.storage.database import Txn


@dataclass(frozen=True)
class MessageBatch:
    """Plain messages of one room just inserted, in order."""

    room_nid: int
    events: list[tuple[Event, int, int]]  # (event, event NID, stream position)


PersistHook = Callable[[Txn, Event, int], None]
BatchHook = Callable[[Txn, MessageBatch], None]

_HOOKS: list[tuple[PersistHook, BatchHook | None]] = []


def register_persist_hook(hook: PersistHook, batch: BatchHook | None = None) -> None:
    if all(h is not hook for h, _ in _HOOKS):
        _HOOKS.append((hook, batch))


def run_persist_hooks(txn: Txn, event: Event, event_nid: int) -> None:
    for hook, _ in _HOOKS:
        hook(txn, event, event_nid)


def run_message_batch_hooks(txn: Txn, batch: MessageBatch) -> None:
    for hook, batch_hook in _HOOKS:
        if batch_hook is not None:
            batch_hook(txn, batch)
        else:
            for event, event_nid, _ in batch.events:
                hook(txn, event, event_nid)
