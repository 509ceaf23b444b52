"""Creating users and login sessions (device + access token [+ refresh token]).

``Sessions`` (``HomeServer.sessions``) is the service; the checks on a new
localpart or password and ``login_txn`` are plain functions of the values
they read, so registration can run them inside its own transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import MAX_USER_ID_LENGTH, is_valid_localpart
from homeserver.accounts.passwords import MAX_PASSWORD_BYTES, hash_password
from homeserver.errors import Codes, MatrixError
from homeserver.http.auth import hash_token
from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.tokens import TokenStore
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.config import Config
    from homeserver.context import ServerContext
    from homeserver.storage.database import Database


def new_token(prefix: str) -> str:
    """A fresh secret: 32 random bytes, URL-safe, with a readable prefix."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def new_device_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(10))


@dataclass(frozen=True)
class LoginSession:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None

    def to_client(self, hostname: str) -> dict[str, object]:
        body: dict[str, object] = {"user_id": self.user_id, "device_id": self.device_id,
                                   "access_token": self.access_token,
                                   "home_server": hostname}
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.expires_in_ms is not None:
            body["expires_in_ms"] = self.expires_in_ms
        return body


def user_id_for(hostname: str, localpart: str) -> str:
    return f"@{localpart}:{hostname}"


def check_localpart(hostname: str, localpart: str) -> str:
    """The user ID for a requested localpart, or M_INVALID_USERNAME."""
    if not is_valid_localpart(localpart):
        raise MatrixError(400, Codes.INVALID_USERNAME,
                          "User ID can only contain characters a-z, 0-9, or '=_-./+'")
    user_id = user_id_for(hostname, localpart)
    if len(user_id.encode("utf-8")) > MAX_USER_ID_LENGTH:
        raise MatrixError(400, Codes.INVALID_USERNAME,
                          f"User ID may not be longer than {MAX_USER_ID_LENGTH} characters")
    return user_id


def check_password_policy(password_config: dict[str, Any], password: str) -> None:
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise MatrixError(400, Codes.WEAK_PASSWORD,
                          f"Password may not be longer than {MAX_PASSWORD_BYTES} bytes")
    policy = password_config["policy"]
    if policy["enabled"] and len(password) < policy["minimum_length"]:
        raise MatrixError(400, Codes.WEAK_PASSWORD,
                          f"Password must be at least {policy['minimum_length']} characters")


def login_txn(txn: Txn, config: "Config", now: int, user_id: str, device_id: str,
              display_name: str | None, refreshable: bool) -> LoginSession:
    """A login session inside a caller's transaction (registration creates the
    user and logs it in atomically)."""
    DeviceStore.ensure_device_txn(txn, user_id, device_id, display_name)
    # A login that names an existing device replaces that device's session.
    TokenStore.delete_tokens_for_device_txn(txn, user_id, device_id)
    access_token = new_token("hs_at")
    refresh_token = None
    refresh_id = None
    valid_until = None
    expires_in = None
    if refreshable:
        refresh_token = new_token("hs_rt")
        lifetime = config.refresh_token_lifetime
        refresh_id = TokenStore.add_refresh_token_txn(
            txn, hash_token(refresh_token), user_id, device_id,
            now + lifetime if lifetime else None, None, now)
        expires_in = config.refreshable_access_token_lifetime
        valid_until = now + expires_in
    TokenStore.add_access_token_txn(txn, hash_token(access_token), user_id, device_id,
                                    valid_until, refresh_id, now)
    return LoginSession(user_id, device_id, access_token, refresh_token, expires_in)


class Sessions:
    """Creating users (admin tools, tests) and logging users in on a device."""

    def __init__(self, ctx: "ServerContext", db: "Database") -> None:
        self.ctx = ctx
        # both writes are whole transactions of the stores' static _txn helpers
        self.db = db

    async def create_user(self, localpart: str, password: str | None, *,
                          admin: bool = False, user_type: str | None = None) -> str:
        """Create a user; M_INVALID_USERNAME or M_USER_IN_USE when it cannot be."""
        config = self.ctx.config
        user_id = check_localpart(self.ctx.hostname, localpart)
        password_hash = None
        if password is not None:
            check_password_policy(config.password_config, password)
            password_hash = await hash_password(password, config.bcrypt_rounds)
        try:
            await self.db.run_interaction("create_user", UserStore.create_user_txn, user_id,
                                          password_hash, self.ctx.now_ms(), admin, False,
                                          user_type)
        except UserExists:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.") from None
        return user_id

    async def create_login_session(self, user_id: str, device_id: str | None = None,
                                   display_name: str | None = None,
                                   refreshable: bool = False) -> LoginSession:
        """A new device (or the named one) with a fresh access token."""
        return await self.db.run_interaction(
            "login", login_txn, self.ctx.config, self.ctx.now_ms(), user_id,
            device_id or new_device_id(), display_name, refreshable)
