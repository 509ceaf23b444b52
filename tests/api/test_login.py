"""Login, refresh and logout."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from tests.harness import Response, TestServer

LOGIN = "/_matrix/client/v3/login"
REFRESH = "/_matrix/client/v3/refresh"
LOGOUT = "/_matrix/client/v3/logout"
LOGOUT_ALL = "/_matrix/client/v3/logout/all"
WHOAMI = "/_matrix/client/v3/account/whoami"
PASSWORD = "correct horse battery"


async def login(server: TestServer, user: str, password: str = PASSWORD,
                **extra: Any) -> Response:
    return await server.client().post(LOGIN, {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": password, **extra})


async def whoami(server: TestServer, token: str) -> Response:
    return await server.client(token).get(WHOAMI)


def limited_login(failed: tuple[float, float] = (1000, 1000),
                  address: tuple[float, float] = (1000, 1000),
                  account: tuple[float, float] = (1000, 1000)) -> dict[str, Any]:
    def rate(r: tuple[float, float]) -> dict[str, float]:
        return {"per_second": r[0], "burst_count": r[1]}
    return {"rc_login": {"failed_attempts": rate(failed), "address": rate(address),
                         "account": rate(account)}}


# --- password login -------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_login_flows_offer_password(server: TestServer) -> None:
    resp = await server.client().get(LOGIN)
    assert resp.code == 200
    assert resp.body == {"flows": [{"type": "m.login.password"}]}


@pytest_twisted.ensureDeferred
async def test_login_flows_are_empty_when_password_login_is_off(make_server: Any) -> None:
    server = await make_server(password_config={"enabled": False})
    assert (await server.client().get(LOGIN)).body == {"flows": []}
    await server.register("alice")
    resp = await login(server, "alice")
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_login_with_localpart_identifier(server: TestServer) -> None:
    await server.register("alice")
    resp = await login(server, "alice")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"
    assert resp.body["home_server"] == "test.local"
    assert resp.body["device_id"]
    assert "refresh_token" not in resp.body
    me = await whoami(server, resp.body["access_token"])
    assert me.body["user_id"] == "@alice:test.local"
    assert me.body["device_id"] == resp.body["device_id"]


@pytest_twisted.ensureDeferred
async def test_login_with_full_user_id_identifier(server: TestServer) -> None:
    await server.register("alice")
    resp = await login(server, "@alice:test.local")
    assert resp.code == 200
    assert resp.body["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_login_with_legacy_user_field(server: TestServer) -> None:
    await server.register("alice")
    for user in ["alice", "@alice:test.local"]:
        resp = await server.client().post(LOGIN, {"type": "m.login.password", "user": user,
                                                  "password": PASSWORD})
        assert resp.code == 200, resp.body
        assert resp.body["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_login_ignores_case_of_user_id(server: TestServer) -> None:
    await server.register("alice")
    for user in ["ALICE", "@Alice:test.local"]:
        resp = await login(server, user)
        assert resp.code == 200, resp.body
        assert resp.body["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_forbidden(server: TestServer) -> None:
    await server.register("alice")
    resp = await login(server, "alice", "wrong password")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert "access_token" not in resp.body
    assert await server.hs.stores.devices.get_devices("@alice:test.local") != []


@pytest_twisted.ensureDeferred
async def test_unknown_user_is_forbidden_like_a_wrong_password(server: TestServer) -> None:
    resp = await login(server, "nobody")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    remote = await login(server, "@alice:elsewhere.example")
    assert (remote.code, remote.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_third_party_identifier_cannot_log_in(server: TestServer) -> None:
    resp = await server.client().post(LOGIN, {
        "type": "m.login.password", "password": PASSWORD,
        "identifier": {"type": "m.id.thirdparty", "medium": "email",
                       "address": "alice@example.org"}})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_unknown_login_type_is_m_unknown(server: TestServer) -> None:
    resp = await server.client().post(LOGIN, {"type": "m.login.magic", "user": "alice"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_login_without_user_or_password_is_a_missing_param(server: TestServer) -> None:
    await server.register("alice")
    no_user = await server.client().post(LOGIN, {"type": "m.login.password",
                                                 "password": PASSWORD})
    assert (no_user.code, no_user.body["errcode"]) == (400, "M_MISSING_PARAM")
    no_password = await server.client().post(LOGIN, {"type": "m.login.password",
                                                     "user": "alice"})
    assert (no_password.code, no_password.body["errcode"]) == (400, "M_MISSING_PARAM")


@pytest_twisted.ensureDeferred
async def test_login_sets_initial_device_display_name(server: TestServer) -> None:
    await server.register("alice")
    resp = await login(server, "alice", initial_device_display_name="Laptop")
    device = await server.hs.stores.devices.get_device("@alice:test.local",
                                                       resp.body["device_id"])
    assert device is not None and device.display_name == "Laptop"


@pytest_twisted.ensureDeferred
async def test_login_with_existing_device_id_replaces_its_session(server: TestServer) -> None:
    await server.register("alice")
    first = await login(server, "alice", device_id="PHONE")
    second = await login(server, "alice", device_id="PHONE")
    assert first.body["device_id"] == second.body["device_id"] == "PHONE"
    old = await whoami(server, first.body["access_token"])
    assert (old.code, old.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert (await whoami(server, second.body["access_token"])).code == 200
    devices = await server.hs.stores.devices.get_devices("@alice:test.local")
    assert [d.device_id for d in devices].count("PHONE") == 1


# --- rate limits ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_failed_logins_are_rate_limited_per_account(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock, **limited_login(failed=(0.1, 2)))
    await server.register("alice")
    await server.register("bob")
    for _ in range(2):
        assert (await login(server, "alice", "wrong")).code == 403
    # Even the right password waits now: guessing must not go faster.
    resp = await login(server, "alice")
    assert (resp.code, resp.body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert 0 < resp.body["retry_after_ms"] <= 10_000
    assert resp.header("Retry-After") is not None
    # Another account is not affected.
    assert (await login(server, "bob")).code == 200
    clock.advance(10)
    assert (await login(server, "alice")).code == 200


@pytest_twisted.ensureDeferred
async def test_failed_attempts_count_ignoring_case(make_server: Any) -> None:
    server = await make_server(clock=Clock(), **limited_login(failed=(0.1, 2)))
    await server.register("alice")
    assert (await login(server, "alice", "wrong")).code == 403
    assert (await login(server, "ALICE", "wrong")).code == 403
    assert (await login(server, "Alice")).code == 429


@pytest_twisted.ensureDeferred
async def test_logins_are_rate_limited_per_address(make_server: Any) -> None:
    server = await make_server(clock=Clock(), **limited_login(address=(0.1, 2)))
    await server.register("alice")
    await server.register("bob")
    assert (await login(server, "alice")).code == 200
    assert (await login(server, "bob", "wrong")).code == 403
    resp = await login(server, "bob")
    assert (resp.code, resp.body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert resp.body["retry_after_ms"] > 0


@pytest_twisted.ensureDeferred
async def test_successful_logins_are_rate_limited_per_account(make_server: Any) -> None:
    server = await make_server(clock=Clock(), **limited_login(account=(0.1, 1)))
    await server.register("alice")
    assert (await login(server, "alice")).code == 200
    resp = await login(server, "alice")
    assert (resp.code, resp.body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert len(await server.hs.stores.devices.get_devices("@alice:test.local")) == 2


# --- refresh --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_refreshable_login_expires_into_soft_logout(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock)
    await server.register("alice")
    resp = await login(server, "alice", refresh_token=True)
    assert resp.code == 200
    assert resp.body["expires_in_ms"] == 300_000
    assert resp.body["refresh_token"]
    assert (await whoami(server, resp.body["access_token"])).code == 200
    clock.advance(301)
    expired = await whoami(server, resp.body["access_token"])
    assert expired.code == 401
    assert expired.body["errcode"] == "M_UNKNOWN_TOKEN"
    assert expired.body["soft_logout"] is True
    # the refresh token gets a working pair
    refreshed = await server.client().post(REFRESH, {"refresh_token": resp.body["refresh_token"]})
    assert refreshed.code == 200, refreshed.body
    assert refreshed.body["expires_in_ms"] == 300_000
    assert refreshed.body["refresh_token"] != resp.body["refresh_token"]
    me = await whoami(server, refreshed.body["access_token"])
    assert me.code == 200
    assert me.body["device_id"] == resp.body["device_id"]


@pytest_twisted.ensureDeferred
async def test_old_refresh_token_works_until_new_access_token_is_used(
        make_server: Any) -> None:
    server = await make_server(clock=Clock())
    await server.register("alice")
    first = (await login(server, "alice", refresh_token=True)).body
    r1 = first["refresh_token"]
    # The client refreshes but never sees the answer ...
    lost = (await server.client().post(REFRESH, {"refresh_token": r1})).body
    # ... so it refreshes again with the same token, which still works.
    second = await server.client().post(REFRESH, {"refresh_token": r1})
    assert second.code == 200, second.body
    # the lost pair is gone
    assert (await whoami(server, lost["access_token"])).code == 401
    assert (await server.client().post(REFRESH, {"refresh_token": lost["refresh_token"]})
            ).code == 401
    # using the new access token retires the old refresh token and access token
    assert (await whoami(server, second.body["access_token"])).code == 200
    used = await server.client().post(REFRESH, {"refresh_token": r1})
    assert (used.code, used.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert used.body["soft_logout"] is False
    assert (await whoami(server, first["access_token"])).code == 401
    # and the new refresh token carries on
    third = await server.client().post(REFRESH, {"refresh_token": second.body["refresh_token"]})
    assert third.code == 200


@pytest_twisted.ensureDeferred
async def test_unknown_refresh_token_is_refused(server: TestServer) -> None:
    resp = await server.client().post(REFRESH, {"refresh_token": "hs_rt_nonsense"})
    assert (resp.code, resp.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert resp.body["soft_logout"] is False
    missing = await server.client().post(REFRESH, {})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")


@pytest_twisted.ensureDeferred
async def test_expired_refresh_token_is_refused(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock, refresh_token_lifetime="1h")
    await server.register("alice")
    body = (await login(server, "alice", refresh_token=True)).body
    clock.advance(3601)
    resp = await server.client().post(REFRESH, {"refresh_token": body["refresh_token"]})
    assert (resp.code, resp.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


@pytest_twisted.ensureDeferred
async def test_logout_ends_refreshable_session(server: TestServer) -> None:
    await server.register("alice")
    body = (await login(server, "alice", refresh_token=True)).body
    assert (await server.client(body["access_token"]).post(LOGOUT, {})).code == 200
    resp = await server.client().post(REFRESH, {"refresh_token": body["refresh_token"]})
    assert (resp.code, resp.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


# --- logout -----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_logout_removes_this_device_only(server: TestServer) -> None:
    alice = await server.register("alice")
    other = (await login(server, "alice")).body
    resp = await alice.post(LOGOUT, {})
    assert (resp.code, resp.body) == (200, {})
    gone = await alice.get(WHOAMI)
    assert (gone.code, gone.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert (await whoami(server, other["access_token"])).code == 200
    devices = await server.hs.stores.devices.get_devices("@alice:test.local")
    assert [d.device_id for d in devices] == [other["device_id"]]


@pytest_twisted.ensureDeferred
async def test_logout_all_removes_every_device(server: TestServer) -> None:
    alice = await server.register("alice")
    other = (await login(server, "alice")).body
    resp = await alice.post(LOGOUT_ALL, {})
    assert (resp.code, resp.body) == (200, {})
    for token in [alice.access_token, other["access_token"]]:
        assert token is not None
        gone = await whoami(server, token)
        assert (gone.code, gone.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert await server.hs.stores.devices.get_devices("@alice:test.local") == []
    # the account itself is fine
    assert (await login(server, "alice")).code == 200


@pytest_twisted.ensureDeferred
async def test_logout_needs_a_token(server: TestServer) -> None:
    resp = await server.client().post(LOGOUT, {})
    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")
