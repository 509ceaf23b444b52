"""Login sessions: log in (password, login token, JWT), get a login token for
another device, refresh tokens, log out.

SSO's browser pages are ``api/client/sso.py``; what the login types check is
in ``accounts/`` (``login.py``, ``login_tokens.py``, ``jwt_login.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.jwt_login import LOGIN_TYPE_JWT
from homeserver.accounts.login import LOGIN_TYPE_PASSWORD
from homeserver.accounts.login_tokens import LOGIN_TYPE_TOKEN
from homeserver.api.client.ui_auth import validate_user_via_ui_auth
from homeserver.errors import Codes, MatrixError, forbidden, missing_param
from homeserver.http.auth import token_from_request
from homeserver.http.parse import get_bool, get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.accounts.jwt_login import JwtLogins
    from homeserver.accounts.login import Logins
    from homeserver.accounts.login_tokens import LoginTokens
    from homeserver.accounts.management import AccountManagement
    from homeserver.accounts.sessions import Sessions
    from homeserver.accounts.uia import UiAuth
    from homeserver.config import Config
    from homeserver.http.auth import Auth
    from homeserver.http.ratelimit import Ratelimiter
    from homeserver.moderation.gate import ModerationGate
    from homeserver.server import HomeServer
    from homeserver.storage.users import UserStore

CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"
LOGIN_TYPE_SSO = "m.login.sso"
LOGIN_TYPE_CAS = "m.login.cas"
LOGIN_TYPE_APP_SERVICE = "m.login.application_service"

# Device IDs are chosen by clients; keep them to a size any table can index.
MAX_DEVICE_ID_LENGTH = 512


@dataclass(frozen=True)
class LoginApi:
    """What the login endpoints use."""

    config: "Config"
    logins: "Logins"
    sessions: "Sessions"
    accounts: "AccountManagement"
    # rc_login.address and rc_login.account
    address_limiter: "Ratelimiter"
    account_limiter: "Ratelimiter"
    # m.login.application_service: the as_token and the users it may log in
    auth: "Auth"
    users: "UserStore"
    # m.login.token and POST /login/get_token
    login_tokens: "LoginTokens"
    ui_auth: "UiAuth"
    # org.matrix.login.jwt (None when jwt_config is off)
    jwt: "JwtLogins | None" = None
    # spam checker modules' check_login_for_spam (moderation/gate.py)
    gate: "ModerationGate | None" = None


def parse_device(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """``device_id`` and ``initial_device_display_name`` of a login or registration."""
    device_id = get_str(body, "device_id", None)
    if device_id is not None and not 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"device_id must be 1 to {MAX_DEVICE_ID_LENGTH} characters")
    display_name = get_str(body, "initial_device_display_name", None)
    return device_id, display_name


async def get_login_flows(api: LoginApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/login"""
    sso = api.config.sso_config
    flows: list[dict[str, Any]] = []
    if sso.jwt is not None:
        flows.append({"type": LOGIN_TYPE_JWT})
    if sso.cas is not None:
        # the type clients (and SyTest) of CAS's time look for
        flows.append({"type": LOGIN_TYPE_CAS})
    if sso.sso_enabled:
        flows.append({"type": LOGIN_TYPE_SSO,
                      "identity_providers": [p.to_client() for p in sso.identity_providers]})
    get_token = api.config.login_via_existing_session["enabled"]
    if sso.sso_enabled or get_token:
        flows.append({"type": LOGIN_TYPE_TOKEN, "get_login_token": True} if get_token
                     else {"type": LOGIN_TYPE_TOKEN})
    if api.config.password_config["enabled"]:
        flows.append({"type": LOGIN_TYPE_PASSWORD})
    if api.config.app_services:
        flows.append({"type": LOGIN_TYPE_APP_SERVICE})
    return 200, {"flows": flows}


