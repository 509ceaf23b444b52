"""The stages after the rooms in `homeserver import-synapse`: aliases, the
published room directory, rooms an admin blocked, read receipts."""

from __future__ import annotations

from homeserver.storage import synapse_import as rows
from homeserver.storage.database import Txn
from homeserver.storage.receipts import ReceiptStore
from homeserver.synapse_import.common import StageContext, load_json, now_ms


def aliases(ctx: StageContext, name: str) -> None:
    aliases = ctx.src.rows("SELECT room_alias, room_id, creator FROM room_aliases")
    advance = ctx.progress.stage(name, len(aliases))

    def txn_fn(txn: Txn) -> int:
        nids = rows.room_nids_txn(txn)
        count = 0
        for alias, room_id, creator in aliases:
            if room_id not in nids:
                ctx.report.skipped.append(f"alias {alias}: its room {room_id} was not"
                                           " imported")
                continue
            rows.insert_alias_txn(txn, alias, nids[room_id], creator or "", now_ms())
            count += 1
        advance(len(aliases))
        return count
    ctx.commit(name, txn_fn)


def room_directory(ctx: StageContext, name: str) -> None:
    public = [str(r[0]) for r in ctx.src.rows("SELECT room_id FROM rooms WHERE is_public")]
    advance = ctx.progress.stage(name, len(public))

    def txn_fn(txn: Txn) -> int:
        nids = rows.room_nids_txn(txn)
        for room_id in public:
            if room_id in nids:
                rows.publish_room_txn(txn, nids[room_id], now_ms())
        advance(len(public))
        return len(public)
    ctx.commit(name, txn_fn)


def receipts(ctx: StageContext, name: str) -> None:
    receipts = ctx.src.rows("SELECT room_id, receipt_type, user_id, event_id, thread_id,"
                             " data FROM receipts_linearized ORDER BY stream_id")
    advance = ctx.progress.stage(name, len(receipts))

    def txn_fn(txn: Txn) -> int:
        for room_id, rtype, user_id, event_id, thread_id, data in receipts:
            ReceiptStore.upsert_receipt_txn(txn, room_id, user_id, rtype, thread_id,
                                            event_id, load_json(data) or {})
        advance(len(receipts))
        return len(receipts)
    ctx.commit(name, txn_fn)


def blocked_rooms(ctx: StageContext, name: str) -> None:
    """Rooms an admin blocked (no local user may join them) stay blocked."""
    blocked = ctx.src.rows("SELECT room_id, user_id FROM blocked_rooms") \
        if ctx.src.has_table("blocked_rooms") else []
    advance = ctx.progress.stage(name, len(blocked))

    def txn_fn(txn: Txn) -> int:
        for room_id, user_id in blocked:
            rows.block_room_txn(txn, str(room_id), str(user_id), now_ms())
        advance(len(blocked))
        return len(blocked)
    ctx.commit(name, txn_fn)
