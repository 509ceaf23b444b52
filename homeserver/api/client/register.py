"""Registration: ``POST /register`` (with user-interactive auth), username
availability, and the validity check of registration tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.registration import LoginRequest, Registration
from homeserver.accounts.uia import is_valid_registration_token
from homeserver.api.client.login import parse_device
from homeserver.api.client.ui_auth import answering_401, load_ui_auth
from homeserver.config import RateLimit
from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.http.parse import get_bool, get_str, query_str
from homeserver.http.ratelimit import Ratelimiter
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.accounts.registration import Registrations
    from homeserver.accounts.uia import UiAuth
    from homeserver.config import Config
    from homeserver.context import ServerContext
    from homeserver.http.auth import Auth
    from homeserver.server import HomeServer
    from homeserver.storage.registration_tokens import RegistrationTokenStore

CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"
APP_SERVICE_LOGIN_TYPE = "m.login.application_service"

# Synapse's rc_registration_token_validity default: guessing tokens stays slow.
TOKEN_VALIDITY_RATE = RateLimit(per_second=0.1, burst_count=5)


@dataclass(frozen=True)
class RegisterApi:
    """What the registration endpoints use."""

    ctx: "ServerContext"
    registrations: "Registrations"
    ui_auth: "UiAuth"
    tokens: "RegistrationTokenStore"
    # rc_registration, checked before the flow (taken once it is complete)
    registration_limiter: Ratelimiter
    token_validity_limiter: Ratelimiter
    # application services register their users with their as_token
    auth: "Auth"

    @property
    def config(self) -> "Config":
        return self.ctx.config


def parse_registration(params: dict[str, Any]) -> Registration:
    """The registration parameters (from the request, or kept by its UIA session)."""
    username = get_str(params, "username", None)
    password = get_str(params, "password", None)
    device_id, display_name = parse_device(params)
    inhibit_login = get_bool(params, "inhibit_login", False)
    refreshable = get_bool(params, "refresh_token", False)
    login = None if inhibit_login else LoginRequest(device_id, display_name, refreshable)
    guest_access_token = get_str(params, "guest_access_token", None)
    # Lower-cased as Synapse does: logins match ignoring case anyway.
    return Registration(username.lower() if username is not None else None, password, login,
                        guest_access_token)


async def post_register(api: RegisterApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/register"""
    body = req.json()
    if body.get("type") == APP_SERVICE_LOGIN_TYPE:
        return await _register_app_service_user(api, req, body)
    api.registration_limiter.check(req.client_ip)
    kind = query_str(req.args, "kind", "user")
    if kind == "guest":
        device_id, display_name = parse_device(req.json(allow_empty=True))
        registered = await api.registrations.register_guest(
            LoginRequest(device_id, display_name, False), req.client_ip)
        return 200, registered.to_client(api.ctx.hostname)
    if kind != "user":
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown account kind {kind!r}")
    if not api.config.enable_registration:
        raise forbidden("Registration has been disabled")
    attempt = await load_ui_auth(api.ui_auth, req)
    registration = parse_registration(attempt.params)
    with answering_401():
        registered = await api.registrations.register_via_ui_auth(attempt, registration,
                                                                  req.client_ip)
    return 200, registered.to_client(api.ctx.hostname)


async def _register_app_service_user(api: RegisterApi, req: HttpRequest,
                                     body: dict[str, Any]) -> tuple[int, Any]:
    """``type: m.login.application_service``: a service registers a user of
    its namespace with its as_token (no UIA; registration may be closed)."""
    service = api.auth.get_app_service(req)
    if service is None:
        raise MatrixError(401, Codes.UNKNOWN_TOKEN,
                          "m.login.application_service needs an application service's token")
    username = get_str(body, "username")
    registration = parse_registration(body)
    registered = await api.registrations.register_app_service_user(
        service, username, registration.login)
    return 200, registered.to_client(api.ctx.hostname)


async def get_available(api: RegisterApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/register/available"""
    if not api.config.enable_registration:
        raise forbidden("Registration has been disabled")
    await api.registrations.check_username(query_str(req.args, "username"))
    return 200, {"available": True}


async def get_token_validity(api: RegisterApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/register/m.login.registration_token/validity"""
    if not (api.config.enable_registration and api.config.registration_requires_token):
        raise forbidden("Registration tokens are not enabled on this homeserver.")
    api.token_validity_limiter.ratelimit(req.client_ip)
    token = query_str(req.args, "token")
    valid = is_valid_registration_token(token) and \
        await api.tokens.is_token_usable(token, api.ctx.now_ms())
    return 200, {"valid": valid}


ENDPOINTS = (
    Endpoint("POST", f"{CLIENT_V3}/register", post_register, auth=AUTH_NONE),
    Endpoint("GET", f"{CLIENT_V3}/register/available", get_available, auth=AUTH_NONE),
    Endpoint("GET", f"{CLIENT_V1}/register/m.login.registration_token/validity",
             get_token_validity, auth=AUTH_NONE),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    api = RegisterApi(hs.ctx, hs.registrations, hs.ui_auth, hs.stores.registration_tokens,
                      hs.ratelimiters["registration"],
                      Ratelimiter(hs.clock, "rc_registration_token_validity",
                                  TOKEN_VALIDITY_RATE), hs.auth)
    router.add_endpoints(api, ENDPOINTS)
