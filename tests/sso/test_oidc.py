"""OpenID Connect single sign-on against a real provider (oidc-provider from
npm, ``tests/sso/node/provider.js``): the whole browser walk, from the
client's redirect to a Matrix access token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import pytest_twisted

from tests.harness import TestServer
from tests.sso.provider import (
    Browser,
    OpenIdProvider,
    Page,
    link_of,
    needs_provider,
    start_provider,
)

pytestmark = needs_provider

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"
CLIENT = "https://client.example.org/return"
OTHER_CLIENT = "https://elsewhere.example.net/catch"
LOOPBACK = {"ip_range_whitelist": ["127.0.0.0/8", "::1/128"]}


@pytest_twisted.async_yield_fixture(scope="module")
async def provider() -> AsyncIterator[OpenIdProvider]:
    p = await start_provider()
    yield p
    await p.stop()


def idp(issuer: str, idp_id: str = "test", client_id: str = "homeserver",
        **extra: Any) -> dict[str, Any]:
    return {
        "idp_id": idp_id, "idp_name": "Test SSO", "idp_icon": "mxc://example.org/icon",
        "issuer": issuer, "client_id": client_id, "client_secret": f"{client_id}-secret",
        "scopes": ["openid", "profile", "email"], "skip_verification": True,
        "user_mapping_provider": {"config": {
            "localpart_template": "{{ user.preferred_username }}",
            "display_name_template": "{{ user.name }}",
            "email_template": "{{ user.email }}"}},
        **extra}


async def sso_server(make_server: Any, providers: list[dict[str, Any]],
                     **extra: Any) -> TestServer:
    srv: TestServer = await make_server(oidc_providers=providers,
                                        sso={"client_whitelist": [CLIENT]},
                                        **{**LOOPBACK, **extra})
    # the provider sends the browser back to public_baseurl; the port is
    # known only now
    srv.hs.config.public_baseurl = srv.base_url + "/"
    return srv


def redirect_url(srv: TestServer, idp_id: str | None = "oidc-test",
                 client: str = CLIENT) -> str:
    path = f"{srv.base_url}{LOGIN}/sso/redirect"
    if idp_id is not None:
        path += f"/{quote(idp_id)}"
    return f"{path}?{urlencode({'redirectUrl': client})}"


async def sign_in(srv: TestServer, login: str, *, idp_id: str = "oidc-test",
                  client: str = CLIENT, browser: Browser | None = None) -> Page:
    """The browser's walk until our server's last answer."""
    browser = browser or Browser()
    start = await browser.request("GET", redirect_url(srv, idp_id, client))
    assert start.code == 302, start.body
    return await browser.sign_in_at_provider(start, login, stop_at=client)


def login_token(page: Page) -> str:
    location = page.location
    assert page.code == 302 and location is not None, (page.code, page.body)
    return parse_qs(urlsplit(location).query)["loginToken"][0]


async def token_login(srv: TestServer, token: str) -> dict[str, Any]:
    resp = await srv.client().post(LOGIN, {"type": "m.login.token", "token": token})
    assert resp.code == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


@pytest_twisted.ensureDeferred
async def test_sso_signs_a_new_user_in_with_the_providers_profile(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    flows = (await srv.client().get(LOGIN)).body["flows"]
    assert {"type": "m.login.sso", "identity_providers": [
        {"id": "oidc-test", "name": "Test SSO", "icon": "mxc://example.org/icon"}]} in flows
    assert {"type": "m.login.token"} in flows
    page = await sign_in(srv, "alice")
    # whitelisted client: straight back to it, the client's own query kept
    assert page.location is not None and page.location.startswith(CLIENT + "?loginToken=")
    session = await token_login(srv, login_token(page))
    assert session["user_id"] == "@alice:test.local"
    alice = srv.client(session["access_token"])
    assert (await alice.get(WHOAMI)).body["user_id"] == "@alice:test.local"
    name = await alice.get("/_matrix/client/v3/profile/@alice:test.local/displayname")
    assert name.body == {"displayname": "Alice Liddell"}
    threepids = (await alice.get("/_matrix/client/v3/account/3pid")).body["threepids"]
    assert [t["address"] for t in threepids] == ["alice@example.org"]
    # a second sign-in (a new browser) finds the same account by its subject
    again = await token_login(srv, login_token(await sign_in(srv, "alice")))
    assert again["user_id"] == "@alice:test.local"
    assert again["device_id"] != session["device_id"]


@pytest_twisted.ensureDeferred
async def test_login_token_from_sso_works_once(make_server: Any,
                                               provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer, client_id="homeserver-post",
                                             client_auth_method="client_secret_post")])
    token = login_token(await sign_in(srv, "bob"))
    assert (await token_login(srv, token))["user_id"] == "@bob:test.local"
    replay = await srv.client().post(LOGIN, {"type": "m.login.token", "token": token})
    assert (replay.code, replay.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_a_client_not_on_the_whitelist_gets_a_confirmation_page(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    page = await sign_in(srv, "alice", client=OTHER_CLIENT)
    assert page.code == 200
    assert "elsewhere.example.net" in page.body and "@alice:test.local" in page.body
    assert page.headers["x-frame-options"] == ["DENY"]
    target = link_of(page, "continue")
    assert target.startswith(OTHER_CLIENT + "?loginToken=")
    token = parse_qs(urlsplit(target).query)["loginToken"][0]
    assert (await token_login(srv, token))["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_the_servers_own_web_client_needs_no_confirmation(
        make_server: Any, provider: OpenIdProvider, tmp_path: Any) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)],
                           web_client={"enabled": True, "path": str(tmp_path)})
    own = srv.base_url + "/"
    # (a query of its own: the provider's way back, the callback, is under
    # the base URL too, and the walk stops at the first URL with this prefix)
    page = await sign_in(srv, "alice", client=own + "?from=sso")
    assert page.code == 302 and page.location is not None
    assert page.location.startswith(own + "?from=sso&loginToken=")
    # only the client's own page, not any path under the base URL
    other = await sign_in(srv, "alice", client=own + "_matrix/elsewhere")
    assert other.code == 200 and "continue" in other.body


@pytest_twisted.ensureDeferred
async def test_without_the_web_client_the_base_url_is_confirmed_first(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    page = await sign_in(srv, "alice", client=srv.base_url + "/?from=sso")
    assert page.code == 200 and "continue" in page.body


@pytest_twisted.ensureDeferred
async def test_a_wrong_state_is_refused_and_spends_the_sign_in(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    callback = f"{srv.base_url}/_synapse/client/oidc/callback"
    browser = Browser()
    start = await browser.request("GET", redirect_url(srv))
    at_callback = await browser.sign_in_at_provider(start, "carol", stop_at=callback)
    genuine = at_callback.location
    assert genuine is not None and genuine.startswith(callback)
    parts = urlsplit(genuine)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = urlunsplit(parts._replace(query=urlencode({**query, "state": "forged"})))
    refused = await browser.request("GET", forged)
    assert refused.code == 400
    assert "state mismatch" in refused.body
    # the sign-in is spent: the genuine answer cannot be replayed after it
    late = await browser.request("GET", genuine)
    assert late.code == 400 and "expired or was already used" in late.body
    # a callback without the browser's cookie is refused too
    stranger = await Browser().request("GET", genuine)
    assert stranger.code == 400 and "missing session cookie" in stranger.body
    assert await srv.hs.stores.users.get_user("@carol:test.local") is None


@pytest_twisted.ensureDeferred
async def test_an_id_token_with_another_nonce_is_refused(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer, "tampered",
                                             client_id="tampering")])
    page = await sign_in(srv, "dave", idp_id="oidc-tampered")
    assert page.code == 400, page.body
    assert "ID token is not valid" in page.body
    assert await srv.hs.stores.users.get_user("@dave:test.local") is None


@pytest_twisted.ensureDeferred
async def test_a_taken_username_sends_the_user_to_the_picker(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    await srv.register("alice")  # a password user has the name already
    browser = Browser()
    form = await sign_in(srv, "alice", browser=browser)
    picker = f"{srv.base_url}/_synapse/client/pick_username/account"
    assert form.url == picker
    assert form.code == 200 and 'value="alice"' in form.body
    taken = await browser.request("POST", picker, {"username": "alice"})
    assert taken.code == 400 and "is taken" in taken.body
    bad = await browser.request("POST", picker, {"username": "not valid!"})
    assert bad.code == 400 and "may contain only" in bad.body
    chosen = await browser.request("POST", picker, {"username": "alice.sso"})
    session = await token_login(srv, login_token(chosen))
    assert session["user_id"] == "@alice.sso:test.local"
    # the picker's session is spent
    assert (await browser.request("GET", picker)).code == 400
    # the subject is linked: next time, no picker
    again = await token_login(srv, login_token(await sign_in(srv, "alice")))
    assert again["user_id"] == "@alice.sso:test.local"


@pytest_twisted.ensureDeferred
async def test_allow_existing_users_links_the_account_of_that_name(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer, allow_existing_users=True)])
    alice = await srv.register("alice")
    session = await token_login(srv, login_token(await sign_in(srv, "alice")))
    assert session["user_id"] == alice.user_id


@pytest_twisted.ensureDeferred
async def test_attribute_requirements_keep_others_out(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer, attribute_requirements=[
        {"attribute": "groups", "value": "staff"}])])
    refused = await sign_in(srv, "bob")
    assert refused.code == 403 and "not authorised" in refused.body
    assert await srv.hs.stores.users.get_user("@bob:test.local") is None
    allowed = await token_login(srv, login_token(await sign_in(srv, "alice")))
    assert allowed["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_without_registration_only_linked_users_get_in(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer, enable_registration=False)])
    refused = await sign_in(srv, "erin")
    assert refused.code == 403
    assert await srv.hs.stores.users.get_user("@erin:test.local") is None


@pytest_twisted.ensureDeferred
async def test_bad_redirect_requests_are_matrix_errors(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    client = srv.client()
    unknown = await client.get(f"{LOGIN}/sso/redirect/oidc-nope?redirectUrl=https%3A%2F%2Fx")
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    missing = await client.get(f"{LOGIN}/sso/redirect/oidc-test")
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    script = await client.get(f"{LOGIN}/sso/redirect/oidc-test?redirectUrl=javascript:alert(1)")
    assert (script.code, script.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_several_providers_and_none_named_shows_a_chooser(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer),
                                         idp(provider.issuer, "second", idp_name="Second")])
    page = await Browser().request("GET", redirect_url(srv, None))
    assert page.code == 200
    assert "/login/sso/redirect/oidc-test?redirectUrl=" in page.body
    assert "/login/sso/redirect/oidc-second?redirectUrl=" in page.body


@pytest_twisted.ensureDeferred
async def test_the_outbound_guard_keeps_a_loopback_provider_unreachable(
        make_server: Any, provider: OpenIdProvider) -> None:
    # without the whitelist, loopback is in ip_range_blacklist
    srv = await sso_server(make_server, [idp(provider.issuer)], ip_range_whitelist=[])
    page = await Browser().request("GET", redirect_url(srv))
    assert page.code == 502 and "could not be reached" in page.body


@pytest_twisted.ensureDeferred
async def test_sso_routes_are_absent_without_providers(server: TestServer) -> None:
    resp = await server.client().get(f"{LOGIN}/sso/redirect?redirectUrl=https%3A%2F%2Fx")
    assert (resp.code, resp.body["errcode"]) == (404, "M_UNRECOGNIZED")


async def delete_device(client: Any, device_id: str, auth: dict[str, Any] | None = None) -> Any:
    body = {"auth": auth} if auth is not None else {}
    return await client.delete(f"/_matrix/client/v3/devices/{device_id}", body)


@pytest_twisted.ensureDeferred
async def test_sso_user_re_authenticates_through_the_fallback_page(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    first = await token_login(srv, login_token(await sign_in(srv, "alice")))
    second = await token_login(srv, login_token(await sign_in(srv, "alice")))
    alice = srv.client(first["access_token"])
    asked = await delete_device(alice, second["device_id"])
    assert asked.code == 401
    assert asked.body["flows"] == [{"stages": ["m.login.sso"]}]
    session = asked.body["session"]
    browser = Browser()
    fallback = await browser.request(
        "GET", f"{srv.base_url}/_matrix/client/v3/auth/m.login.sso/fallback/web"
               f"?session={session}")
    assert fallback.code == 200 and "Test SSO" in fallback.body
    page = await browser.sign_in_at_provider(
        await browser.request("GET", link_of(fallback, "continue")), "alice")
    assert page.code == 200 and "authDone" in page.body
    done = await delete_device(alice, second["device_id"], {"session": session})
    assert done.code == 200, done.body
    gone = await srv.client(second["access_token"]).get(WHOAMI)
    assert gone.code == 401


@pytest_twisted.ensureDeferred
async def test_re_authenticating_as_someone_else_is_refused(
        make_server: Any, provider: OpenIdProvider) -> None:
    srv = await sso_server(make_server, [idp(provider.issuer)])
    first = await token_login(srv, login_token(await sign_in(srv, "alice")))
    second = await token_login(srv, login_token(await sign_in(srv, "alice")))
    alice = srv.client(first["access_token"])
    session = (await delete_device(alice, second["device_id"])).body["session"]
    browser = Browser()
    fallback = await browser.request(
        "GET", f"{srv.base_url}/_matrix/client/v3/auth/m.login.sso/fallback/web"
               f"?session={session}")
    # bob signs in at the provider instead
    await browser.sign_in_at_provider(
        await browser.request("GET", link_of(fallback, "continue")), "bob")
    refused = await delete_device(alice, second["device_id"], {"session": session})
    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    still = await srv.client(second["access_token"]).get(WHOAMI)
    assert still.code == 200


@pytest_twisted.ensureDeferred
async def test_a_provider_that_is_down_gives_an_error_page(make_server: Any) -> None:
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    srv = await sso_server(make_server, [idp(closed)])
    page = await Browser().request("GET", redirect_url(srv))
    assert page.code == 502 and "could not be reached" in page.body


@pytest_twisted.ensureDeferred
async def test_an_oauth_client_signs_in_through_the_identity_provider(
        make_server: Any, provider: OpenIdProvider) -> None:
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session
    from twisted.internet import threads

    from tests.sso.test_oauth_api import REDIRECT, SCOPE, discover_and_register

    srv = await sso_server(make_server, [idp(provider.issuer)], oauth_api={"enabled": True})
    meta, client_id = await threads.deferToThread(discover_and_register, srv.base_url)
    session = OAuth2Session(client_id, redirect_uri=REDIRECT, scope=SCOPE,
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = generate_token(48)
    url, _state = session.create_authorization_url(meta["authorization_endpoint"],
                                                   code_verifier=verifier)
    browser = Browser()
    page = await browser.request("GET", url)
    assert page.code == 200 and "Test SSO" in page.body
    sso_link = page.body.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    back = await browser.sign_in_at_provider(await browser.request("GET", sso_link), "alice",
                                             stop_at=REDIRECT)
    assert back.location is not None and back.location.startswith(REDIRECT + "?code="), \
        (back.code, back.body)
    token = await threads.deferToThread(session.fetch_token, meta["token_endpoint"],
                                        authorization_response=back.location,
                                        code_verifier=verifier)
    me = await srv.client(token["access_token"]).get(WHOAMI)
    assert me.body["user_id"] == "@alice:test.local"
