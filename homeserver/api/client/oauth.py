"""The OAuth 2.0 API's endpoints (the rules are ``accounts/oauth_server.py``).

Routed only with ``oauth_api.enabled``; without it ``auth_metadata`` is 404
M_UNRECOGNIZED, which tells clients to use the legacy login API. The
sign-in page keeps the authorization request in a sign-in session named by
an HttpOnly cookie (``storage/sso.py`` sessions of kind ``oauth``), so the
form's POST cannot be forged from another site and the request cannot be
changed between the page and the grant.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from homeserver.accounts.login import qualify_user_id
from homeserver.accounts.oauth_server import (
    AuthorizationRequest,
    BadAuthorizationRequest,
    OAuthError,
)
from homeserver.api.client.sso import PAGE_HEADERS
from homeserver.api.client.sso_pages import render_page
from homeserver.errors import MatrixError
from homeserver.http.resource import RawResponse
from homeserver.http.router import AUTH_NONE, Endpoint, Router
from homeserver.storage.sso import SsoSession

if TYPE_CHECKING:
    from homeserver.accounts.login import Logins
    from homeserver.accounts.login_tokens import LoginTokens
    from homeserver.accounts.oauth_server import OAuthServer
    from homeserver.accounts.sso_config import SsoConfig
    from homeserver.context import ServerContext
    from homeserver.http.ratelimit import Ratelimiter
    from homeserver.http.request import HttpRequest
    from homeserver.server import HomeServer
    from homeserver.storage.sso import SsoStore

OAUTH = "/_synapse/client/oauth2"
COOKIE = "oauth_session"
KIND = "oauth"
# the sign-in session's key for the user code of a device grant
DEVICE = "device_user_code"
SESSION_LIFETIME_MS = 15 * 60_000
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class OAuthApi:
    ctx: "ServerContext"
    server: "OAuthServer"
    sessions: "SsoStore"
    logins: "Logins"
    login_tokens: "LoginTokens"
    sso: "SsoConfig"
    # rc_registration for client registration, rc_login.address for sign-ins
    registration_limiter: "Ratelimiter"
    login_limiter: "Ratelimiter"


def _form(req: "HttpRequest") -> dict[str, str]:
    try:
        return dict(parse_qsl(req.content().decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def _query(req: "HttpRequest") -> dict[str, str]:
    out = {}
    for k, v in req.args.items():
        try:
            out[k.decode("utf-8")] = v[0].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


def _oauth_error(e: OAuthError) -> tuple[int, Any]:
    return e.status, e.to_json()


def _page(status: int, name: str, title: str, headers: dict[str, str] | None = None,
          **fields: Any) -> tuple[int, RawResponse]:
    return status, RawResponse(render_page(name, title, **fields), HTML,
                               {**PAGE_HEADERS, **(headers or {})})


def _redirect(url: str, headers: dict[str, str] | None = None) -> tuple[int, RawResponse]:
    return 302, RawResponse(b"", "text/plain", {**PAGE_HEADERS, "Location": url,
                                                **(headers or {})})


def _cookie(api: OAuthApi, value: str, max_age_s: int) -> str:
    secure = "; Secure" if api.ctx.config.public_baseurl.startswith("https://") else ""
    return (f"{COOKIE}={value}; Path={OAUTH}; Max-Age={max_age_s}; HttpOnly; "
            f"SameSite=Lax{secure}")


def _login_page(api: OAuthApi, request: AuthorizationRequest, status: int = 200,
                error: str | None = None, headers: dict[str, str] | None = None,
                action: str = "") -> tuple[int, RawResponse]:
    back = f"{api.ctx.config.public_baseurl}_synapse/client/oauth2/sso_return"
    base = f"{api.ctx.config.public_baseurl}_matrix/client/v3/login/sso/redirect/"
    providers = [{"name": p.idp_name,
                  "url": f"{base}{quote(p.idp_id, safe='')}?{urlencode({'redirectUrl': back})}"}
                 for p in api.sso.identity_providers]
    return _page(status, "oauth_login", "Sign in", headers, client_name=request.client_name,
                 client_host=urlsplit(request.redirect_uri).netloc or request.redirect_uri,
                 server_name=api.ctx.hostname, providers=providers, error=error,
                 action=action)


async def _pending_data(api: OAuthApi, req: "HttpRequest", take: bool) -> dict[str, Any]:
    """What the browser's sign-in session is for: an authorization request,
    or (``device_user_code``) a device grant to approve."""
    value = req.raw.getCookie(COOKIE.encode("ascii"))
    secret = value.decode("ascii", "replace") if value else ""
    session = None
    if secret:
        session = await (api.sessions.take_session(secret, KIND) if take
                         else api.sessions.get_session(secret, KIND))
    if session is None or session.created_ts + SESSION_LIFETIME_MS <= api.ctx.now_ms():
        raise BadAuthorizationRequest("This sign-in has expired; start again from your app")
    return session.data


def _as_request(data: dict[str, Any]) -> AuthorizationRequest:
    if DEVICE in data:
        # the sign-in page shows the same things for a device
        return AuthorizationRequest(data["client_id"], data["client_name"], "a device",
                                    None, data["scope"], data["device_id"], "", "query")
    return AuthorizationRequest.from_data(data)


async def get_auth_metadata(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/client/v1/auth_metadata"""
    return 200, api.server.metadata()


