"""User-interactive authentication (the spec's "User-interactive API").

A UIA session guards one operation: the method and path that opened it, and,
for a logged-in user, that user. Another path, method or user presenting the
session gets 403, so a session completed for one action cannot authorise
another. Sessions live in the database (``ui_auth_sessions``) for
``SESSION_LIFETIME_MS`` after they are opened.

Request parameters: the parameters of the request that opened the session are
kept, and a later request may add parameters but never change one already
given. A client that first sends ``{}`` to learn the flows and then the real
body works; one that swaps the body of a half-authenticated request (say,
the list of devices to delete) gets the original. Secrets (passwords) are
never kept as parameters: callers hash them into the session's server data.

Stages: ``m.login.dummy``, ``m.login.password`` (re-authentication of the
logged-in user; failed attempts share the per-account login limit),
``m.login.registration_token`` (holds one use of the token as pending until
the registration completes or the session expires),
``m.login.email.identity`` (a validated e-mail session of
``identity/threepids.py``; the stage's result is the address) and, when a
captcha provider is configured, ``m.login.recaptcha``
(``accounts/captcha.py``; as on Synapse it may be completed even where no
flow asks for it).

``m.login.sso`` (when single sign-on is configured, for re-authenticating
a user whose account is linked to an identity provider): completed through
the fallback page (``accounts/sso.py``), which records the user the provider
vouched for; a session completed for another user (or for an identity linked
to no one) is refused with 403, as on Synapse.

``ui_auth.session_timeout`` keeps Synapse's meaning: for how long a completed
re-authentication lets the same access token skip the next one, for
operations that allow it (``can_skip_ui_auth``). 0, the default, never skips.

This module is the flow's logic (``UiAuth``, ``HomeServer.ui_auth``): it
takes the parsed ``auth`` dict and parameters, and raises ``UiAuthIncomplete``
while no flow is complete. Reading the body and answering 401 with the flows
and the session is the API's part (``api/client/ui_auth.py``).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, bad_json, forbidden, missing_param
from homeserver.storage.database import Txn
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.ui_auth import UiAuthSession, UiAuthStore

if TYPE_CHECKING:
    from homeserver.accounts.captcha import CaptchaVerifier
    from homeserver.accounts.login import Logins
    from homeserver.context import ServerContext
    from homeserver.http.request import Requester
    from homeserver.identity.threepids import Threepids
    from homeserver.storage.database import Database
    from homeserver.storage.sso import SsoStore
    from homeserver.storage.users import UserStore

SESSION_LIFETIME_MS = 15 * 60 * 1000

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"
EMAIL_IDENTITY = "m.login.email.identity"
RECAPTCHA = "m.login.recaptcha"
SSO = "m.login.sso"

# server-data keys
PASSWORD_HASH = "password_hash"
CLAIMED_TOKEN = "registration_token"
# the account a registration session created: a retry of the completed
# request (same session) logs that account in again instead of failing
REGISTERED_USER_ID = "registered_user_id"

# Opaque identifier grammar, at most 64 characters (registration tokens).
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")

# re-authentications remembered for ui_auth.session_timeout before the memory
# is cleared (a bound, not a policy)
MAX_REMEMBERED_REAUTHS = 10_000


def is_valid_registration_token(token: str) -> bool:
    return 0 < len(token) <= 64 and all(c in _TOKEN_CHARS for c in token)


@dataclass(frozen=True)
class UiAuthAttempt:
    """A request taking part in UIA, before its auth dict is looked at.

    ``method`` and ``uri`` name the operation: a session opened for one
    cannot authorise another."""

    method: str
    uri: str
    auth: dict[str, Any] | None
    session: UiAuthSession | None
    # the parameters the operation runs with: the session's, plus new ones
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def server_data(self) -> dict[str, Any]:
        return dict(self.session.serverdict) if self.session is not None else {}


@dataclass(frozen=True)
class UiAuthResult:
    """A completed flow: the session and the parameters to act on."""

    session_id: str | None
    params: dict[str, Any]
    server_data: dict[str, Any]
    completed: dict[str, Any]


class UiAuthIncomplete(Exception):
    """No flow is complete yet: the client has stages left (the API answers 401
    with the flows, the session and, after a failed attempt, the errcode)."""

    def __init__(self, flows: list[list[str]], session_id: str, completed: list[str],
                 errcode: str | None = None, error: str | None = None,
                 params: dict[str, Any] | None = None) -> None:
        super().__init__("user-interactive auth required")
        self.flows = flows
        # the 401's ``params``: what a client needs for a stage (a captcha's key)
        self.params = params or {}
        self.session_id = session_id
        self.completed = completed
        self.errcode = errcode
        self.error = error


class _StageFailed(Exception):
    """An attempt at a stage failed; the client may try again (401 + errcode)."""

    def __init__(self, errcode: str, msg: str) -> None:
        super().__init__(msg)
        self.errcode = errcode
        self.msg = msg



# --- transactions ----------------------------------------------------------------

def _save_session_txn(txn: Txn, session_id: str | None, new: UiAuthSession) -> UiAuthSession:
    """Open the session (``session_id`` None) or add the request's parameters to it."""
    if session_id is None:
        _purge_expired_txn(txn, new.creation_ts - SESSION_LIFETIME_MS)
        UiAuthStore.create_session_txn(txn, new)
        return new
    current = UiAuthStore.get_session_txn(txn, session_id)
    if current is None:
        # expired and purged since the request was read
        raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
    clientdict = {**new.clientdict, **current.clientdict}
    serverdict = {**new.serverdict, **current.serverdict}
    if (clientdict, serverdict) != (current.clientdict, current.serverdict):
        UiAuthStore.update_session_txn(txn, session_id, clientdict, current.completed,
                                       serverdict)
    return UiAuthSession(current.session_id, current.creation_ts, current.method, current.uri,
                         current.description, clientdict, current.user_id, current.completed,
                         serverdict)


