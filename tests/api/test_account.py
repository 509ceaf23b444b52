"""The user's own account: whoami, password change, deactivation, and the
re-authentication (user-interactive auth) that guards them."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from tests.harness import Client, Response, TestServer
from tests.helpers import create_room, send_text

LOGIN = "/_matrix/client/v3/login"
REGISTER = "/_matrix/client/v3/register"
AVAILABLE = "/_matrix/client/v3/register/available"
WHOAMI = "/_matrix/client/v3/account/whoami"
CHANGE_PASSWORD = "/_matrix/client/v3/account/password"
DEACTIVATE = "/_matrix/client/v3/account/deactivate"
THREEPIDS = "/_matrix/client/v3/account/3pid"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "battery staple horse"


async def login(server: TestServer, user: str, password: str = PASSWORD) -> Response:
    return await server.client().post(LOGIN, {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": password})


def password_auth(session: str, user: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    return {"type": "m.login.password", "session": session, "password": password,
            "identifier": {"type": "m.id.user", "user": user}}


async def begin(client: Client, path: str, body: dict[str, Any]) -> str:
    """The request without auth: 401 asking for the user's password."""
    resp = await client.post(path, body)
    assert resp.code == 401, resp.body
    assert resp.body["flows"] == [{"stages": ["m.login.password"]}]
    return str(resp.body["session"])


async def change_password(client: Client, body: dict[str, Any],
                          password: str = PASSWORD) -> Response:
    session = await begin(client, CHANGE_PASSWORD, body)
    return await client.post(CHANGE_PASSWORD, {**body, "auth": password_auth(session,
                                                                             password=password)})


# --- whoami, 3pids --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_whoami_names_user_and_device(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(WHOAMI)
    assert resp.code == 200
    assert resp.body == {"user_id": "@alice:test.local", "device_id": alice.device_id,
                         "is_guest": False}


@pytest_twisted.ensureDeferred
async def test_whoami_needs_a_valid_token(server: TestServer) -> None:
    missing = await server.client().get(WHOAMI)
    assert (missing.code, missing.body["errcode"]) == (401, "M_MISSING_TOKEN")
    unknown = await server.client("hs_at_nope").get(WHOAMI)
    assert (unknown.code, unknown.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert unknown.body["soft_logout"] is False


@pytest_twisted.ensureDeferred
async def test_threepids_are_an_empty_list(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(THREEPIDS)
    assert (resp.code, resp.body) == (200, {"threepids": []})


# --- password change ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_password_change_logs_out_other_devices_but_not_this_one(
        server: TestServer) -> None:
    alice = await server.register("alice")
    other = (await login(server, "alice")).body
    resp = await change_password(alice, {"new_password": NEW_PASSWORD})
    assert (resp.code, resp.body) == (200, {})
    assert (await alice.get(WHOAMI)).code == 200
    gone = await server.client(other["access_token"]).get(WHOAMI)
    assert (gone.code, gone.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    devices = await server.hs.stores.devices.get_devices("@alice:test.local")
    assert [d.device_id for d in devices] == [alice.device_id]
    assert (await login(server, "alice", NEW_PASSWORD)).code == 200
    old = await login(server, "alice", PASSWORD)
    assert (old.code, old.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_password_change_can_keep_other_devices(server: TestServer) -> None:
    alice = await server.register("alice")
    other = (await login(server, "alice")).body
    resp = await change_password(alice, {"new_password": NEW_PASSWORD, "logout_devices": False})
    assert resp.code == 200
    assert (await server.client(other["access_token"]).get(WHOAMI)).code == 200
    assert (await login(server, "alice", NEW_PASSWORD)).code == 200


@pytest_twisted.ensureDeferred
async def test_new_password_from_first_request_is_kept(server: TestServer) -> None:
    alice = await server.register("alice")
    session = await begin(alice, CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})
    resp = await alice.post(CHANGE_PASSWORD, {"auth": password_auth(session)})
    assert resp.code == 200, resp.body
    assert (await login(server, "alice", NEW_PASSWORD)).code == 200


@pytest_twisted.ensureDeferred
async def test_password_change_without_new_password_changes_nothing(
        server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await change_password(alice, {})
    assert (resp.code, resp.body["errcode"]) == (400, "M_MISSING_PARAM")
    assert (await login(server, "alice")).code == 200


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_a_failed_stage(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await change_password(alice, {"new_password": NEW_PASSWORD}, password="wrong")
    assert resp.code == 401
    assert resp.body["errcode"] == "M_FORBIDDEN"
    assert resp.body["flows"] == [{"stages": ["m.login.password"]}]
    assert resp.body["completed"] == []
    assert resp.body["session"]
    assert (await login(server, "alice")).code == 200
    assert (await login(server, "alice", NEW_PASSWORD)).code == 403


@pytest_twisted.ensureDeferred
async def test_another_users_password_does_not_authenticate(server: TestServer) -> None:
    alice = await server.register("alice")
    await server.register("bob", "bob's password")
    session = await begin(alice, CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})
    resp = await alice.post(CHANGE_PASSWORD, {
        "auth": password_auth(session, user="bob", password="bob's password")})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await login(server, "alice")).code == 200


@pytest_twisted.ensureDeferred
async def test_session_cannot_be_used_by_another_user(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    session = await begin(alice, CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})
    resp = await bob.post(CHANGE_PASSWORD, {
        "new_password": NEW_PASSWORD, "auth": password_auth(session, user="bob")})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await login(server, "bob")).code == 200
    assert (await login(server, "alice")).code == 200


@pytest_twisted.ensureDeferred
async def test_session_cannot_be_reused_for_another_operation(server: TestServer) -> None:
    alice = await server.register("alice")
    session = await begin(alice, CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})
    resp = await alice.post(DEACTIVATE, {"auth": password_auth(session)})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await alice.get(WHOAMI)).code == 200


