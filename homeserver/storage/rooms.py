"""Rooms: the room table, current state, forward extremities and memberships.

- ``rooms`` interns room IDs to NIDs and keeps each room's version and the
  snapshot of its current state;
- ``current_state`` is the room's state now, (room, state key) -> event, for
  fast reads; it always equals the room's current snapshot;
- ``room_memberships`` is every user's latest membership of every room: it
  answers "which rooms is this user in" and "who is joined here";
- ``forward_extremities``: the events no other event of the room follows,
  the prev_events of the next event;
- ``event_txn_ids``: the client transaction IDs of sent events.

The writes happen in ``EventStore.persist_event`` (one transaction per
event); this store holds the ``_txn`` pieces it calls and the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, select_in, select_in_txn
from homeserver.storage.state import StateKey
from homeserver.storage.streams import ONLY_USER, next_stream_id_txn


def shares_joined_room_sql(other_user_column: str) -> str:
    """A condition: ``other_user_column`` is joined to a room that the user
    bound to its one ``?`` is joined to (presence, device lists)."""
    return ("EXISTS (SELECT 1 FROM room_memberships mine"
            " JOIN room_memberships theirs ON theirs.room_nid = mine.room_nid"
            f" WHERE theirs.user_id = {other_user_column} AND theirs.membership = 'join'"
            " AND mine.user_id = ? AND mine.membership = 'join')")


@dataclass(frozen=True)
class RoomInfo:
    room_nid: int
    room_id: str
    room_version: str
    creator: str | None


@dataclass(frozen=True)
class Membership:
    membership: str
    event_id: str
    event_nid: int
    stream_ordering: int
    forgotten: bool


@dataclass(frozen=True)
class Extremity:
    event_id: str
    event_nid: int
    depth: int


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # room id -> info: a room's NID, version and creator never change
        self._rooms: dict[str, RoomInfo] = {}

    # -- rooms -------------------------------------------------------------

    @staticmethod
    def create_room_txn(txn: Txn, room_id: str, room_version: str, creator: str,
                        now_ms: int) -> int:
        return int(txn.select_value(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts)"
            " VALUES (?, ?, ?, ?) RETURNING room_nid",
            (room_id, room_version, creator, now_ms)))

    async def get_room(self, room_id: str) -> RoomInfo | None:
        info = self._rooms.get(room_id)
        if info is not None:
            return info
        rows = await self.db.execute(
            "get_room", "SELECT room_nid, room_version, creator FROM rooms WHERE room_id = ?",
            (room_id,))
        if not rows:
            return None
        nid, version, creator = rows[0]
        info = RoomInfo(int(nid), room_id, version, creator)
        if len(self._rooms) > 100_000:
            self._rooms.clear()
        self._rooms[room_id] = info
        return info

    def forget_room_info(self, room_id: str) -> None:
        """The room was purged: its NID must not be served from memory."""
        self._rooms.pop(room_id, None)

    @staticmethod
    def get_current_snapshot_txn(txn: Txn, room_nid: int) -> int | None:
        value = txn.select_value("SELECT current_snapshot_nid FROM rooms WHERE room_nid = ?",
                                 (room_nid,))
        return int(value) if value is not None else None

    @staticmethod
    def get_current_snapshots_txn(txn: Txn, room_nids: Sequence[int]) -> dict[int, int]:
        """``get_current_snapshot_txn`` of several rooms (those with one)."""
        return {int(r): int(s) for r, s in select_in_txn(
            txn, "SELECT room_nid, current_snapshot_nid FROM rooms WHERE room_nid IN ({})"
            " AND current_snapshot_nid IS NOT NULL", list(dict.fromkeys(room_nids)))}

    @staticmethod
    def set_current_snapshot_txn(txn: Txn, room_nid: int, snapshot_nid: int) -> None:
        """Point the room at ``snapshot_nid`` (which keeps it from garbage
        collection while the room's state is that snapshot)."""
        txn.execute("UPDATE rooms SET current_snapshot_nid = ? WHERE room_nid = ?",
                    (snapshot_nid, room_nid))

    # -- current state -----------------------------------------------------

    @staticmethod
    def get_current_state_ids_txn(txn: Txn, room_nid: int,
                                  keys: Iterable[StateKey] | None = None,
                                  event_type: str | None = None) -> dict[StateKey, str]:
        """``(type, state_key) -> event ID`` of the room's current state,
        all of it or only ``keys`` / one ``event_type``."""
        sql = ("SELECT sk.event_type, sk.state_key, ev.event_id FROM current_state cs"
               " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
               " JOIN events ev ON ev.event_nid = cs.event_nid"
               " WHERE cs.room_nid = ?")
        params: list[object] = [room_nid]
        if keys is not None:
            wanted = list(keys)
            if not wanted:
                return {}
            sql += " AND (" + " OR ".join(
                ["(sk.event_type = ? AND sk.state_key = ?)"] * len(wanted)) + ")"
            params.extend(v for pair in wanted for v in pair)
        if event_type is not None:
            sql += " AND sk.event_type = ?"
            params.append(event_type)
        return {(t, s): e for t, s, e in txn.select_all(sql, params)}

    async def get_current_state_ids(self, room_nid: int,
                                    keys: Iterable[StateKey] | None = None,
                                    event_type: str | None = None) -> dict[StateKey, str]:
        return await self.db.run_interaction(
            "get_current_state_ids", self.get_current_state_ids_txn, room_nid,
            list(keys) if keys is not None else None, event_type)

    async def get_current_state_among(self, room_nid: int,
                                      event_ids: Iterable[str]) -> set[str]:
        """Those of ``event_ids`` that are part of the room's current state."""
        rows = await select_in(
            self.db, "get_current_state_among",
            "SELECT ev.event_id FROM current_state cs"
            " JOIN events ev ON ev.event_nid = cs.event_nid"
            " WHERE cs.room_nid = ? AND ev.event_id IN ({})",
            list(event_ids), before=(room_nid,))
        return {str(r[0]) for r in rows}

    @staticmethod
    def set_current_state_txn(txn: Txn, room_nid: int, state_key_nid: int,
                              event_nid: int) -> None:
        txn.execute(
            "INSERT INTO current_state (room_nid, state_key_nid, event_nid) VALUES (?, ?, ?)"
            " ON CONFLICT (room_nid, state_key_nid) DO UPDATE SET event_nid = excluded.event_nid",
            (room_nid, state_key_nid, event_nid))

    @staticmethod
    def get_current_state_event_nid_txn(txn: Txn, room_nid: int,
                                        state_key_nid: int) -> int | None:
        value = txn.select_value("SELECT event_nid FROM current_state"
                                 " WHERE room_nid = ? AND state_key_nid = ?",
                                 (room_nid, state_key_nid))
        return int(value) if value is not None else None

    # -- forward extremities -----------------------------------------------

    @staticmethod
    def get_forward_extremities_txn(txn: Txn, room_nid: int) -> list[Extremity]:
        rows = txn.select_all(
            "SELECT ev.event_id, ev.event_nid, ev.depth FROM forward_extremities fe"
            " JOIN events ev ON ev.event_nid = fe.event_nid WHERE fe.room_nid = ?"
            " ORDER BY ev.depth DESC, ev.event_nid DESC",
            (room_nid,))
        return [Extremity(e, int(n), int(d)) for e, n, d in rows]

    async def get_forward_extremities(self, room_nid: int) -> list[Extremity]:
        return await self.db.run_interaction("get_forward_extremities",
                                             self.get_forward_extremities_txn, room_nid)

    async def get_send_context(self, room_nid: int, keys: Iterable[StateKey],
                               txn_ids: Iterable[tuple[str, str, str]],
                               ) -> tuple[dict[tuple[str, str, str], str], dict[StateKey, str],
                                          list[Extremity]]:
        """What a batch of new events needs, in one read: the events already
        sent with any of ``txn_ids`` ((user, scope, txn ID) -> event ID), the
        current state of ``keys``, and the forward extremities."""
        wanted = list(keys)
        asked = list(dict.fromkeys(txn_ids))

        def txn_fn(txn: Txn) -> tuple[dict[tuple[str, str, str], str], dict[StateKey, str],
                                      list[Extremity]]:
            earlier: dict[tuple[str, str, str], str] = {}
            for start in range(0, len(asked), 200):
                chunk = asked[start:start + 200]
                rows = txn.select_all(
                    "SELECT t.user_id, t.scope, t.txn_id, ev.event_id FROM event_txn_ids t"
                    " JOIN events ev ON ev.event_nid = t.event_nid"
                    " WHERE t.room_nid = ? AND (t.user_id, t.scope, t.txn_id) IN ("
                    + ",".join(["(?, ?, ?)"] * len(chunk)) + ")",
                    [room_nid, *(v for key in chunk for v in key)])
                earlier.update(((u, sc, t), str(e)) for u, sc, t, e in rows)
            return (earlier, self.get_current_state_ids_txn(txn, room_nid, wanted),
                    self.get_forward_extremities_txn(txn, room_nid))

        return await self.db.run_interaction("get_send_context", txn_fn)

    @staticmethod
    def update_forward_extremities_txn(txn: Txn, room_nid: int, event_nid: int,
                                       prev_nids: Iterable[int]) -> None:
        txn.execute_many("DELETE FROM forward_extremities WHERE room_nid = ? AND event_nid = ?",
                         [(room_nid, p) for p in prev_nids])
        txn.execute("INSERT INTO forward_extremities (room_nid, event_nid) VALUES (?, ?)",
                    (room_nid, event_nid))

    @staticmethod
    def advance_forward_extremities_txn(
            txn: Txn, moves: Sequence[tuple[int, int, Sequence[int]]]) -> None:
        """``update_forward_extremities_txn`` of several rooms at once:
        (room NID, new extremity's NID, the NIDs it replaces)."""
        txn.execute_many("DELETE FROM forward_extremities WHERE room_nid = ? AND event_nid = ?",
                         [(room_nid, p) for room_nid, _, prevs in moves for p in prevs])
        for part in chunks(moves, 100):
            txn.execute("INSERT INTO forward_extremities (room_nid, event_nid) VALUES "
                        + ",".join(["(?, ?)"] * len(part)),
                        [v for room_nid, nid, _ in part for v in (room_nid, nid)])

    # -- memberships -------------------------------------------------------

    @staticmethod
    def set_membership_txn(txn: Txn, user_id: str, room_nid: int, membership: str,
                           event_nid: int, stream_ordering: int) -> None:
        txn.execute(
            "INSERT INTO room_memberships"
            " (user_id, room_nid, membership, event_nid, stream_ordering, forgotten)"
            " VALUES (?, ?, ?, ?, ?, 0)"
            " ON CONFLICT (user_id, room_nid) DO UPDATE SET membership = excluded.membership,"
            " event_nid = excluded.event_nid, stream_ordering = excluded.stream_ordering,"
            " forgotten = 0",
            (user_id, room_nid, membership, event_nid, stream_ordering))

    async def get_membership(self, user_id: str, room_nid: int) -> Membership | None:
        rows = await self.db.execute(
            "get_membership",
            "SELECT rm.membership, ev.event_id, rm.event_nid, rm.stream_ordering, rm.forgotten"
            " FROM room_memberships rm JOIN events ev ON ev.event_nid = rm.event_nid"
            " WHERE rm.user_id = ? AND rm.room_nid = ?", (user_id, room_nid))
        if not rows:
            return None
        m, eid, nid, stream, forgotten = rows[0]
        return Membership(m, eid, int(nid), int(stream), bool(forgotten))

    async def get_rooms_for_user(self, user_id: str, membership: str = "join") -> list[str]:
        rows = await self.db.execute(
            "get_rooms_for_user",
            "SELECT r.room_id FROM room_memberships rm JOIN rooms r ON r.room_nid = rm.room_nid"
            " WHERE rm.user_id = ? AND rm.membership = ? ORDER BY rm.stream_ordering",
            (user_id, membership))
        return [r[0] for r in rows]

    async def get_members(self, room_nid: int, membership: str = "join") -> list[str]:
        rows = await self.db.execute(
            "get_members",
            "SELECT user_id FROM room_memberships WHERE room_nid = ? AND membership = ?"
            " ORDER BY user_id", (room_nid, membership))
        return [r[0] for r in rows]

    async def get_memberships_of_server(self, room_nid: int,
                                        server_name: str) -> dict[str, str]:
        """user ID -> latest membership, for the users of ``server_name`` who
        have one in the room (what federation reads judge a server by)."""
        rows = await self.db.execute(
            "get_memberships_of_server",
            "SELECT user_id, membership FROM room_memberships WHERE room_nid = ?"
            " AND user_id LIKE ? ORDER BY user_id", (room_nid, "%:" + server_name))
        # LIKE treats _ as a wildcard (and ignores case on SQLite): check exactly
        return {str(u): str(m) for u, m in rows if str(u).partition(":")[2] == server_name}

    async def get_local_members(self, room_id: str, hostname: str) -> frozenset[str]:
        """The users of ``hostname`` joined to the room."""
        rows = await self.db.execute(
            "get_local_members",
            "SELECT rm.user_id FROM room_memberships rm JOIN rooms r ON r.room_nid = rm.room_nid"
            " WHERE r.room_id = ? AND rm.membership = 'join'", (room_id,))
        suffix = ":" + hostname
        return frozenset(r[0] for r in rows if r[0].endswith(suffix))

    async def get_room_mates(self, user_id: str,
                             candidates: Iterable[str] | None = None) -> set[str]:
        """The users joined to a room ``user_id`` is joined to (``user_id``
        too, when joined anywhere); only those of ``candidates`` when given."""
        base = ("SELECT DISTINCT theirs.user_id FROM room_memberships mine"
                " JOIN room_memberships theirs ON theirs.room_nid = mine.room_nid"
                " AND theirs.membership = 'join'"
                " WHERE mine.user_id = ? AND mine.membership = 'join'")
        if candidates is None:
            rows = await self.db.execute("get_room_mates", base, (user_id,))
            return {r[0] for r in rows}
        rows = await select_in(self.db, "get_room_mates", base + " AND theirs.user_id IN ({})",
                               dict.fromkeys(candidates), before=(user_id,))
        return {r[0] for r in rows}

    async def forget(self, user_id: str, room_nid: int) -> None:
        """The user forgets the room. A position of the global stream, of
        the user alone, says so: what a sync remembered of their room list
        (``sync/sliding_fast.py``) no longer holds after it."""
        def txn_fn(txn: Txn) -> None:
            txn.execute("UPDATE room_memberships SET forgotten = 1"
                        " WHERE user_id = ? AND room_nid = ?", (user_id, room_nid))
            txn.add_scope(next_stream_id_txn(txn), ONLY_USER, user_id)

        await self.db.run_interaction("forget_room", txn_fn)

    # -- client transaction IDs --------------------------------------------

    @staticmethod
    def get_txn_event_id_txn(txn: Txn, user_id: str, scope: str, room_nid: int,
                             txn_id: str) -> str | None:
        value = txn.select_value(
            "SELECT ev.event_id FROM event_txn_ids t JOIN events ev ON ev.event_nid = t.event_nid"
            " WHERE t.user_id = ? AND t.scope = ? AND t.room_nid = ? AND t.txn_id = ?",
            (user_id, scope, room_nid, txn_id))
        return str(value) if value is not None else None

    async def get_txn_event_id(self, user_id: str, scope: str, room_nid: int,
                               txn_id: str) -> str | None:
        return await self.db.run_interaction("get_txn_event_id", self.get_txn_event_id_txn,
                                             user_id, scope, room_nid, txn_id)

    @staticmethod
    def add_txn_id_txn(txn: Txn, user_id: str, scope: str, room_nid: int, txn_id: str,
                       event_nid: int, now_ms: int) -> None:
        txn.execute(
            "INSERT INTO event_txn_ids (user_id, scope, room_nid, txn_id, event_nid, created_ts)"
            " VALUES (?, ?, ?, ?, ?, ?)", (user_id, scope, room_nid, txn_id, event_nid, now_ms))

    @staticmethod
    def add_txn_ids_txn(txn: Txn, rows: Sequence[tuple[str, str, int, str, int, int]]) -> None:
        """``add_txn_id_txn`` for many events at once (a batch of messages):
        rows of (user_id, scope, room_nid, txn_id, event_nid, now_ms)."""
        for part in chunks(rows, 100):
            txn.execute(
                "INSERT INTO event_txn_ids (user_id, scope, room_nid, txn_id, event_nid,"
                " created_ts) VALUES " + ",".join(["(?, ?, ?, ?, ?, ?)"] * len(part)),
                [value for row in part for value in row])

    async def get_txn_ids_for_events(self, user_id: str, scope: str,
                                     event_ids: list[str]) -> dict[str, str]:
        """event ID -> transaction ID, for those of ``event_ids`` sent in ``scope``."""
        if not event_ids:
            return {}
        rows = await self.db.execute(
            "get_txn_ids_for_events",
            "SELECT ev.event_id, t.txn_id FROM event_txn_ids t"
            " JOIN events ev ON ev.event_nid = t.event_nid"
            f" WHERE t.user_id = ? AND t.scope = ? AND ev.event_id IN"
            f" ({','.join('?' * len(event_ids))})", [user_id, scope, *event_ids])
        return {e: t for e, t in rows}
