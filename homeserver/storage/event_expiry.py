"""Self-destructing messages (MSC2228): the ``event_expiry`` table.

``record_txn`` is a persist hook (``HomeServer._add_persist_hooks`` adds it
only with ``enable_ephemeral_messages``): a timeline event that is not state
and carries an integer ``org.matrix.self_destruct_after`` (a timestamp in
ms) gets a row. ``expire`` prunes an event's stored JSON in place (what a
redaction keeps: the rest is gone for good, for every reader and for other
servers that fetch it) and drops its full-text search row and its expiry
row, in one transaction. ``rooms/ephemeral.py`` decides when.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.model import Event
from homeserver.events.redaction import redact
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.database import Database, Txn
from homeserver.storage.search import delete_event_txn

SELF_DESTRUCT_AFTER = "org.matrix.self_destruct_after"


def expiry_of(event: Event) -> int | None:
    """When ``event`` self-destructs (ms), if it asks to."""
    if event.is_state() or event.rejected_reason is not None:
        return None
    value: Any = event.content.get(SELF_DESTRUCT_AFTER)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    return value


def record_txn(txn: Txn, event: Event, event_nid: int) -> None:
    """The persist hook."""
    expiry = expiry_of(event)
    if expiry is None:
        return
    txn.execute("INSERT INTO event_expiry (event_id, expiry_ts) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING", (event.event_id, expiry))


class EventExpiryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_next_expiry(self) -> int | None:
        rows = await self.db.execute("get_next_expiry",
                                     "SELECT MIN(expiry_ts) FROM event_expiry", ())
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def get_due(self, now_ms: int, limit: int) -> list[str]:
        rows = await self.db.execute(
            "get_due_expiries",
            "SELECT event_id FROM event_expiry WHERE expiry_ts <= ?"
            " ORDER BY expiry_ts LIMIT ?", (now_ms, limit))
        return [str(r[0]) for r in rows]

    async def expire(self, event_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            row = txn.select_one(
                "SELECT ev.event_nid, ev.json, r.room_version FROM events ev"
                " JOIN rooms r ON r.room_nid = ev.room_nid WHERE ev.event_id = ?",
                (event_id,))
            if row is not None and str(row[2]) in KNOWN_ROOM_VERSIONS:
                pruned = redact(json.loads(row[1]), KNOWN_ROOM_VERSIONS[str(row[2])])
                txn.execute("UPDATE events SET json = ? WHERE event_nid = ?",
                            (encode_canonical_json(pruned, strict=False).decode("utf-8"),
                             int(row[0])))
                delete_event_txn(txn, int(row[0]))
            txn.execute("DELETE FROM event_expiry WHERE event_id = ?", (event_id,))
        await self.db.run_interaction("expire_event", txn_fn)
