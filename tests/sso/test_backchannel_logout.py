"""OIDC back-channel logout: the provider ends a session and the devices it
signed in are logged out. The provider here is written by the test (the
authorization step answers at once), so it can sign logout tokens as a
provider does; everything goes over loopback HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest_twisted
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from twisted.internet import reactor
from twisted.web import resource, server

from tests.harness import TestServer
from tests.sso.provider import Browser

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"
CLIENT = "https://client.example.org/return"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Provider(resource.Resource):
    """Signs everyone in at once as ``user``, in session ``sid``."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.issuer = ""
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.user = "alice"
        self.sid = "session-1"
        self.nonces: dict[str, str] = {}

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        if request.path == b"/.well-known/openid-configuration":
            return json.dumps({
                "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/auth",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "code_challenge_methods_supported": ["S256"]}).encode()
        if request.path == b"/jwks":
            return json.dumps(KeySet([self.key]).as_dict(private=False)).encode()
        if request.path == b"/auth":
            args = {k.decode(): v[0].decode() for k, v in request.args.items()}
            code = f"code-{len(self.nonces)}"
            self.nonces[code] = args["nonce"]
            request.redirect((args["redirect_uri"] + "?" + urlencode(
                {"code": code, "state": args["state"]})).encode())
            return b""
        request.setResponseCode(404)
        return b"{}"

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        code = request.args[b"code"][0].decode()
        now = int(time.time())
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, {
            "iss": self.issuer, "aud": "homeserver", "sub": f"sub-{self.user}", "iat": now,
            "exp": now + 300, "nonce": self.nonces.pop(code), "sid": self.sid,
            "preferred_username": self.user}, self.key)
        return json.dumps({"access_token": "at", "token_type": "Bearer",
                           "id_token": id_token}).encode()

    def logout_token(self, **change: Any) -> str:
        claims = {"iss": self.issuer, "aud": "homeserver", "iat": int(time.time()),
                  "jti": "j1", "sub": f"sub-{self.user}", "sid": self.sid,
                  "events": {EVENT: {}}, **change}
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)


@pytest_twisted.async_yield_fixture
async def provider() -> AsyncIterator[Provider]:
    site = Provider()
    port = reactor.listenTCP(0, server.Site(site), interface="127.0.0.1")  # type: ignore
    site.issuer = f"http://127.0.0.1:{port.getHost().port}"
    yield site
    await port.stopListening()


async def sso_server(make_server: Any, provider: Provider) -> TestServer:
    srv: TestServer = await make_server(
        ip_range_whitelist=["127.0.0.0/8"], sso={"client_whitelist": [CLIENT]},
        oidc_providers=[{
            "idp_id": "corp", "issuer": provider.issuer, "client_id": "homeserver",
            "client_secret": "s", "skip_verification": True,
            "backchannel_logout_enabled": True,
            "user_mapping_provider": {"config": {
                "localpart_template": "{{ user.preferred_username }}"}}}])
    srv.hs.config.public_baseurl = srv.base_url + "/"
    return srv


async def sso_login(srv: TestServer) -> dict[str, Any]:
    browser = Browser()
    start = await browser.request("GET", f"{srv.base_url}{LOGIN}/sso/redirect/oidc-corp?"
                                  + urlencode({"redirectUrl": CLIENT}))
    page = await browser.follow(start, stop_at=CLIENT)
    assert page.location is not None, page.body
    token = parse_qs(urlsplit(page.location).query)["loginToken"][0]
    resp = await srv.client().post(LOGIN, {"type": "m.login.token", "token": token})
    assert resp.code == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


async def logout(srv: TestServer, token: str) -> Any:
    return await srv.client().request(
        "POST", "/_synapse/client/oidc/backchannel_logout",
        raw=urlencode({"logout_token": token}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


@pytest_twisted.ensureDeferred
async def test_the_provider_ending_a_session_logs_its_device_out(
        make_server: Any, provider: Provider) -> None:
    srv = await sso_server(make_server, provider)
    first = await sso_login(srv)
    provider.sid = "session-2"
    second = await sso_login(srv)
    password_device = await srv.hs.sessions.create_login_session(first["user_id"])
    resp = await logout(srv, provider.logout_token(sid="session-1"))
    assert resp.code == 200, resp.body
    assert (await srv.client(first["access_token"]).get(WHOAMI)).code == 401
    # the other session's device, and a device not made by SSO, stay
    assert (await srv.client(second["access_token"]).get(WHOAMI)).code == 200
    assert (await srv.client(password_device.access_token).get(WHOAMI)).code == 200


@pytest_twisted.ensureDeferred
async def test_bad_logout_tokens_log_no_one_out(make_server: Any,
                                                provider: Provider) -> None:
    srv = await sso_server(make_server, provider)
    session = await sso_login(srv)
    forger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    genuine_key, provider.key = provider.key, forger
    forged = provider.logout_token()
    provider.key = genuine_key
    bad = {
        "forged signature": forged,
        "no logout event": provider.logout_token(events=None),
        "a nonce": provider.logout_token(nonce="n"),
        "another client": provider.logout_token(aud="other"),
        "no session": provider.logout_token(sid=None),
        "unknown issuer": provider.logout_token(iss="https://elsewhere.example.org"),
        "not a JWT": "garbage",
    }
    for why, token in bad.items():
        resp = await logout(srv, token)
        assert (resp.code, resp.body["error"]) == (400, "invalid_request"), why
    # another user's sub cannot end alice's session
    assert (await logout(srv, provider.logout_token(sub="sub-mallory"))).code == 200
    assert (await srv.client(session["access_token"]).get(WHOAMI)).code == 200
