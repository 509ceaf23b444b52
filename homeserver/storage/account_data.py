"""Account data: per-user JSON objects, global or per room, keyed by type.

Global account data is stored with ``room_id = ''``. Content is stored as
ASCII-only JSON, so no string a client sends (lone surrogates, NUL) can upset
either engine's text column. Each write takes a
position from the global stream (``storage/streams.py``) so /sync can send
a user what changed since its last position.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.streams import ONLY_USER, next_stream_id_txn

# The room_id column's value for account data that belongs to no room.
GLOBAL_ROOM = ""


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def put_account_data_txn(txn: Txn, user_id: str, room_id: str, data_type: str,
                             content: dict[str, Any]) -> int:
        """Store (or replace) one item; returns its new stream position."""
        stream_id = next_stream_id_txn(txn)
        txn.add_scope(stream_id, ONLY_USER, user_id)
        txn.execute(
            "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, room_id, data_type)"
            " DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
            (user_id, room_id, data_type, json.dumps(content), stream_id))
        return stream_id

    async def put_global_account_data(self, user_id: str, data_type: str,
                                      content: dict[str, Any]) -> int:
        return await self.db.run_interaction("put_global_account_data",
                                             self.put_account_data_txn, user_id, GLOBAL_ROOM,
                                             data_type, content)

    async def put_room_account_data(self, user_id: str, room_id: str, data_type: str,
                                    content: dict[str, Any]) -> int:
        return await self.db.run_interaction("put_room_account_data",
                                             self.put_account_data_txn, user_id, room_id,
                                             data_type, content)

    async def _get(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        rows = await self.db.execute(
            "get_account_data",
            "SELECT content FROM account_data"
            " WHERE user_id = ? AND room_id = ? AND data_type = ?",
            (user_id, room_id, data_type))
        if not rows:
            return None
        content: dict[str, Any] = json.loads(rows[0][0])
        return content

    async def get_global_account_data(self, user_id: str,
                                      data_type: str) -> dict[str, Any] | None:
        return await self._get(user_id, GLOBAL_ROOM, data_type)

    async def get_room_account_data(self, user_id: str, room_id: str,
                                    data_type: str) -> dict[str, Any] | None:
        return await self._get(user_id, room_id, data_type)

    @staticmethod
    def get_account_data_since_txn(
            txn: Txn, user_id: str, since_stream_id: int, until_stream_id: int | None = None,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
        """What changed after ``since_stream_id`` (0: everything) and up to
        ``until_stream_id``, for /sync.

        Returns (global type -> content, room id -> type -> content).
        """
        rows = txn.select_all(
            "SELECT room_id, data_type, content FROM account_data"
            " WHERE user_id = ? AND stream_id > ? AND stream_id <= ?",
            (user_id, since_stream_id,
             until_stream_id if until_stream_id is not None else 2**62))
        global_data: dict[str, dict[str, Any]] = {}
        by_room: dict[str, dict[str, dict[str, Any]]] = {}
        for room_id, data_type, content in rows:
            if room_id == GLOBAL_ROOM:
                global_data[data_type] = json.loads(content)
            else:
                by_room.setdefault(room_id, {})[data_type] = json.loads(content)
        return global_data, by_room

    async def get_account_data_since(
            self, user_id: str, since_stream_id: int, until_stream_id: int | None = None,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
        return await self.db.run_interaction(
            "get_account_data_since", self.get_account_data_since_txn, user_id,
            since_stream_id, until_stream_id)
