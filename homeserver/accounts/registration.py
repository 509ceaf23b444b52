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

Guests (client-server API, "Guest Access"; only with ``allow_guest_access``,
as on Synapse): ``register_guest`` makes an account with the next free
numeric localpart, no password and the guest flag, logged in at once without
user-interactive auth. A guest becomes a full user through the ordinary
flow, naming its own localpart as ``username`` and its access token as
``guest_access_token``: the existing row gets the password and loses the
flag (the user ID, rooms and profile stay), and the response logs in a
new session. Only the guest itself can claim its name: another token, or a
name that is not a guest's, is 403 (Synapse's check).

``Registrations`` (``HomeServer.registrations``) is the service; the API
parses the request into a ``Registration`` and a ``UiAuthAttempt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from homeserver.errors import Codes, MatrixError, forbidden, missing_param
from homeserver.http.auth import hash_token
from homeserver.storage.database import Txn
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.ui_auth import UiAuthStore
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.accounts.uia import UiAuth
    from homeserver.admin.user_moderation import UserModeration
    from homeserver.config import Config
    from homeserver.context import ServerContext
    from homeserver.http.ratelimit import Ratelimiter
    from homeserver.identity.threepids import Threepids
    from homeserver.moderation.gate import ModerationGate
    from homeserver.storage.database import Database
    from homeserver.storage.tokens import TokenStore


@dataclass(frozen=True)
class NewAccount:
    """What to create; ``localpart`` None means "the next free number"."""

    localpart: str | None
    password_hash: str | None
    admin: bool = False
    user_type: str | None = None
    displayname: str | None = None
    is_guest: bool = False


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
    # a guest upgrading its own account: its access token
    guest_access_token: str | None = None


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
                              account.is_guest, account.user_type, account.displayname)
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


def _upgrade_guest_txn(txn: Txn, config: "Config", now: int, user_id: str,
                       password_hash: str, login: LoginRequest | None,
                       uia_session_id: str | None,
                       registration_token: str | None) -> Registered:
    if not UserStore.upgrade_guest_txn(txn, user_id, password_hash):
        raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
    if registration_token is not None:
        RegistrationTokenStore.complete_use_txn(txn, registration_token)
    if uia_session_id is not None:
        UiAuthStore.delete_session_txn(txn, uia_session_id)
    session = None
    if login is not None:
        session = login_txn(txn, config, now, user_id, login.device_id or new_device_id(),
                            login.display_name, login.refreshable)
    return Registered(user_id, session)


# the UIA session's note of the guest account a registration upgrades
UPGRADING_GUEST = "upgrading_guest"


