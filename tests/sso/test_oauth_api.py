"""The spec's OAuth 2.0 API (oauth_api), driven by a generic OAuth client
library, Authlib's: discovery, dynamic registration, the authorization code
grant with PKCE through our sign-in page, refresh and revocation."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest_twisted
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from twisted.internet import threads
from twisted.internet.task import Clock

from tests.harness import TestServer
from tests.sso.provider import Browser, forms_of

WHOAMI = "/_matrix/client/v3/account/whoami"
REDIRECT = "https://app.example.com/callback"
CLIENT = {"client_name": "Example App", "client_uri": "https://example.com/",
          "redirect_uris": [REDIRECT], "application_type": "web",
          "token_endpoint_auth_method": "none",
          "grant_types": ["authorization_code", "refresh_token"],
          "response_types": ["code"]}
SCOPE = "urn:matrix:client:api:* urn:matrix:client:device:OAUTHDEV01"


async def oauth_server(make_server: Any, clock: Any = None) -> TestServer:
    srv: TestServer = await make_server(clock=clock, oauth_api={"enabled": True})
    srv.hs.config.public_baseurl = srv.base_url + "/"
    return srv


def discover_and_register(base_url: str) -> tuple[dict[str, Any], str]:
    meta = requests.get(f"{base_url}/_matrix/client/v1/auth_metadata", timeout=10).json()
    reg = requests.post(meta["registration_endpoint"], json=CLIENT, timeout=10)
    assert reg.status_code == 201, reg.text
    return meta, reg.json()["client_id"]


async def authorize(meta: dict[str, Any], session: OAuth2Session, verifier: str,
                    user: str, password: str) -> str:
    url, _state = session.create_authorization_url(meta["authorization_endpoint"],
                                                   code_verifier=verifier)
    browser = Browser()
    page = await browser.request("GET", url)
    assert page.code == 200, page.body
    assert "Example App" in page.body
    action, _fields = forms_of(page)[0]
    done = await browser.request("POST", action, {"username": user, "password": password})
    if done.code != 302:
        return ""
    location = done.location
    assert location is not None and location.startswith(REDIRECT)
    return location


@pytest_twisted.ensureDeferred
async def test_an_oauth_client_signs_in_refreshes_and_revokes(make_server: Any) -> None:
    srv = await oauth_server(make_server)
    await srv.register("alice")
    meta, client_id = await threads.deferToThread(discover_and_register, srv.base_url)
    assert meta["code_challenge_methods_supported"] == ["S256"]
    session = OAuth2Session(client_id, redirect_uri=REDIRECT, scope=SCOPE,
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = generate_token(48)
    callback = await authorize(meta, session, verifier, "alice", "correct horse battery")
    token = await threads.deferToThread(session.fetch_token, meta["token_endpoint"],
                                        authorization_response=callback,
                                        code_verifier=verifier)
    assert token["scope"] == SCOPE
    me = await srv.client(token["access_token"]).get(WHOAMI)
    assert me.body["user_id"] == "@alice:test.local"
    assert me.body["device_id"] == "OAUTHDEV01"
    refreshed = await threads.deferToThread(session.refresh_token, meta["token_endpoint"],
                                            refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert (await srv.client(refreshed["access_token"]).get(WHOAMI)).code == 200
    resp = await threads.deferToThread(session.revoke_token, meta["revocation_endpoint"],
                                       token=refreshed["access_token"])
    assert resp.status_code == 200
    assert (await srv.client(refreshed["access_token"]).get(WHOAMI)).code == 401


@pytest_twisted.ensureDeferred
async def test_codes_are_single_use_and_bound_to_the_verifier(make_server: Any) -> None:
    srv = await oauth_server(make_server)
    await srv.register("alice")
    meta, client_id = await threads.deferToThread(discover_and_register, srv.base_url)
    session = OAuth2Session(client_id, redirect_uri=REDIRECT, scope=SCOPE,
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = generate_token(48)
    callback = await authorize(meta, session, verifier, "alice", "correct horse battery")
    code = parse_qs(urlsplit(callback).query)["code"][0]

    def exchange(v: str) -> requests.Response:
        return requests.post(meta["token_endpoint"], data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": client_id, "code_verifier": v}, timeout=10)

    wrong = await threads.deferToThread(exchange, "not-the-verifier-" + "x" * 40)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    # the failed attempt spent the code: a stolen code cannot be retried
    replay = await threads.deferToThread(exchange, verifier)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_bad_requests(make_server: Any) -> None:
    srv = await oauth_server(make_server)
    await srv.register("alice")
    meta, client_id = await threads.deferToThread(discover_and_register, srv.base_url)
    session = OAuth2Session(client_id, redirect_uri=REDIRECT, scope=SCOPE,
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    assert await authorize(meta, session, generate_token(48), "alice", "wrong") == ""
    browser = Browser()
    base = meta["authorization_endpoint"]
    # an unknown client or a redirect URI it did not register: an error page, no redirect
    unknown = await browser.request("GET", f"{base}?client_id=nope&redirect_uri={REDIRECT}"
                                           "&response_type=code")
    assert unknown.code == 400 and unknown.location is None
    elsewhere = await browser.request(
        "GET", f"{base}?client_id={client_id}&redirect_uri=https://evil.example.net/"
               "&response_type=code")
    assert elsewhere.code == 400 and elsewhere.location is None
    # no PKCE: back to the client with an error
    no_pkce = await browser.request(
        "GET", f"{base}?client_id={client_id}&redirect_uri={REDIRECT}&response_type=code"
               f"&scope=urn:matrix:client:api:*&state=s1")
    assert no_pkce.code == 302 and no_pkce.location is not None
    assert parse_qs(urlsplit(no_pkce.location).query) == {
        "error": ["invalid_request"], "error_description": ["PKCE with S256 is required"],
        "state": ["s1"]}

    def register(body: dict[str, Any]) -> requests.Response:
        return requests.post(meta["registration_endpoint"], json=body, timeout=10)

    bad = await threads.deferToThread(register, {**CLIENT, "redirect_uris": [
        "https://evil.example.net/callback"]})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_redirect_uri")
    native = await threads.deferToThread(register, {**CLIENT, "application_type": "native",
                                                    "redirect_uris": ["com.example.app:/cb",
                                                                      "http://127.0.0.1/cb"]})
    assert native.status_code == 201, native.text


@pytest_twisted.ensureDeferred
async def test_oauth_api_is_absent_unless_enabled(server: TestServer) -> None:
    resp = await server.client().get("/_matrix/client/v1/auth_metadata")
    assert (resp.code, resp.body["errcode"]) == (404, "M_UNRECOGNIZED")


@pytest_twisted.ensureDeferred
async def test_a_device_signs_in_with_a_code_the_user_approves(make_server: Any) -> None:
    clock = Clock()  # the server's time stands still: the second poll is too soon
    clock.advance(1_700_000_000)
    srv = await oauth_server(make_server, clock)
    await srv.register("alice")
    meta = (await srv.client().get("/_matrix/client/v1/auth_metadata")).body
    grant = "urn:ietf:params:oauth:grant-type:device_code"
    assert grant in meta["grant_types_supported"]

    def register() -> str:
        reg = requests.post(meta["registration_endpoint"], json={
            **CLIENT, "application_type": "native", "redirect_uris": ["com.example.tv:/cb"],
            "grant_types": [grant, "refresh_token"]}, timeout=10)
        assert reg.status_code == 201, reg.text
        return str(reg.json()["client_id"])

    client_id = await threads.deferToThread(register)
    tv_scope = "urn:matrix:client:api:* urn:matrix:client:device:TVDEVICE"

    def start() -> dict[str, Any]:
        resp = requests.post(meta["device_authorization_endpoint"],
                             data={"client_id": client_id, "scope": tv_scope}, timeout=10)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    codes = await threads.deferToThread(start)
    session = OAuth2Session(client_id, scope=tv_scope, token_endpoint_auth_method="none")

    def poll() -> requests.Response:
        return requests.post(meta["token_endpoint"], data={
            "grant_type": grant, "device_code": codes["device_code"],
            "client_id": client_id}, timeout=10)

    waiting = await threads.deferToThread(poll)
    assert waiting.json()["error"] == "authorization_pending"
    assert (await threads.deferToThread(poll)).json()["error"] == "slow_down"
    # the user, on their phone: the link, then the sign-in form
    browser = Browser()
    page = await browser.request("GET", codes["verification_uri_complete"])
    assert page.code == 200 and "Example App" in page.body
    action, _fields = forms_of(page)[0]
    done = await browser.request("POST", action, {"username": "alice",
                                                  "password": "correct horse battery"})
    assert done.code == 200 and "now signed in" in done.body
    token = await threads.deferToThread(session.fetch_token, meta["token_endpoint"],
                                        grant_type=grant, device_code=codes["device_code"])
    me = await srv.client(token["access_token"]).get(WHOAMI)
    assert (me.body["user_id"], me.body["device_id"]) == ("@alice:test.local", "TVDEVICE")
    # the code is spent, and cannot be approved again
    assert (await threads.deferToThread(poll)).json()["error"] == "invalid_grant"
    again = await Browser().request("GET", codes["verification_uri_complete"])
    assert again.code == 400
