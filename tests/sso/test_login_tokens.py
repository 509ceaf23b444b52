"""m.login.token and POST /login/get_token (login_via_existing_session)."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from tests.harness import TestServer

LOGIN = "/_matrix/client/v3/login"
GET_TOKEN = "/_matrix/client/v1/login/get_token"
WHOAMI = "/_matrix/client/v3/account/whoami"
CAPABILITIES = "/_matrix/client/v3/capabilities"
PASSWORD = "correct horse battery"
ENABLED = {"login_via_existing_session": {"enabled": True}}


async def token_login(server: TestServer, token: str, **extra: Any) -> Any:
    return await server.client().post(LOGIN, {"type": "m.login.token", "token": token,
                                              **extra})


async def get_token_with_password(server: TestServer, client: Any) -> Any:
    first = await client.post(GET_TOKEN, {})
    assert first.code == 401, first.body
    assert first.body["flows"] == [{"stages": ["m.login.password"]}]
    return await client.post(GET_TOKEN, {"auth": {
        "type": "m.login.password", "session": first.body["session"],
        "identifier": {"type": "m.id.user", "user": client.user_id}, "password": PASSWORD}})


@pytest_twisted.ensureDeferred
async def test_new_device_signs_in_with_a_token_from_a_logged_in_one(make_server: Any) -> None:
    server = await make_server(**ENABLED)
    alice = await server.register("alice")
    flows = (await server.client().get(LOGIN)).body["flows"]
    assert {"type": "m.login.token", "get_login_token": True} in flows
    caps = await alice.get(CAPABILITIES)
    assert caps.body["capabilities"]["m.get_login_token"] == {"enabled": True}
    resp = await get_token_with_password(server, alice)
    assert resp.code == 200, resp.body
    assert resp.body["expires_in_ms"] == 300_000
    login = await token_login(server, resp.body["login_token"],
                              initial_device_display_name="phone")
    assert login.code == 200, login.body
    assert login.body["user_id"] == alice.user_id
    assert login.body["device_id"] != alice.device_id
    who = await server.client(login.body["access_token"]).get(WHOAMI)
    assert who.body["user_id"] == alice.user_id


@pytest_twisted.ensureDeferred
async def test_login_token_works_once(make_server: Any) -> None:
    server = await make_server(login_via_existing_session={"enabled": True,
                                                           "require_ui_auth": False})
    alice = await server.register("alice")
    resp = await alice.post(GET_TOKEN, {})
    assert resp.code == 200, resp.body
    token = resp.body["login_token"]
    assert (await token_login(server, token)).code == 200
    again = await token_login(server, token)
    assert (again.code, again.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_login_token_expires(make_server: Any) -> None:
    clock = Clock()
    clock.advance(1_700_000_000)
    server = await make_server(clock=clock, login_via_existing_session={
        "enabled": True, "require_ui_auth": False, "token_timeout": "1m"})
    alice = await server.register("alice")
    resp = await alice.post(GET_TOKEN, {})
    assert resp.body["expires_in_ms"] == 60_000
    clock.advance(61)
    late = await token_login(server, resp.body["login_token"])
    assert (late.code, late.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_unknown_login_token_is_refused(make_server: Any) -> None:
    server = await make_server(**ENABLED)
    resp = await token_login(server, "hs_lt_not-a-token")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    missing = await server.client().post(LOGIN, {"type": "m.login.token"})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")


@pytest_twisted.ensureDeferred
async def test_get_token_needs_the_password_again(make_server: Any) -> None:
    server = await make_server(**ENABLED)
    alice = await server.register("alice")
    first = await alice.post(GET_TOKEN, {})
    wrong = await alice.post(GET_TOKEN, {"auth": {
        "type": "m.login.password", "session": first.body["session"],
        "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": "wrong"}})
    assert (wrong.code, wrong.body["errcode"]) == (401, "M_FORBIDDEN")
    assert "login_token" not in wrong.body


@pytest_twisted.ensureDeferred
async def test_get_token_is_off_by_default(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.post(GET_TOKEN, {})
    assert (resp.code, resp.body["errcode"]) == (404, "M_UNRECOGNIZED")
    flows = (await server.client().get(LOGIN)).body["flows"]
    assert flows == [{"type": "m.login.password"}]
    caps = await alice.get(CAPABILITIES)
    assert caps.body["capabilities"]["m.get_login_token"] == {"enabled": False}


@pytest_twisted.ensureDeferred
async def test_token_of_a_deactivated_user_is_refused(make_server: Any) -> None:
    server = await make_server(login_via_existing_session={"enabled": True,
                                                           "require_ui_auth": False})
    alice = await server.register("alice")
    token = (await alice.post(GET_TOKEN, {})).body["login_token"]
    bob = await server.register("bob")
    await bob.post("/_matrix/client/v3/account/deactivate", {"auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
        "password": PASSWORD}})
    bob_token = await server.hs.login_tokens.issue(bob.user_id, 60_000)
    resp = await token_login(server, bob_token)
    assert (resp.code, resp.body["errcode"]) == (403, "M_USER_DEACTIVATED")
    assert (await token_login(server, token)).code == 200
