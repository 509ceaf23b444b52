"""Login sessions: log in with a password, refresh tokens, log out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.accounts.login import (
    LOGIN_TYPE_PASSWORD,
    check_password_login,
    refresh_session,
    user_from_identifier,
)
from homeserver.accounts.management import logout, logout_all
from homeserver.accounts.sessions import create_login_session
from homeserver.errors import Codes, MatrixError, missing_param
from homeserver.http.parse import get_bool, get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"

# Device IDs are chosen by clients; keep them to a size any table can index.
MAX_DEVICE_ID_LENGTH = 512


def parse_device(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """``device_id`` and ``initial_device_display_name`` of a login or registration."""
    device_id = get_str(body, "device_id", None)
    if device_id is not None and not 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"device_id must be 1 to {MAX_DEVICE_ID_LENGTH} characters")
    display_name = get_str(body, "initial_device_display_name", None)
    return device_id, display_name


def register_routes(hs: "HomeServer", router: Router) -> None:
    async def get_login_flows(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v3/login"""
        flows = [{"type": LOGIN_TYPE_PASSWORD}] if hs.config.password_config["enabled"] else []
        return 200, {"flows": flows}

    async def post_login(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/login"""
        body = req.json()
        login_type = get_str(body, "type")
        hs.ratelimiters["login_address"].ratelimit(req.client_ip)
        if login_type != LOGIN_TYPE_PASSWORD or not hs.config.password_config["enabled"]:
            raise MatrixError(400, Codes.UNKNOWN, "Unknown login type")
        user = user_from_identifier(hs, body)
        if user is None:
            raise missing_param("identifier")
        password = get_str(body, "password")
        device_id, display_name = parse_device(body)
        refreshable = get_bool(body, "refresh_token", False)
        user_id = await check_password_login(hs, user, password)
        hs.ratelimiters["login_account"].ratelimit(user_id.lower())
        session = await create_login_session(hs, user_id, device_id, display_name, refreshable)
        return 200, session.to_client(hs)

    async def post_refresh(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/refresh"""
        refresh_token = get_str(req.json(), "refresh_token")
        tokens = await refresh_session(hs, refresh_token)
        return 200, tokens.to_client()

    async def post_logout(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/logout"""
        assert req.requester is not None
        await logout(hs, req.requester)
        return 200, {}

    async def post_logout_all(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/logout/all"""
        await logout_all(hs, req.user_id)
        return 200, {}

    router.add("GET", f"{CLIENT_V3}/login", get_login_flows, auth=AUTH_NONE)
    router.add("POST", f"{CLIENT_V3}/login", post_login, auth=AUTH_NONE)
    router.add("POST", f"{CLIENT_V3}/refresh", post_refresh, auth=AUTH_NONE)
    router.add("POST", f"{CLIENT_V3}/logout", post_logout, allow_guest=True)
    router.add("POST", f"{CLIENT_V3}/logout/all", post_logout_all, allow_guest=True)
