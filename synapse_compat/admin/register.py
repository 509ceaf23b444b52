"""Synapse-compatible admin API routes (/_synapse/admin/...).

Shared-secret registration (``/_synapse/admin/v1/register``) lets an operator's
script (Synapse's ``register_new_matrix_user``, deployment tooling) create
accounts, admins included, knowing only ``registration_shared_secret``. It
works whether or not public registration is open. The request carries an
HMAC-SHA1 over a nonce the server handed out, so a captured request cannot be
replayed: each nonce is good once, for ``NONCE_LIFETIME_MS``.

Anyone may ask for a nonce, so handing one out costs no database write: as in
Synapse, nonces live in this process's memory (a restart forgets them; the
script asks again). At most ``MAX_NONCES`` are held (the oldest goes first),
and each address may ask at the ``rc_registration`` rate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from homeserver.accounts.passwords import hash_password
from homeserver.accounts.registration import LoginRequest, NewAccount
from homeserver.accounts.sessions import check_password_policy
from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, bad_json, forbidden
from homeserver.http.parse import get_bool, get_str
from homeserver.http.ratelimit import Ratelimiter
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.accounts.registration import Registrations
    from homeserver.config import Config
    from homeserver.server import HomeServer

ADMIN_V1 = "/_synapse/admin/v1"

NONCE_LIFETIME_MS = 60_000
# a minute's worth at 150 requests a second: far beyond any operator's script
MAX_NONCES = 10_000
# Synapse's UserTypes.ALL_USER_TYPES
USER_TYPES = ("support", "bot")
# Synapse's bounds on the MAC'd fields
MAX_FIELD_LENGTH = 512


def registration_mac(secret: str, nonce: str, username: str, password: str, admin: bool,
                     user_type: str | None = None) -> str:
    """Hex HMAC-SHA1 of nonce NUL username NUL password NUL (admin|notadmin)[NUL user_type]."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf-8"))
    return mac.hexdigest()


class RegistrationNonces:
    """Nonces handed out and not yet used, oldest first, in memory."""

    def __init__(self, clock: Any, lifetime_ms: int = NONCE_LIFETIME_MS,
                 max_count: int = MAX_NONCES) -> None:
        self._clock = clock
        self._lifetime_ms = lifetime_ms
        self._max = max_count
        self._issued: OrderedDict[str, int] = OrderedDict()  # nonce -> issued at (ms)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def issue(self) -> str:
        now = self._now_ms()
        self._expire(now)
        while len(self._issued) >= self._max:
            self._issued.popitem(last=False)
        nonce = secrets.token_hex(32)
        self._issued[nonce] = now
        return nonce

    def take(self, nonce: str) -> bool:
        """Use ``nonce`` up: True once if it was issued and has not expired."""
        issued = self._issued.pop(nonce, None)
        return issued is not None and issued > self._now_ms() - self._lifetime_ms

    def __len__(self) -> int:
        return len(self._issued)

    def _expire(self, now_ms: int) -> None:
        # issued in time order: the expired ones are at the front
        cutoff = now_ms - self._lifetime_ms
        while self._issued and next(iter(self._issued.values())) <= cutoff:
            self._issued.popitem(last=False)


def _required_str(body: dict[str, Any], key: str) -> str:
    if key not in body:
        raise MatrixError(400, Codes.BAD_JSON, f"{key} must be specified")
    value = body[key]
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH or "\x00" in value:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid {key}")
    return value


class SharedSecretRegistration:
    """What the shared-secret registration endpoints use: the config, the
    registration service, the nonces handed out and their rate limiter."""

    def __init__(self, config: "Config", registrations: "Registrations", clock: Any) -> None:
        self.config = config
        self.registrations = registrations
        self.nonces = RegistrationNonces(clock)
        self.nonce_limiter = Ratelimiter(clock, "rc_registration", config.rc_registration)

    def shared_secret(self) -> str:
        secret: str | None = self.config.registration_shared_secret
        if not secret:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        return secret


async def get_register_nonce(reg: SharedSecretRegistration, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/register"""
    reg.shared_secret()
    reg.nonce_limiter.ratelimit(req.client_ip)
    return 200, {"nonce": reg.nonces.issue()}


async def post_register(reg: SharedSecretRegistration, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/register"""
    secret = reg.shared_secret()
    body = req.json()
    nonce = _required_str(body, "nonce")
    # Taken (deleted) before anything else is checked: one try per nonce.
    if not reg.nonces.take(nonce):
        raise MatrixError(400, Codes.UNKNOWN, "unrecognised nonce")
    username = _required_str(body, "username")
    password = _required_str(body, "password")
    admin = body.get("admin")
    if admin is not None and not isinstance(admin, bool):
        raise bad_json("'admin' must be a boolean")
    user_type = get_str(body, "user_type", None)
    if user_type is not None and user_type not in USER_TYPES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user type")
    displayname = get_str(body, "displayname", None)
    got_mac = _required_str(body, "mac")
    want_mac = registration_mac(secret, nonce, username, password, bool(admin), user_type)
    if not hmac.compare_digest(want_mac.encode("ascii"), got_mac.encode("utf-8", "replace")):
        raise forbidden("HMAC incorrect")
    localpart = username.lower()
    config = reg.config
    await reg.registrations.check_username(localpart)
    check_password_policy(config.password_config, password)
    password_hash = await hash_password(password, config.bcrypt_rounds)
    inhibit_login = get_bool(body, "inhibit_login", False)
    login = None if inhibit_login else LoginRequest(None, None, False)
    registered = await reg.registrations.create_account(
        NewAccount(localpart, password_hash, bool(admin), user_type, displayname), login)
    log_admin_action("shared-secret", "register_user", registered.user_id,
                     admin_flag=bool(admin), user_type=user_type)
    return 200, registered.to_client(config.server_name)


ENDPOINTS = (
    Endpoint("GET", f"{ADMIN_V1}/register", get_register_nonce, auth=AUTH_NONE),
    Endpoint("POST", f"{ADMIN_V1}/register", post_register, auth=AUTH_NONE),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(SharedSecretRegistration(hs.config, hs.registrations, hs.clock),
                         ENDPOINTS)