async def post_register(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_synapse/client/oauth2/register"""
    api.registration_limiter.ratelimit(req.client_ip)
    try:
        body = req.json()
    except MatrixError:
        return 400, {"error": "invalid_client_metadata", "error_description": "Not JSON"}
    try:
        return 201, await api.server.register_client(body)
    except OAuthError as e:
        return _oauth_error(e)


async def get_authorize(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_synapse/client/oauth2/authorize"""
    args = _query(req)
    try:
        request = await api.server.check_authorization(args)
    except BadAuthorizationRequest as e:
        return _page(400, "error", "Sign-in failed", message=str(e))
    except OAuthError as e:
        mode = "fragment" if args.get("response_mode") == "fragment" else "query"
        return _redirect(api.server.error_redirect(args["redirect_uri"], e,
                                                   args.get("state"), mode))
    secret = secrets.token_urlsafe(32)
    await api.sessions.add_session(secret, SsoSession(
        KIND, "", request.redirect_uri, request.to_data(), api.ctx.now_ms()),
        SESSION_LIFETIME_MS)
    return _login_page(api, request, headers={
        "Set-Cookie": _cookie(api, secret, SESSION_LIFETIME_MS // 1000)})


async def post_authorize(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_synapse/client/oauth2/authorize"""
    form = _form(req)
    try:
        request = _as_request(await _pending_data(api, req, take=False))
    except BadAuthorizationRequest as e:
        return _page(400, "error", "Sign-in failed", message=str(e))
    user = form.get("username", "").strip()
    try:
        api.login_limiter.ratelimit(req.client_ip)
        user_id = await api.logins.check_password_login(
            qualify_user_id(api.ctx.hostname, user), form.get("password", ""))
    except MatrixError as e:
        if e.status not in (403, 429):
            raise
        return _login_page(api, request, 403 if e.status == 403 else 429,
                           "Wrong username or password" if e.status == 403 else e.msg)
    return await _granted(api, req, user_id)


async def _granted(api: OAuthApi, req: "HttpRequest", user_id: str) -> tuple[int, Any]:
    forget = {"Set-Cookie": _cookie(api, "", 0)}
    try:
        data = await _pending_data(api, req, take=True)
        if DEVICE in data:
            await api.server.approve_device(data[DEVICE], user_id)
            return _page(200, "device_approved", "Device signed in", forget,
                         client_name=data["client_name"])
        location = await api.server.grant(AuthorizationRequest.from_data(data), user_id)
    except BadAuthorizationRequest as e:
        return _page(400, "error", "Sign-in failed", message=str(e))
    except MatrixError as e:
        return _page(e.status, "error", "Sign-in failed", message=e.msg)
    return _redirect(location, forget)


async def get_sso_return(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_synapse/client/oauth2/sso_return"""
    token = _query(req).get("loginToken", "")
    try:
        await _pending_data(api, req, take=False)
        spent = await api.login_tokens.spend(token)
    except BadAuthorizationRequest as e:
        return _page(400, "error", "Sign-in failed", message=str(e))
    except MatrixError as e:
        return _page(e.status, "error", "Sign-in failed", message=e.msg)
    return await _granted(api, req, spent.user_id)


async def post_token(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_synapse/client/oauth2/token"""
    try:
        return 200, await api.server.token(_form(req))
    except OAuthError as e:
        return _oauth_error(e)


async def post_device(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_synapse/client/oauth2/device"""
    api.registration_limiter.ratelimit(req.client_ip)
    try:
        return 200, await api.server.device_authorization(_form(req))
    except OAuthError as e:
        return _oauth_error(e)


async def get_link(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_synapse/client/oauth2/link"""
    user_code = _query(req).get("user_code")
    if not user_code:
        return _page(200, "enter_code", "Sign in a device")
    try:
        grant, client_name = await api.server.pending_device_grant(user_code)
    except BadAuthorizationRequest as e:
        return _page(400, "enter_code", "Sign in a device", error=str(e))
    secret = secrets.token_urlsafe(32)
    data = {DEVICE: grant.user_code, "client_id": grant.client_id,
            "client_name": client_name, "scope": grant.scope, "device_id": grant.device_id}
    await api.sessions.add_session(secret, SsoSession(KIND, "", "", data, api.ctx.now_ms()),
                                   SESSION_LIFETIME_MS)
    # the sign-in form posts to the authorize endpoint, where the cookie goes
    return _login_page(api, _as_request(data), action=f"{OAUTH}/authorize", headers={
        "Set-Cookie": _cookie(api, secret, SESSION_LIFETIME_MS // 1000)})


async def post_revoke(api: OAuthApi, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_synapse/client/oauth2/revoke"""
    try:
        await api.server.revoke(_form(req))
    except OAuthError as e:
        return _oauth_error(e)
    return 200, {}


ENDPOINTS = (
    Endpoint("GET", "/_matrix/client/v1/auth_metadata", get_auth_metadata, auth=AUTH_NONE),
    Endpoint("GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
             get_auth_metadata, auth=AUTH_NONE),
    Endpoint("POST", f"{OAUTH}/register", post_register, auth=AUTH_NONE),
    Endpoint("GET", f"{OAUTH}/authorize", get_authorize, auth=AUTH_NONE),
    Endpoint("POST", f"{OAUTH}/authorize", post_authorize, auth=AUTH_NONE, max_body=8192),
    Endpoint("GET", f"{OAUTH}/sso_return", get_sso_return, auth=AUTH_NONE),
    Endpoint("POST", f"{OAUTH}/token", post_token, auth=AUTH_NONE, max_body=8192),
    Endpoint("POST", f"{OAUTH}/revoke", post_revoke, auth=AUTH_NONE, max_body=8192),
    Endpoint("POST", f"{OAUTH}/device", post_device, auth=AUTH_NONE, max_body=8192),
    Endpoint("GET", f"{OAUTH}/link", get_link, auth=AUTH_NONE),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    if hs.oauth_server is None:
        return
    router.add_endpoints(OAuthApi(hs.ctx, hs.oauth_server, hs.stores.sso, hs.logins,
                                  hs.login_tokens, hs.config.sso_config,
                                  hs.ratelimiters["registration"],
                                  hs.ratelimiters["login_address"]), ENDPOINTS)
