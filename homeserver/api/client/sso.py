"""Single sign-on's browser endpoints (the walk is ``accounts/sso.py``).

These answer browsers, not clients' JSON calls: redirects with cookies, and
HTML pages (``sso_pages.py``). A problem the user must see (wrong state,
expired sign-in, provider down) is an HTML error page with a 4xx/5xx status;
bad input on the client-facing redirect endpoint (no ``redirectUrl``, an
unknown provider) is a Matrix error, as for any client call. Routed only when
``oidc_providers`` or ``cas_config`` is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

from homeserver.accounts.sso import (
    OIDC_COOKIE,
    USERNAME_COOKIE,
    ChooseProvider,
    ConfirmIdentity,
    ConfirmRedirect,
    Cookie,
    IdentityConfirmed,
    Redirect,
    SsoAnswer,
    SsoError,
    UsernameForm,
)
from homeserver.api.client.sso_pages import DONE_SCRIPT_HASH, render_page
from homeserver.errors import Codes, MatrixError
from homeserver.http.resource import RawResponse
from homeserver.http.router import AUTH_NONE, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.accounts.sso import SsoHandler
    from homeserver.http.request import HttpRequest
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"
PICK_USERNAME = "/_synapse/client/pick_username"
HTML = "text/html; charset=utf-8"
# no scripts, no framing, nothing fetched from elsewhere
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
                                           " form-action 'self'; frame-ancestors 'none'",
                "X-Frame-Options": "DENY", "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class SsoApi:
    sso: "SsoHandler"
    public_baseurl: str

    @property
    def secure_cookies(self) -> bool:
        return self.public_baseurl.startswith("https://")


def _arg(req: "HttpRequest", name: str) -> str | None:
    values = req.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} is not valid UTF-8") from None


def _cookie(req: "HttpRequest", name: str) -> str | None:
    value = req.raw.getCookie(name.encode("ascii"))
    return value.decode("ascii", "replace") if value else None


def _set_cookie(api: SsoApi, cookie: Cookie) -> str:
    parts = [f"{cookie.name}={cookie.value}", f"Path={cookie.path}",
             f"Max-Age={cookie.max_age_s}", "HttpOnly", "SameSite=Lax"]
    if api.secure_cookies:
        parts.append("Secure")
    return "; ".join(parts)


def _page(status: int, name: str, title: str, **fields: Any) -> tuple[int, RawResponse]:
    return status, RawResponse(render_page(name, title, **fields), HTML, dict(PAGE_HEADERS))


def _answer(api: SsoApi, answer: SsoAnswer) -> tuple[int, RawResponse]:
    headers = dict(PAGE_HEADERS)
    cookie = getattr(answer, "cookie", None)
    if cookie is not None:
        headers["Set-Cookie"] = _set_cookie(api, cookie)
    if isinstance(answer, Redirect):
        headers["Location"] = answer.url
        return 302, RawResponse(b"", "text/plain", headers)
    if isinstance(answer, ConfirmRedirect):
        return 200, RawResponse(render_page(
            "confirm", "Continue to your app?", url=answer.url, user_id=answer.user_id,
            client_host=answer.client_host), HTML, headers)
    if isinstance(answer, ConfirmIdentity):
        return 200, RawResponse(render_page(
            "confirm_identity", "Confirm it is you", idp_name=answer.idp_name,
            url=answer.url, description=answer.description), HTML, headers)
    if isinstance(answer, IdentityConfirmed):
        headers["Content-Security-Policy"] = (f"default-src 'none'; style-src 'unsafe-inline';"
                                              f" script-src '{DONE_SCRIPT_HASH}';"
                                              " frame-ancestors 'self'")
        # the client may show the fallback in a frame of its own
        del headers["X-Frame-Options"]
        return 200, RawResponse(render_page("identity_confirmed", "Done"), HTML, headers)
    if isinstance(answer, ChooseProvider):
        base = f"{api.public_baseurl}_matrix/client/v3/login/sso/redirect/"
        query = urlencode({"redirectUrl": answer.redirect_url})
        providers = [{"name": p.idp_name, "url": f"{base}{quote(p.idp_id, safe='')}?{query}"}
                     for p in answer.providers]
        return 200, RawResponse(render_page("choose_provider", "Sign in with",
                                            providers=providers), HTML, headers)
    assert isinstance(answer, UsernameForm)
    return (400 if answer.error else 200), RawResponse(render_page(
        "pick_username", "Choose your username", idp_name=answer.idp_name,
        display_name=answer.display_name, suggestion=answer.suggestion,
        error=answer.error), HTML, headers)


def _error_page(e: SsoError) -> tuple[int, RawResponse]:
    return _page(e.status, "error", "Sign-in failed", message=e.message)


async def get_sso_redirect(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/client/v3/login/sso/redirect"""
    try:
        return _answer(api, await api.sso.start(None, _arg(req, "redirectUrl")))
    except SsoError as e:
        return _error_page(e)


