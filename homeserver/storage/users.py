"""User accounts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import select_in


class UserExists(Exception):
    pass


@dataclass(frozen=True)
class UserInfo:
    user_id: str
    password_hash: str | None
    creation_ts: int
    admin: bool
    is_guest: bool
    deactivated: bool
    user_type: str | None


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def get_user_txn(txn: Txn, user_id: str) -> UserInfo | None:
        row = txn.select_one(
            "SELECT user_id, password_hash, creation_ts, admin, is_guest, deactivated, user_type"
            " FROM users WHERE user_id = ?", (user_id,))
        if row is None:
            return None
        return UserInfo(row[0], row[1], row[2], bool(row[3]), bool(row[4]), bool(row[5]),
                        row[6])

    async def get_user(self, user_id: str) -> UserInfo | None:
        return await self.db.run_interaction("get_user", self.get_user_txn, user_id)

    async def get_user_case_insensitive(self, user_id: str) -> list[str]:
        """Users whose ID matches ``user_id`` ignoring case (for login lookups)."""
        rows = await self.db.execute("get_user_ci",
                                     "SELECT user_id FROM users WHERE lower(user_id) = lower(?)",
                                     (user_id,))
        return [r[0] for r in rows]

    @staticmethod
    def create_user_txn(txn: Txn, user_id: str, password_hash: str | None, now_ms: int,
                        admin: bool = False, is_guest: bool = False,
                        user_type: str | None = None, displayname: str | None = None) -> None:
        """Create the account and its profile (display name: ``displayname`` or the
        localpart); ``UserExists`` when the ID is taken, ignoring case."""
        exists = txn.select_one("SELECT 1 FROM users WHERE lower(user_id) = lower(?)",
                                (user_id,))
        if exists is not None:
            raise UserExists(user_id)
        # ON CONFLICT: a concurrent registration of the same ID must end in
        # UserExists (PostgreSQL retries this as a serialization failure and
        # the SELECT above then sees the row), not in an integrity error.
        txn.execute(
            "INSERT INTO users (user_id, password_hash, creation_ts, admin, is_guest,"
            " deactivated, user_type) VALUES (?, ?, ?, ?, ?, 0, ?)"
            " ON CONFLICT (user_id) DO NOTHING",
            (user_id, password_hash, now_ms, int(admin), int(is_guest), user_type))
        if txn.rowcount == 0:
            raise UserExists(user_id)
        localpart = user_id[1:].split(":", 1)[0]
        txn.execute("INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?, ?, NULL)",
                    (user_id, displayname or localpart))

    @staticmethod
    def next_numeric_localpart_txn(txn: Txn, server_name: str) -> str:
        """The next free all-digits localpart, for registrations that name none."""
        if txn.engine == "postgres":
            rows = txn.select_all("SELECT user_id FROM users WHERE user_id ~ '^@[0-9]+:'")
        else:
            rows = txn.select_all("SELECT user_id FROM users WHERE user_id GLOB '@[0-9]*:*'")
        highest = 0
        for (user_id,) in rows:
            localpart = user_id[1:].split(":", 1)[0]
            if localpart.isdigit() and len(localpart) < 19:
                highest = max(highest, int(localpart))
        candidate = highest + 1
        while txn.select_one("SELECT 1 FROM users WHERE user_id = ?",
                             (f"@{candidate}:{server_name}",)) is not None:
            candidate += 1
        return str(candidate)

    @staticmethod
    def set_password_hash_txn(txn: Txn, user_id: str, password_hash: str | None) -> None:
        txn.execute("UPDATE users SET password_hash = ? WHERE user_id = ?",
                    (password_hash, user_id))

    @staticmethod
    def upgrade_guest_txn(txn: Txn, user_id: str, password_hash: str) -> bool:
        """Make the guest account ``user_id`` a full one with this password;
        False when it is not (or no longer) a guest."""
        txn.execute("UPDATE users SET password_hash = ?, is_guest = 0"
                    " WHERE user_id = ? AND is_guest = 1", (password_hash, user_id))
        if txn.rowcount == 0:
            return False
        # the cached rows of the guest's tokens still say "guest"
        txn.note_tokens_changed()
        return True

    @staticmethod
    def mark_deactivated_txn(txn: Txn, user_id: str) -> None:
        """Deactivate the account: no password, flagged; the row stays so the ID
        is never handed out again."""
        txn.execute("UPDATE users SET password_hash = NULL, deactivated = 1 WHERE user_id = ?",
                    (user_id,))

    @staticmethod
    def mark_erased_txn(txn: Txn, user_id: str) -> None:
        """The user asked for their messages to be erased (deactivation with
        ``erase``)."""
        txn.execute("INSERT INTO erased_users (user_id) VALUES (?) ON CONFLICT DO NOTHING",
                    (user_id,))

    async def get_erased(self, user_ids: Iterable[str]) -> set[str]:
        """Those of ``user_ids`` who asked for their messages to be erased."""
        wanted = sorted(set(user_ids))
        if not wanted:
            return set()
        rows = await select_in(self.db, "get_erased_users",
                               "SELECT user_id FROM erased_users WHERE user_id IN ({})", wanted)
        return {str(r[0]) for r in rows}

    async def is_user_id_taken(self, user_id: str) -> bool:
        rows = await self.db.execute("is_user_id_taken",
                                     "SELECT 1 FROM users WHERE lower(user_id) = lower(?)",
                                     (user_id,))
        return bool(rows)

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        await self.db.execute("set_password_hash",
                              "UPDATE users SET password_hash = ? WHERE user_id = ?",
                              (password_hash, user_id))

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self.db.execute("set_admin", "UPDATE users SET admin = ? WHERE user_id = ?",
                              (int(admin), user_id))

    async def set_user_type(self, user_id: str, user_type: str | None) -> None:
        await self.db.execute("set_user_type", "UPDATE users SET user_type = ? WHERE user_id = ?",
                              (user_type, user_id))

    async def reactivate(self, user_id: str) -> None:
        """Undo a deactivation (an admin's call): the account may log in again once
        it has a password; an erasure stays."""
        await self.db.execute("reactivate_user",
                              "UPDATE users SET deactivated = 0 WHERE user_id = ?", (user_id,))

    async def count_users(self) -> int:
        rows = await self.db.execute("count_users", "SELECT COUNT(*) FROM users")
        return int(rows[0][0])
