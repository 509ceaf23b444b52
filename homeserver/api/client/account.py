"""The user's own account: who am I, password change, deactivation, 3PIDs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.api.client.ui_auth import answering_401, load_ui_auth, validate_user_via_ui_auth
from homeserver.errors import forbidden
from homeserver.http.parse import get_bool, get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.accounts.management import AccountManagement
    from homeserver.accounts.uia import UiAuth
    from homeserver.config import Config
    from homeserver.identity.threepids import Threepids
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


@dataclass(frozen=True)
class AccountApi:
    """What the account endpoints use."""

    accounts: "AccountManagement"
    ui_auth: "UiAuth"
    config: "Config"
    threepids: "Threepids"


def parse_deactivation(body: dict[str, Any]) -> tuple[bool, str | None]:
    """The ``erase`` flag and the ``id_server`` to unbind the addresses from."""
    id_server: str | None = get_str(body, "id_server", None)
    erase: bool = get_bool(body, "erase", False)
    return erase, id_server


async def get_whoami(api: AccountApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/account/whoami"""
    assert req.requester is not None
    body: dict[str, Any] = {"user_id": req.requester.user_id,
                            "is_guest": req.requester.is_guest}
    if req.requester.device_id is not None:
        body["device_id"] = req.requester.device_id
    return 200, body


async def post_password(api: AccountApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/password"""
    assert req.requester is not None
    if not api.config.password_config["enabled"]:
        raise forbidden("Password change is disabled on this homeserver")
    attempt = await load_ui_auth(api.ui_auth, req, req.requester)
    new_password = get_str(attempt.params, "new_password", None)
    logout_devices = get_bool(attempt.params, "logout_devices", True)
    with answering_401():
        await api.accounts.change_password(req.requester, attempt, new_password,
                                           logout_devices)
    return 200, {}


async def post_deactivate(api: AccountApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/deactivate"""
    assert req.requester is not None
    # a malformed body is refused before the password is asked for
    params = req.json(allow_empty=True)
    parse_deactivation(params)
    if req.requester.app_service is None:
        # an application service deactivates its users without a password
        params = await validate_user_via_ui_auth(api.ui_auth, req, req.requester,
                                                 "deactivate your account")
    erase, id_server = parse_deactivation(params)
    unbound = await api.threepids.deactivate(req.user_id, id_server)
    await api.accounts.deactivate_account(req.user_id, erase)
    return 200, {"id_server_unbind_result": unbound}


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/account/whoami", get_whoami, allow_guest=True),
    Endpoint("POST", f"{CLIENT_V3}/account/password", post_password),
    Endpoint("POST", f"{CLIENT_V3}/account/deactivate", post_deactivate),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    api = AccountApi(hs.account_management, hs.ui_auth, hs.config, hs.threepids)
    router.add_endpoints(api, ENDPOINTS)
