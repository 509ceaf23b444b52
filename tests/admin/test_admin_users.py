"""Synapse's user admin API through real HTTP: list, query, create/modify,
deactivate, reset password, admin flag, whois, devices, joined rooms, login as."""

from __future__ import annotations

import logging

import pytest
import pytest_twisted

from tests.harness import TestServer
from tests.helpers import create_room, q

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"


@pytest_twisted.ensureDeferred
async def test_user_list_pages_filters_and_orders(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    for name in ("bob", "carol", "dave", "erin"):
        await server.register(name)
    await server.hs.stores.profiles.set_displayname("@erin:test.local", "Zed 100%")
    first = await admin.get(f"{V2}/users?limit=2")
    assert first.code == 200, first.body
    assert [u["name"] for u in first.body["users"]] == ["@admin:test.local", "@bob:test.local"]
    assert first.body["total"] == 5 and first.body["next_token"] == "2"
    user = first.body["users"][1]
    assert user["admin"] is False and user["deactivated"] is False
    assert user["displayname"] == "bob" and isinstance(user["creation_ts"], int)
    rest = await admin.get(f"{V2}/users?from=2&limit=10")
    assert [u["name"] for u in rest.body["users"]] == [
        "@carol:test.local", "@dave:test.local", "@erin:test.local"]
    assert "next_token" not in rest.body
    back = await admin.get(f"{V2}/users?dir=b&limit=1")
    assert back.body["users"][0]["name"] == "@erin:test.local"
    # a display name match, with % taken literally
    by_name = await admin.get(f"{V2}/users?name={q('100%')}")
    assert [u["name"] for u in by_name.body["users"]] == ["@erin:test.local"]
    by_id = await admin.get(f"{V2}/users?user_id=CAR")
    assert [u["name"] for u in by_id.body["users"]] == ["@carol:test.local"]
    admins = await admin.get(f"{V2}/users?admins=true")
    assert [u["name"] for u in admins.body["users"]] == ["@admin:test.local"]
    bad = await admin.get(f"{V2}/users?order_by=password_hash")
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")
    neg = await admin.get(f"{V2}/users?from=-1")
    assert (neg.code, neg.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_non_admin_is_forbidden_and_no_token_is_401(server: TestServer) -> None:
    user = await server.register("bob")
    resp = await user.get(f"{V2}/users")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    resp = await server.client().get(f"{V2}/users")
    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")


@pytest_twisted.ensureDeferred
async def test_put_creates_then_modifies_a_user(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    created = await admin.put(f"{V2}/users/{q('@new:test.local')}", {
        "password": "a fine password", "displayname": "New One", "admin": False,
        "threepids": [{"medium": "email", "address": "New@Example.org"}],
        "avatar_url": "mxc://test.local/abc"})
    assert created.code == 201, created.body
    assert created.body["name"] == "@new:test.local"
    assert created.body["displayname"] == "New One"
    assert created.body["avatar_url"] == "mxc://test.local/abc"
    assert [t["address"] for t in created.body["threepids"]] == ["new@example.org"]
    login = await server.client().post(LOGIN, {"type": "m.login.password", "user": "new",
                                               "password": "a fine password"})
    assert login.code == 200, login.body
    changed = await admin.put(f"{V2}/users/{q('@new:test.local')}",
                              {"displayname": "Renamed", "admin": True, "threepids": []})
    assert changed.code == 200, changed.body
    assert changed.body["displayname"] == "Renamed" and changed.body["admin"] is True
    assert changed.body["threepids"] == []
    got = await admin.get(f"{V2}/users/{q('@new:test.local')}")
    assert got.body["admin"] is True
    missing = await admin.get(f"{V2}/users/{q('@nobody:test.local')}")
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")
    remote = await admin.get(f"{V2}/users/{q('@x:elsewhere.org')}")
    assert remote.code == 400
    bad = await admin.put(f"{V2}/users/{q('@new:test.local')}", {"admin": "yes"})
    assert (bad.code, bad.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_deactivate_logs_out_and_reactivation_needs_a_password(
        server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    resp = await admin.post(f"{V1}/deactivate/{q(bob.user_id)}", {"erase": True})
    assert resp.code == 200, resp.body
    assert "id_server_unbind_result" in resp.body
    assert (await bob.get(WHOAMI)).code == 401
    got = await admin.get(f"{V2}/users/{q(bob.user_id)}")
    assert got.body["deactivated"] is True and got.body["erased"] is True
    listed = await admin.get(f"{V2}/users")
    assert bob.user_id not in [u["name"] for u in listed.body["users"]]
    listed = await admin.get(f"{V2}/users?deactivated=true")
    assert bob.user_id in [u["name"] for u in listed.body["users"]]
    assert len(listed.body["users"]) == 2
    only = await admin.get("/_synapse/admin/v3/users?deactivated=true")
    assert [u["name"] for u in only.body["users"]] == [bob.user_id]
    both = await admin.get("/_synapse/admin/v3/users")
    assert both.body["total"] == 2
    no_pw = await admin.put(f"{V2}/users/{q(bob.user_id)}", {"deactivated": False})
    assert no_pw.code == 400
    back = await admin.put(f"{V2}/users/{q(bob.user_id)}",
                           {"deactivated": False, "password": "another password"})
    assert back.code == 200 and back.body["deactivated"] is False
    login = await server.client().post(LOGIN, {"type": "m.login.password", "user": "bob",
                                               "password": "another password"})
    assert login.code == 200


@pytest_twisted.ensureDeferred
async def test_reset_password_and_admin_flag(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    resp = await admin.post(f"{V1}/reset_password/{q(bob.user_id)}",
                            {"new_password": "brand new pass"})
    assert resp.code == 200, resp.body
    assert (await bob.get(WHOAMI)).code == 401  # logged out by default
    login = await server.client().post(LOGIN, {"type": "m.login.password", "user": "bob",
                                               "password": "brand new pass"})
    assert login.code == 200
    assert (await admin.get(f"{V1}/users/{q(bob.user_id)}/admin")).body == {"admin": False}
    assert (await admin.put(f"{V1}/users/{q(bob.user_id)}/admin", {"admin": True})).code == 200
    bob2 = server.client(login.body["access_token"])
    assert (await bob2.get(f"{V2}/users")).code == 200
    demote = await admin.put(f"{V1}/users/{q(admin.user_id)}/admin", {"admin": False})
    assert demote.code == 400
    assert (await admin.put(f"{V1}/users/{q(bob.user_id)}/admin", {"admin": False})).code == 200
    assert (await bob2.get(f"{V2}/users")).code == 403


@pytest_twisted.ensureDeferred
async def test_devices_whois_joined_rooms_and_login_as(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob", device_id="PHONE")
    room_id = await create_room(bob)
    devices = await admin.get(f"{V2}/users/{q(bob.user_id)}/devices")
    assert devices.code == 200, devices.body
    assert devices.body["total"] == 1
    assert devices.body["devices"][0]["device_id"] == "PHONE"
    assert devices.body["devices"][0]["user_id"] == bob.user_id
    renamed = await admin.put(f"{V2}/users/{q(bob.user_id)}/devices/PHONE",
                              {"display_name": "Bob's phone"})
    assert renamed.code == 200
    one = await admin.get(f"{V2}/users/{q(bob.user_id)}/devices/PHONE")
    assert one.body["display_name"] == "Bob's phone"
    whois = await admin.get(f"{V1}/whois/{q(bob.user_id)}")
    assert whois.body["user_id"] == bob.user_id and "PHONE" in whois.body["devices"]
    joined = await admin.get(f"{V1}/users/{q(bob.user_id)}/joined_rooms")
    assert joined.body == {"joined_rooms": [room_id], "total": 1}
    login = await admin.post(f"{V1}/users/{q(bob.user_id)}/login", {})
    assert login.code == 200, login.body
    puppet = server.client(login.body["access_token"])
    assert (await puppet.get(WHOAMI)).body["user_id"] == bob.user_id
    self_login = await admin.post(f"{V1}/users/{q(admin.user_id)}/login", {})
    assert self_login.code == 400
    gone = await admin.delete(f"{V2}/users/{q(bob.user_id)}/devices/PHONE")
    assert gone.code == 200
    assert (await bob.get(WHOAMI)).code == 401
    assert (await admin.get(f"{V2}/users/{q(bob.user_id)}/devices/PHONE")).code == 404


@pytest_twisted.ensureDeferred
async def test_username_available_and_server_version(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    free = await admin.get(f"{V1}/username_available?username=someone")
    assert free.body == {"available": True}
    taken = await admin.get(f"{V1}/username_available?username=admin")
    assert (taken.code, taken.body["errcode"]) == (400, "M_USER_IN_USE")
    version = await admin.get(f"{V1}/server_version")
    assert version.code == 200 and isinstance(version.body["server_version"], str)


@pytest_twisted.ensureDeferred
async def test_admin_actions_are_audited(server: TestServer,
                                         caplog: pytest.LogCaptureFixture) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    with caplog.at_level(logging.INFO, logger="homeserver.admin.audit"):
        await admin.put(f"{V1}/users/{q(bob.user_id)}/admin", {"admin": True})
    lines = [r.getMessage() for r in caplog.records if r.name == "homeserver.admin.audit"]
    assert lines == [f"admin={admin.user_id} action=set_admin target={bob.user_id}"
                     " admin_flag=True"]
