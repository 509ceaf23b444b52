"""Third-party identifiers (migration 0025): the addresses attached to
accounts, the identity-server bindings this server made for them, and the
validation sessions of ``/requestToken``.

An address belongs to one account at most (``(medium, address)`` is the
key). A binding row says "we asked identity server X to bind this address to
this user", so deleting the address or deactivating the account knows whom
to ask to undo it. A validation session keeps only the SHA-256 of the token
it mailed out, as access tokens are kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Threepid:
    medium: str
    address: str
    validated_at: int
    added_at: int


@dataclass(frozen=True)
class ValidationSession:
    session_id: str
    medium: str
    address: str
    client_secret: str
    last_send_attempt: int
    validated_at: int | None


_SESSION_COLUMNS = ("session_id, medium, address, client_secret, last_send_attempt, "
                    "validated_at")


def _session(row: tuple[Any, ...]) -> ValidationSession:
    return ValidationSession(str(row[0]), str(row[1]), str(row[2]), str(row[3]),
                             int(row[4]), None if row[5] is None else int(row[5]))


class ThreepidStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- addresses of accounts ------------------------------------------------

    async def get_threepids(self, user_id: str) -> list[Threepid]:
        rows = await self.db.execute(
            "get_threepids",
            "SELECT medium, address, validated_at, added_at FROM user_threepids"
            " WHERE user_id = ? ORDER BY added_at, medium, address", (user_id,))
        return [Threepid(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

    async def get_user_by_threepid(self, medium: str, address: str) -> str | None:
        rows = await self.db.execute(
            "get_user_by_threepid",
            "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?",
            (medium, address))
        return str(rows[0][0]) if rows else None

    async def add_threepid(self, user_id: str, medium: str, address: str,
                           validated_at: int, now_ms: int) -> bool:
        """Attach the address to the account; False if another account has it."""
        def txn_fn(txn: Txn) -> bool:
            owner = txn.select_value(
                "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?",
                (medium, address))
            if owner is not None:
                return bool(owner == user_id)
            txn.execute("INSERT INTO user_threepids (medium, address, user_id, validated_at,"
                        " added_at) VALUES (?, ?, ?, ?, ?)",
                        (medium, address, user_id, validated_at, now_ms))
            return True
        return await self.db.run_interaction("add_threepid", txn_fn)

    async def delete_threepid(self, user_id: str, medium: str, address: str) -> None:
        await self.db.execute(
            "delete_threepid",
            "DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?",
            (user_id, medium, address))

    async def delete_all_threepids(self, user_id: str) -> None:
        await self.db.execute("delete_all_threepids",
                              "DELETE FROM user_threepids WHERE user_id = ?", (user_id,))

    # -- identity-server bindings ---------------------------------------------

    async def add_binding(self, user_id: str, medium: str, address: str,
                          id_server: str) -> None:
        def txn_fn(txn: Txn) -> None:
            exists = txn.select_one(
                "SELECT 1 FROM user_threepid_id_server WHERE user_id = ? AND medium = ?"
                " AND address = ? AND id_server = ?", (user_id, medium, address, id_server))
            if exists is None:
                txn.execute("INSERT INTO user_threepid_id_server (user_id, medium, address,"
                            " id_server) VALUES (?, ?, ?, ?)",
                            (user_id, medium, address, id_server))
        await self.db.run_interaction("add_threepid_binding", txn_fn)

    async def get_binding_servers(self, user_id: str, medium: str, address: str) -> list[str]:
        rows = await self.db.execute(
            "get_threepid_binding_servers",
            "SELECT id_server FROM user_threepid_id_server WHERE user_id = ? AND medium = ?"
            " AND address = ? ORDER BY id_server", (user_id, medium, address))
        return [str(r[0]) for r in rows]

    async def get_bindings(self, user_id: str) -> list[tuple[str, str, str]]:
        """Every (medium, address, id_server) bound for the user."""
        rows = await self.db.execute(
            "get_threepid_bindings",
            "SELECT medium, address, id_server FROM user_threepid_id_server"
            " WHERE user_id = ? ORDER BY medium, address, id_server", (user_id,))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def remove_binding(self, user_id: str, medium: str, address: str,
                             id_server: str) -> None:
        await self.db.execute(
            "remove_threepid_binding",
            "DELETE FROM user_threepid_id_server WHERE user_id = ? AND medium = ?"
            " AND address = ? AND id_server = ?", (user_id, medium, address, id_server))

    # -- validation sessions --------------------------------------------------

    async def get_session_by_secret(self, client_secret: str, medium: str,
                                    address: str) -> ValidationSession | None:
        rows = await self.db.execute(
            "get_threepid_session_by_secret",
            f"SELECT {_SESSION_COLUMNS} FROM threepid_validation_sessions"
            " WHERE client_secret = ? AND medium = ? AND address = ?",
            (client_secret, medium, address))
        return _session(rows[0]) if rows else None

    async def get_session(self, session_id: str, client_secret: str) -> ValidationSession | None:
        rows = await self.db.execute(
            "get_threepid_session",
            f"SELECT {_SESSION_COLUMNS} FROM threepid_validation_sessions"
            " WHERE session_id = ? AND client_secret = ?", (session_id, client_secret))
        return _session(rows[0]) if rows else None

    async def upsert_session(self, session_id: str, medium: str, address: str,
                             client_secret: str, send_attempt: int, token: str,
                             token_expires_ts: int, next_link: str | None) -> None:
        """A new session, or a new token for the session of this secret."""
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM threepid_validation_sessions WHERE session_id = ?",
                        (session_id,))
            txn.execute("INSERT INTO threepid_validation_sessions (session_id, medium, address,"
                        " client_secret, last_send_attempt, token_hash, token_expires_ts,"
                        " next_link, validated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                        (session_id, medium, address, client_secret, send_attempt,
                         hash_token(token), token_expires_ts, next_link))
        await self.db.run_interaction("upsert_threepid_session", txn_fn)

    async def validate_session(self, session_id: str, client_secret: str, token: str,
                               now_ms: int) -> str | None | bool:
        """Mark the session validated if ``token`` is its token and still
        fresh. Returns its next_link (None if it has none) on success, False
        otherwise."""
        def txn_fn(txn: Txn) -> str | None | bool:
            row = txn.select_one(
                "SELECT token_hash, token_expires_ts, next_link, validated_at"
                " FROM threepid_validation_sessions WHERE session_id = ? AND client_secret = ?",
                (session_id, client_secret))
            if row is None or row[0] != hash_token(token):
                return False
            if row[3] is None:
                if int(row[1]) < now_ms:
                    return False
                txn.execute("UPDATE threepid_validation_sessions SET validated_at = ?"
                            " WHERE session_id = ?", (now_ms, session_id))
            return None if row[2] is None else str(row[2])
        return await self.db.run_interaction("validate_threepid_session", txn_fn)
