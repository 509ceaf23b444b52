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

    # -- the device authorization grant ------------------------------------------------

    async def add_device_grant(self, device_code: str, grant: "DeviceGrant",
                               now_ms: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM oauth_device_grants WHERE expiry_ts <= ?",
                        (now_ms - 86_400_000,))
            txn.execute(
                "INSERT INTO oauth_device_grants (device_code_hash, user_code, client_id,"
                " scope, device_id, status, user_id, expiry_ts, last_poll_ts)"
                " VALUES (?, ?, ?, ?, ?, 'pending', NULL, ?, 0)",
                (hash_secret(device_code), grant.user_code, grant.client_id, grant.scope,
                 grant.device_id, grant.expiry_ts))
        await self.db.run_interaction("add_device_grant", txn_fn)

    async def get_device_grant_by_user_code(self, user_code: str) -> "DeviceGrant | None":
        rows = await self.db.execute(
            "get_device_grant",
            f"SELECT {_GRANT_COLUMNS} FROM oauth_device_grants WHERE user_code = ?",
            (user_code,))
        return DeviceGrant(*rows[0]) if rows else None

    async def approve_device_grant(self, user_code: str, user_id: str, now_ms: int) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE oauth_device_grants SET status = 'approved', user_id = ?"
                        " WHERE user_code = ? AND status = 'pending' AND expiry_ts > ?",
                        (user_id, user_code, now_ms))
            return txn.rowcount == 1
        return await self.db.run_interaction("approve_device_grant", txn_fn)

    async def poll_device_grant(self, device_code: str,
                                now_ms: int) -> tuple["DeviceGrant", int] | None:
        """The grant and when it was last polled (then now), or None."""
        def txn_fn(txn: Txn) -> tuple[DeviceGrant, int] | None:
            code_hash = hash_secret(device_code)
            row = txn.select_one(
                f"SELECT {_GRANT_COLUMNS}, last_poll_ts FROM oauth_device_grants"
                " WHERE device_code_hash = ?", (code_hash,))
            if row is None:
                return None
            txn.execute("UPDATE oauth_device_grants SET last_poll_ts = ?"
                        " WHERE device_code_hash = ?", (now_ms, code_hash))
            return DeviceGrant(*row[:-1]), int(row[-1])
        return await self.db.run_interaction("poll_device_grant", txn_fn)

    async def spend_device_grant(self, device_code: str) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE oauth_device_grants SET status = 'spent'"
                        " WHERE device_code_hash = ? AND status = 'approved'",
                        (hash_secret(device_code),))
            return txn.rowcount == 1
        return await self.db.run_interaction("spend_device_grant", txn_fn)


_GRANT_COLUMNS = "user_code, client_id, scope, device_id, status, user_id, expiry_ts"


@dataclass(frozen=True)
class DeviceGrant:
    user_code: str
    client_id: str
    scope: str
    device_id: str
    status: str
    user_id: str | None
    expiry_ts: int
