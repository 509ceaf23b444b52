"""Per-event work inside the transaction that persists a timeline event.

Indexes derived from events (relations, full-text search) must be written in
the same transaction as the event, so that a crash never leaves an event
without its index rows or the reverse. Every path that stores an event into a
room's timeline (local sends, ``EventStore``; events from other servers and
backfilled history, ``FederationEventStore``) calls ``PersistHooks.run_txn``
right after inserting the row. The hooks are not registered at import:
the HomeServer adds them, in order, to the ``PersistHooks`` of its events
store (``EventStore.persist_hooks``; ``HomeServer._add_persist_hooks``).

A hook gets the transaction, the event and its NID. It must be cheap,
must not raise for odd content (an event from another server may hold
anything), and for a redaction (``event.type == "m.room.redaction"``) it
should drop what it derived from the redacted event.

Chains of plain messages persisted together (``EventStore.
persist_message_groups_txn``: the batches of local sends that the writers of
several rooms had ready at once, or a run of messages from another server)
go through ``PersistHooks.run_batches_txn``: a hook registered with a
``batch`` function gets all the batches at once (a few queries for all of
them instead of several per event, or per room); the others get each event
in turn. A batch holds events of one room, in order, none of them a state
event or a redaction, so the room's state is the same for all of them; a
room has at most one batch in a call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from homeserver.events.model import Event
from homeserver.storage.database import Txn


@dataclass(frozen=True)
class MessageBatch:
    """Plain messages of one room just inserted, in order."""

    room_nid: int
    events: list[tuple[Event, int, int]]  # (event, event NID, stream position)


PersistHook = Callable[[Txn, Event, int], None]
# the batches of several rooms, one per room
BatchHook = Callable[[Txn, Sequence[MessageBatch]], None]


class PersistHooks:
    """The per-event work of one server's persist transactions, in order."""

    def __init__(self) -> None:
        self._hooks: list[tuple[PersistHook, BatchHook | None]] = []
        # the invite of a local user to a room we do not hold is stored as
        # an outlier: only these hooks run for it
        self._remote_invite_hooks: list[PersistHook] = []

    def add(self, hook: PersistHook, batch: BatchHook | None = None) -> None:
        if all(h is not hook for h, _ in self._hooks):
            self._hooks.append((hook, batch))

    def add_remote_invite(self, hook: PersistHook) -> None:
        self._remote_invite_hooks.append(hook)

    def run_txn(self, txn: Txn, event: Event, event_nid: int) -> None:
        for hook, _ in self._hooks:
            hook(txn, event, event_nid)

    def run_batches_txn(self, txn: Txn, batches: Sequence[MessageBatch]) -> None:
        for hook, batch_hook in self._hooks:
            if batch_hook is not None:
                batch_hook(txn, batches)
            else:
                for batch in batches:
                    for event, event_nid, _ in batch.events:
                        hook(txn, event, event_nid)

    def run_remote_invite_txn(self, txn: Txn, event: Event, event_nid: int) -> None:
        for hook in self._remote_invite_hooks:
            hook(txn, event, event_nid)
