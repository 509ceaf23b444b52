"""The user's own account: who am I, password change, deactivation, 3PIDs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.accounts.management import change_password, deactivate_account
from homeserver.accounts.uia import load_ui_auth, validate_user_via_ui_auth
from homeserver.errors import forbidden
from homeserver.http.parse import get_bool, get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


def parse_deactivation(body: dict[str, Any]) -> bool:
    """The ``erase`` flag; ``id_server`` is accepted and unused (no 3PIDs here)."""
    get_str(body, "id_server", None)
    erase: bool = get_bool(body, "erase", False)
    return erase


def register_routes(hs: "HomeServer", router: Router) -> None:
    async def get_whoami(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v3/account/whoami"""
        assert req.requester is not None
        body: dict[str, Any] = {"user_id": req.requester.user_id,
                                "is_guest": req.requester.is_guest}
        if req.requester.device_id is not None:
            body["device_id"] = req.requester.device_id
        return 200, body

    async def post_password(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/account/password"""
        assert req.requester is not None
        if not hs.config.password_config["enabled"]:
            raise forbidden("Password change is disabled on this homeserver")
        attempt = await load_ui_auth(hs, req, req.requester)
        new_password = get_str(attempt.params, "new_password", None)
        logout_devices = get_bool(attempt.params, "logout_devices", True)
        await change_password(hs, req, req.requester, attempt, new_password, logout_devices)
        return 200, {}

    async def post_deactivate(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/account/deactivate"""
        assert req.requester is not None
        # a malformed body is refused before the password is asked for
        parse_deactivation(req.json(allow_empty=True))
        params = await validate_user_via_ui_auth(hs, req, req.requester,
                                                 "deactivate your account")
        await deactivate_account(hs, req.user_id, parse_deactivation(params))
        return 200, {"id_server_unbind_result": "no-support"}

    async def get_threepids(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v3/account/3pid"""
        return 200, {"threepids": []}

    router.add("GET", f"{CLIENT_V3}/account/whoami", get_whoami, allow_guest=True)
    router.add("POST", f"{CLIENT_V3}/account/password", post_password)
    router.add("POST", f"{CLIENT_V3}/account/deactivate", post_deactivate)
    router.add("GET", f"{CLIENT_V3}/account/3pid", get_threepids)