async def get_sso_redirect_idp(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/client/v3/login/sso/redirect/{idpId}"""
    try:
        return _answer(api, await api.sso.start(req.params["idpId"],
                                                _arg(req, "redirectUrl")))
    except SsoError as e:
        return _error_page(e)


async def get_oidc_callback(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_synapse/client/oidc/callback"""
    args = {}
    for name in ("code", "state", "error", "error_description"):
        try:
            value = _arg(req, name)
        except MatrixError:
            value = ""
        if value is not None:
            args[name] = value
    try:
        return _answer(api, await api.sso.callback(_cookie(req, OIDC_COOKIE), args))
    except SsoError as e:
        return _error_page(e)


async def post_backchannel_logout(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_synapse/client/oidc/backchannel_logout"""
    try:
        form = dict(parse_qsl(req.content().decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        form = {}
    try:
        await api.sso.backchannel_logout(form.get("logout_token"))
    except SsoError as e:
        # the answer Back-Channel Logout 1.0 (2.8) asks for
        return 400, {"error": "invalid_request", "error_description": e.message}
    return 200, RawResponse(b"", "text/plain", {"Cache-Control": "no-store"})


async def get_cas_redirect(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/client/v3/login/cas/redirect"""
    if api.sso.cas is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    try:
        return _answer(api, await api.sso.start("cas", _arg(req, "redirectUrl")))
    except SsoError as e:
        return _error_page(e)


async def get_cas_ticket(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/client/v3/login/cas/ticket"""
    try:
        return _answer(api, await api.sso.cas_ticket(
            _arg(req, "ticket"), _arg(req, "redirectUrl"), _arg(req, "session")))
    except SsoError as e:
        return _error_page(e)


async def get_sso_fallback(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/client/v3/auth/m.login.sso/fallback/web"""
    try:
        return _answer(api, await api.sso.uia_fallback(_arg(req, "session")))
    except SsoError as e:
        return _error_page(e)


async def get_pick_username(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_synapse/client/pick_username/account"""
    try:
        return _answer(api, await api.sso.username_form(_cookie(req, USERNAME_COOKIE)))
    except SsoError as e:
        return _error_page(e)


async def post_pick_username(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_synapse/client/pick_username/account"""
    try:
        form = dict(parse_qsl(req.content().decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        form = {}
    try:
        return _answer(api, await api.sso.submit_username(_cookie(req, USERNAME_COOKIE),
                                                          form.get("username", "")))
    except SsoError as e:
        return _error_page(e)


async def get_check_username(api: SsoApi, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_synapse/client/pick_username/check"""
    username = _arg(req, "username")
    if username is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing username")
    try:
        available = await api.sso.username_available(_cookie(req, USERNAME_COOKIE), username)
    except SsoError as e:
        raise MatrixError(400, Codes.UNKNOWN, e.message) from None
    return 200, {"available": available}


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/login/sso/redirect", get_sso_redirect, auth=AUTH_NONE),
    Endpoint("GET", f"{CLIENT_V3}/login/sso/redirect/{{idpId}}", get_sso_redirect_idp,
             auth=AUTH_NONE),
    Endpoint("GET", "/_synapse/client/oidc/callback", get_oidc_callback, auth=AUTH_NONE),
    Endpoint("POST", "/_synapse/client/oidc/backchannel_logout", post_backchannel_logout,
             auth=AUTH_NONE, max_body=64 * 1024),
    Endpoint("GET", f"{CLIENT_V3}/login/cas/redirect", get_cas_redirect, auth=AUTH_NONE),
    Endpoint("GET", f"{CLIENT_V3}/login/cas/ticket", get_cas_ticket, auth=AUTH_NONE),
    Endpoint("GET", f"{CLIENT_V3}/auth/m.login.sso/fallback/web", get_sso_fallback,
             auth=AUTH_NONE),
    Endpoint("GET", f"{PICK_USERNAME}/account", get_pick_username, auth=AUTH_NONE),
    Endpoint("POST", f"{PICK_USERNAME}/account", post_pick_username, auth=AUTH_NONE,
             max_body=4096),
    Endpoint("GET", f"{PICK_USERNAME}/check", get_check_username, auth=AUTH_NONE),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    if hs.sso is None:
        return
    router.add_endpoints(SsoApi(hs.sso, hs.config.public_baseurl), ENDPOINTS)
