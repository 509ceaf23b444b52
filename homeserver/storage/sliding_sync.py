"""Sliding sync's connections and its room list: the only SQL of MSC4186.

Connection state (``sliding_sync_*`` tables, migration 0030) is what each
connection was sent per room, kept in the database so that a restart or a
second process answers the next request with the same ``pos`` exactly as
the first would have. ``load_connection`` forgets what the client cannot
have processed (responses after ``pos``) and keeps one row per room (the
newest at or before ``pos``). The room list reads every membership of the
user with, per room, the position of its newest event and of its newest
"bump" event, each by a backward index scan of ``events_room_stream``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders, select_in_txn
from homeserver.storage.sync import HERO_CANDIDATES, pick_heroes

if TYPE_CHECKING:
    from homeserver.storage.state import StateKey, StateStore

T = TypeVar("T")

# the event types that move a room's bump_stamp (MSC4186)
BUMP_TYPES = ("m.room.create", "m.room.message", "m.room.encrypted", "m.sticker",
              "m.call.invite", "m.poll.start", "m.beacon_info")


@dataclass(frozen=True)
class SentRoom:
    """What a connection was sent of one room."""

    sent_upto: int
    membership: str
    timeline_limit: int
    required_state: Any  # the JSON of the room config's required_state
    # $LAZY: member events the client holds (user ID -> event ID)
    lazy_members: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PositionSave:
    """A connection's new position, to write (``save_positions``)."""

    connection_nid: int
    # the position the response was built on (None: a new connection)
    base_pos_nid: int | None
    stream_pos: int
    rooms: list[tuple[str, SentRoom]]
    now_ms: int
    # the new position's NID, given by the process (``sync/sliding_fast.py``
    # ``PositionWriter.next_nid``: the response carries it before the write)
    pos_nid: int = 0
    # a new connection: (user ID, device ID, conn_id), created by the same
    # transaction with ``connection_nid``, replacing any of the same key
    start: tuple[str, str, str] | None = None
    # with ``start``: also forget connections idle since before this
    expire_before_ms: int | None = None


@dataclass(frozen=True)
class ConnectionState:
    connection_nid: int
    stream_pos: int
    rooms: dict[str, SentRoom]


@dataclass(frozen=True)
class ListRoom:
    """One room of the user's room list."""

    room_id: str
    room_nid: int
    room_version: str
    membership: str
    event_id: str
    membership_pos: int
    # who sent the membership event (a leave by someone else is a kick)
    sender: str
    # the newest event's position, and the newest bump event's (None: none)
    last_pos: int | None
    bump_pos: int | None


