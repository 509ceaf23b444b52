"""Device management: a user lists, renames and deletes their own devices."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import task

from tests.harness import Client, Response, TestServer

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery"


async def log_in_again(server: TestServer, client: Client,
                       display_name: str | None = None) -> Client:
    """A second device for ``client``'s user, with its own token."""
    assert client.user_id is not None
    session = await server.hs.sessions.create_login_session(client.user_id,
                                                            display_name=display_name)
    other = server.client(session.access_token)
    other.user_id = client.user_id
    other.device_id = session.device_id
    return other


def password_auth(client: Client, session: str, password: str = PASSWORD) -> dict[str, Any]:
    return {"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": client.user_id},
            "password": password, "session": session}


async def with_password(client: Client, method: str, path: str, body: dict[str, Any],
                        password: str = PASSWORD) -> Response:
    """Make a request that needs user-interactive auth, completing it with a password."""
    first = await client.request(method, path, body)
    assert first.code == 401, first.body
    assert {"stages": ["m.login.password"]} in first.body["flows"]
    return await client.request(method, path, {
        **body, "auth": password_auth(client, first.body["session"], password)})


# --- listing and reading ---------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_device_list_shows_every_login_of_the_user(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice, "Alice's phone")
    await server.register("bob")

    resp = await alice.get(f"{V3}/devices")

    assert resp.code == 200
    by_id = {d["device_id"]: d for d in resp.body["devices"]}
    assert set(by_id) == {alice.device_id, phone.device_id}
    assert by_id[phone.device_id]["display_name"] == "Alice's phone"
    assert set(by_id[phone.device_id]) == {"device_id", "display_name", "last_seen_ip",
                                           "last_seen_ts"}


@pytest_twisted.ensureDeferred
async def test_device_list_notes_where_a_device_was_last_seen(server: TestServer) -> None:
    from twisted.internet import reactor

    alice = await server.register("alice")
    await alice.get(f"{V3}/devices")
    # the last-seen write runs in the background of the request that saw it
    for _ in range(50):
        resp = await alice.get(f"{V3}/devices/{alice.device_id}")
        if resp.body["last_seen_ts"] is not None:
            break
        await task.deferLater(reactor, 0.02)
    assert resp.body["last_seen_ip"] == "127.0.0.1"
    assert isinstance(resp.body["last_seen_ts"], int)


@pytest_twisted.ensureDeferred
async def test_device_can_be_read_by_id(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice, "Phone")

    resp = await alice.get(f"{V3}/devices/{phone.device_id}")

    assert resp.code == 200
    assert resp.body["device_id"] == phone.device_id
    assert resp.body["display_name"] == "Phone"


@pytest_twisted.ensureDeferred
async def test_unknown_device_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(f"{V3}/devices/NOSUCHDEVICE")
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_another_users_device_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    resp = await alice.get(f"{V3}/devices/{bob.device_id}")
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_device_endpoints_need_a_token(server: TestServer) -> None:
    resp = await server.client().get(f"{V3}/devices")
    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")


# --- renaming ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_device_can_be_renamed(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice, "Phone")

    resp = await alice.put(f"{V3}/devices/{phone.device_id}", {"display_name": "Old phone"})

    assert (resp.code, resp.body) == (200, {})
    got = await alice.get(f"{V3}/devices/{phone.device_id}")
    assert got.body["display_name"] == "Old phone"


@pytest_twisted.ensureDeferred
async def test_rename_without_a_name_changes_nothing(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice, "Phone")

    resp = await alice.put(f"{V3}/devices/{phone.device_id}", {})

    assert resp.code == 200
    got = await alice.get(f"{V3}/devices/{phone.device_id}")
    assert got.body["display_name"] == "Phone"


