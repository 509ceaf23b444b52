"""Registration secrets: tokens for token-gated registration. (The nonces of
Synapse's shared-secret admin registration live in memory, in
synapse_compat/admin/register.py; the ``registration_nonces`` table is no longer used.)

A token may be limited in uses and in time. A use is ``pending`` from the moment
a registration's UIA stage accepts the token until the account is created (then
it moves to ``completed``) or the UIA session expires (then it is released), so
two people cannot both take the last use of a token.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None


# A use is available: no limit or room under it, and not expired.
_USABLE = ("(uses_allowed IS NULL OR pending + completed < uses_allowed)"
           " AND (expiry_time IS NULL OR expiry_time > ?)")


class RegistrationTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- tokens --

    async def create_token(self, token: str, uses_allowed: int | None = None,
                           expiry_time: int | None = None) -> None:
        await self.db.execute(
            "create_registration_token",
            "INSERT INTO registration_tokens (token, uses_allowed, pending, completed,"
            " expiry_time) VALUES (?, ?, 0, 0, ?)", (token, uses_allowed, expiry_time))

    async def get_token(self, token: str) -> RegistrationToken | None:
        rows = await self.db.execute(
            "get_registration_token",
            "SELECT token, uses_allowed, pending, completed, expiry_time"
            " FROM registration_tokens WHERE token = ?", (token,))
        return RegistrationToken(*rows[0]) if rows else None

    async def list_tokens(self, valid: bool | None, now_ms: int) -> list[RegistrationToken]:
        """Every token, or only those with (``valid``) or without a use left."""
        where = ""
        if valid is True:
            where = f" WHERE {_USABLE}"
        elif valid is False:
            where = f" WHERE NOT ({_USABLE})"
        rows = await self.db.execute(
            "list_registration_tokens",
            "SELECT token, uses_allowed, pending, completed, expiry_time"
            " FROM registration_tokens" + where + " ORDER BY token",
            (now_ms,) if valid is not None else ())
        return [RegistrationToken(*r) for r in rows]

    async def update_token(self, token: str, changes: dict[str, int | None]) -> bool:
        """Set ``uses_allowed`` and/or ``expiry_time``; False if no such token."""
        columns = [c for c in ("uses_allowed", "expiry_time") if c in changes]
        if not columns:
            return await self.get_token(token) is not None
        sets = ", ".join(f"{c} = ?" for c in columns)
        rows = await self.db.execute(
            "update_registration_token",
            f"UPDATE registration_tokens SET {sets} WHERE token = ? RETURNING token",
            [*(changes[c] for c in columns), token])
        return bool(rows)

    async def delete_token(self, token: str) -> bool:
        rows = await self.db.execute(
            "delete_registration_token",
            "DELETE FROM registration_tokens WHERE token = ? RETURNING token", (token,))
        return bool(rows)

    async def is_token_usable(self, token: str, now_ms: int) -> bool:
        rows = await self.db.execute(
            "registration_token_is_usable",
            f"SELECT 1 FROM registration_tokens WHERE token = ? AND {_USABLE}", (token, now_ms))
        return bool(rows)

    @staticmethod
    def claim_use_txn(txn: Txn, token: str, now_ms: int) -> bool:
        """Hold one use of ``token`` as pending; False when it has none left."""
        txn.execute(f"UPDATE registration_tokens SET pending = pending + 1"
                    f" WHERE token = ? AND {_USABLE}", (token, now_ms))
        return txn.rowcount > 0

    @staticmethod
    def complete_use_txn(txn: Txn, token: str) -> None:
        """A pending use became an account."""
        txn.execute("UPDATE registration_tokens SET pending = pending - 1,"
                    " completed = completed + 1 WHERE token = ? AND pending > 0", (token,))

    @staticmethod
    def release_uses_txn(txn: Txn, token: str, count: int) -> None:
        """Give back pending uses whose registration was abandoned."""
        txn.execute("UPDATE registration_tokens SET pending = CASE WHEN pending > ?"
                    " THEN pending - ? ELSE 0 END WHERE token = ?", (count, count, token))