def _purge_expired_txn(txn: Txn, cutoff_ts: int) -> None:
    """Delete expired sessions and release the registration-token uses they held."""
    expired = UiAuthStore.delete_sessions_created_before_txn(txn, cutoff_ts)
    held = Counter(s.serverdict[CLAIMED_TOKEN] for s in expired if CLAIMED_TOKEN in s.serverdict)
    for token, count in held.items():
        RegistrationTokenStore.release_uses_txn(txn, token, count)


def _mark_complete_txn(txn: Txn, session_id: str, stage: str, result: Any) -> UiAuthSession:
    session = UiAuthStore.get_session_txn(txn, session_id)
    if session is None:
        raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
    completed = {**session.completed, stage: result}
    UiAuthStore.update_session_txn(txn, session_id, session.clientdict, completed,
                                   session.serverdict)
    return UiAuthSession(session.session_id, session.creation_ts, session.method, session.uri,
                         session.description, session.clientdict, session.user_id, completed,
                         session.serverdict)


def _claim_token_txn(txn: Txn, session_id: str, token: str, now_ms: int) -> UiAuthSession | None:
    """Hold a use of ``token`` for this session; None when the token is not usable."""
    session = UiAuthStore.get_session_txn(txn, session_id)
    if session is None:
        raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
    if REGISTRATION_TOKEN in session.completed:
        return session
    if not RegistrationTokenStore.claim_use_txn(txn, token, now_ms):
        return None
    completed = {**session.completed, REGISTRATION_TOKEN: token}
    serverdict = {**session.serverdict, CLAIMED_TOKEN: token}
    UiAuthStore.update_session_txn(txn, session_id, session.clientdict, completed, serverdict)
    return UiAuthSession(session.session_id, session.creation_ts, session.method, session.uri,
                         session.description, session.clientdict, session.user_id, completed,
                         serverdict)


# --- the service -----------------------------------------------------------------

Stage = Callable[[UiAuthSession, dict[str, Any], "Requester | None"],
                 Awaitable[UiAuthSession]]