@pytest_twisted.ensureDeferred
async def test_renaming_an_unknown_device_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    for body in ({"display_name": "x"}, {}):
        resp = await alice.put(f"{V3}/devices/NOSUCHDEVICE", body)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_renaming_another_users_device_is_404_and_changes_nothing(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await bob.put(f"{V3}/devices/{bob.device_id}", {"display_name": "Bob's laptop"})

    resp = await alice.put(f"{V3}/devices/{bob.device_id}", {"display_name": "pwned"})

    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    got = await bob.get(f"{V3}/devices/{bob.device_id}")
    assert got.body["display_name"] == "Bob's laptop"


@pytest_twisted.ensureDeferred
async def test_device_name_must_be_a_string(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice, "Phone")
    for bad in (42, ["Phone"], {"name": "Phone"}, True):
        resp = await alice.put(f"{V3}/devices/{phone.device_id}", {"display_name": bad})
        assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), bad
    got = await alice.get(f"{V3}/devices/{phone.device_id}")
    assert got.body["display_name"] == "Phone"


@pytest_twisted.ensureDeferred
async def test_device_name_longer_than_100_characters_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await alice.put(f"{V3}/devices/{alice.device_id}", {"display_name": "x" * 101})

    assert (resp.code, resp.body["errcode"]) == (400, "M_TOO_LARGE")
    got = await alice.get(f"{V3}/devices/{alice.device_id}")
    assert got.body["display_name"] is None
    ok = await alice.put(f"{V3}/devices/{alice.device_id}", {"display_name": "é" * 100})
    assert ok.code == 200


