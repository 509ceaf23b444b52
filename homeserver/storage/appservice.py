"""Application services: their progress through the event stream, their
unacknowledged transactions, and their own room lists (schema 0029).

A service's queue is ``appservice_stream`` (how far through the stream it
has been looked at) plus ``appservice_txns`` (transactions made from that
part and not yet acknowledged). Making a transaction and moving the
position are one database transaction, so after a crash an event is either
still ahead of the position or inside a stored transaction: never lost, and
a stored transaction is sent again with its ID (the service drops repeats).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.directory import PublishedRoom


@dataclass(frozen=True)
class PendingTxn:
    txn_id: int
    event_ids: list[str]
    # typing and receipts (receive_ephemeral), as sent
    ephemeral: list[dict[str, Any]] = field(default_factory=list)


class AppServiceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the queue -----------------------------------------------------------

    async def get_position(self, service_id: str, start_at: int) -> int:
        """The service's stream position; a service seen for the first time
        starts at ``start_at`` (it is not sent the server's history)."""
        def txn_fn(txn: Txn) -> int:
            pos = txn.select_value(
                "SELECT stream_pos FROM appservice_stream WHERE appservice_id = ?",
                (service_id,))
            if pos is not None:
                return int(pos)
            txn.execute("INSERT INTO appservice_stream (appservice_id, stream_pos, last_txn_id)"
                        " VALUES (?, ?, 0)", (service_id, start_at))
            return start_at

        return await self.db.run_interaction("appservice_get_position", txn_fn)

    async def get_events_after(self, from_pos: int, to_pos: int,
                               limit: int) -> list[tuple[int, str]]:
        """(stream position, event ID) of the events in (from, to], in order:
        the timeline and the out-of-band invites to our users (outliers with
        a position), as Synapse sends them."""
        rows = await self.db.execute(
            "appservice_events_after",
            "SELECT stream_ordering, event_id FROM events WHERE stream_ordering > ?"
            " AND stream_ordering <= ? ORDER BY stream_ordering LIMIT ?",
            (from_pos, to_pos, limit))
        return [(int(pos), str(eid)) for pos, eid in rows]

    async def get_pending_txns(self, service_id: str) -> list[PendingTxn]:
        rows = await self.db.execute(
            "appservice_pending_txns",
            "SELECT txn_id, event_ids, ephemeral FROM appservice_txns WHERE appservice_id = ?"
            " ORDER BY txn_id", (service_id,))
        return [PendingTxn(int(t), json.loads(e), json.loads(eph) if eph else [])
                for t, e, eph in rows]

    async def advance(self, service_id: str, new_pos: int, event_ids: list[str],
                      ephemeral: list[dict[str, Any]] | None = None,
                      acked_upto: int | None = None) -> PendingTxn | None:
        """Move the position to ``new_pos``; with ``event_ids`` (or
        ``ephemeral``), make them the service's next transaction; with
        ``acked_upto``, delete the transactions the service has acknowledged
        up to that ID: all in one database transaction (one commit per
        transaction made, however busy the service)."""
        def txn_fn(txn: Txn) -> PendingTxn | None:
            if acked_upto is not None:
                self._delete_acked_txn(txn, service_id, acked_upto)
            if not (event_ids or ephemeral):
                txn.execute("UPDATE appservice_stream SET stream_pos = ?"
                            " WHERE appservice_id = ? AND stream_pos < ?",
                            (new_pos, service_id, new_pos))
                return None
            txn_id = int(txn.select_value(
                "UPDATE appservice_stream SET last_txn_id = last_txn_id + 1,"
                " stream_pos = CASE WHEN stream_pos < ? THEN ? ELSE stream_pos END"
                " WHERE appservice_id = ? RETURNING last_txn_id",
                (new_pos, new_pos, service_id)))
            txn.execute("INSERT INTO appservice_txns (appservice_id, txn_id, event_ids,"
                        " ephemeral) VALUES (?, ?, ?, ?)",
                        (service_id, txn_id, json.dumps(event_ids),
                         json.dumps(ephemeral) if ephemeral else None))
            return PendingTxn(txn_id, event_ids, list(ephemeral or []))

        return await self.db.run_interaction("appservice_advance", txn_fn)

    async def complete_txns(self, service_id: str, acked_upto: int) -> None:
        """The service acknowledged every transaction up to ``acked_upto``."""
        await self.db.run_interaction(
            "appservice_complete_txns",
            lambda txn: self._delete_acked_txn(txn, service_id, acked_upto))

    @staticmethod
    def _delete_acked_txn(txn: Txn, service_id: str, acked_upto: int) -> None:
        txn.execute("DELETE FROM appservice_txns WHERE appservice_id = ? AND txn_id <= ?",
                    (service_id, acked_upto))

    # -- the services' own room lists ------------------------------------------

    async def set_room_listed(self, service_id: str, network_id: str, room_nid: int,
                              listed: bool) -> None:
        if listed:
            await self.db.execute(
                "appservice_list_room",
                "INSERT INTO appservice_room_list (appservice_id, network_id, room_nid)"
                " VALUES (?, ?, ?) ON CONFLICT (appservice_id, network_id, room_nid)"
                " DO NOTHING", (service_id, network_id, room_nid))
        else:
            await self.db.execute(
                "appservice_unlist_room",
                "DELETE FROM appservice_room_list WHERE appservice_id = ? AND network_id = ?"
                " AND room_nid = ?", (service_id, network_id, room_nid))

    async def get_listed_rooms(self, service_id: str | None,
                               network_id: str | None) -> list[PublishedRoom]:
        """Rooms of one service's network list (both given) or of every
        service's lists (both None), with their joined-member counts."""
        sql = ("SELECT DISTINCT r.room_id, r.room_nid, r.room_version,"
               " (SELECT COUNT(*) FROM room_memberships rm"
               "  WHERE rm.room_nid = l.room_nid AND rm.membership = 'join')"
               " FROM appservice_room_list l JOIN rooms r ON r.room_nid = l.room_nid")
        params: tuple[str, ...] = ()
        if service_id is not None and network_id is not None:
            sql += " WHERE l.appservice_id = ? AND l.network_id = ?"
            params = (service_id, network_id)
        rows = await self.db.execute("appservice_listed_rooms", sql, params)
        return [PublishedRoom(room_id, int(nid), version, int(joined))
                for room_id, nid, version, joined in rows]
