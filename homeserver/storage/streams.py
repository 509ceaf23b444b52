"""The global stream: one monotonic position for everything persisted.

Every write a client may later need to hear about through /sync (account data
now; events, receipts, to-device messages and device-list changes later)
takes its position from this one stream, inside the transaction that stores
it, so "is there anything new for this user since position X?" is a single
comparison per table.

On PostgreSQL the position comes from the ``global_stream_seq`` sequence:
sequences live outside transactions, so concurrent writers never conflict on
it (a rolled-back writer leaves a gap, which is harmless). On SQLite it is a
counter row in ``stream_positions``; SQLite has one writer at a time, so the
row serialises nothing that is not serialised already.

``current_stream_id`` is the highest position handed out so far. On
PostgreSQL a position can be handed out before the transaction holding it
commits, so a reader that must never skip a write (the sync notifier) needs
the architecture's "persisted up to" rule on top of this; it is fine
for "has anything happened at all" checks and for tests.
"""

from __future__ import annotations

from homeserver.storage.database import Database, Txn


def next_stream_id_txn(txn: Txn) -> int:
    """Allocate the next global stream position, inside ``txn``."""
    if txn.engine == "postgres":
        value = txn.select_value("SELECT nextval('global_stream_seq')")
    else:
        value = txn.select_value(
            "UPDATE stream_positions SET position = position + 1"
            " WHERE stream_name = 'global' RETURNING position")
    if value is None:  # pragma: no cover - migration 0002 creates both
        raise RuntimeError("global stream is missing; is the schema migrated?")
    return int(value)


def current_stream_id_txn(txn: Txn) -> int:
    """The highest global stream position handed out so far (0 before any)."""
    if txn.engine == "postgres":
        value = txn.select_value(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM global_stream_seq")
    else:
        value = txn.select_value(
            "SELECT position FROM stream_positions WHERE stream_name = 'global'")
    return int(value or 0)


async def current_stream_id(db: Database) -> int:
    return await db.run_interaction("current_stream_id", current_stream_id_txn)
