"""Login tokens, identity-provider subjects and browser sign-ins in progress
(migration 0035).

Every secret (a login token, the value of a sign-in cookie) is stored only as
its SHA-256, as access tokens are. Spending a login token or a sign-in
session is one conditional write, so two requests racing with the same token
cannot both succeed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.devices import DeviceStore


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SpentLoginToken:
    user_id: str
    auth_provider_id: str | None
    auth_provider_session_id: str | None = None


@dataclass(frozen=True)
class SsoSession:
    kind: str
    idp_id: str
    client_redirect_url: str
    data: dict[str, Any]
    created_ts: int


class SsoStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- login tokens --------------------------------------------------------------

    async def add_login_token(self, token: str, user_id: str, expiry_ts: int, now_ms: int,
                              auth_provider_id: str | None = None,
                              auth_provider_session_id: str | None = None) -> None:
        def txn_fn(txn: Txn) -> None:
            # spent or expired tokens are of no further use; a day's grace
            # keeps a replayed token answered as "used" for a while
            txn.execute("DELETE FROM login_tokens WHERE expiry_ts <= ?",
                        (now_ms - 86_400_000,))
            txn.execute("INSERT INTO login_tokens (token_hash, user_id, expiry_ts, used_ts,"
                        " auth_provider_id, auth_provider_session_id)"
                        " VALUES (?, ?, ?, NULL, ?, ?)",
                        (hash_secret(token), user_id, expiry_ts, auth_provider_id,
                         auth_provider_session_id))
        await self.db.run_interaction("add_login_token", txn_fn)

    async def spend_login_token(self, token: str, now_ms: int) -> SpentLoginToken | None:
        """The token's user, marking the token used; None when it is unknown,
        expired or already used."""
        def txn_fn(txn: Txn) -> SpentLoginToken | None:
            token_hash = hash_secret(token)
            txn.execute("UPDATE login_tokens SET used_ts = ? WHERE token_hash = ?"
                        " AND used_ts IS NULL AND expiry_ts > ?", (now_ms, token_hash, now_ms))
            if txn.rowcount != 1:
                return None
            row = txn.select_one("SELECT user_id, auth_provider_id, auth_provider_session_id"
                                 " FROM login_tokens WHERE token_hash = ?", (token_hash,))
            assert row is not None
            return SpentLoginToken(row[0], row[1], row[2])
        return await self.db.run_interaction("spend_login_token", txn_fn)

    # -- identity-provider subjects --------------------------------------------------

    async def get_user_by_external_id(self, auth_provider: str, external_id: str) -> str | None:
        rows = await self.db.execute(
            "get_user_by_external_id",
            "SELECT user_id FROM user_external_ids WHERE auth_provider = ? AND external_id = ?",
            (auth_provider, external_id))
        return str(rows[0][0]) if rows else None

    @staticmethod
    def add_external_id_txn(txn: Txn, auth_provider: str, external_id: str,
                            user_id: str) -> bool:
        """Link the subject to the user; False when it is linked already."""
        txn.execute("INSERT INTO user_external_ids (auth_provider, external_id, user_id)"
                    " VALUES (?, ?, ?) ON CONFLICT (auth_provider, external_id) DO NOTHING",
                    (auth_provider, external_id, user_id))
        return txn.rowcount == 1

    async def add_external_id(self, auth_provider: str, external_id: str,
                              user_id: str) -> bool:
        return await self.db.run_interaction("add_external_id", self.add_external_id_txn,
                                             auth_provider, external_id, user_id)

    @staticmethod
    def delete_session_txn(txn: Txn, secret: str, kind: str) -> bool:
        txn.execute("DELETE FROM sso_sessions WHERE session_hash = ? AND kind = ?",
                    (hash_secret(secret), kind))
        return txn.rowcount == 1

    async def get_external_ids(self, user_id: str) -> list[tuple[str, str]]:
        rows = await self.db.execute(
            "get_external_ids",
            "SELECT auth_provider, external_id FROM user_external_ids WHERE user_id = ?"
            " ORDER BY auth_provider, external_id", (user_id,))
        return [(str(r[0]), str(r[1])) for r in rows]

    # -- devices signed in by a provider's session (back-channel logout) --------------

    async def add_device_auth_provider(self, user_id: str, device_id: str,
                                       auth_provider_id: str, session_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            # a device ID signed in again belongs to its newest session only
            txn.execute("DELETE FROM device_auth_providers WHERE user_id = ? AND device_id = ?",
                        (user_id, device_id))
            txn.execute("INSERT INTO device_auth_providers (user_id, device_id,"
                        " auth_provider_id, auth_provider_session_id) VALUES (?, ?, ?, ?)",
                        (user_id, device_id, auth_provider_id, session_id))
        await self.db.run_interaction("add_device_auth_provider", txn_fn)

    async def logout_provider_session(self, auth_provider_id: str, session_id: str,
                                      user_id: str | None) -> list[tuple[str, str]]:
        """Delete the devices (with their tokens) that the provider's session
        signed in, only ``user_id``'s when given; the (user, device) pairs."""
        def txn_fn(txn: Txn) -> list[tuple[str, str]]:
            rows = txn.select_all(
                "SELECT user_id, device_id FROM device_auth_providers"
                " WHERE auth_provider_id = ? AND auth_provider_session_id = ?",
                (auth_provider_id, session_id))
            pairs = [(str(r[0]), str(r[1])) for r in rows
                     if user_id is None or r[0] == user_id]
            for uid, device_id in pairs:
                DeviceStore.delete_devices_txn(txn, uid, [device_id])
                txn.execute("DELETE FROM device_auth_providers WHERE user_id = ?"
                            " AND device_id = ?", (uid, device_id))
            return pairs
        return await self.db.run_interaction("logout_provider_session", txn_fn)

    # -- sign-ins in progress ---------------------------------------------------------

    async def add_session(self, secret: str, session: SsoSession, max_age_ms: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM sso_sessions WHERE created_ts <= ?",
                        (session.created_ts - max_age_ms,))
            txn.execute("INSERT INTO sso_sessions (session_hash, kind, idp_id,"
                        " client_redirect_url, data, created_ts) VALUES (?, ?, ?, ?, ?, ?)",
                        (hash_secret(secret), session.kind, session.idp_id,
                         session.client_redirect_url, json.dumps(session.data),
                         session.created_ts))
        await self.db.run_interaction("add_sso_session", txn_fn)

    async def get_session(self, secret: str, kind: str) -> SsoSession | None:
        rows = await self.db.execute(
            "get_sso_session",
            "SELECT kind, idp_id, client_redirect_url, data, created_ts FROM sso_sessions"
            " WHERE session_hash = ? AND kind = ?", (hash_secret(secret), kind))
        if not rows:
            return None
        r = rows[0]
        return SsoSession(r[0], r[1], r[2], json.loads(r[3]), r[4])

    async def take_session(self, secret: str, kind: str) -> SsoSession | None:
        """The session, deleted: whoever deletes it is the one to use it."""
        def txn_fn(txn: Txn) -> SsoSession | None:
            session_hash = hash_secret(secret)
            row = txn.select_one(
                "SELECT kind, idp_id, client_redirect_url, data, created_ts FROM sso_sessions"
                " WHERE session_hash = ? AND kind = ?", (session_hash, kind))
            if row is None:
                return None
            txn.execute("DELETE FROM sso_sessions WHERE session_hash = ?", (session_hash,))
            if txn.rowcount != 1:
                return None
            return SsoSession(row[0], row[1], row[2], json.loads(row[3]), row[4])
        return await self.db.run_interaction("take_sso_session", txn_fn)
