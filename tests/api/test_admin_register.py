"""Synapse's shared-secret registration: /_synapse/admin/v1/register."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from synapse_compat.admin import RegistrationNonces, registration_mac
from tests.harness import Response, TestServer

ADMIN_REGISTER = "/_synapse/admin/v1/register"
WHOAMI = "/_matrix/client/v3/account/whoami"
LOGIN = "/_matrix/client/v3/login"
SECRET = "test-shared-secret"  # tests.harness's registration_shared_secret
PASSWORD = "correct horse battery"


async def get_nonce(server: TestServer) -> str:
    resp = await server.client().get(ADMIN_REGISTER)
    assert resp.code == 200, resp.body
    return str(resp.body["nonce"])


async def admin_register(server: TestServer, username: str, *, admin: bool = False,
                         user_type: str | None = None, nonce: str | None = None,
                         mac: str | None = None, **extra: Any) -> Response:
    if nonce is None:
        nonce = await get_nonce(server)
    body: dict[str, Any] = {"nonce": nonce, "username": username, "password": PASSWORD,
                            "admin": admin, **extra}
    if user_type is not None:
        body["user_type"] = user_type
    body["mac"] = mac or registration_mac(SECRET, nonce, username, PASSWORD, admin, user_type)
    return await server.client().post(ADMIN_REGISTER, body)


@pytest_twisted.ensureDeferred
async def test_good_mac_registers_and_logs_in(server: TestServer) -> None:
    resp = await admin_register(server, "alice")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"
    assert resp.body["home_server"] == "test.local"
    assert resp.body["device_id"]
    me = await server.client(resp.body["access_token"]).get(WHOAMI)
    assert me.code == 200 and me.body["user_id"] == "@alice:test.local"
    user = await server.hs.stores.users.get_user("@alice:test.local")
    assert user is not None and not user.admin
    login = await server.client().post(LOGIN, {"type": "m.login.password", "user": "alice",
                                               "password": PASSWORD})
    assert login.code == 200


@pytest_twisted.ensureDeferred
async def test_admin_flag_user_type_and_displayname_are_stored(server: TestServer) -> None:
    resp = await admin_register(server, "root", admin=True, user_type="bot",
                                displayname="The Admin")
    assert resp.code == 200, resp.body
    user = await server.hs.stores.users.get_user("@root:test.local")
    assert user is not None and user.admin and user.user_type == "bot"
    profile = await server.hs.stores.profiles.get_profile("@root:test.local")
    assert profile is not None and profile.displayname == "The Admin"


@pytest_twisted.ensureDeferred
async def test_bad_mac_is_forbidden_and_creates_nothing(server: TestServer) -> None:
    resp = await admin_register(server, "alice", mac="00" * 20)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert await server.hs.stores.users.get_user("@alice:test.local") is None


@pytest_twisted.ensureDeferred
async def test_mac_covers_the_admin_flag(server: TestServer) -> None:
    nonce = await get_nonce(server)
    mac = registration_mac(SECRET, nonce, "alice", PASSWORD, False)
    resp = await admin_register(server, "alice", admin=True, nonce=nonce, mac=mac)
    assert resp.code == 403
    assert await server.hs.stores.users.get_user("@alice:test.local") is None


@pytest_twisted.ensureDeferred
async def test_nonce_is_single_use(server: TestServer) -> None:
    nonce = await get_nonce(server)
    assert (await admin_register(server, "alice", nonce=nonce)).code == 200
    again = await admin_register(server, "bob", nonce=nonce)
    assert (again.code, again.body["errcode"]) == (400, "M_UNKNOWN")
    assert await server.hs.stores.users.get_user("@bob:test.local") is None


@pytest_twisted.ensureDeferred
async def test_nonce_is_spent_even_by_a_bad_mac(server: TestServer) -> None:
    nonce = await get_nonce(server)
    assert (await admin_register(server, "alice", nonce=nonce, mac="00" * 20)).code == 403
    assert (await admin_register(server, "alice", nonce=nonce)).code == 400


@pytest_twisted.ensureDeferred
async def test_unknown_and_expired_nonces_are_refused(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock)
    unknown = await admin_register(server, "alice", nonce="made-up")
    assert (unknown.code, unknown.body["errcode"]) == (400, "M_UNKNOWN")
    nonce = await get_nonce(server)
    clock.advance(61)
    expired = await admin_register(server, "alice", nonce=nonce)
    assert (expired.code, expired.body["errcode"]) == (400, "M_UNKNOWN")
    assert await server.hs.stores.users.get_user("@alice:test.local") is None


@pytest_twisted.ensureDeferred
async def test_not_enabled_without_a_shared_secret(make_server: Any) -> None:
    server = await make_server(registration_shared_secret=None)
    resp = await server.client().get(ADMIN_REGISTER)
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNKNOWN")
    assert resp.body["error"] == "Shared secret registration is not enabled"
    post = await server.client().post(ADMIN_REGISTER, {"nonce": "x"})
    assert (post.code, post.body["errcode"]) == (400, "M_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_works_while_public_registration_is_closed(make_server: Any) -> None:
    server = await make_server(enable_registration=False)
    resp = await admin_register(server, "alice", admin=True)
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_taken_and_invalid_names_are_refused(server: TestServer) -> None:
    await server.register("alice")
    taken = await admin_register(server, "alice")
    assert (taken.code, taken.body["errcode"]) == (400, "M_USER_IN_USE")
    bad = await admin_register(server, "al ice")
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_USERNAME")


@pytest_twisted.ensureDeferred
async def test_username_is_lowercased_but_mac_covers_it_as_sent(server: TestServer) -> None:
    resp = await admin_register(server, "Alice")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_missing_fields_are_refused(server: TestServer) -> None:
    nonce = await get_nonce(server)
    resp = await server.client().post(ADMIN_REGISTER, {"nonce": nonce, "username": "alice",
                                                       "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")
    assert await server.hs.stores.users.get_user("@alice:test.local") is None
    bad_type = await admin_register(server, "alice", user_type="wizard")
    assert bad_type.code == 400


# -- nonces cost the server no database write, and are rate-limited --------------

@pytest_twisted.ensureDeferred
async def test_handing_out_nonces_writes_nothing_and_a_nonce_still_works_once(
        server: TestServer) -> None:
    transactions: list[str] = []
    db = server.hs.db
    real = db.run_interaction

    def counting(desc: str, *args: Any, **kwargs: Any) -> Any:
        transactions.append(desc)
        return real(desc, *args, **kwargs)
    db.run_interaction = counting  # type: ignore[method-assign]
    try:
        first = await get_nonce(server)
        others = {await get_nonce(server) for _ in range(200)}
    finally:
        db.run_interaction = real  # type: ignore[method-assign]
    assert transactions == []
    assert first not in others and len(others) == 200
    resp = await admin_register(server, "alice", nonce=first)
    assert resp.code == 200, resp.body
    again = await admin_register(server, "bob", nonce=first)
    assert (again.code, again.body["errcode"]) == (400, "M_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_one_address_asking_for_nonces_too_fast_is_rate_limited(
        make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock,
                               rc_registration={"per_second": 0.1, "burst_count": 3})
    nonces = [await get_nonce(server) for _ in range(3)]
    limited = await server.client().get(ADMIN_REGISTER)
    assert (limited.code, limited.body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert limited.body["retry_after_ms"] > 0
    # what was handed out still works
    assert (await admin_register(server, "alice", nonce=nonces[0])).code == 200
    clock.advance(10)
    assert (await server.client().get(ADMIN_REGISTER)).code == 200


def test_held_nonces_are_bounded_and_the_oldest_go_first() -> None:
    clock = Clock()
    nonces = RegistrationNonces(clock, lifetime_ms=60_000, max_count=3)
    a, b, c = nonces.issue(), nonces.issue(), nonces.issue()
    d = nonces.issue()
    assert len(nonces) == 3
    assert not nonces.take(a)
    assert nonces.take(b) and nonces.take(c) and nonces.take(d)
    assert not nonces.take(d)
    e = nonces.issue()
    clock.advance(61)
    nonces.issue()  # expired ones are dropped as new ones are handed out
    assert len(nonces) == 1
    assert not nonces.take(e)
