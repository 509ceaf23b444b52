"""OAuth 2.0 clients and authorization codes (migration 0032); the rules are
``accounts/oauth_server.py``. Codes are stored as their SHA-256 and spent by
one conditional update, so a code works once however requests race."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.sso import hash_secret
from homeserver.storage.tokens import TokenStore


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    code_challenge: str
    user_id: str
    device_id: str
    scope: str


class OAuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_client(self, client_id: str, metadata: dict[str, Any], now_ms: int) -> None:
        await self.db.execute(
            "add_oauth_client",
            "INSERT INTO oauth_clients (client_id, metadata, created_ts) VALUES (?, ?, ?)",
            (client_id, json.dumps(metadata), now_ms))

    async def get_client(self, client_id: str) -> dict[str, Any] | None:
        rows = await self.db.execute(
            "get_oauth_client", "SELECT metadata FROM oauth_clients WHERE client_id = ?",
            (client_id,))
        return json.loads(rows[0][0]) if rows else None

    async def add_code(self, code: str, grant: AuthorizationCode, expiry_ts: int,
                       now_ms: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM oauth_codes WHERE expiry_ts <= ?", (now_ms - 86_400_000,))
            txn.execute(
                "INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, code_challenge,"
                " user_id, device_id, scope, expiry_ts, used_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (hash_secret(code), grant.client_id, grant.redirect_uri, grant.code_challenge,
                 grant.user_id, grant.device_id, grant.scope, expiry_ts))
        await self.db.run_interaction("add_oauth_code", txn_fn)

    async def spend_code(self, code: str, now_ms: int) -> AuthorizationCode | None:
        def txn_fn(txn: Txn) -> AuthorizationCode | None:
            code_hash = hash_secret(code)
            txn.execute("UPDATE oauth_codes SET used_ts = ? WHERE code_hash = ?"
                        " AND used_ts IS NULL AND expiry_ts > ?", (now_ms, code_hash, now_ms))
            if txn.rowcount != 1:
                return None
            row = txn.select_one(
                "SELECT client_id, redirect_uri, code_challenge, user_id, device_id, scope"
                " FROM oauth_codes WHERE code_hash = ?", (code_hash,))
            assert row is not None
            return AuthorizationCode(*row)
        return await self.db.run_interaction("spend_oauth_code", txn_fn)

    async def revoke(self, token_hash: str) -> None:
        """End the session (the device) an access or refresh token belongs to."""
        def txn_fn(txn: Txn) -> None:
            access = txn.select_one("SELECT user_id, device_id FROM access_tokens"
                                    " WHERE token_hash = ?", (token_hash,))
            refresh = TokenStore.get_refresh_token_txn(txn, token_hash)
            owner = (access[0], access[1]) if access is not None else \
                (refresh.user_id, refresh.device_id) if refresh is not None else None
            if owner is not None and owner[1] is not None:
                DeviceStore.delete_devices_txn(txn, owner[0], [owner[1]])
        await self.db.run_interaction("oauth_revoke", txn_fn)
