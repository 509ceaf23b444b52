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
"""

from __future__ import annotations

from collections.abc import Callable

from homeserver.events.model import Event
from homeserver.storage.database import Txn

PersistHook = Callable[[Txn, Event, int], None]

_HOOKS: list[PersistHook] = []


def register_persist_hook(hook: PersistHook) -> None:
    if hook not in _HOOKS:
        _HOOKS.append(hook)


def run_persist_hooks(txn: Txn, event: Event, event_nid: int) -> None:
    for hook in _HOOKS:
        hook(txn, event, event_nid)
