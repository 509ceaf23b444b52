"""Room aliases and the published room directory.

- ``room_aliases``: this server's aliases, ``#localpart:our.server`` -> room,
  with the user who created each (who may always delete it). Aliases of
  other servers are never stored: they are resolved over federation.
- ``room_directory``: the rooms published in this server's room directory; a
  row means "public", no row "private".

Both refer to rooms by NID (``rooms.room_nid``). The public room list reads
the joined-member counts and the few state events it shows from the room
tables (``room_memberships``, ``current_state``) in two queries, whatever the
number of rooms; the filtering and ordering happen in ``rooms/directory.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import placeholders, select_in_txn


@dataclass(frozen=True)
class AliasMapping:
    room_alias: str
    room_id: str
    creator: str


@dataclass(frozen=True)
class PublishedRoom:
    room_id: str
    room_nid: int
    room_version: str
    num_joined_members: int



class DirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- aliases -----------------------------------------------------------

    async def create_alias(self, room_alias: str, room_nid: int, creator: str,
                           now_ms: int) -> bool:
        """Point ``room_alias`` at the room; False if the alias is taken."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "INSERT INTO room_aliases (room_alias, room_nid, creator, created_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (room_alias) DO NOTHING",
                (room_alias, room_nid, creator, now_ms))
            return txn.rowcount == 1

        return await self.db.run_interaction("create_alias", txn_fn)

    async def get_alias(self, room_alias: str) -> AliasMapping | None:
        rows = await self.db.execute(
            "get_alias",
            "SELECT r.room_id, a.creator FROM room_aliases a"
            " JOIN rooms r ON r.room_nid = a.room_nid WHERE a.room_alias = ?",
            (room_alias,))
        if not rows:
            return None
        room_id, creator = rows[0]
        return AliasMapping(room_alias, room_id, creator)

    async def delete_alias(self, room_alias: str) -> str | None:
        """Remove ``room_alias``; returns the room ID it pointed to, if it existed."""
        def txn_fn(txn: Txn) -> str | None:
            room_id = txn.select_value(
                "SELECT r.room_id FROM room_aliases a JOIN rooms r ON r.room_nid = a.room_nid"
                " WHERE a.room_alias = ?", (room_alias,))
            if room_id is None:
                return None
            txn.execute("DELETE FROM room_aliases WHERE room_alias = ?", (room_alias,))
            return str(room_id)

        return await self.db.run_interaction("delete_alias", txn_fn)

    async def get_aliases_for_room(self, room_nid: int) -> list[str]:
        rows = await self.db.execute(
            "get_aliases_for_room",
            "SELECT room_alias FROM room_aliases WHERE room_nid = ?"
            " ORDER BY created_ts, room_alias", (room_nid,))
        return [r[0] for r in rows]

    async def move_aliases(self, old_room_nid: int, new_room_nid: int) -> int:
        """Point every alias of one room at another (their creators kept);
        returns how many moved."""
        def txn_fn(txn: Txn) -> int:
            txn.execute("UPDATE room_aliases SET room_nid = ? WHERE room_nid = ?",
                        (new_room_nid, old_room_nid))
            return txn.rowcount

        return await self.db.run_interaction("move_aliases", txn_fn)

    # -- the published room directory --------------------------------------

    async def set_room_public(self, room_nid: int, public: bool, now_ms: int) -> None:
        if public:
            await self.db.execute(
                "publish_room",
                "INSERT INTO room_directory (room_nid, published_ts) VALUES (?, ?)"
                " ON CONFLICT (room_nid) DO NOTHING", (room_nid, now_ms))
        else:
            await self.db.execute("unpublish_room",
                                  "DELETE FROM room_directory WHERE room_nid = ?", (room_nid,))

    async def is_room_public(self, room_nid: int) -> bool:
        rows = await self.db.execute(
            "is_room_public", "SELECT 1 FROM room_directory WHERE room_nid = ?", (room_nid,))
        return bool(rows)

    async def get_published_rooms(self) -> list[PublishedRoom]:
        """Every published room with its number of joined members."""
        rows = await self.db.execute(
            "get_published_rooms",
            "SELECT r.room_id, r.room_nid, r.room_version,"
            " (SELECT COUNT(*) FROM room_memberships rm"
            "  WHERE rm.room_nid = d.room_nid AND rm.membership = ?)"
            " FROM room_directory d JOIN rooms r ON r.room_nid = d.room_nid",
            ("join",))
        return [PublishedRoom(room_id, int(nid), version, int(joined))
                for room_id, nid, version, joined in rows]

    async def get_current_state_ids_for_rooms(
            self, room_nids: Iterable[int], event_types: Iterable[str],
    ) -> dict[int, dict[str, str]]:
        """room NID -> event type -> event ID of the rooms' current state
        events of ``event_types`` with the empty state key."""
        nids = list(room_nids)
        types = list(event_types)
        if not nids or not types:
            return {}

        def txn_fn(txn: Txn) -> dict[int, dict[str, str]]:
            out: dict[int, dict[str, str]] = {}
            for nid, event_type, event_id in select_in_txn(
                    txn, "SELECT cs.room_nid, sk.event_type, ev.event_id FROM current_state cs"
                    " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
                    " JOIN events ev ON ev.event_nid = cs.event_nid WHERE cs.room_nid IN ({})"
                    f" AND sk.state_key = ? AND sk.event_type IN ({placeholders(len(types))})",
                    nids, after=("", *types)):
                out.setdefault(int(nid), {})[event_type] = event_id
            return out

        return await self.db.run_interaction("get_current_state_ids_for_rooms", txn_fn)
