"""OpenID tokens: short-lived tokens that prove "I am this user" to a third
party, which checks them with our /openid/userinfo (migration 0014).

Only the SHA-256 of a token is stored, as for access tokens. A token lives
``expires_in`` seconds (an hour); expired rows are deleted whenever a new
token is issued, so the table holds about an hour of tokens.
"""

from __future__ import annotations

import hashlib

from homeserver.storage.database import Database, Txn


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class OpenIdStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_token(self, token: str, user_id: str, expires_ts: int, now_ms: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM openid_tokens WHERE expires_ts <= ?", (now_ms,))
            txn.execute("INSERT INTO openid_tokens (token_hash, user_id, expires_ts)"
                        " VALUES (?, ?, ?)", (hash_token(token), user_id, expires_ts))
        await self.db.run_interaction("add_openid_token", txn_fn)

    async def get_user_for_token(self, token: str, now_ms: int) -> str | None:
        """The user who was issued ``token``, if it has not expired."""
        rows = await self.db.execute(
            "get_openid_token",
            "SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?",
            (hash_token(token), now_ms))
        return str(rows[0][0]) if rows else None
