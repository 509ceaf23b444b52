"""Registering accounts: username rules, the UIA flows of ``/register``, and the
one transaction that creates an account.

The account, its profile, its first device and tokens, the registration
token's use and the end of the UIA session are written in one transaction:
a registration that fails leaves nothing behind.

Usernames follow Synapse: the requested name is lower-cased (the spec lets the
server map a username onto a user ID "in a logical manner"; logins match
ignoring case anyway), must fit the localpart grammar, may not start with
``_`` (reserved for application services) and may not be all digits
(reserved for generated IDs: a registration without a username gets the next
free number).

``Registrations`` (``HomeServer.registrations``) is the service; the API
parses the request into a ``Registration`` and a ``UiAuthAttempt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from homeserver.accounts.passwords import hash_password
from homeserver.accounts.sessions import (
    LoginSession,
    check_localpart,
    check_password_policy,
    login_txn,
    new_device_id,
)
from homeserver.accounts.uia import (
    CLAIMED_TOKEN,
    DUMMY,
    EMAIL_IDENTITY,
    PASSWORD_HASH,
    RECAPTCHA,
    REGISTERED_USER_ID,
    REGISTRATION_TOKEN,
    UiAuthAttempt,
)
from homeserver.errors import Codes, MatrixError, missing_param
from homeserver.storage.database import Txn
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.ui_auth import UiAuthStore
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.accounts.uia import UiAuth
    from homeserver.config import Config
    from homeserver.context import ServerContext
    from homeserver.http.ratelimit import Ratelimiter
    from homeserver.identity.threepids import Threepids
    from homeserver.storage.database import Database


@dataclass(frozen=True)
class NewAccount:
    """What to create; ``localpart`` None means "the next free number"."""

    localpart: str | None
    password_hash: str
    admin: bool = False
    user_type: str | None = None
    displayname: str | None = None


@dataclass(frozen=True)
class LoginRequest:
    """The device to log the new account in on."""

    device_id: str | None
    display_name: str | None
    refreshable: bool


@dataclass(frozen=True)
class Registration:
    """The parameters of ``POST /register`` that decide the account."""

    username: str | None
    password: str | None
    login: LoginRequest | None  # None: inhibit_login


@dataclass(frozen=True)
class Registered:
    user_id: str
    session: LoginSession | None

    def to_client(self, hostname: str) -> dict[str, object]:
        if self.session is None:
            return {"user_id": self.user_id, "home_server": hostname}
        return self.session.to_client(hostname)


def _register_txn(txn: Txn, config: "Config", now: int, account: NewAccount,
                  login: LoginRequest | None, uia_session_id: str | None,
                  registration_token: str | None) -> Registered:
    hostname = config.server_name
    localpart = account.localpart
    if localpart is None:
        localpart = UserStore.next_numeric_localpart_txn(txn, hostname)
    user_id = f"@{localpart}:{hostname}"
    UserStore.create_user_txn(txn, user_id, account.password_hash, now, account.admin,
                              False, account.user_type, account.displayname)
    if registration_token is not None:
        RegistrationTokenStore.complete_use_txn(txn, registration_token)
    if uia_session_id is not None:
        # Kept (until it expires) with the account it made, so a client that
        # retries the request, its first answer lost, gets that account.
        uia = UiAuthStore.get_session_txn(txn, uia_session_id)
        if uia is not None:
            serverdict = {k: v for k, v in uia.serverdict.items()
                          if k not in (PASSWORD_HASH, CLAIMED_TOKEN)}
            serverdict[REGISTERED_USER_ID] = user_id
            UiAuthStore.update_session_txn(txn, uia_session_id, uia.clientdict, uia.completed,
                                           serverdict)
    return _login_txn(txn, config, now, user_id, login)


def _login_txn(txn: Txn, config: "Config", now: int, user_id: str,
               login: LoginRequest | None) -> Registered:
    info = UserStore.get_user_txn(txn, user_id)
    if info is None or info.deactivated:
        # deactivated since the first answer: the session gives no new login
        raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
    session = None
    if login is not None:
        session = login_txn(txn, config, now, user_id, login.device_id or new_device_id(),
                            login.display_name, login.refreshable)
    return Registered(user_id, session)


class Registrations:
    """Username checks, the UIA flows of ``/register``, and creating accounts."""

    def __init__(self, ctx: "ServerContext", db: "Database", users: UserStore,
                 ui_auth: "UiAuth", limiter: "Ratelimiter",
                 threepids: "Threepids | None" = None) -> None:
        self.ctx = ctx
        # e-mail validation, and the address a registration validated
        self.threepids = threepids
        # an account is created in one transaction over several stores
        self.db = db
        self.users = users
        self.ui_auth = ui_auth
        # rc_registration, taken once the flow is complete
        self.limiter = limiter

    def flows(self) -> list[list[str]]:
        config = self.ctx.config
        # an e-mail address validated by the server may stand in for the
        # dummy stage when e-mail is set up (as Synapse offers it)
        email = self.threepids is not None and self.threepids.email_enabled()
        if config.registration_requires_token:
            flows = [[REGISTRATION_TOKEN]] + ([[REGISTRATION_TOKEN, EMAIL_IDENTITY]]
                                              if email else [])
        else:
            flows = [[DUMMY]] + ([[EMAIL_IDENTITY]] if email else [])
        if config.enable_registration_captcha:
            flows = [[RECAPTCHA, *flow] for flow in flows]
        return flows

    async def check_username(self, localpart: str) -> str:
        """The user ID for a wanted localpart, or M_INVALID_USERNAME / M_USER_IN_USE."""
        if not localpart:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID cannot be empty")
        user_id = check_localpart(self.ctx.hostname, localpart)
        if localpart.startswith("_"):
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID may not begin with _")
        if localpart.isdigit():
            raise MatrixError(400, Codes.INVALID_USERNAME,
                              "Numeric user IDs are reserved for generated accounts")
        if await self.users.is_user_id_taken(user_id):
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
        return user_id

    async def create_account(self, account: NewAccount, login: LoginRequest | None, *,
                             uia_session_id: str | None = None,
                             registration_token: str | None = None) -> Registered:
        """Create the account (and log it in) in one transaction; M_USER_IN_USE if taken."""
        try:
            return await self.db.run_interaction(
                "register", _register_txn, self.ctx.config, self.ctx.now_ms(), account, login,
                uia_session_id, registration_token)
        except UserExists:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.") from None

    async def register_via_ui_auth(self, attempt: UiAuthAttempt, reg: Registration,
                                   client_ip: str) -> Registered:
        """``POST /register`` once parsed: check the name, run UIA, create the account.

        Raises ``UiAuthIncomplete`` until the flow is complete."""
        registered = attempt.server_data.get(REGISTERED_USER_ID)
        if isinstance(registered, str):
            # The retry of a registration this session completed (as Synapse):
            # the same account, logged in again as this request asks.
            return await self.db.run_interaction("register_retry", _login_txn,
                                                 self.ctx.config, self.ctx.now_ms(),
                                                 registered, reg.login)
        # Refuse a bad or taken name before asking for any authentication.
        if reg.username is not None:
            await self.check_username(reg.username)
        config = self.ctx.config
        server_data = {}
        if reg.password is not None and PASSWORD_HASH not in attempt.server_data:
            check_password_policy(config.password_config, reg.password)
            # Kept hashed in the session, so a later request need not resend it.
            server_data[PASSWORD_HASH] = await hash_password(reg.password, config.bcrypt_rounds)
        kept = {k: v for k, v in attempt.params.items() if k != "password"}
        result = await self.ui_auth.complete(attempt, self.flows(), "register a new account",
                                             params=kept, server_data=server_data)
        password_hash = result.server_data.get(PASSWORD_HASH)
        if password_hash is None:
            raise missing_param("password")
        self.limiter.ratelimit(client_ip)
        registered = await self.create_account(
            NewAccount(reg.username, password_hash), reg.login,
            uia_session_id=result.session_id,
            registration_token=result.server_data.get(CLAIMED_TOKEN))
        email = result.completed.get(EMAIL_IDENTITY)
        if isinstance(email, dict) and self.threepids is not None:
            await self.threepids.add_validated(registered.user_id, email["medium"],
                                               email["address"], email["validated_at"])
        return registered