@pytest_twisted.ensureDeferred
async def test_device_name_with_nul_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.put(f"{V3}/devices/{alice.device_id}", {"display_name": "a\u0000b"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_device_id_with_nul_is_refused_not_crashed_on(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(f"{V3}/devices/A%00B")
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_rename_body_must_be_json(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.put(f"{V3}/devices/{alice.device_id}", raw=b"not json")
    assert (resp.code, resp.body["errcode"]) == (400, "M_NOT_JSON")


# --- deleting (user-interactive auth) -------------------------------------------

@pytest_twisted.ensureDeferred
async def test_deleting_a_device_asks_for_the_password_first(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice)

    resp = await alice.delete(f"{V3}/devices/{phone.device_id}", {})

    assert resp.code == 401
    assert {"stages": ["m.login.password"]} in resp.body["flows"]
    assert isinstance(resp.body["session"], str)
    # nothing happened yet
    still = await phone.get(f"{V3}/devices")
    assert still.code == 200


@pytest_twisted.ensureDeferred
async def test_deleting_a_device_logs_it_out(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice, "Phone")

    resp = await with_password(alice, "DELETE", f"{V3}/devices/{phone.device_id}", {})

    assert (resp.code, resp.body) == (200, {})
    gone = await phone.get(f"{V3}/devices")
    assert (gone.code, gone.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    listed = await alice.get(f"{V3}/devices")
    assert [d["device_id"] for d in listed.body["devices"]] == [alice.device_id]


@pytest_twisted.ensureDeferred
async def test_delete_without_a_body_still_starts_auth(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.delete(f"{V3}/devices/{alice.device_id}")
    assert resp.code == 401
    assert "session" in resp.body


@pytest_twisted.ensureDeferred
async def test_wrong_password_keeps_the_device(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice)

    resp = await with_password(alice, "DELETE", f"{V3}/devices/{phone.device_id}", {},
                               password="wrong password")

    assert resp.code == 401
    assert resp.body["errcode"] == "M_FORBIDDEN"
    still = await phone.get(f"{V3}/devices")
    assert still.code == 200


@pytest_twisted.ensureDeferred
async def test_deleting_an_unknown_device_is_404_after_auth(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await with_password(alice, "DELETE", f"{V3}/devices/NOSUCHDEVICE", {})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_deleting_another_users_device_is_404_and_leaves_it(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")

    resp = await with_password(alice, "DELETE", f"{V3}/devices/{bob.device_id}", {})

    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    still = await bob.get(f"{V3}/devices")
    assert still.code == 200


@pytest_twisted.ensureDeferred
async def test_delete_devices_removes_the_listed_devices(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice)
    tablet = await log_in_again(server, alice)
    laptop = await log_in_again(server, alice)

    resp = await with_password(alice, "POST", f"{V3}/delete_devices",
                               {"devices": [phone.device_id, tablet.device_id]})

    assert (resp.code, resp.body) == (200, {})
    for deleted in (phone, tablet):
        gone = await deleted.get(f"{V3}/devices")
        assert (gone.code, gone.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    listed = await laptop.get(f"{V3}/devices")
    assert {d["device_id"] for d in listed.body["devices"]} == {alice.device_id,
                                                               laptop.device_id}


@pytest_twisted.ensureDeferred
async def test_delete_devices_skips_unknown_and_foreign_ids(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice)
    bob = await server.register("bob")

    resp = await with_password(alice, "POST", f"{V3}/delete_devices",
                               {"devices": [phone.device_id, "NOSUCHDEVICE", bob.device_id]})

    assert resp.code == 200
    gone = await phone.get(f"{V3}/devices")
    assert gone.code == 401
    still = await bob.get(f"{V3}/devices")
    assert still.code == 200


@pytest_twisted.ensureDeferred
async def test_delete_devices_refuses_a_malformed_list_before_auth(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice)
    for body in ({"devices": phone.device_id}, {"devices": [phone.device_id, 7]},
                 {"devices": {"id": phone.device_id}}):
        resp = await alice.post(f"{V3}/delete_devices", body)
        assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), body
    missing = await alice.post(f"{V3}/delete_devices", {})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    still = await phone.get(f"{V3}/devices")
    assert still.code == 200


@pytest_twisted.ensureDeferred
async def test_recent_password_covers_the_next_deletion_when_configured(
        make_server: Any) -> None:
    server = await make_server(ui_auth={"session_timeout": "15m"})
    alice = await server.register("alice")
    phone = await log_in_again(server, alice)
    tablet = await log_in_again(server, alice)
    await with_password(alice, "DELETE", f"{V3}/devices/{phone.device_id}", {})

    resp = await alice.delete(f"{V3}/devices/{tablet.device_id}", {})

    assert (resp.code, resp.body) == (200, {})
    gone = await tablet.get(f"{V3}/devices")
    assert gone.code == 401


@pytest_twisted.ensureDeferred
async def test_each_deletion_asks_for_the_password_by_default(server: TestServer) -> None:
    alice = await server.register("alice")
    phone = await log_in_again(server, alice)
    tablet = await log_in_again(server, alice)
    await with_password(alice, "DELETE", f"{V3}/devices/{phone.device_id}", {})

    resp = await alice.delete(f"{V3}/devices/{tablet.device_id}", {})

    assert resp.code == 401
    still = await tablet.get(f"{V3}/devices")
    assert still.code == 200


# -- /admin/whois ------------------------------------------------------------------


async def whois(client: Client, user_id: str) -> Response:
    return await client.get(f"{V3}/admin/whois/{user_id}")


@pytest_twisted.ensureDeferred
async def test_user_sees_their_own_devices_and_last_connection_in_whois(
        server: TestServer) -> None:
    alice = await server.register("alice")
    assert (await alice.get(f"{V3}/account/whoami")).code == 200
    for _ in range(50):  # the last-seen write runs in the background
        resp = await whois(alice, "@alice:test.local")
        assert resp.code == 200, resp.body
        sessions = resp.body["devices"][alice.device_id]["sessions"]
        if sessions[0]["connections"]:
            break
        from twisted.internet import reactor
        await task.deferLater(reactor, 0.02)
    assert resp.body["user_id"] == "@alice:test.local"
    [connection] = sessions[0]["connections"]
    assert connection["ip"] == "127.0.0.1"
    assert isinstance(connection["last_seen"], int)
    assert "user_agent" in connection


@pytest_twisted.ensureDeferred
async def test_whois_of_another_user_is_for_server_admins_only(server: TestServer) -> None:
    alice = await server.register("alice")
    await server.register("bob")
    admin = await server.register("root", admin=True)
    resp = await whois(alice, "@bob:test.local")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    resp = await whois(admin, "@bob:test.local")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@bob:test.local"
    assert len(resp.body["devices"]) == 1
