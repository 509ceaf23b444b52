"""The admin API's room tables and reads: every room with its counts and the
current state that describes it, blocked rooms, room deletions, and the purge
of a whole room.

``purge_room_txn`` removes every row about one room in one transaction, so a
crash leaves the room either whole or gone; the snapshots and state blocks it
no longer references go with ``StateStore.garbage_collect`` afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.admin_users import like_pattern
from homeserver.storage.database import Database, Txn

# the state events whose content describes a room in the admin API
DESCRIBING_STATE = ("m.room.create", "m.room.name", "m.room.canonical_alias", "m.room.topic",
                    "m.room.avatar", "m.room.encryption", "m.room.join_rules",
                    "m.room.guest_access", "m.room.history_visibility", "m.room.tombstone")


@dataclass(frozen=True)
class RoomSummary:
    room_nid: int
    room_id: str
    version: str
    creator: str | None
    joined_members: int
    joined_local_members: int
    state_events: int
    public: bool
    # event type -> content of the current state event (state key "")
    state: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class RoomDeletion:
    delete_id: str
    room_id: str
    requester: str
    params: dict[str, Any]
    status: str
    error: str | None
    result: dict[str, Any]


_DELETION_COLUMNS = "delete_id, room_id, requester, params, status, error, result"


def _deletion(r: tuple[Any, ...]) -> RoomDeletion:
    return RoomDeletion(str(r[0]), str(r[1]), str(r[2]), json.loads(r[3]), str(r[4]), r[5],
                        json.loads(r[6]))


class AdminRoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def room_summaries(self, hostname: str,
                             room_id: str | None = None) -> list[RoomSummary]:
        """Every room (or the one ``room_id``) with its counts and describing state."""
        local = "%:" + like_pattern(hostname)[1:-1]

        def txn_fn(txn: Txn) -> list[RoomSummary]:
            where = " WHERE r.room_id = ?" if room_id is not None else ""
            rows = txn.select_all(
                "SELECT r.room_nid, r.room_id, r.room_version, r.creator,"
                " (SELECT COUNT(*) FROM room_memberships m WHERE m.room_nid = r.room_nid"
                "  AND m.membership = 'join'),"
                " (SELECT COUNT(*) FROM room_memberships m WHERE m.room_nid = r.room_nid"
                "  AND m.membership = 'join' AND m.user_id LIKE ? ESCAPE '!'),"
                " (SELECT COUNT(*) FROM current_state c WHERE c.room_nid = r.room_nid),"
                " (SELECT COUNT(*) FROM room_directory d WHERE d.room_nid = r.room_nid)"
                " FROM rooms r" + where,
                (local, room_id) if room_id is not None else (local,))
            marks = ", ".join("?" for _ in DESCRIBING_STATE)
            state_where = " AND r.room_id = ?" if room_id is not None else ""
            state_rows = txn.select_all(
                "SELECT c.room_nid, k.event_type, e.json FROM current_state c"
                " JOIN state_keys k ON k.state_key_nid = c.state_key_nid"
                " JOIN events e ON e.event_nid = c.event_nid"
                " JOIN rooms r ON r.room_nid = c.room_nid"
                f" WHERE k.state_key = '' AND k.event_type IN ({marks}){state_where}",
                (*DESCRIBING_STATE, room_id) if room_id is not None else DESCRIBING_STATE)
            state: dict[int, dict[str, dict[str, Any]]] = {}
            for nid, event_type, raw in state_rows:
                content = json.loads(raw).get("content")
                if isinstance(content, dict):
                    state.setdefault(int(nid), {})[str(event_type)] = content
            return [RoomSummary(int(r[0]), str(r[1]), str(r[2]), r[3], int(r[4]), int(r[5]),
                                int(r[6]), bool(r[7]), state.get(int(r[0]), {}))
                    for r in rows]

        return await self.db.run_interaction("admin_room_summaries", txn_fn)

    async def get_members(self, room_nid: int) -> list[str]:
        rows = await self.db.execute(
            "admin_room_members",
            "SELECT user_id FROM room_memberships WHERE room_nid = ? AND membership = 'join'"
            " ORDER BY user_id", (room_nid,))
        return [str(r[0]) for r in rows]

    async def get_local_users_in_room(self, room_nid: int,
                                      hostname: str) -> list[tuple[str, str]]:
        """(user, membership) of the local users joined to or invited into the room."""
        rows = await self.db.execute(
            "admin_local_room_users",
            "SELECT user_id, membership FROM room_memberships WHERE room_nid = ?"
            " AND membership IN ('join', 'invite', 'knock') AND user_id LIKE ? ESCAPE '!'"
            " ORDER BY user_id",
            (room_nid, "%:" + like_pattern(hostname)[1:-1]))
        return [(str(r[0]), str(r[1])) for r in rows]

    # -- blocked rooms -------------------------------------------------------

    async def block_room(self, room_id: str, user_id: str, now_ms: int) -> None:
        await self.db.execute(
            "block_room", "INSERT INTO blocked_rooms (room_id, user_id, created_ts)"
            " VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (room_id, user_id, now_ms))

    async def unblock_room(self, room_id: str) -> None:
        await self.db.execute("unblock_room", "DELETE FROM blocked_rooms WHERE room_id = ?",
                              (room_id,))

    async def room_blocked_by(self, room_id: str) -> str | None:
        rows = await self.db.execute("is_room_blocked",
                                     "SELECT user_id FROM blocked_rooms WHERE room_id = ?",
                                     (room_id,))
        return str(rows[0][0]) if rows else None

    # -- deletions -----------------------------------------------------------

    async def add_deletion(self, deletion: RoomDeletion, now_ms: int) -> None:
        await self.db.execute(
            "add_room_deletion",
            f"INSERT INTO room_deletions ({_DELETION_COLUMNS}, created_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (deletion.delete_id, deletion.room_id, deletion.requester,
             json.dumps(deletion.params), deletion.status, deletion.error,
             json.dumps(deletion.result), now_ms))

    async def update_deletion(self, delete_id: str, status: str, result: dict[str, Any],
                              error: str | None = None) -> None:
        await self.db.execute(
            "update_room_deletion",
            "UPDATE room_deletions SET status = ?, result = ?, error = ? WHERE delete_id = ?",
            (status, json.dumps(result), error, delete_id))

    async def get_deletion(self, delete_id: str) -> RoomDeletion | None:
        rows = await self.db.execute(
            "get_room_deletion",
            f"SELECT {_DELETION_COLUMNS} FROM room_deletions WHERE delete_id = ?", (delete_id,))
        return _deletion(rows[0]) if rows else None

    async def get_deletions_of_room(self, room_id: str) -> list[RoomDeletion]:
        rows = await self.db.execute(
            "get_room_deletions",
            f"SELECT {_DELETION_COLUMNS} FROM room_deletions WHERE room_id = ?"
            " ORDER BY created_ts, delete_id", (room_id,))
        return [_deletion(r) for r in rows]

    async def get_deletions_with_times(self) -> list[tuple[RoomDeletion, int]]:
        """Every deletion with when it was asked for, oldest first."""
        rows = await self.db.execute(
            "get_room_deletions_with_times",
            f"SELECT {_DELETION_COLUMNS}, created_ts FROM room_deletions"
            " ORDER BY created_ts, delete_id", ())
        return [(_deletion(r), int(r[7])) for r in rows]

    async def get_unfinished_deletions(self) -> list[RoomDeletion]:
        rows = await self.db.execute(
            "get_unfinished_room_deletions",
            f"SELECT {_DELETION_COLUMNS} FROM room_deletions"
            " WHERE status IN ('scheduled', 'shutting_down', 'purging')"
            " ORDER BY created_ts, delete_id", ())
        return [_deletion(r) for r in rows]

    # -- purge ---------------------------------------------------------------

    async def purge_history(self, room_nid: int, before_stream: int,
                            keep_suffix: str | None) -> int:
        return await self.db.run_interaction("purge_history", purge_history_txn, room_nid,
                                             before_stream, keep_suffix)

    async def purge_point(self, room_nid: int, event_id: str | None,
                          ts: int | None) -> tuple[int, str] | None:
        """(stream position, event ID) of the event a history purge stops at:
        ``event_id`` (None unless in the room's timeline), or the first
        event at or after ``ts`` (the latest event when none is)."""
        def txn_fn(txn: Txn) -> tuple[int, str] | None:
            if event_id is not None:
                row = txn.select_one(
                    "SELECT stream_ordering, event_id FROM events WHERE event_id = ?"
                    " AND room_nid = ? AND stream_ordering IS NOT NULL", (event_id, room_nid))
            else:
                row = txn.select_one(
                    "SELECT stream_ordering, event_id FROM events WHERE room_nid = ?"
                    " AND outlier = 0 AND origin_server_ts >= ? ORDER BY stream_ordering"
                    " LIMIT 1", (room_nid, ts)) or txn.select_one(
                    "SELECT stream_ordering, event_id FROM events WHERE room_nid = ?"
                    " AND outlier = 0 ORDER BY stream_ordering DESC LIMIT 1", (room_nid,))
            return (int(row[0]), str(row[1])) if row else None
        return await self.db.run_interaction("purge_point", txn_fn)

    async def forward_extremities(self, room_nid: int) -> list[tuple[str, int | None, int, int]]:
        """(event ID, snapshot NID, depth, origin_server_ts) of each of the
        room's forward extremities, newest first."""
        rows = await self.db.execute(
            "admin_forward_extremities",
            "SELECT e.event_id, e.snapshot_nid, e.depth, e.origin_server_ts"
            " FROM forward_extremities fe JOIN events e ON e.event_nid = fe.event_nid"
            " WHERE fe.room_nid = ? ORDER BY e.stream_ordering DESC", (room_nid,))
        return [(str(r[0]), int(r[1]) if r[1] is not None else None, int(r[2]), int(r[3]))
                for r in rows]

    async def delete_extra_forward_extremities(self, room_nid: int) -> int | None:
        """Keep only the newest forward extremity (by stream order); how many
        went, or None if the room has none."""
        def txn_fn(txn: Txn) -> int | None:
            newest = txn.select_one(
                "SELECT fe.event_nid FROM forward_extremities fe"
                " JOIN events e ON e.event_nid = fe.event_nid WHERE fe.room_nid = ?"
                " ORDER BY e.stream_ordering DESC LIMIT 1", (room_nid,))
            if newest is None:
                return None
            count = txn.select_one(
                "SELECT COUNT(*) FROM forward_extremities WHERE room_nid = ? AND event_nid <> ?",
                (room_nid, newest[0]))
            txn.execute("DELETE FROM forward_extremities WHERE room_nid = ? AND event_nid <> ?",
                        (room_nid, newest[0]))
            return int(count[0]) if count else 0
        return await self.db.run_interaction("admin_delete_forward_extremities", txn_fn)

    async def rooms_shared_with_server(self, server: str,
                                       local_host: str) -> list[tuple[str, int]]:
        """(room ID, stream position) of the rooms a user of ``server`` is
        joined to, by room ID; the position is that of our newest event in
        the room no longer waiting for that server (0: none)."""
        def escape(text: str) -> str:
            return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
        rows = await self.db.execute(
            "admin_rooms_shared_with_server",
            "SELECT r.room_id, (SELECT MAX(e.stream_ordering) FROM events e"
            " WHERE e.room_nid = r.room_nid AND e.sender LIKE ? ESCAPE '!'"
            " AND e.stream_ordering IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
            " federation_pdu_queue fq WHERE fq.destination = ?"
            " AND fq.stream_ordering = e.stream_ordering))"
            " FROM rooms r WHERE EXISTS (SELECT 1 FROM room_memberships m"
            " WHERE m.room_nid = r.room_nid AND m.membership = 'join'"
            " AND m.user_id LIKE ? ESCAPE '!') ORDER BY r.room_id",
            ("%:" + escape(local_host), server, "%:" + escape(server)))
        return [(str(r[0]), int(r[1] or 0)) for r in rows]

    async def purge_room(self, room_id: str) -> bool:
        """Delete every row about the room, in one transaction; False if unknown."""
        return await self.db.run_interaction("purge_room", purge_room_txn, room_id)


# (table, column holding the room's NID): rows keyed by room
_BY_ROOM_NID = (
    ("forward_extremities", "room_nid"), ("current_state", "room_nid"),
    ("room_memberships", "room_nid"), ("event_txn_ids", "room_nid"),
    ("room_aliases", "room_nid"), ("room_directory", "room_nid"),
    ("event_relations", "room_nid"), ("event_search", "room_nid"),
    ("event_push_actions", "room_nid"), ("federation_pdu_queue", "room_nid"),
    ("event_auth_chain_backfill", "room_nid"),
)
# (table, column holding an event NID of the room)
_BY_EVENT_NID = (
    ("event_edges", "event_nid"), ("event_edges", "prev_event_nid"),
    ("event_auth_edges", "event_nid"), ("event_auth_chains", "event_nid"),
    ("event_auth_chain_pending", "event_nid"), ("event_edges_pending", "event_nid"),
    ("remote_invite_state", "event_nid"), ("event_redactions", "redaction_nid"),
)


def purge_room_txn(txn: Txn, room_id: str) -> bool:
    room_nid = txn.select_value("SELECT room_nid FROM rooms WHERE room_id = ?", (room_id,))
    if room_nid is None:
        return False
    events = "(SELECT event_nid FROM events WHERE room_nid = ?)"
    for table, column in _BY_EVENT_NID:
        txn.execute(f"DELETE FROM {table} WHERE {column} IN {events}", (room_nid,))
    txn.execute("DELETE FROM event_auth_chain_links WHERE origin_chain_id IN"
                " (SELECT chain_id FROM event_auth_chain_ids WHERE room_nid = ?)", (room_nid,))
    txn.execute("DELETE FROM event_auth_chain_ids WHERE room_nid = ?", (room_nid,))
    if txn.engine == "sqlite":
        # the searchable text lives in the FTS table, keyed by event NID
        txn.execute("DELETE FROM event_search_fts WHERE rowid IN"
                    " (SELECT event_nid FROM event_search WHERE room_nid = ?)", (room_nid,))
    for table, column in _BY_ROOM_NID:
        txn.execute(f"DELETE FROM {table} WHERE {column} = ?", (room_nid,))
    txn.execute("DELETE FROM receipts WHERE room_id = ?", (room_id,))
    txn.execute("DELETE FROM account_data WHERE room_id = ?", (room_id,))
    txn.execute("DELETE FROM events WHERE room_nid = ?", (room_nid,))
    txn.execute("DELETE FROM rooms WHERE room_nid = ?", (room_nid,))
    return True


def purge_history_txn(txn: Txn, room_nid: int, before_stream: int,
                      keep_suffix: str | None) -> int:
    """Delete the room's message (non-state) events older than the stream
    position ``before_stream`` and make its older state events outliers (out
    of the timeline, still there for the state they are part of), as
    Synapse's purge does; events whose ID ends with ``keep_suffix`` stay.
    Later events' edges to deleted ones become pending edges, so /backfill
    can bring the history back. Returns how many events were deleted."""
    keep = " AND e.event_id NOT LIKE ? ESCAPE '!'" if keep_suffix is not None else ""
    params: list[Any] = [room_nid, before_stream]
    if keep_suffix is not None:
        params.append("%" + like_pattern(keep_suffix)[1:-1])
    nids = [int(r[0]) for r in txn.select_all(
        "SELECT e.event_nid FROM events e WHERE e.room_nid = ? AND e.stream_ordering < ?"
        " AND e.state_key IS NULL AND e.outlier = 0" + keep, params)]
    txn.execute("UPDATE events SET outlier = 1 WHERE room_nid = ? AND stream_ordering < ?"
                " AND state_key IS NOT NULL", (room_nid, before_stream))
    for chunk_start in range(0, len(nids), 500):
        chunk = nids[chunk_start:chunk_start + 500]
        marks = ", ".join("?" for _ in chunk)
        # the events that stay and pointed at deleted ones wait for them again
        txn.execute(
            "INSERT INTO event_edges_pending (event_nid, prev_event_id)"
            " SELECT g.event_nid, p.event_id FROM event_edges g"
            " JOIN events p ON p.event_nid = g.prev_event_nid"
            f" WHERE g.prev_event_nid IN ({marks}) AND g.event_nid NOT IN ({marks})"
            " ON CONFLICT DO NOTHING", chunk + chunk)
        if txn.engine == "sqlite":
            txn.execute(f"DELETE FROM event_search_fts WHERE rowid IN ({marks})", chunk)
        for table, column in (*_BY_EVENT_NID, ("event_relations", "event_nid"),
                              ("event_search", "event_nid"), ("event_push_actions", "event_nid"),
                              ("event_txn_ids", "event_nid")):
            txn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
        txn.execute(f"DELETE FROM events WHERE event_nid IN ({marks})", chunk)
    return len(nids)
