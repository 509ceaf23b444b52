"""Server-side key backups: versions and the megolm sessions backed up in them.

A user has any number of backup versions, numbered 1, 2, ... per user; the
highest one not deleted is the current one, the only one that takes new
keys. A deleted version keeps its row (``deleted = 1``, keys gone) so its
number is never handed out again: a client holding an old number must get
"wrong version", not someone else's backup.

Each version has an ``etag``, an integer bumped in the same transaction as
every change to its keys, so a client can tell whether anything changed
since it last looked.

Writes of keys run ``put_keys_txn`` with a ``should_replace`` predicate (the
spec's "keep the better key" rule, which lives in e2e/backup.py): the check
of the current version, the comparison with what is stored and the write are
one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: Any  # any JSON value, as the client sent it
    etag: int
    count: int


@dataclass(frozen=True)
class RoomKey:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: Any  # any JSON value, as the client sent it

    def to_client(self) -> dict[str, Any]:
        return {"first_message_index": self.first_message_index,
                "forwarded_count": self.forwarded_count,
                "is_verified": self.is_verified, "session_data": self.session_data}


# (room ID, session ID, key)
KeyRow = tuple[str, str, RoomKey]


class WrongVersion(Exception):
    """Keys for a version that is not the current one; ``current`` is the
    current version (None: the user has no backup)."""

    def __init__(self, current: int | None) -> None:
        super().__init__(f"current backup version is {current}")
        self.current = current


class KeyBackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions --------------------------------------------------------------

    @staticmethod
    def current_version_txn(txn: Txn, user_id: str) -> int | None:
        value = txn.select_value(
            "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = ? AND deleted = 0",
            (user_id,))
        return int(value) if value is not None else None

    @staticmethod
    def get_version_txn(txn: Txn, user_id: str, version: int | None) -> BackupVersion | None:
        """One live version (None: the current one), with its key count."""
        if version is None:
            version = KeyBackupStore.current_version_txn(txn, user_id)
            if version is None:
                return None
        row = txn.select_one(
            "SELECT algorithm, auth_data, etag FROM e2e_room_keys_versions"
            " WHERE user_id = ? AND version = ? AND deleted = 0", (user_id, version))
        if row is None:
            return None
        count = txn.select_value(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?",
            (user_id, version))
        return BackupVersion(version, row[0], json.loads(row[1]), int(row[2]), int(count))

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion | None:
        return await self.db.run_interaction("get_backup_version", self.get_version_txn,
                                             user_id, version)

    async def create_version(self, user_id: str, algorithm: str,
                             auth_data: Any) -> int:
        def txn_fn(txn: Txn) -> int:
            last = txn.select_value(
                "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = ?", (user_id,))
            version = int(last or 0) + 1
            txn.execute(
                "INSERT INTO e2e_room_keys_versions"
                " (user_id, version, algorithm, auth_data, etag, deleted)"
                " VALUES (?, ?, ?, ?, 0, 0)",
                (user_id, version, algorithm, json.dumps(auth_data)))
            return version
        return await self.db.run_interaction("create_backup_version", txn_fn)

    async def update_auth_data(self, user_id: str, version: int,
                               auth_data: Any) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE e2e_room_keys_versions SET auth_data = ?"
                        " WHERE user_id = ? AND version = ? AND deleted = 0",
                        (json.dumps(auth_data), user_id, version))
            return txn.rowcount > 0
        return await self.db.run_interaction("update_backup_auth_data", txn_fn)

    async def delete_version(self, user_id: str, version: int | None) -> bool:
        """Delete a version (None: the current one) and its keys."""
        def txn_fn(txn: Txn) -> bool:
            v = version if version is not None else \
                KeyBackupStore.current_version_txn(txn, user_id)
            if v is None:
                return False
            txn.execute("UPDATE e2e_room_keys_versions SET deleted = 1"
                        " WHERE user_id = ? AND version = ? AND deleted = 0", (user_id, v))
            if txn.rowcount == 0:
                return False
            txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?",
                        (user_id, v))
            return True
        return await self.db.run_interaction("delete_backup_version", txn_fn)

    # -- keys --------------------------------------------------------------------

    async def get_keys(self, user_id: str, version: int, room_id: str | None = None,
                       session_id: str | None = None) -> list[KeyRow]:
        sql = ("SELECT room_id, session_id, first_message_index, forwarded_count,"
               " is_verified, session_data FROM e2e_room_keys"
               " WHERE user_id = ? AND version = ?")
        params: list[Any] = [user_id, version]
        if room_id is not None:
            sql += " AND room_id = ?"
            params.append(room_id)
            if session_id is not None:
                sql += " AND session_id = ?"
                params.append(session_id)
        rows = await self.db.execute("get_backup_keys", sql, params)
        return [(r[0], r[1], RoomKey(int(r[2]), int(r[3]), bool(r[4]), json.loads(r[5])))
                for r in rows]

    @staticmethod
    def _bump_etag_txn(txn: Txn, user_id: str, version: int) -> None:
        txn.execute("UPDATE e2e_room_keys_versions SET etag = etag + 1"
                    " WHERE user_id = ? AND version = ?", (user_id, version))

    async def put_keys(self, user_id: str, version: int, keys: list[KeyRow],
                       should_replace: Callable[[RoomKey, RoomKey], bool]
                       ) -> BackupVersion:
        """Store keys in ``version`` if it is the current one (else
        WrongVersion), each replacing a stored key only when
        ``should_replace(stored, new)``; returns the version's new etag and
        count."""
        def txn_fn(txn: Txn) -> BackupVersion:
            current = KeyBackupStore.current_version_txn(txn, user_id)
            if current != version:
                raise WrongVersion(current)
            changed = False
            for room_id, session_id, key in keys:
                row = txn.select_one(
                    "SELECT first_message_index, forwarded_count, is_verified, session_data"
                    " FROM e2e_room_keys WHERE user_id = ? AND version = ? AND room_id = ?"
                    " AND session_id = ?", (user_id, version, room_id, session_id))
                values = (key.first_message_index, key.forwarded_count,
                          1 if key.is_verified else 0, json.dumps(key.session_data))
                if row is None:
                    txn.execute(
                        "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id,"
                        " first_message_index, forwarded_count, is_verified, session_data)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (user_id, version, room_id, session_id, *values))
                    changed = True
                    continue
                stored = RoomKey(int(row[0]), int(row[1]), bool(row[2]), json.loads(row[3]))
                if should_replace(stored, key):
                    txn.execute(
                        "UPDATE e2e_room_keys SET first_message_index = ?,"
                        " forwarded_count = ?, is_verified = ?, session_data = ?"
                        " WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?",
                        (*values, user_id, version, room_id, session_id))
                    changed = True
            if changed:
                KeyBackupStore._bump_etag_txn(txn, user_id, version)
            info = KeyBackupStore.get_version_txn(txn, user_id, version)
            assert info is not None
            return info
        return await self.db.run_interaction("put_backup_keys", txn_fn)

    async def delete_keys(self, user_id: str, version: int, room_id: str | None = None,
                          session_id: str | None = None) -> BackupVersion | None:
        """Delete keys of a live version; its new etag and count (None: no
        such version)."""
        def txn_fn(txn: Txn) -> BackupVersion | None:
            if KeyBackupStore.get_version_txn(txn, user_id, version) is None:
                return None
            sql = "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?"
            params: list[Any] = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                params.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    params.append(session_id)
            txn.execute(sql, params)
            if txn.rowcount > 0:
                KeyBackupStore._bump_etag_txn(txn, user_id, version)
            return KeyBackupStore.get_version_txn(txn, user_id, version)
        return await self.db.run_interaction("delete_backup_keys", txn_fn)
