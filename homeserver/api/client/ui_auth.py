"""User-interactive auth as the client-server API sees it.

The flow's logic (sessions, stages, flows) is ``accounts/uia.py``; this is
its edge: reading the request's ``auth`` dict and parameters into a
``UiAuthAttempt`` (the operation is named by the request's method and path),
and answering 401 with the flows, the session, the completed stages and,
after a failed attempt, ``errcode``/``error`` while no flow is complete.
Endpoints that run a flow do it inside ``answering_401()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from homeserver.accounts.uia import UiAuthAttempt, UiAuthIncomplete
from homeserver.errors import InteractiveAuthIncomplete, bad_json

if TYPE_CHECKING:
    from homeserver.accounts.uia import UiAuth
    from homeserver.http.request import HttpRequest, Requester


def request_uri(req: "HttpRequest") -> str:
    """The path a UIA session is bound to (with the query string, as sent)."""
    return bytes(req.raw.path).decode("ascii", "replace")


def body_without_auth(req: "HttpRequest") -> dict[str, Any]:
    return {k: v for k, v in req.json(allow_empty=True).items() if k != "auth"}


def incomplete_body(e: UiAuthIncomplete) -> dict[str, Any]:
    """The spec's 401 body of a flow with stages left."""
    body: dict[str, Any] = {
        "flows": [{"stages": list(flow)} for flow in e.flows],
        "params": e.params,
        "session": e.session_id,
        "completed": e.completed,
    }
    if e.errcode is not None:
        body["errcode"] = e.errcode
        body["error"] = e.error
    return body


@contextmanager
def answering_401() -> Iterator[None]:
    """Turn an incomplete flow into the 401 answer."""
    try:
        yield
    except UiAuthIncomplete as e:
        raise InteractiveAuthIncomplete(incomplete_body(e)) from None


async def load_ui_auth(ui_auth: "UiAuth", req: "HttpRequest",
                       requester: "Requester | None" = None) -> UiAuthAttempt:
    """Read the request's ``auth`` dict and the session it names.

    400 M_UNKNOWN for an unknown or expired session; 403 M_FORBIDDEN when the
    session was opened for another operation or another user.
    """
    body = req.json(allow_empty=True)
    auth = body.get("auth")
    if auth is not None and not isinstance(auth, dict):
        raise bad_json("'auth' must be an object")
    incoming = {k: v for k, v in body.items() if k != "auth"}
    return await ui_auth.load(req.method, request_uri(req), auth, incoming, requester)


async def validate_user_via_ui_auth(ui_auth: "UiAuth", req: "HttpRequest",
                                    requester: "Requester", description: str, *,
                                    can_skip_ui_auth: bool = False) -> dict[str, Any]:
    """Require the logged-in user to re-authenticate before a sensitive action;
    the request body as first submitted in this UIA session.

    Answers 401 (flows, params, session, completed and, after a failed
    attempt, errcode/error) until the user has completed a flow; 403 when the
    session belongs to another user or the request changed between stages.

    ``can_skip_ui_auth``: the action may go ahead without asking again when
    this access token re-authenticated within ``ui_auth.session_timeout``.
    """
    if can_skip_ui_auth and ui_auth.recently_reauthenticated(requester):
        return body_without_auth(req)
    attempt = await load_ui_auth(ui_auth, req, requester)
    with answering_401():
        result = await ui_auth.reauthenticate(attempt, requester, description)
    return result.params