class UiAuth:
    """Sessions, stages and flows of user-interactive auth, and the memory of
    recent re-authentications (``ui_auth.session_timeout``)."""

    # which identity providers users are linked to, when single sign-on is
    # configured (m.login.sso); set by HomeServer._wire_late
    sso_links: "SsoStore | None" = None

    def __init__(self, ctx: "ServerContext", db: "Database", sessions: UiAuthStore,
                 users: "UserStore", logins: "Logins",
                 threepids: "Threepids | None" = None,
                 captcha: "CaptchaVerifier | None" = None) -> None:
        self.ctx = ctx
        # validated e-mail sessions, for m.login.email.identity
        self.threepids = threepids
        # stages and session saves are transactions over several stores
        self.db = db
        self.sessions = sessions
        self.users = users
        self.logins = logins
        # access token id -> when it last completed re-authentication
        self._last_reauth: dict[int, int] = {}
        self._stages: dict[str, Stage] = {
            DUMMY: self._dummy_stage,
            PASSWORD: self._password_stage,
            REGISTRATION_TOKEN: self._registration_token_stage,
            EMAIL_IDENTITY: self._email_identity_stage,
            # done on the fallback page: a submitted dict only asks again
            SSO: self._sso_stage,
        }
        self.captcha = captcha if captcha is not None and captcha.enabled else None
        if self.captcha is not None:
            self._stages[RECAPTCHA] = self._recaptcha_stage

    async def load(self, method: str, uri: str, auth: dict[str, Any] | None,
                   incoming: dict[str, Any], requester: "Requester | None" = None,
                   ) -> UiAuthAttempt:
        """The attempt of a request (``auth``: its auth dict; ``incoming``: the
        rest of its body) with the session it names.

        400 M_UNKNOWN for an unknown or expired session; 403 M_FORBIDDEN when the
        session was opened for another operation or another user.
        """
        session_id = auth.get("session") if auth is not None else None
        if session_id is None:
            return UiAuthAttempt(method, uri, auth, None, incoming)
        if not isinstance(session_id, str):
            raise bad_json("'auth.session' must be a string")
        session = await self.sessions.get_session(session_id)
        if session is None or session.creation_ts + SESSION_LIFETIME_MS <= self.ctx.now_ms():
            raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
        if (session.method, session.uri) != (method, uri):
            raise forbidden("Requested operation has changed during the UI authentication "
                            "session.")
        if session.user_id != (requester.user_id if requester is not None else None):
            raise forbidden("This authentication session belongs to another user")
        return UiAuthAttempt(method, uri, auth, session, {**incoming, **session.clientdict})

    # -- stages --------------------------------------------------------------------

    async def _dummy_stage(self, session: UiAuthSession, auth: dict[str, Any],
                           requester: "Requester | None") -> UiAuthSession:
        return await self.db.run_interaction("ui_auth_stage", _mark_complete_txn,
                                             session.session_id, DUMMY, True)

    async def _password_stage(self, session: UiAuthSession, auth: dict[str, Any],
                              requester: "Requester | None") -> UiAuthSession:
        if requester is None:
            raise MatrixError(400, Codes.UNKNOWN, "m.login.password needs a logged-in user")
        password = auth.get("password")
        if password is None:
            raise missing_param("password")
        if not isinstance(password, str):
            raise bad_json("'password' must be a string")
        named = await self.logins.user_for_identifier(auth)
        if named is not None and await self.logins.find_local_user(named) != requester.user_id:
            # Checked before the password: this must not test other users' passwords.
            raise forbidden("You can only re-authenticate as yourself")
        try:
            user_id = await self.logins.check_password_login(requester.user_id, password)
        except MatrixError as e:
            if e.status != 403:
                raise
            raise _StageFailed(e.errcode, e.msg) from None
        return await self.db.run_interaction("ui_auth_stage", _mark_complete_txn,
                                             session.session_id, PASSWORD, user_id)

    async def _registration_token_stage(self, session: UiAuthSession, auth: dict[str, Any],
                                        requester: "Requester | None") -> UiAuthSession:
        token = auth.get("token")
        if token is None:
            raise missing_param("token")
        if not isinstance(token, str):
            raise bad_json("'token' must be a string")
        claimed = None
        if is_valid_registration_token(token):
            claimed = await self.db.run_interaction(
                "claim_registration_token", _claim_token_txn, session.session_id, token,
                self.ctx.now_ms())
        if claimed is None:
            raise _StageFailed(Codes.UNAUTHORIZED, "Invalid registration token")
        return claimed

    async def _email_identity_stage(self, session: UiAuthSession, auth: dict[str, Any],
                                    requester: "Requester | None") -> UiAuthSession:
        creds = auth.get("threepid_creds", auth.get("threepidCreds"))
        if creds is None:
            raise missing_param("threepid_creds")
        if not isinstance(creds, dict) or self.threepids is None:
            raise bad_json("'threepid_creds' must be an object")
        try:
            validated = await self.threepids.validated_session(creds.get("sid"),
                                                               creds.get("client_secret"))
        except MatrixError as e:
            if e.status != 400 or e.errcode != Codes.THREEPID_AUTH_FAILED:
                raise
            raise _StageFailed(e.errcode, e.msg) from None
        if validated.medium != "email":
            raise _StageFailed(Codes.THREEPID_AUTH_FAILED, "Not an e-mail validation session")
        result = {"medium": validated.medium, "address": validated.address,
                  "validated_at": validated.validated_at}
        return await self.db.run_interaction("ui_auth_stage", _mark_complete_txn,
                                             session.session_id, EMAIL_IDENTITY, result)

    async def _recaptcha_stage(self, session: UiAuthSession, auth: dict[str, Any],
                               requester: "Requester | None") -> UiAuthSession:
        response = auth.get("response")
        if response is None:
            raise MatrixError(400, Codes.CAPTCHA_NEEDED, "Captcha response is required")
        if not isinstance(response, str):
            raise bad_json("'response' must be a string")
        assert self.captcha is not None
        if not await self.captcha.verify(response):
            raise _StageFailed(Codes.UNAUTHORIZED, "Captcha authentication failed")
        return await self.db.run_interaction("ui_auth_stage", _mark_complete_txn,
                                             session.session_id, RECAPTCHA, True)

    async def _sso_stage(self, session: UiAuthSession, auth: dict[str, Any],
                         requester: "Requester | None") -> UiAuthSession:
        return session

    async def complete_sso_stage(self, session_id: str, user_id: str) -> None:
        """The fallback page's provider vouched for ``user_id`` ("" for no one)."""
        await self.db.run_interaction("ui_auth_stage", _mark_complete_txn, session_id, SSO,
                                      user_id)

    def stage_params(self, flows: list[list[str]]) -> dict[str, Any]:
        """The 401's ``params`` for these flows."""
        if self.captcha is not None and any(RECAPTCHA in flow for flow in flows):
            return {RECAPTCHA: {"public_key": self.captcha.public_key}}
        return {}

    # -- the dance -----------------------------------------------------------------

    async def complete(self, attempt: UiAuthAttempt, flows: list[list[str]],
                       description: str, *, requester: "Requester | None" = None,
                       params: dict[str, Any] | None = None,
                       server_data: dict[str, Any] | None = None) -> UiAuthResult:
        """Run the attempt's auth stage and return once a flow is complete.

        ``params`` (default: the attempt's) are kept with the session, without
        overwriting what it already holds; so is ``server_data``. Raises
        ``UiAuthIncomplete`` until some flow is complete.
        """
        new = UiAuthSession(
            session_id=secrets.token_urlsafe(24), creation_ts=self.ctx.now_ms(),
            method=attempt.method, uri=attempt.uri, description=description,
            clientdict=attempt.params if params is None else params,
            user_id=requester.user_id if requester is not None else None,
            completed={}, serverdict=server_data or {})
        existing_id = attempt.session.session_id if attempt.session is not None else None
        session = await self.db.run_interaction("ui_auth_session", _save_session_txn,
                                                existing_id, new)
        session, failure = await self._run_stage(session, attempt.auth or {}, flows,
                                                 requester)
        for flow in flows:
            if all(stage in session.completed for stage in flow):
                return UiAuthResult(session.session_id, dict(session.clientdict),
                                    dict(session.serverdict), dict(session.completed))
        raise UiAuthIncomplete(flows, session.session_id, list(session.completed),
                               failure.errcode if failure is not None else None,
                               failure.msg if failure is not None else None,
                               self.stage_params(flows))

    async def _run_stage(self, session: UiAuthSession, auth: dict[str, Any],
                         flows: list[list[str]], requester: "Requester | None",
                         ) -> tuple[UiAuthSession, _StageFailed | None]:
        """The session after the stage ``auth`` names, if any, and its failure."""
        stage_type = auth.get("type")
        if stage_type is None:
            return session, None
        if not isinstance(stage_type, str):
            raise bad_json("'auth.type' must be a string")
        offered = {stage for flow in flows for stage in flow}
        # a configured captcha may be solved ahead of any flow needing it (Synapse)
        if self.captcha is not None:
            offered.add(RECAPTCHA)
        if stage_type not in offered:
            raise MatrixError(400, Codes.UNKNOWN,
                              f"Authentication type {stage_type} is not offered here")
        # A stage already done is not redone (the spec forbids retrying one).
        if stage_type in session.completed:
            return session, None
        try:
            return await self._stages[stage_type](session, auth, requester), None
        except _StageFailed as e:
            return session, e

    async def discard(self, session_id: str) -> None:
        await self.db.run_interaction("discard_ui_auth_session",
                                      UiAuthStore.delete_session_txn, session_id)

    # -- re-authentication of a logged-in user -------------------------------------

    async def reauthentication_flows(self, requester: "Requester") -> list[list[str]]:
        """The ways this user can prove it is them: their password, if they have
        one; single sign-on, if their account is linked to a provider."""
        info = await self.users.get_user(requester.user_id)
        flows = []
        if self.ctx.config.password_config["enabled"] and info is not None \
                and info.password_hash:
            flows.append([PASSWORD])
        if self.sso_links is not None and \
                await self.sso_links.get_external_ids(requester.user_id):
            flows.append([SSO])
        if flows:
            return flows
        raise MatrixError(400, Codes.UNKNOWN, "This account has no way to re-authenticate")

    async def reauthenticate(self, attempt: UiAuthAttempt, requester: "Requester",
                             description: str, *, params: dict[str, Any] | None = None,
                             server_data: dict[str, Any] | None = None) -> UiAuthResult:
        """Require the logged-in user to re-authenticate (m.login.password) before a
        sensitive action (change password, delete devices, deactivate).

        The result's params are the request body as first submitted in this UIA
        session (the spec says the server uses the body of the request that
        started the session). Raises ``UiAuthIncomplete`` until the user has
        completed a flow; MatrixError 403 when the session belongs to another
        user or the request changed between stages (``load``).
        """
        flows = await self.reauthentication_flows(requester)
        result = await self.complete(attempt, flows, description, requester=requester,
                                     params=params, server_data=server_data)
        if SSO in result.completed and result.completed[SSO] != requester.user_id:
            raise forbidden("Invalid auth: the identity provider vouched for someone else")
        if len(self._last_reauth) > MAX_REMEMBERED_REAUTHS:
            self._last_reauth.clear()
        self._last_reauth[requester.access_token_id] = self.ctx.now_ms()
        return result

    def recently_reauthenticated(self, requester: "Requester") -> bool:
        """Did this access token re-authenticate within ``ui_auth.session_timeout``
        (so an operation that allows it, ``can_skip_ui_auth``, need not ask again)?"""
        timeout = self.ctx.config.ui_auth["session_timeout"]
        if not timeout:
            return False
        last = self._last_reauth.get(requester.access_token_id)
        return last is not None and self.ctx.now_ms() - last < timeout
