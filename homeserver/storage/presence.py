"""Presence: one row per user, and who may see whose presence.

A row holds the user's presence (online, unavailable, offline), status
message, last active time, ``currently_active`` flag and ``stream_id``: the
global stream position (``storage/streams.py``) of the last change a client
must hear about. /sync asks "whose presence changed in (since, until], among
the users who share a room with me": one range scan of the ``stream_id``
index, each changed row probed against ``room_memberships`` by primary key,
so the cost grows with the number of changes, not with the rooms of the
reader.

``last_active_ts`` also moves without a new position (``set_last_active``):
the handler (``edu/presence.py``) keeps it in memory and persists it at most
once a minute, since clients are told "currently active" instead of every
bump.

The "shares a room" queries read ``room_memberships`` (``storage/rooms.py``):
joined members only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.rooms import shares_joined_room_sql
from homeserver.storage.sql import select_in, select_in_txn
from homeserver.storage.streams import PRESENCE, next_stream_id_txn


@dataclass(frozen=True)
class PresenceRow:
    user_id: str
    presence: str
    status_msg: str | None
    last_active_ts: int
    currently_active: bool
    stream_id: int


_COLUMNS = "p.user_id, p.presence, p.status_msg, p.last_active_ts, p.currently_active, p.stream_id"

# The row's user shares a joined room with the reader (the second parameter).
_SHARES_ROOM = shares_joined_room_sql("p.user_id")


def _row(r: tuple[Any, ...]) -> PresenceRow:
    return PresenceRow(r[0], r[1], r[2], int(r[3] or 0), bool(r[4]), int(r[5]))


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writes ------------------------------------------------------------

    @staticmethod
    def set_presence_txn(txn: Txn, user_id: str, presence: str, status_msg: str | None,
                         last_active_ts: int, currently_active: bool) -> int:
        """Store the user's presence; returns its new stream position."""
        stream_id = next_stream_id_txn(txn)
        txn.add_scope(stream_id, PRESENCE, user_id)
        txn.execute(
            "INSERT INTO presence"
            " (user_id, presence, status_msg, last_active_ts, currently_active, stream_id)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence,"
            " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
            " currently_active = excluded.currently_active, stream_id = excluded.stream_id",
            (user_id, presence, status_msg, last_active_ts, int(currently_active), stream_id))
        return stream_id

    async def set_presence(self, user_id: str, presence: str, status_msg: str | None,
                           last_active_ts: int, currently_active: bool) -> int:
        return await self.db.run_interaction("set_presence", self.set_presence_txn, user_id,
                                             presence, status_msg, last_active_ts,
                                             currently_active)

    async def set_last_active(self, user_id: str, last_active_ts: int) -> None:
        """Move the last active time only: no new stream position (clients are
        not told about it until the next change)."""
        await self.db.execute(
            "set_last_active",
            "UPDATE presence SET last_active_ts = ? WHERE user_id = ? AND last_active_ts < ?",
            (last_active_ts, user_id, last_active_ts))

    # -- reads -------------------------------------------------------------

    async def get_presence(self, user_id: str) -> PresenceRow | None:
        rows = await self.db.execute(
            "get_presence", f"SELECT {_COLUMNS} FROM presence p WHERE p.user_id = ?",
            (user_id,))
        return _row(rows[0]) if rows else None

    async def get_presence_of(self, user_ids: list[str]) -> dict[str, PresenceRow]:
        """The rows of those of ``user_ids`` that have one."""
        rows = await select_in(self.db, "get_presence_of",
                               f"SELECT {_COLUMNS} FROM presence p WHERE p.user_id IN ({{}})",
                               user_ids)
        return {row.user_id: row for row in map(_row, rows)}

    async def get_not_offline(self, server_name: str | None) -> list[PresenceRow]:
        """The users of ``server_name`` (None: of every server) not offline (at
        start: they must time out if they do not sync, or their server does
        not speak of them, again)."""
        rows = await self.db.execute(
            "get_not_offline",
            f"SELECT {_COLUMNS} FROM presence p WHERE p.presence <> 'offline'", ())
        if server_name is None:
            return [_row(r) for r in rows]
        suffix = ":" + server_name
        return [_row(r) for r in rows if r[0].endswith(suffix)]

    async def get_presence_changes(self, user_id: str, since: int,
                                   until: int) -> list[PresenceRow]:
        """Rows changed at positions in (since, until] of ``user_id`` and of the
        users who share a joined room with them."""
        rows = await self.db.execute(
            "get_presence_changes",
            f"SELECT {_COLUMNS} FROM presence p WHERE p.stream_id > ? AND p.stream_id <= ?"
            f" AND (p.user_id = ? OR {_SHARES_ROOM}) ORDER BY p.user_id",
            (since, until, user_id, user_id))
        return [_row(r) for r in rows]

    async def get_presence_changes_of(self, user_ids: list[str], since: int | None,
                                      until: int) -> list[PresenceRow]:
        """The rows of ``user_ids`` changed at positions in (since, until]
        (``since`` None: every row up to ``until`` except offline ones
        without a status message)."""
        if not user_ids:
            return []

        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            if since is None:
                return select_in_txn(
                    txn, f"SELECT {_COLUMNS} FROM presence p WHERE p.user_id IN ({{}})"
                    " AND p.stream_id <= ?"
                    " AND (p.presence <> 'offline' OR p.status_msg IS NOT NULL)",
                    user_ids, after=(until,))
            return select_in_txn(
                txn, f"SELECT {_COLUMNS} FROM presence p WHERE p.user_id IN ({{}})"
                " AND p.stream_id > ? AND p.stream_id <= ?",
                user_ids, after=(since, until))

        rows = await self.db.run_interaction("get_presence_changes_of", txn_fn)
        return sorted((_row(r) for r in rows), key=lambda r: r.user_id)

    async def get_visible_presence(self, user_id: str, until: int) -> list[PresenceRow]:
        """For an initial sync: the rows, up to ``until``, of ``user_id`` and the
        users sharing a joined room with them, except offline rows without a
        status message."""
        rows = await self.db.execute(
            "get_visible_presence",
            f"SELECT {_COLUMNS} FROM presence p WHERE p.stream_id <= ?"
            " AND (p.presence <> 'offline' OR p.status_msg IS NOT NULL)"
            f" AND (p.user_id = ? OR {_SHARES_ROOM}) ORDER BY p.user_id",
            (until, user_id, user_id))
        return [_row(r) for r in rows]