async def post_login(api: LoginApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/login"""
    body = req.json()
    login_type = get_str(body, "type")
    if login_type == LOGIN_TYPE_APP_SERVICE:
        return await _app_service_login(api, req, body)
    api.address_limiter.ratelimit(req.client_ip)
    if login_type == LOGIN_TYPE_TOKEN:
        spent = await api.login_tokens.spend(get_str(body, "token"))
        status, session = await _log_in(api, req, spent.user_id, body, spent.auth_provider_id)
        await api.login_tokens.logged_in(spent, session["device_id"])
        return status, session
    if login_type == LOGIN_TYPE_JWT and api.jwt is not None:
        return await _log_in(api, req, await api.jwt.check(get_str(body, "token")), body,
                             "jwt")
    if login_type != LOGIN_TYPE_PASSWORD or not api.config.password_config["enabled"]:
        raise MatrixError(400, Codes.UNKNOWN, "Unknown login type")
    hostname = api.config.server_name
    user = await api.logins.user_for_identifier(body)
    if user is None:
        raise missing_param("identifier")
    password = get_str(body, "password")
    device_id, display_name = parse_device(body)
    refreshable = get_bool(body, "refresh_token", False)
    user_id = await api.logins.check_password_login(user, password)
    api.account_limiter.ratelimit(user_id.lower())
    if api.gate is not None:
        await api.gate.check_login(user_id, device_id, display_name, req.client_ip, None)
    session = await api.sessions.create_login_session(user_id, device_id, display_name,
                                                      refreshable)
    return 200, session.to_client(hostname)


async def _log_in(api: LoginApi, req: HttpRequest, user_id: str, body: dict[str, Any],
                  auth_provider_id: str | None) -> tuple[int, Any]:
    """A new session for a user a token vouched for."""
    device_id, display_name = parse_device(body)
    api.account_limiter.ratelimit(user_id.lower())
    if api.gate is not None:
        await api.gate.check_login(user_id, device_id, display_name, req.client_ip,
                                   auth_provider_id)
    session = await api.sessions.create_login_session(
        user_id, device_id, display_name, get_bool(body, "refresh_token", False))
    return 200, session.to_client(api.config.server_name)


async def post_get_login_token(api: LoginApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v1/login/get_token"""
    settings = api.config.login_via_existing_session
    if not settings["enabled"]:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    assert req.requester is not None
    if settings["require_ui_auth"]:
        await validate_user_via_ui_auth(api.ui_auth, req, req.requester,
                                        "sign in on a new device with a login token")
    else:
        req.json(allow_empty=True)
    api.account_limiter.ratelimit(req.user_id.lower())
    lifetime = settings["token_timeout"]
    token = await api.login_tokens.issue(req.user_id, lifetime)
    return 200, {"login_token": token, "expires_in_ms": lifetime}


async def _app_service_login(api: LoginApi, req: HttpRequest,
                             body: dict[str, Any]) -> tuple[int, Any]:
    """``m.login.application_service``: a service logs in a user of its
    namespace with its as_token (a new device and access token)."""
    requester = await api.auth.get_requester(req)
    service = requester.app_service if requester is not None else None
    if service is None:
        raise MatrixError(401, Codes.MISSING_TOKEN if token_from_request(req) is None
                          else Codes.UNKNOWN_TOKEN,
                          "m.login.application_service needs an application service's token")
    user_id = await api.logins.user_for_identifier(body)
    if user_id is None:
        raise missing_param("identifier")
    if not service.is_interested_in_user(user_id):
        raise forbidden("This user is not in the application service's namespace")
    info = await api.users.get_user(user_id)
    if info is None or info.deactivated:
        raise forbidden("Invalid username or password")
    device_id, display_name = parse_device(body)
    session = await api.sessions.create_login_session(
        user_id, device_id, display_name, get_bool(body, "refresh_token", False))
    return 200, session.to_client(api.config.server_name)


async def post_refresh(api: LoginApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/refresh"""
    refresh_token = get_str(req.json(), "refresh_token")
    tokens = await api.logins.refresh_session(refresh_token)
    return 200, tokens.to_client()


async def post_logout(api: LoginApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/logout"""
    assert req.requester is not None
    await api.accounts.logout(req.requester)
    return 200, {}


async def post_logout_all(api: LoginApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/logout/all"""
    await api.accounts.logout_all(req.user_id)
    return 200, {}


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/login", get_login_flows, auth=AUTH_NONE),
    Endpoint("POST", f"{CLIENT_V3}/login", post_login, auth=AUTH_NONE),
    Endpoint("POST", f"{CLIENT_V1}/login/get_token", post_get_login_token),
    Endpoint("POST", f"{CLIENT_V3}/refresh", post_refresh, auth=AUTH_NONE),
    Endpoint("POST", f"{CLIENT_V3}/logout", post_logout, allow_guest=True),
    Endpoint("POST", f"{CLIENT_V3}/logout/all", post_logout_all, allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    api = LoginApi(hs.config, hs.logins, hs.sessions, hs.account_management,
                   hs.ratelimiters["login_address"], hs.ratelimiters["login_account"],
                   hs.auth, hs.stores.users, hs.login_tokens, hs.ui_auth, hs.jwt_logins,
                   hs.moderation_gate if hs.moderation_gate.spam_checker.active else None)
    router.add_endpoints(api, ENDPOINTS)