class SlidingSyncStore:
    def __init__(self, db: Database, state: "StateStore") -> None:
        self.db = db
        self.state = state

    # -- connections ------------------------------------------------------------

    @staticmethod
    def _delete_connection_txn(txn: Txn, connection_nid: int) -> None:
        for table in ("sliding_sync_rooms", "sliding_sync_positions",
                      "sliding_sync_connections"):
            txn.execute(f"DELETE FROM {table} WHERE connection_nid = ?", (connection_nid,))

    async def load_connection(self, user_id: str, device_id: str, conn_id: str,
                              pos_nid: int) -> ConnectionState | None:
        """The connection's state as of ``pos_nid`` (per room, its newest
        row at or before it), or None when that position is not one of this
        user's, device's and conn_id's (never was, or was forgotten). Only
        reads: the next ``save_position`` forgets what this one moves past."""
        def txn_fn(txn: Txn) -> ConnectionState | None:
            row = txn.select_one(
                "SELECT c.connection_nid, p.stream_pos FROM sliding_sync_connections c"
                " JOIN sliding_sync_positions p ON p.connection_nid = c.connection_nid"
                " WHERE c.user_id = ? AND c.device_id = ? AND c.conn_id = ?"
                " AND p.pos_nid = ?", (user_id, device_id, conn_id, pos_nid))
            if row is None:
                return None
            conn, stream_pos = int(row[0]), int(row[1])
            newest: dict[str, tuple[int, SentRoom]] = {}
            for room_id, row_pos, upto, membership, limit, required, lazy in txn.select_all(
                    "SELECT room_id, pos_nid, sent_upto, membership, timeline_limit,"
                    " required_state, lazy_members FROM sliding_sync_rooms"
                    " WHERE connection_nid = ? AND pos_nid <= ?", (conn, pos_nid)):
                held = newest.get(str(room_id))
                if held is None or held[0] < int(row_pos):
                    newest[str(room_id)] = (int(row_pos), SentRoom(
                        int(upto), str(membership), int(limit), json.loads(required),
                        json.loads(lazy) if lazy else {}))
            return ConnectionState(conn, stream_pos, {k: v for k, (_, v) in newest.items()})

        return await self.db.run_interaction("sliding_sync_load", txn_fn)

    async def save_positions(self, saves: list[PositionSave]) -> list[int | None]:
        """Several connections' new positions in one transaction (one
        commit for the responses of many woken connections), each statement
        run for all of them at once; per save, its position NID, or None
        when its connection was replaced or its base position forgotten
        meanwhile (or, for a new connection, a newer one of the same key
        came in the same batch).

        A save with ``start`` creates its connection (``connection_nid``),
        replacing any other of the same (user, device, conn_id): their
        positions become unknown.

        A save built on ``base_pos_nid`` (None: a new connection) forgets the
        connection's other positions: older ones because the client moved
        past them, newer ones because the client never processed them (it
        would have sent them); the room rows of those newer ones go with
        them, and of the older rows one per room (the newest) is kept."""
        return await self.db.run_interaction("sliding_sync_save", self._save_positions_txn,
                                             saves)

    def _save_positions_txn(self, txn: Txn, saves: list[PositionSave]) -> list[int | None]:
        # a save built on a position written by another save of the batch
        # (a connection answered again before its last position was written)
        # goes in a later wave, after its base
        results: dict[int, int | None] = {}
        remaining = saves
        while remaining:
            produced = {s.pos_nid for s in remaining}
            wave = [s for s in remaining if s.base_pos_nid not in produced] or remaining
            in_wave = {id(s) for s in wave}
            results.update(zip((id(s) for s in wave), self._save_wave_txn(txn, wave),
                               strict=True))
            remaining = [s for s in remaining if id(s) not in in_wave]
        return [results[id(s)] for s in saves]

    def _save_wave_txn(self, txn: Txn, saves: list[PositionSave]) -> list[int | None]:
        # new connections first: each replaces the connection of its key
        # (and of a start of the same key earlier in the batch: the last wins)
        starts = [s for s in saves if s.start is not None]
        last_start: dict[tuple[str, str, str], PositionSave] = {}
        for s in starts:
            assert s.start is not None
            last_start[s.start] = s
        expire = [s.expire_before_ms for s in starts if s.expire_before_ms is not None]
        if expire:
            self._expire_txn(txn, min(expire))
        for key in last_start:
            for (old,) in txn.select_all(
                    "SELECT connection_nid FROM sliding_sync_connections"
                    " WHERE user_id = ? AND device_id = ? AND conn_id = ?", key):
                self._delete_connection_txn(txn, int(old))
        if last_start:
            txn.execute_many(
                "INSERT INTO sliding_sync_connections (connection_nid, user_id, device_id,"
                " conn_id, created_ts) VALUES (?, ?, ?, ?, ?)",
                [(s.connection_nid, *key, s.now_ms) for key, s in last_start.items()])
        # a connection's positions go with it, so a live base says both live
        based = [s for s in saves if s.base_pos_nid is not None]
        live_bases = {(int(p), int(c)) for p, c in select_in_txn(
            txn, "SELECT pos_nid, connection_nid FROM sliding_sync_positions"
            " WHERE pos_nid IN ({})", [s.base_pos_nid for s in based])}
        started = {id(s) for s in last_start.values()}
        ok = [s.base_pos_nid is not None and (s.base_pos_nid, s.connection_nid) in live_bases
              or s.base_pos_nid is None and id(s) in started for s in saves]
        moved = [(s.connection_nid, s.base_pos_nid) for s, good in zip(saves, ok, strict=True)
                 if good and s.base_pos_nid is not None]
        # each statement once for the whole batch: a base position belongs to
        # its own connection only, so "not one of the bases" is "not its base"
        for group in chunks(moved, 400):
            conns = [c for c, _ in group]
            marks = placeholders(len(group))
            txn.execute(f"DELETE FROM sliding_sync_positions WHERE connection_nid IN ({marks})"
                        f" AND pos_nid NOT IN ({marks})", [*conns, *(b for _, b in group)])
            # the base is now each connection's only position: rows of the
            # positions after it go, and of the rows left the newest per room
            # stays
            txn.execute(
                f"DELETE FROM sliding_sync_rooms WHERE connection_nid IN ({marks})"
                " AND pos_nid > (SELECT p.pos_nid FROM sliding_sync_positions p"
                " WHERE p.connection_nid = sliding_sync_rooms.connection_nid)", conns)
            txn.execute(
                f"DELETE FROM sliding_sync_rooms WHERE connection_nid IN ({marks}) AND EXISTS"
                " (SELECT 1 FROM sliding_sync_rooms newer"
                " WHERE newer.connection_nid = sliding_sync_rooms.connection_nid"
                " AND newer.room_id = sliding_sync_rooms.room_id"
                " AND newer.pos_nid > sliding_sync_rooms.pos_nid)", conns)
        good_saves = [s for s, good in zip(saves, ok, strict=True) if good]
        for start in range(0, len(good_saves), 200):
            part = good_saves[start:start + 200]
            txn.execute(
                "INSERT INTO sliding_sync_positions"
                " (pos_nid, connection_nid, stream_pos, created_ts) VALUES "
                + ",".join(["(?, ?, ?, ?)"] * len(part)),
                [v for s in part for v in (s.pos_nid, s.connection_nid, s.stream_pos,
                                           s.now_ms)])
        out: list[int | None] = []
        rooms: list[tuple[Any, ...]] = []
        for save, good in zip(saves, ok, strict=True):
            if not good:
                out.append(None)
                continue
            out.append(save.pos_nid)
            rooms.extend((save.connection_nid, room_id, save.pos_nid, r.sent_upto,
                          r.membership, r.timeline_limit,
                          json.dumps(r.required_state, sort_keys=True),
                          json.dumps(r.lazy_members) if r.lazy_members else None)
                         for room_id, r in save.rooms)
        for start in range(0, len(rooms), 100):
            chunk = rooms[start:start + 100]
            txn.execute(
                "INSERT INTO sliding_sync_rooms (connection_nid, room_id, pos_nid, sent_upto,"
                " membership, timeline_limit, required_state, lazy_members) VALUES "
                + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                [v for row in chunk for v in row])
        return out

    async def delete_connections_older_than(self, before_ms: int) -> int:
        """Forget connections whose newest position is older than
        ``before_ms``: their clients start over (``M_UNKNOWN_POS``)."""
        return await self.db.run_interaction("sliding_sync_expire", self._expire_txn,
                                             before_ms)

    def _expire_txn(self, txn: Txn, before_ms: int) -> int:
        rows = txn.select_all(
            "SELECT c.connection_nid FROM sliding_sync_connections c"
            " WHERE c.created_ts < ? AND NOT EXISTS (SELECT 1 FROM sliding_sync_positions p"
            " WHERE p.connection_nid = c.connection_nid AND p.created_ts >= ?)",
            (before_ms, before_ms))
        for (nid,) in rows:
            self._delete_connection_txn(txn, int(nid))
        return len(rows)

    # -- the room list --------------------------------------------------------------

    async def get_room_list(self, user_id: str) -> list[ListRoom]:
        """Every room the user has a (not forgotten) membership of; the
        positions of its newest and newest bump events are left to the
        caller (``sync/recency.py``, from ``get_room_heads``)."""
        sql = (
            "SELECT r.room_id, r.room_nid, r.room_version, rm.membership, ev.event_id,"
            " rm.stream_ordering, ev.sender"
            " FROM room_memberships rm JOIN rooms r ON r.room_nid = rm.room_nid"
            " JOIN events ev ON ev.event_nid = rm.event_nid"
            " WHERE rm.user_id = ? AND rm.forgotten = 0")
        rows = await self.db.execute("sliding_sync_room_list", sql, (user_id,))
        return [ListRoom(str(room_id), int(nid), str(version), str(membership), str(event_id),
                         int(pos), str(sender), None, None)
                for room_id, nid, version, membership, event_id, pos, sender in rows]

    async def get_room_heads(self, room_nids: list[int],
                             ) -> dict[int, tuple[int | None, int | None]]:
        """Room NID -> the positions of its newest event and of its newest
        bump event (None: none), each by a backward scan of the
        ``(room_nid, stream_ordering)`` index that stops at the first match."""
        if not room_nids:
            return {}
        bump = placeholders(len(BUMP_TYPES))

        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            return select_in_txn(
                txn, "SELECT r.room_nid,"
                " (SELECT e.stream_ordering FROM events e WHERE e.room_nid = r.room_nid"
                "  AND e.stream_ordering IS NOT NULL"
                "  ORDER BY e.stream_ordering DESC LIMIT 1),"
                " (SELECT e.stream_ordering FROM events e WHERE e.room_nid = r.room_nid"
                "  AND e.stream_ordering IS NOT NULL"
                f"  AND e.outlier = 0 AND e.event_type IN ({bump})"
                "  ORDER BY e.stream_ordering DESC LIMIT 1)"
                " FROM rooms r WHERE r.room_nid IN ({})",
                room_nids, before=BUMP_TYPES)

        return {int(nid): (None if last is None else int(last),
                           None if bumped is None else int(bumped))
                for nid, last, bumped in await self.db.run_interaction(
                    "sliding_sync_room_heads", txn_fn)}

    async def read_window(self, timelines: list[tuple[int, int, int | None, int]],
                          states: list[tuple[int, int]],
                          also: Callable[[Txn, list[list[tuple[int, str]]], list[set[str]],
                                          list[dict[StateKey, str]]], T],
                          ) -> tuple[list[list[tuple[int, str]]], list[dict[StateKey, str]], T]:
        """The reads of a response's rooms in one transaction.

        ``timelines``: (room NID, from position, after position (None: from
        the start), limit): the timeline events' (position, event ID) at or
        before the first and after the second, newest first, as
        ``EventStore.get_room_events`` reads them. ``states``: (room NID,
        position): the room's state after its last event at or before the
        position as ``(type, state_key) -> event ID``, as
        ``EventStore.get_snapshot_at_stream`` with
        ``StateStore.get_snapshot_ids``. The answers in the order asked, and
        what ``also(txn, pages, people, states)`` read in the same transaction
        (``people``: per timeline, the senders of the rows read and the
        targets of their member events; ``states`` as answered)."""
        def txn_fn(txn: Txn) -> tuple[list[list[tuple[int, str]]],
                                      list[dict[StateKey, str]], T]:
            # one statement per 100 rooms for each kind: a UNION ALL of one
            # index scan per room (each with its own order and limit)
            pages: list[list[tuple[int, str]]] = [[] for _ in timelines]
            people: list[set[str]] = [set() for _ in timelines]
            for first in range(0, len(timelines), 100):
                part = timelines[first:first + 100]
                sql = " UNION ALL ".join(
                    f"SELECT * FROM (SELECT {first + k} AS k, stream_ordering, event_id,"
                    " sender, event_type, state_key"
                    " FROM events WHERE room_nid = ? AND outlier = 0"
                    " AND stream_ordering <= ? AND stream_ordering > ?"
                    f" ORDER BY stream_ordering DESC LIMIT ?) t{k}" for k in range(len(part)))
                for k, p, e, sender, event_type, state_key in txn.select_all(sql, [
                        v for room_nid, from_pos, to_pos, limit in part
                        for v in (room_nid, from_pos,
                                  to_pos if to_pos is not None else -(2**62), limit)]):
                    pages[int(k)].append((int(p), str(e)))
                    # the people of the timeline: senders, and member events' targets
                    people[int(k)].add(str(sender))
                    if event_type == "m.room.member" and state_key is not None:
                        people[int(k)].add(str(state_key))
            for page in pages:
                page.sort(reverse=True)
            snapshot_of: list[int | None] = [None] * len(states)
            for first in range(0, len(states), 100):
                part_s = states[first:first + 100]
                sql = " UNION ALL ".join(
                    f"SELECT * FROM (SELECT {first + k} AS k, snapshot_nid FROM events"
                    " WHERE room_nid = ? AND (outlier = 0 OR snapshot_nid IS NOT NULL)"
                    " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1)"
                    f" s{k}" for k in range(len(part_s)))
                for k, snap in txn.select_all(sql, [v for pair in part_s for v in pair]):
                    snapshot_of[int(k)] = int(snap) if snap is not None else None
            wanted = {s for s in snapshot_of if s is not None}
            snapshots = self.state.load_snapshots_txn(txn, wanted) if wanted else {}
            names = self.state.state_keys_for_nids_txn(
                txn, {n for snap in snapshots.values() for n in snap})
            ids = self.state.event_ids_for_nids_txn(
                txn, {e for snap in snapshots.values() for e in snap.values()})
            by_snapshot = {
                snap_nid: {names[n]: ids[e] for n, e in snap.items()
                           if n in names and e in ids}
                for snap_nid, snap in snapshots.items()}
            state_ids = [dict(by_snapshot.get(s, {})) if s is not None else {}
                         for s in snapshot_of]
            return pages, state_ids, also(txn, pages, people, state_ids)

        return await self.db.run_interaction("sliding_sync_window", txn_fn)

    @staticmethod
    def replaced_state_txn(txn: Txn, event_ids: list[str]) -> dict[str, str]:
        """For state events: event ID -> the ID of the state event it
        replaced, if any (``EventStore.get_replaced_state``'s read)."""
        return {str(e): str(o) for e, o in select_in_txn(
            txn, "SELECT ev.event_id, old.event_id FROM events ev"
            " JOIN events old ON old.event_nid = ev.replaces_nid"
            " WHERE ev.event_id IN ({})", event_ids)}

    async def get_heroes_many(self, room_nids: list[int], user_id: str,
                              limit: int = 5) -> dict[int, list[str]]:
        """``SyncStore.get_heroes`` of several rooms in one transaction."""
        if not room_nids:
            return {}
        return await self.db.run_interaction("sliding_sync_heroes", self.heroes_many_txn,
                                             room_nids, user_id, limit)

    @staticmethod
    def heroes_many_txn(txn: Txn, room_nids: list[int], user_id: str,
                        limit: int = 5) -> dict[int, list[str]]:
        """``get_heroes_many`` in a transaction under way."""
        return {nid: pick_heroes([(str(u), str(m)) for u, m in txn.select_all(
            "SELECT user_id, membership FROM room_memberships WHERE room_nid = ?"
            f" AND user_id <> ? ORDER BY stream_ordering LIMIT {HERO_CANDIDATES}",
            (nid, user_id))], user_id, limit) for nid in room_nids}

    async def get_membership_changes(self, room_nids: list[int], since: int,
                                     until: int) -> dict[str, str]:
        """Whose membership changed in ``room_nids`` in (since, until]: user
        ID -> their newest membership there (the e2ee extension's device
        lists: whom to start and stop tracking)."""
        if not room_nids or until <= since:
            return {}

        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            return select_in_txn(
                txn, "SELECT state_key, json, stream_ordering FROM events"
                " WHERE stream_ordering > ? AND stream_ordering <= ?"
                " AND event_type = 'm.room.member' AND outlier = 0"
                " AND rejected_reason IS NULL AND room_nid IN ({})",
                room_nids, before=(since, until))

        newest: dict[str, tuple[int, str]] = {}
        for state_key, raw, pos in await self.db.run_interaction(
                "sliding_sync_member_changes", txn_fn):
            membership = (json.loads(raw).get("content") or {}).get("membership")
            if isinstance(membership, str) and (
                    state_key not in newest or newest[state_key][0] < int(pos)):
                newest[str(state_key)] = (int(pos), membership)
        return {user: m for user, (_, m) in newest.items()}

    async def get_current_state_contents(
            self, room_nids: list[int], event_types: Iterable[str],
    ) -> dict[int, dict[str, dict[str, Any]]]:
        """Room NID -> event type -> content of the current state events
        ``(type, "")`` of those types (a room's name, create, encryption)."""
        types = list(event_types)
        if not room_nids or not types:
            return {}

        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            return select_in_txn(
                txn, "SELECT cs.room_nid, sk.event_type, ev.json FROM current_state cs"
                " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
                " JOIN events ev ON ev.event_nid = cs.event_nid"
                " WHERE cs.room_nid IN ({}) AND sk.state_key = ''"
                f" AND sk.event_type IN ({placeholders(len(types))})",
                room_nids, after=types)

        out: dict[int, dict[str, dict[str, Any]]] = {}
        for nid, event_type, raw in await self.db.run_interaction("sliding_sync_state",
                                                                  txn_fn):
            content = json.loads(raw).get("content")
            if isinstance(content, dict):
                out.setdefault(int(nid), {})[str(event_type)] = content
        return out

    async def get_space_children(self, room_nids: list[int]) -> set[str]:
        """The room IDs that the spaces ``room_nids`` name as children
        (``m.space.child`` with a non-empty ``via``) in their current state."""
        if not room_nids:
            return set()

        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            return select_in_txn(
                txn, "SELECT sk.state_key, ev.json FROM current_state cs"
                " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
                " JOIN events ev ON ev.event_nid = cs.event_nid"
                " WHERE cs.room_nid IN ({}) AND sk.event_type = ?",
                room_nids, after=("m.space.child",))

        out = set()
        for state_key, raw in await self.db.run_interaction("sliding_sync_spaces", txn_fn):
            via = (json.loads(raw).get("content") or {}).get("via")
            if isinstance(via, list) and via:
                out.add(str(state_key))
        return out