class Registrations:
    """Username checks, the UIA flows of ``/register``, and creating accounts."""

    def __init__(self, ctx: "ServerContext", db: "Database", users: UserStore,
                 tokens: "TokenStore", ui_auth: "UiAuth", limiter: "Ratelimiter",
                 threepids: "Threepids | None" = None) -> None:
        self.ctx = ctx
        # e-mail validation, and the address a registration validated
        self.threepids = threepids
        # an account is created in one transaction over several stores
        self.db = db
        self.users = users
        # a guest upgrading names itself by its access token
        self.tokens = tokens
        self.ui_auth = ui_auth
        # rc_registration, taken once the flow is complete
        self.limiter = limiter
        # spam checker modules' check_registration_for_spam, and shadow-bans
        # for what they answer: set by HomeServer._wire_late
        self.gate: "ModerationGate | None" = None
        self.user_moderation: "UserModeration | None" = None

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

    async def check_username(self, localpart: str,
                             guest_access_token: str | None = None) -> str:
        """The user ID for a wanted localpart, or M_INVALID_USERNAME / M_USER_IN_USE.

        With ``guest_access_token``, the name may be that of the guest the
        token belongs to (it is upgrading itself); any other taken name is 403.
        """
        if not localpart:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID cannot be empty")
        user_id = check_localpart(self.ctx.hostname, localpart)
        if localpart.startswith("_"):
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID may not begin with _")
        self.check_not_app_service_exclusive(user_id)
        if await self.users.is_user_id_taken(user_id):
            if guest_access_token is None:
                raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
            if await self._guest_of_token(guest_access_token) != user_id:
                raise forbidden("Cannot register taken user ID without valid guest "
                                "credentials for that user.")
            return user_id
        if localpart.isdigit():
            raise MatrixError(400, Codes.INVALID_USERNAME,
                              "Numeric user IDs are reserved for generated accounts")
        return user_id

    def check_not_app_service_exclusive(self, user_id: str, allowed: Any = None) -> None:
        """M_EXCLUSIVE when an application service (other than ``allowed``)
        holds ``user_id`` in an exclusive namespace."""
        services = self.ctx.config.app_services
        owner = services.exclusive_user_owner(user_id) if services else None
        if owner is not None and owner is not allowed:
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "This user ID is reserved by an application service.")

    async def register_app_service_user(self, service: Any, username: str,
                                        login: LoginRequest | None) -> Registered:
        """``POST /register`` with ``type: m.login.application_service``: a
        user in the service's namespace, no password, no UIA, no rate limit."""
        localpart = username.lower()
        if localpart.startswith("@"):
            # a whole user ID, as some bridges send
            localpart = localpart[1:].rsplit(":", 1)[0]
        if not localpart:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID cannot be empty")
        user_id = check_localpart(self.ctx.hostname, localpart)
        if not service.is_interested_in_user(user_id):
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "Invalid user localpart for this application service.")
        self.check_not_app_service_exclusive(user_id, allowed=service)
        return await self.create_account(NewAccount(localpart, None), login)

    async def _guest_of_token(self, access_token: str) -> str | None:
        """The guest user whose access token this is (None: not a guest's)."""
        info = await self.tokens.get_access_token(hash_token(access_token))
        if info is None or not info.is_guest:
            return None
        return info.user_id

    async def register_guest(self, login: LoginRequest, client_ip: str) -> Registered:
        """A new guest account, logged in (``POST /register?kind=guest``)."""
        if not self.ctx.config.allow_guest_access:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is disabled")
        self.limiter.ratelimit(client_ip)
        # a guest's session cannot be refreshed (as on Synapse)
        return await self.create_account(NewAccount(None, None, is_guest=True),
                                         LoginRequest(login.device_id, login.display_name,
                                                      False))

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
        config = self.ctx.config
        server_data = {}
        # a guest upgrading itself, as an earlier request of the session found
        upgrading = attempt.server_data.get(UPGRADING_GUEST)
        if upgrading is not None and (
                reg.username is None or upgrading != f"@{reg.username}:{self.ctx.hostname}"):
            upgrading = None
        # Refuse a bad or taken name before asking for any authentication.
        if reg.username is not None and upgrading is None:
            user_id = await self.check_username(reg.username, reg.guest_access_token)
            if reg.guest_access_token is not None and \
                    await self.users.is_user_id_taken(user_id):
                upgrading = user_id
                # the session remembers whose it is, never the guest's token
                server_data[UPGRADING_GUEST] = user_id
        if reg.password is not None and PASSWORD_HASH not in attempt.server_data:
            check_password_policy(config.password_config, reg.password)
            # Kept hashed in the session, so a later request need not resend it.
            server_data[PASSWORD_HASH] = await hash_password(reg.password, config.bcrypt_rounds)
        kept = {k: v for k, v in attempt.params.items()
                if k not in ("password", "guest_access_token")}
        result = await self.ui_auth.complete(attempt, self.flows(), "register a new account",
                                             params=kept, server_data=server_data)
        password_hash = result.server_data.get(PASSWORD_HASH)
        if password_hash is None:
            raise missing_param("password")
        self.limiter.ratelimit(client_ip)
        if upgrading is not None:
            return await self.db.run_interaction(
                "upgrade_guest", _upgrade_guest_txn, self.ctx.config, self.ctx.now_ms(),
                upgrading, password_hash, reg.login, result.session_id,
                result.server_data.get(CLAIMED_TOKEN))
        email = result.completed.get(EMAIL_IDENTITY)
        verdict = "allow" if self.gate is None else await self.gate.check_registration(
            email if isinstance(email, dict) else None, reg.username, client_ip)
        if verdict == "deny":
            raise MatrixError(403, Codes.FORBIDDEN, "Registration has been denied")
        registered = await self.create_account(
            NewAccount(reg.username, password_hash), reg.login,
            uia_session_id=result.session_id,
            registration_token=result.server_data.get(CLAIMED_TOKEN))
        if verdict == "shadow_ban" and self.user_moderation is not None:
            await self.user_moderation.set_shadow_banned("spam-checker", registered.user_id,
                                                         True)
        if isinstance(email, dict) and self.threepids is not None:
            await self.threepids.add_validated(registered.user_id, email["medium"],
                                               email["address"], email["validated_at"])
        return registered
