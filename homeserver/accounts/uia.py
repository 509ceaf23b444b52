"""User-interactive authentication (the spec's "User-interactive API").

(Interface fixed; implementation to be written.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.request import HttpRequest, Requester

if TYPE_CHECKING:
    from homeserver.server import HomeServer


async def validate_user_via_ui_auth(hs: "HomeServer", req: HttpRequest, requester: Requester,
                                    description: str) -> dict[str, Any]:
    """Require the logged-in user to re-authenticate (m.login.password) before a
    sensitive action (change password, delete devices, deactivate).

    Returns the request body as first submitted in this UIA session (the spec
    says the server uses the body of the request that started the session).
    Raises ``InteractiveAuthIncomplete`` (401 with flows, params, session,
    completed and, after a failed attempt, errcode/error) until the user has
    completed a flow; raises MatrixError 403 when the session belongs to
    another user or the request changed between stages.
    """
    raise NotImplementedError
