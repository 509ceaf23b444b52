"""Password login and what follows a login: refresh and logout.

``check_password_login`` is shared by ``POST /login`` and by user-interactive
re-authentication (``m.login.password``), so both count failed attempts against
the same per-account limit (``rc_login.failed_attempts``), as Synapse does.
User IDs are matched ignoring case: Synapse lets people log in as
``@Alice`` when they registered ``@alice``, and clients rely on it.

``Logins`` (``HomeServer.logins``) is the service; reading the user an
identifier names is a plain function of the server name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.passwords import check_password
from homeserver.accounts.sessions import new_token
from homeserver.errors import Codes, MatrixError, bad_json, forbidden, missing_param
from homeserver.http.auth import hash_token
from homeserver.http.parse import get_str
from homeserver.identity.threepids import canonicalise_email
from homeserver.storage.database import Txn
from homeserver.storage.tokens import TokenStore

if TYPE_CHECKING:
    from homeserver.config import Config
    from homeserver.context import ServerContext
    from homeserver.http.ratelimit import Ratelimiter
    from homeserver.storage.database import Database
    from homeserver.storage.threepids import ThreepidStore
    from homeserver.storage.users import UserStore

logger = logging.getLogger(__name__)

LOGIN_TYPE_PASSWORD = "m.login.password"


def qualify_user_id(hostname: str, user: str) -> str:
    """``alice`` -> ``@alice:server``; a full user ID is kept as given."""
    if user.startswith("@"):
        return user
    return f"@{user}:{hostname}"


def user_from_identifier(hostname: str, body: dict[str, Any]) -> str | None:
    """The user ID a login (or an ``m.login.password`` auth dict) names.

    Reads ``identifier`` (``m.id.user``), else the deprecated top-level ``user``;
    None when neither is given. A third-party identifier is the caller's to
    resolve first (``threepid_from_identifier``); here it fails like a wrong
    password.
    """
    identifier = body.get("identifier")
    if identifier is None:
        if "medium" in body or "address" in body:
            raise forbidden("Invalid username or password")
        user = get_str(body, "user", None)
        return qualify_user_id(hostname, user) if user is not None else None
    if not isinstance(identifier, dict):
        raise bad_json("'identifier' must be an object")
    id_type = identifier.get("type")
    if id_type == "m.id.user":
        user = identifier.get("user")
        if user is None:
            raise missing_param("identifier.user")
        if not isinstance(user, str):
            raise bad_json("'identifier.user' must be a string")
        return qualify_user_id(hostname, user)
    if id_type in ("m.id.thirdparty", "m.id.phone"):
        raise forbidden("Invalid username or password")
    raise MatrixError(400, Codes.UNKNOWN, "Unknown login identifier type")


def threepid_from_identifier(body: dict[str, Any]) -> tuple[str, str] | None:
    """The ``(medium, address)`` a login names: an ``m.id.thirdparty``
    identifier, or the deprecated top-level ``medium`` and ``address``."""
    identifier = body.get("identifier")
    source = identifier if isinstance(identifier, dict) and \
        identifier.get("type") == "m.id.thirdparty" else None
    if identifier is None and ("medium" in body or "address" in body):
        source = body
    if source is None:
        return None
    medium, address = source.get("medium"), source.get("address")
    if not isinstance(medium, str) or not isinstance(address, str):
        raise missing_param("medium and address")
    return medium, address


# --- refresh ---------------------------------------------------------------------

@dataclass(frozen=True)
class RefreshedTokens:
    access_token: str
    refresh_token: str
    expires_in_ms: int

    def to_client(self) -> dict[str, object]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "expires_in_ms": self.expires_in_ms}


class _RefreshRefused(Exception):
    pass


def _refresh_txn(txn: Txn, config: "Config", now: int, refresh_token: str) -> RefreshedTokens:
    old = TokenStore.get_refresh_token_txn(txn, hash_token(refresh_token))
    if old is None or old.has_next_access_token_been_used \
            or old.has_next_refresh_token_been_refreshed:
        raise _RefreshRefused()
    ultimate = old.ultimate_session_expiry_ts
    if (old.expiry_ts is not None and old.expiry_ts <= now) or \
            (ultimate is not None and ultimate <= now):
        raise _RefreshRefused()
    lifetime = config.refresh_token_lifetime
    refresh_expiry = now + lifetime if lifetime else None
    expires_in = config.refreshable_access_token_lifetime
    valid_until = now + expires_in
    if ultimate is not None:
        # A bounded session stays bounded however often it is refreshed.
        refresh_expiry = min(refresh_expiry or ultimate, ultimate)
        valid_until = min(valid_until, ultimate)
        expires_in = valid_until - now
    new_refresh = new_token("hs_rt")
    new_access = new_token("hs_at")
    new_refresh_id = TokenStore.add_refresh_token_txn(
        txn, hash_token(new_refresh), old.user_id, old.device_id, refresh_expiry, ultimate, now)
    TokenStore.add_access_token_txn(txn, hash_token(new_access), old.user_id, old.device_id,
                                    valid_until, new_refresh_id, now)
    # The old refresh token stays usable until the new access token is first
    # used (the response may never reach the client); see Auth.get_requester.
    TokenStore.replace_refresh_token_txn(txn, old.token_id, new_refresh_id)
    return RefreshedTokens(new_access, new_refresh, expires_in)


class Logins:
    """Checking passwords (login and re-authentication) and refreshing sessions."""

    def __init__(self, ctx: "ServerContext", db: "Database", users: "UserStore",
                 failed_attempts: "Ratelimiter",
                 threepids: "ThreepidStore | None" = None) -> None:
        self.ctx = ctx
        # the accounts' e-mail addresses, for logins that name one
        self.threepids = threepids
        # a refresh is one transaction of TokenStore's _txn helpers
        self.db = db
        self.users = users
        # rc_login.failed_attempts: shared by /login and re-authentication
        self.failed_attempts = failed_attempts

    async def user_for_identifier(self, body: dict[str, Any]) -> str | None:
        """The user a login (or ``m.login.password`` auth dict) names; an
        address no account has fails like a wrong password (403)."""
        threepid = threepid_from_identifier(body)
        if threepid is None:
            return user_from_identifier(self.ctx.hostname, body)
        medium, address = threepid
        if medium == "email":
            try:
                address = canonicalise_email(address)
            except MatrixError:
                raise forbidden("Invalid username or password") from None
        user_id = await self.threepids.get_user_by_threepid(medium, address) \
            if self.threepids is not None else None
        if user_id is None:
            raise forbidden("Invalid username or password")
        return user_id

    async def find_local_user(self, user_id: str) -> str | None:
        """The stored spelling of ``user_id``, matched ignoring case."""
        candidates = await self.users.get_user_case_insensitive(user_id)
        if len(candidates) == 1:
            return candidates[0]
        if user_id in candidates:
            return user_id
        if candidates:
            logger.warning("login: %d accounts match %s ignoring case; none exactly",
                           len(candidates), user_id)
        return None

    async def check_password_login(self, user_id: str, password: str) -> str:
        """The canonical user ID when ``password`` is the account's password.

        403 M_FORBIDDEN for an unknown user or a wrong password (counted against
        the account's failed-attempts limit; 429 once it is exhausted), 403
        M_USER_DEACTIVATED for a deactivated account.
        """
        failed = self.failed_attempts
        key = user_id.lower()
        failed.check(key)
        canonical = await self.find_local_user(user_id)
        info = await self.users.get_user(canonical) if canonical is not None else None
        if info is None:
            failed.record(key)
            raise forbidden("Invalid username or password")
        if info.deactivated and not info.password_hash:
            # Deactivation removed the password: nothing left to check it against.
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        if not await check_password(password, info.password_hash):
            failed.record(key)
            raise forbidden("Invalid username or password")
        if info.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        return info.user_id

    async def refresh_session(self, refresh_token: str) -> RefreshedTokens:
        """A new access/refresh token pair for ``refresh_token``, or 401 M_UNKNOWN_TOKEN."""
        try:
            return await self.db.run_interaction("refresh_token", _refresh_txn,
                                                 self.ctx.config, self.ctx.now_ms(),
                                                 refresh_token)
        except _RefreshRefused:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown or used refresh token",
                              soft_logout=False) from None