@pytest_twisted.ensureDeferred
async def test_completed_password_change_session_is_spent(server: TestServer) -> None:
    alice = await server.register("alice")
    session = await begin(alice, CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})
    assert (await alice.post(CHANGE_PASSWORD, {"auth": password_auth(session)})).code == 200
    again = await alice.post(CHANGE_PASSWORD, {
        "new_password": "third password", "auth": password_auth(session, password=NEW_PASSWORD)})
    assert (again.code, again.body["errcode"]) == (400, "M_UNKNOWN")
    assert (await login(server, "alice", NEW_PASSWORD)).code == 200


@pytest_twisted.ensureDeferred
async def test_ui_auth_session_expires(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock)
    alice = await server.register("alice")
    session = await begin(alice, CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})
    clock.advance(16 * 60)
    resp = await alice.post(CHANGE_PASSWORD, {"auth": password_auth(session)})
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNKNOWN")
    assert (await login(server, "alice")).code == 200


@pytest_twisted.ensureDeferred
async def test_weak_new_password_is_refused_before_auth(make_server: Any) -> None:
    server = await make_server(password_config={"policy": {"enabled": True,
                                                            "minimum_length": 30}})
    alice = await server.register("alice", "a long enough password for the policy")
    resp = await alice.post(CHANGE_PASSWORD, {"new_password": "short"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_WEAK_PASSWORD")


@pytest_twisted.ensureDeferred
async def test_failed_reauthentication_counts_against_login_limit(make_server: Any) -> None:
    failed = {"per_second": 0.1, "burst_count": 2}
    fast = {"per_second": 1000, "burst_count": 1000}
    server = await make_server(clock=Clock(), rc_login={"failed_attempts": failed,
                                                        "address": fast, "account": fast})
    alice = await server.register("alice")
    for _ in range(2):
        resp = await change_password(alice, {"new_password": NEW_PASSWORD}, password="wrong")
        assert resp.body["errcode"] == "M_FORBIDDEN"
    resp = await change_password(alice, {"new_password": NEW_PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (429, "M_LIMIT_EXCEEDED")


@pytest_twisted.ensureDeferred
async def test_password_change_needs_a_token(server: TestServer) -> None:
    resp = await server.client().post(CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")


# --- deactivation -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_deactivation_ends_the_account(server: TestServer) -> None:
    alice = await server.register("alice")
    other = (await login(server, "alice")).body
    session = await begin(alice, DEACTIVATE, {"erase": True})
    resp = await alice.post(DEACTIVATE, {"auth": password_auth(session)})
    assert (resp.code, resp.body) == (200, {"id_server_unbind_result": "no-support"})
    for token in [alice.access_token, other["access_token"]]:
        assert token is not None
        gone = await server.client(token).get(WHOAMI)
        assert (gone.code, gone.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert await server.hs.stores.devices.get_devices("@alice:test.local") == []
    user = await server.hs.stores.users.get_user("@alice:test.local")
    assert user is not None and user.deactivated and user.password_hash is None
    relogin = await login(server, "alice")
    assert relogin.code == 403
    assert relogin.body["errcode"] in ("M_USER_DEACTIVATED", "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_deactivated_user_id_is_never_handed_out_again(server: TestServer) -> None:
    alice = await server.register("alice")
    session = await begin(alice, DEACTIVATE, {})
    assert (await alice.post(DEACTIVATE, {"auth": password_auth(session)})).code == 200
    resp = await server.client().post(REGISTER, {"username": "alice", "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (400, "M_USER_IN_USE")
    available = await server.client().get(AVAILABLE, params={"username": "alice"})
    assert available.body["errcode"] == "M_USER_IN_USE"


@pytest_twisted.ensureDeferred
async def test_deactivation_with_wrong_password_changes_nothing(server: TestServer) -> None:
    alice = await server.register("alice")
    session = await begin(alice, DEACTIVATE, {})
    resp = await alice.post(DEACTIVATE, {"auth": password_auth(session, password="wrong")})
    assert (resp.code, resp.body["errcode"]) == (401, "M_FORBIDDEN")
    assert (await alice.get(WHOAMI)).code == 200
    user = await server.hs.stores.users.get_user("@alice:test.local")
    assert user is not None and not user.deactivated


@pytest_twisted.ensureDeferred
async def test_deactivation_refuses_a_malformed_erase_flag(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.post(DEACTIVATE, {"erase": "yes"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


# --- ui_auth.session_timeout: skipping a recent re-authentication --------------------------

async def server_with_skippable_route(make_server: Any, clock: Clock,
                                      **config: Any) -> TestServer:
    """A server with one extra route that allows a recent re-authentication to count,
    as device deletion may (Synapse's can_skip_ui_auth)."""
    from homeserver.api.client.ui_auth import validate_user_via_ui_auth
    from homeserver.http.request import HttpRequest

    server: TestServer = await make_server(clock=clock, **config)

    async def guarded(req: HttpRequest) -> tuple[int, Any]:
        """POST /_test/guarded"""
        assert req.requester is not None
        params = await validate_user_via_ui_auth(server.hs.ui_auth, req, req.requester, "test",
                                                 can_skip_ui_auth=True)
        return 200, params

    server.hs.router.add("POST", "/_test/guarded", guarded)
    return server


@pytest_twisted.ensureDeferred
async def test_recent_reauth_is_reused_within_session_timeout(make_server: Any) -> None:
    clock = Clock()
    server = await server_with_skippable_route(make_server, clock,
                                               ui_auth={"session_timeout": "1m"})
    alice = await server.register("alice")
    session = await begin(alice, "/_test/guarded", {"n": 1})
    done = await alice.post("/_test/guarded", {"auth": password_auth(session)})
    assert (done.code, done.body) == (200, {"n": 1})
    skipped = await alice.post("/_test/guarded", {"n": 2})
    assert (skipped.code, skipped.body) == (200, {"n": 2})
    # never for a password change
    assert (await alice.post(CHANGE_PASSWORD, {"new_password": NEW_PASSWORD})).code == 401
    # not for another access token of the same user
    other = server.client((await login(server, "alice")).body["access_token"])
    assert (await other.post("/_test/guarded", {"n": 3})).code == 401
    clock.advance(61)
    assert (await alice.post("/_test/guarded", {"n": 4})).code == 401


@pytest_twisted.ensureDeferred
async def test_session_timeout_zero_always_asks_again(make_server: Any) -> None:
    server = await server_with_skippable_route(make_server, Clock())
    alice = await server.register("alice")
    session = await begin(alice, "/_test/guarded", {"n": 1})
    assert (await alice.post("/_test/guarded", {"auth": password_auth(session)})).code == 200
    assert (await alice.post("/_test/guarded", {"n": 2})).code == 401


async def timeline_content(client: Client, room_id: str, event_id: str) -> Any:
    """The content of ``event_id`` as ``client`` sees it in /sync and /messages
    (asserting both agree)."""
    resp = await client.get("/_matrix/client/v3/sync")
    assert resp.code == 200, resp.body
    events = resp.body["rooms"]["join"][room_id]["timeline"]["events"]
    [in_sync] = [e["content"] for e in events if e["event_id"] == event_id]
    resp = await client.get(f"/_matrix/client/v3/rooms/{room_id}/messages",
                            params={"dir": "b"})
    [in_messages] = [e["content"] for e in resp.body["chunk"] if e["event_id"] == event_id]
    assert in_sync == in_messages
    return in_sync


@pytest_twisted.ensureDeferred
async def test_erased_users_messages_are_redacted_for_those_who_joined_later(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    assert (await bob.post(f"/_matrix/client/v3/rooms/{room_id}/join", {})).code == 200
    event_id = await send_text(alice, room_id, "body1")
    assert (await carol.post(f"/_matrix/client/v3/rooms/{room_id}/join", {})).code == 200
    assert (await timeline_content(carol, room_id, event_id))["body"] == "body1"

    session = await begin(alice, DEACTIVATE, {"erase": True})
    assert (await alice.post(DEACTIVATE, {"auth": password_auth(session)})).code == 200

    assert (await timeline_content(bob, room_id, event_id))["body"] == "body1"
    assert await timeline_content(carol, room_id, event_id) == {}
    resp = await carol.get(f"/_matrix/client/v3/rooms/{room_id}/event/{event_id}")
    assert resp.code == 200 and resp.body["content"] == {}


@pytest_twisted.ensureDeferred
async def test_deactivation_without_erase_leaves_messages_readable(server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    event_id = await send_text(alice, room_id, "body1")
    assert (await carol.post(f"/_matrix/client/v3/rooms/{room_id}/join", {})).code == 200
    session = await begin(alice, DEACTIVATE, {})
    assert (await alice.post(DEACTIVATE, {"auth": password_auth(session)})).code == 200
    assert (await timeline_content(carol, room_id, event_id))["body"] == "body1"
