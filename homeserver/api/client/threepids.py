"""3PIDs of the user's account: list, add, bind, unbind, delete; the e-mail
``requestToken`` endpoints and the link a validation e-mail holds
(``identity/threepids.py`` has the use cases)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.api.client.ui_auth import validate_user_via_ui_auth
from homeserver.errors import Codes, MatrixError, invalid_param
from homeserver.http.parse import get_int, get_str, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.resource import RawResponse
from homeserver.http.router import AUTH_NONE, Endpoint, Router
from homeserver.identity.threepids import MEDIA, canonicalise_email

if TYPE_CHECKING:
    from homeserver.accounts.uia import UiAuth
    from homeserver.identity.threepids import Threepids
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"
UNSTABLE = "/_matrix/client/unstable"


@dataclass(frozen=True)
class ThreepidApi:
    """What the 3PID endpoints use."""

    threepids: "Threepids"
    ui_auth: "UiAuth"


def parse_medium_address(body: dict[str, Any]) -> tuple[str, str, str | None]:
    """``medium``, ``address`` (an e-mail lower-cased) and optional ``id_server``."""
    medium = get_str(body, "medium")
    address = get_str(body, "address")
    if medium not in MEDIA:
        raise invalid_param("medium must be 'email' or 'msisdn'")
    if medium == "email":
        address = canonicalise_email(address)
    return medium, address, get_str(body, "id_server", None)


def parse_token_request(body: dict[str, Any]) -> tuple[str, str, int, str | None]:
    """An e-mail ``requestToken`` body: address, client_secret, send_attempt, next_link."""
    email = canonicalise_email(get_str(body, "email"))
    client_secret = get_str(body, "client_secret")
    send_attempt = get_int(body, "send_attempt")
    next_link = get_str(body, "next_link", None)
    return email, client_secret, send_attempt, next_link


async def get_threepids(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/account/3pid"""
    found = await api.threepids.get_threepids(req.user_id)
    return 200, {"threepids": [{"medium": t.medium, "address": t.address,
                                "validated_at": t.validated_at, "added_at": t.added_at}
                               for t in found]}


async def post_threepid(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/3pid (deprecated: add a validated address)"""
    body = req.json()
    creds = body.get("three_pid_creds", body.get("threePidCreds"))
    if not isinstance(creds, dict):
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing param three_pid_creds")
    session = await api.threepids.validated_session(creds.get("sid"),
                                                    creds.get("client_secret"))
    await api.threepids.add_threepid(req.user_id, session)
    return 200, {}


async def post_threepid_add(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/3pid/add"""
    assert req.requester is not None
    params = await validate_user_via_ui_auth(api.ui_auth, req, req.requester,
                                             "add a third-party identifier to your account")
    session = await api.threepids.validated_session(params.get("sid"),
                                                    params.get("client_secret"))
    await api.threepids.add_threepid(req.user_id, session)
    return 200, {}


async def post_threepid_bind(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/3pid/bind"""
    body = req.json()
    await api.threepids.bind(req.user_id, get_str(body, "id_server"),
                             get_str(body, "id_access_token"), get_str(body, "sid"),
                             get_str(body, "client_secret"))
    return 200, {}


async def post_threepid_unbind(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/3pid/unbind"""
    medium, address, id_server = parse_medium_address(req.json())
    result = await api.threepids.unbind(req.user_id, medium, address, id_server)
    return 200, {"id_server_unbind_result": result}


async def post_threepid_delete(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/3pid/delete"""
    medium, address, id_server = parse_medium_address(req.json())
    result = await api.threepids.delete(req.user_id, medium, address, id_server)
    return 200, {"id_server_unbind_result": result}


async def request_email_token(api: ThreepidApi, req: HttpRequest,
                              purpose: str) -> tuple[int, Any]:
    email, client_secret, send_attempt, next_link = parse_token_request(req.json())
    sid = await api.threepids.request_email_token(purpose, email, client_secret,
                                                  send_attempt, next_link)
    return 200, {"sid": sid}


async def post_account_email_request_token(api: ThreepidApi,
                                           req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/3pid/email/requestToken"""
    return await request_email_token(api, req, "add_threepid")


async def post_register_email_request_token(api: ThreepidApi,
                                            req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/register/email/requestToken"""
    return await request_email_token(api, req, "registration")


async def post_msisdn_request_token(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/account/3pid/msisdn/requestToken"""
    raise MatrixError(400, Codes.THREEPID_DENIED,
                      "Phone number validation is not supported on this server")


async def get_submit_email_token(api: ThreepidApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/unstable/registration/email/submit_token"""
    token = query_str(req.args, "token")
    client_secret = query_str(req.args, "client_secret")
    sid = query_str(req.args, "sid")
    try:
        next_link = await api.threepids.submit_token(sid, client_secret, token)
    except MatrixError as e:
        page = f"<p>{html.escape(e.msg)}</p>"
        return 400, RawResponse(_page(page), "text/html; charset=utf-8")
    if next_link is not None:
        return 302, RawResponse(b"", "text/plain", {"Location": next_link})
    return 200, RawResponse(_page("<p>Your e-mail address has been validated. You may now "
                                  "return to your client.</p>"), "text/html; charset=utf-8")


def _page(body: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><title>E-mail validation</title></head>"
            f"<body>{body}</body></html>").encode()


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/account/3pid", get_threepids),
    Endpoint("POST", f"{CLIENT_V3}/account/3pid", post_threepid),
    Endpoint("POST", f"{CLIENT_V3}/account/3pid/add", post_threepid_add),
    Endpoint("POST", f"{CLIENT_V3}/account/3pid/bind", post_threepid_bind),
    Endpoint("POST", f"{UNSTABLE}/account/3pid/bind", post_threepid_bind),
    Endpoint("POST", f"{CLIENT_V3}/account/3pid/unbind", post_threepid_unbind),
    Endpoint("POST", f"{UNSTABLE}/account/3pid/unbind", post_threepid_unbind),
    Endpoint("POST", f"{CLIENT_V3}/account/3pid/delete", post_threepid_delete),
    Endpoint("POST", f"{CLIENT_V3}/account/3pid/email/requestToken",
             post_account_email_request_token, auth=AUTH_NONE),
    Endpoint("POST", f"{CLIENT_V3}/register/email/requestToken",
             post_register_email_request_token, auth=AUTH_NONE),
    Endpoint("POST", f"{CLIENT_V3}/account/3pid/msisdn/requestToken",
             post_msisdn_request_token, auth=AUTH_NONE),
    Endpoint("POST", f"{CLIENT_V3}/register/msisdn/requestToken",
             post_msisdn_request_token, auth=AUTH_NONE),
    Endpoint("GET", f"{UNSTABLE}/registration/email/submit_token", get_submit_email_token,
             auth=AUTH_NONE),
    Endpoint("GET", f"{UNSTABLE}/add_threepid/email/submit_token", get_submit_email_token,
             auth=AUTH_NONE),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(ThreepidApi(hs.threepids, hs.ui_auth), ENDPOINTS)
