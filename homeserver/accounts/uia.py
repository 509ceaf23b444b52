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
logged-in user; failed attempts share the per-account login limit) and
``m.login.registration_token`` (holds one use of the token as pending until
the registration completes or the session expires).

``ui_auth.session_timeout`` keeps Synapse's meaning: for how long a completed
re-authentication lets the same access token skip the next one, for
operations that allow it (``can_skip_ui_auth``). 0, the default, never skips.
"""

from __future__ import annotations

import secrets
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.accounts.login import check_password_login, find_local_user, user_from_identifier
from homeserver.errors import (
    Codes,
    InteractiveAuthIncomplete,
    MatrixError,
    bad_json,
    forbidden,
    missing_param,
)
from homeserver.http.request import HttpRequest, Requester
from homeserver.storage.database import Txn
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.ui_auth import UiAuthSession, UiAuthStore

if TYPE_CHECKING:
    from homeserver.server import HomeServer

SESSION_LIFETIME_MS = 15 * 60 * 1000

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"

# server-data keys
PASSWORD_HASH = "password_hash"
CLAIMED_TOKEN = "registration_token"

# Opaque identifier grammar, at most 64 characters (registration tokens).
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")


def is_valid_registration_token(token: str) -> bool:
    return 0 < len(token) <= 64 and all(c in _TOKEN_CHARS for c in token)


@dataclass(frozen=True)
class UiAuthAttempt:
    """A request taking part in UIA, before its auth dict is looked at."""

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


class _StageFailed(Exception):
    """An attempt at a stage failed; the client may try again (401 + errcode)."""

    def __init__(self, errcode: str, msg: str) -> None:
        super().__init__(msg)
        self.errcode = errcode
        self.msg = msg


def _request_uri(req: HttpRequest) -> str:
    return bytes(req.raw.path).decode("ascii", "replace")


async def load_ui_auth(hs: "HomeServer", req: HttpRequest,
                       requester: Requester | None = None) -> UiAuthAttempt:
    """Read the request's ``auth`` dict and the session it names.

    400 M_UNKNOWN for an unknown or expired session; 403 M_FORBIDDEN when the
    session was opened for another operation or another user.
    """
    body = req.json(allow_empty=True)
    auth = body.get("auth")
    if auth is not None and not isinstance(auth, dict):
        raise bad_json("'auth' must be an object")
    incoming = {k: v for k, v in body.items() if k != "auth"}
    session_id = auth.get("session") if auth is not None else None
    if session_id is None:
        return UiAuthAttempt(auth, None, incoming)
    if not isinstance(session_id, str):
        raise bad_json("'auth.session' must be a string")
    session = await hs.stores.ui_auth.get_session(session_id)
    if session is None or session.creation_ts + SESSION_LIFETIME_MS <= hs.now_ms():
        raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
    if (session.method, session.uri) != (req.method, _request_uri(req)):
        raise forbidden("Requested operation has changed during the UI authentication session.")
    if session.user_id != (requester.user_id if requester is not None else None):
        raise forbidden("This authentication session belongs to another user")
    return UiAuthAttempt(auth, session, {**incoming, **session.clientdict})


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


# --- stages ---------------------------------------------------------------------

Stage = Callable[["HomeServer", UiAuthSession, dict[str, Any], "Requester | None"],
                 Awaitable[UiAuthSession]]


async def _dummy_stage(hs: "HomeServer", session: UiAuthSession, auth: dict[str, Any],
                       requester: Requester | None) -> UiAuthSession:
    return await hs.db.run_interaction("ui_auth_stage", _mark_complete_txn,
                                       session.session_id, DUMMY, True)


async def _password_stage(hs: "HomeServer", session: UiAuthSession, auth: dict[str, Any],
                          requester: Requester | None) -> UiAuthSession:
    if requester is None:
        raise MatrixError(400, Codes.UNKNOWN, "m.login.password needs a logged-in user")
    password = auth.get("password")
    if password is None:
        raise missing_param("password")
    if not isinstance(password, str):
        raise bad_json("'password' must be a string")
    named = user_from_identifier(hs, auth)
    if named is not None and await find_local_user(hs, named) != requester.user_id:
        # Checked before the password: this must not test other users' passwords.
        raise forbidden("You can only re-authenticate as yourself")
    try:
        user_id = await check_password_login(hs, requester.user_id, password)
    except MatrixError as e:
        if e.status != 403:
            raise
        raise _StageFailed(e.errcode, e.msg) from None
    return await hs.db.run_interaction("ui_auth_stage", _mark_complete_txn,
                                       session.session_id, PASSWORD, user_id)


async def _registration_token_stage(hs: "HomeServer", session: UiAuthSession,
                                    auth: dict[str, Any],
                                    requester: Requester | None) -> UiAuthSession:
    token = auth.get("token")
    if token is None:
        raise missing_param("token")
    if not isinstance(token, str):
        raise bad_json("'token' must be a string")
    claimed = None
    if is_valid_registration_token(token):
        claimed = await hs.db.run_interaction("claim_registration_token", _claim_token_txn,
                                              session.session_id, token, hs.now_ms())
    if claimed is None:
        raise _StageFailed(Codes.UNAUTHORIZED, "Invalid registration token")
    return claimed


_STAGES: dict[str, Stage] = {
    DUMMY: _dummy_stage,
    PASSWORD: _password_stage,
    REGISTRATION_TOKEN: _registration_token_stage,
}


# --- the dance --------------------------------------------------------------------

async def complete_ui_auth(hs: "HomeServer", req: HttpRequest, attempt: UiAuthAttempt,
                           flows: list[list[str]], description: str, *,
                           requester: Requester | None = None,
                           params: dict[str, Any] | None = None,
                           server_data: dict[str, Any] | None = None) -> UiAuthResult:
    """Run the request's auth stage and return once a flow is complete.

    ``params`` (default: the attempt's) are kept with the session, without
    overwriting what it already holds; so is ``server_data``. Raises
    ``InteractiveAuthIncomplete`` (the 401 body) until some flow is complete.
    """
    new = UiAuthSession(
        session_id=secrets.token_urlsafe(24), creation_ts=hs.now_ms(), method=req.method,
        uri=_request_uri(req), description=description,
        clientdict=attempt.params if params is None else params,
        user_id=requester.user_id if requester is not None else None,
        completed={}, serverdict=server_data or {})
    existing_id = attempt.session.session_id if attempt.session is not None else None
    session = await hs.db.run_interaction("ui_auth_session", _save_session_txn, existing_id, new)

    failure: _StageFailed | None = None
    auth = attempt.auth or {}
    stage_type = auth.get("type")
    if stage_type is not None:
        if not isinstance(stage_type, str):
            raise bad_json("'auth.type' must be a string")
        offered = {stage for flow in flows for stage in flow}
        if stage_type not in offered:
            raise MatrixError(400, Codes.UNKNOWN,
                              f"Authentication type {stage_type} is not offered here")
        # A stage already done is not redone (the spec forbids retrying one).
        if stage_type not in session.completed:
            try:
                session = await _STAGES[stage_type](hs, session, auth, requester)
            except _StageFailed as e:
                failure = e

    for flow in flows:
        if all(stage in session.completed for stage in flow):
            return UiAuthResult(session.session_id, dict(session.clientdict),
                                dict(session.serverdict), dict(session.completed))
    body: dict[str, Any] = {
        "flows": [{"stages": list(flow)} for flow in flows],
        "params": {},
        "session": session.session_id,
        "completed": list(session.completed),
    }
    if failure is not None:
        body["errcode"] = failure.errcode
        body["error"] = failure.msg
    raise InteractiveAuthIncomplete(body)


async def discard_ui_auth_session(hs: "HomeServer", session_id: str) -> None:
    await hs.db.run_interaction("discard_ui_auth_session", UiAuthStore.delete_session_txn,
                                session_id)


# --- re-authentication of a logged-in user --------------------------------------

# HomeServer -> access token id -> when it last completed re-authentication
_last_reauth: "weakref.WeakKeyDictionary[HomeServer, dict[int, int]]" = \
    weakref.WeakKeyDictionary()


async def reauthentication_flows(hs: "HomeServer", requester: Requester) -> list[list[str]]:
    """The ways this user can prove it is them: their password, if they have one."""
    info = await hs.stores.users.get_user(requester.user_id)
    if hs.config.password_config["enabled"] and info is not None and info.password_hash:
        return [[PASSWORD]]
    raise MatrixError(400, Codes.UNKNOWN, "This account has no way to re-authenticate")


async def reauthenticate(hs: "HomeServer", req: HttpRequest, requester: Requester,
                         description: str, *, attempt: UiAuthAttempt | None = None,
                         params: dict[str, Any] | None = None,
                         server_data: dict[str, Any] | None = None) -> UiAuthResult:
    """``validate_user_via_ui_auth`` for callers that keep secrets in server data."""
    if attempt is None:
        attempt = await load_ui_auth(hs, req, requester)
    flows = await reauthentication_flows(hs, requester)
    result = await complete_ui_auth(hs, req, attempt, flows, description, requester=requester,
                                    params=params, server_data=server_data)
    seen = _last_reauth.setdefault(hs, {})
    if len(seen) > 10_000:
        seen.clear()
    seen[requester.access_token_id] = hs.now_ms()
    return result


async def validate_user_via_ui_auth(hs: "HomeServer", req: HttpRequest, requester: Requester,
                                    description: str, *,
                                    can_skip_ui_auth: bool = False) -> dict[str, Any]:
    """Require the logged-in user to re-authenticate (m.login.password) before a
    sensitive action (change password, delete devices, deactivate).

    Returns the request body as first submitted in this UIA session (the spec
    says the server uses the body of the request that started the session).
    Raises ``InteractiveAuthIncomplete`` (401 with flows, params, session,
    completed and, after a failed attempt, errcode/error) until the user has
    completed a flow; raises MatrixError 403 when the session belongs to
    another user or the request changed between stages.

    ``can_skip_ui_auth``: the action may go ahead without asking again when
    this access token re-authenticated within ``ui_auth.session_timeout``.
    """
    timeout = hs.config.ui_auth["session_timeout"]
    if can_skip_ui_auth and timeout:
        last = _last_reauth.get(hs, {}).get(requester.access_token_id)
        if last is not None and hs.now_ms() - last < timeout:
            return {k: v for k, v in req.json(allow_empty=True).items() if k != "auth"}
    result = await reauthenticate(hs, req, requester, description)
    return result.params
