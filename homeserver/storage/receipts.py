"""Receipts: where each user has read up to, per room, receipt type and thread.

One row per (room, user, receipt type, thread) in ``receipts`` (migration
0009), holding the event the receipt points at and its data (``ts``, and
whatever else a remote server sent). ``thread_id`` is ``''`` for an
unthreaded receipt, ``"main"`` for the main timeline or a thread root's
event ID; an unthreaded receipt and threaded ones coexist (spec "Threaded
read receipts").

Every write takes a position from the global stream and stores it in the
row (``stream_id``, indexed), so /sync asks "which rooms had receipt writes
in (since, until]?" with a range scan whose cost grows with the receipts
written in that range only. A row keeps only its latest write: a receipt
written at a position in the range and overwritten after ``until`` is sent
with the later range instead, never lost.

A receipt that would move a user's receipt backwards (to an event at an
older or the same stream position, for the same type and thread) is
ignored, as Synapse does: clients race each other and an old tab must not
rewind a newer one.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import select_in_txn
from homeserver.storage.streams import next_stream_id_txn

READ = "m.read"
READ_PRIVATE = "m.read.private"

# The thread_id column's value for an unthreaded receipt.
UNTHREADED = ""
MAIN_THREAD = "main"


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing -------------------------------------------------------------

    @staticmethod
    def upsert_receipt_txn(txn: Txn, room_id: str, user_id: str, receipt_type: str,
                           thread_id: str | None, event_id: str,
                           data: dict[str, Any]) -> int | None:
        """Store (or move) one receipt; its stream position, or None when ignored
        because it would not move the receipt forwards."""
        thread = thread_id or UNTHREADED
        old = txn.select_one(
            "SELECT ev.stream_ordering FROM receipts r"
            " LEFT JOIN events ev ON ev.event_id = r.event_id"
            " WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type = ?"
            " AND r.thread_id = ?", (room_id, user_id, receipt_type, thread))
        if old is not None and old[0] is not None:
            new_pos = txn.select_value(
                "SELECT stream_ordering FROM events WHERE event_id = ?", (event_id,))
            if new_pos is not None and int(new_pos) <= int(old[0]):
                return None
        stream_id = next_stream_id_txn(txn)
        txn.add_scope(stream_id, room_id, user_id)
        txn.execute(
            "INSERT INTO receipts"
            " (room_id, user_id, receipt_type, thread_id, event_id, data, stream_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET"
            " event_id = excluded.event_id, data = excluded.data,"
            " stream_id = excluded.stream_id",
            (room_id, user_id, receipt_type, thread, event_id, json.dumps(data), stream_id))
        txn.note_receipt(stream_id, room_id, user_id, receipt_type, thread, event_id, data)
        return stream_id

    async def upsert_receipt(self, room_id: str, user_id: str, receipt_type: str,
                             thread_id: str | None, event_id: str,
                             data: dict[str, Any]) -> int | None:
        """See ``upsert_receipt_txn``."""
        return await self.db.run_interaction(
            "upsert_receipt", self.upsert_receipt_txn, room_id, user_id, receipt_type,
            thread_id, event_id, data)

    # -- reading for /sync ---------------------------------------------------

    @staticmethod
    def get_rooms_with_receipts_txn(txn: Txn, since: int, until: int) -> set[str]:
        """Rooms with receipt writes at positions in (since, until]."""
        if until <= since:
            return set()
        rows = txn.select_all(
            "SELECT DISTINCT room_id FROM receipts WHERE stream_id > ? AND stream_id <= ?",
            (since, until))
        return {r[0] for r in rows}

    async def get_rooms_with_receipts(self, since: int, until: int) -> set[str]:
        return await self.db.run_interaction("get_rooms_with_receipts",
                                             self.get_rooms_with_receipts_txn, since, until)

    async def get_receipt_events(self, room_ids: list[str], since: int | None, until: int,
                                 user_id: str) -> dict[str, dict[str, Any]]:
        """Room ID -> the content of its ``m.receipt`` event for ``user_id``.

        The receipts written in (since, until] (``since`` None: every current
        receipt up to ``until``), shaped
        ``{event_id: {receipt_type: {user_id: {"ts": ..., "thread_id": ...}}}}``
        (``thread_id`` only on threaded receipts); ``m.read.private`` receipts
        only when they are ``user_id``'s own. Rooms without any are absent.
        """
        if not room_ids or (since is not None and until <= since):
            return {}
        low = -1 if since is None else since

        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            return select_in_txn(
                txn, "SELECT room_id, user_id, receipt_type, thread_id, event_id, data"
                " FROM receipts WHERE room_id IN ({})"
                " AND stream_id > ? AND stream_id <= ?"
                " AND (receipt_type <> ? OR user_id = ?)",
                dict.fromkeys(room_ids), after=(low, until, READ_PRIVATE, user_id))

        rows = await self.db.run_interaction("get_receipt_events", txn_fn)
        out: dict[str, dict[str, Any]] = {}
        for room_id, reader, receipt_type, thread_id, event_id, data in rows:
            receipt: dict[str, Any] = json.loads(data)
            if thread_id:
                receipt["thread_id"] = thread_id
            else:
                receipt.pop("thread_id", None)
            (out.setdefault(room_id, {}).setdefault(event_id, {})
             .setdefault(receipt_type, {})[reader]) = receipt
        return out

    async def get_own_receipt_positions(self, user_id: str,
                                        room_ids: list[str]) -> dict[str, int]:
        """Room ID -> the stream position of the event of ``user_id``'s newest
        unthreaded or main-timeline ``m.read`` / ``m.read.private`` receipt."""
        if not room_ids:
            return {}
        return await self.db.run_interaction("get_own_receipt_positions",
                                             self.own_receipt_positions_txn, user_id, room_ids)

    @staticmethod
    def own_receipt_positions_txn(txn: Txn, user_id: str,
                                  room_ids: list[str]) -> dict[str, int]:
        """``get_own_receipt_positions`` in a transaction under way."""
        rows = select_in_txn(
            txn, "SELECT r.room_id, MAX(ev.stream_ordering) FROM receipts r"
            " JOIN events ev ON ev.event_id = r.event_id"
            " WHERE r.room_id IN ({}) AND r.user_id = ?"
            " AND r.receipt_type IN (?, ?) AND r.thread_id IN (?, ?)"
            " GROUP BY r.room_id",
            dict.fromkeys(room_ids),
            after=(user_id, READ, READ_PRIVATE, UNTHREADED, MAIN_THREAD))
        return {room_id: int(pos) for room_id, pos in rows if pos is not None}

    # -- reading single receipts ----------------------------------------------

    async def get_receipt(self, room_id: str, user_id: str, receipt_type: str,
                          thread_id: str | None = None) -> tuple[str, dict[str, Any]] | None:
        """(event ID, data) of one receipt, if there is one."""
        rows = await self.db.execute(
            "get_receipt",
            "SELECT event_id, data FROM receipts WHERE room_id = ? AND user_id = ?"
            " AND receipt_type = ? AND thread_id = ?",
            (room_id, user_id, receipt_type, thread_id or UNTHREADED))
        if not rows:
            return None
        return str(rows[0][0]), json.loads(rows[0][1])
