"""Event reports, registration tokens and federation destinations through
the admin API, and the one table of every admin route a non-admin is refused."""

from __future__ import annotations

import pytest_twisted

from homeserver.http.router import AUTH_ADMIN, AUTH_NONE
from synapse_compat.admin import (
    background_updates,
    media,
    moderation,
    register,
    rooms,
    scheduled_tasks,
    statistics,
    user_moderation,
    users,
)
from synapse_compat.admin import server as version_api
from tests.harness import TestServer
from tests.helpers import create_room, join, q, send_text

V1 = "/_synapse/admin/v1"
CLIENT = "/_matrix/client/v3"
REGISTER = "/_matrix/client/v3/register"


@pytest_twisted.ensureDeferred
async def test_every_admin_route_refuses_non_admins(server: TestServer) -> None:
    """One table: every /_synapse/admin/ route we serve but the shared-secret
    registration is 403 M_FORBIDDEN to a user and 401 without a token, and
    nothing is changed."""
    bob = await server.register("bob")
    anonymous = server.client()
    endpoints = [*users.ENDPOINTS, *rooms.ENDPOINTS, *moderation.ENDPOINTS, *media.ENDPOINTS,
                 *user_moderation.ENDPOINTS, *statistics.ENDPOINTS,
                 *version_api.ENDPOINTS, *background_updates.ENDPOINTS,
                 *scheduled_tasks.ENDPOINTS]
    assert all(e.auth == AUTH_ADMIN for e in endpoints)
    assert all(e.auth == AUTH_NONE for e in register.ENDPOINTS)
    for e in endpoints:
        path = e.pattern
        for name, value in (("{userId}", bob.user_id), ("{roomId}", "!r:test.local"),
                            ("{eventId}", "$e"), ("{deviceId}", "D"), ("{deleteId}", "x"),
                            ("{purgeId}", "x"), ("{reportId}", "1"), ("{token}", "t"),
                            ("{destination}", "other.example"),
                            ("{serverName}", "test.local"), ("{mediaId}", "abc"),
                            ("{redactId}", "x"), ("{txnId}", "t"),
                            ("{roomIdOrAlias}", "#a:test.local"), ("{provider}", "oidc"),
                            ("{externalId}", "sub/1"), ("{medium}", "email"),
                            ("{address}", "a@b.example")):
            path = path.replace(name, q(value))
        assert "{" not in path, path
        body = None if e.method in ("GET",) else {}
        resp = await bob.request(e.method, path, body)
        assert (resp.code, resp.body.get("errcode")) == (403, "M_FORBIDDEN"), (e.method, path)
        resp = await anonymous.request(e.method, path, body)
        assert (resp.code, resp.body.get("errcode")) == (401, "M_MISSING_TOKEN"), \
            (e.method, path)
    assert (await server.hs.stores.users.get_user(bob.user_id)).admin is False  # type: ignore


@pytest_twisted.ensureDeferred
async def test_event_reports_list_get_delete(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await create_room(bob, name="Reported", preset="public_chat")
    await join(carol, room_id)
    event_ids = [await send_text(bob, room_id, f"bad {i}") for i in range(3)]
    for event_id in event_ids:
        resp = await carol.post(f"{CLIENT}/rooms/{q(room_id)}/report/{q(event_id)}",
                                {"reason": "spam", "score": -100})
        assert resp.code == 200, resp.body
    listed = await admin.get(f"{V1}/event_reports?limit=2")
    assert listed.code == 200, listed.body
    assert listed.body["total"] == 3 and listed.body["next_token"] == 2
    first = listed.body["event_reports"][0]
    assert first["event_id"] == event_ids[2]  # newest first
    assert first["user_id"] == carol.user_id and first["sender"] == bob.user_id
    assert first["name"] == "Reported" and first["reason"] == "spam"
    assert first["room_id"] == room_id and isinstance(first["received_ts"], int)
    forwards = await admin.get(f"{V1}/event_reports?dir=f")
    assert forwards.body["event_reports"][0]["event_id"] == event_ids[0]
    by_user = await admin.get(f"{V1}/event_reports?user_id=nobody")
    assert by_user.body["total"] == 0
    one = await admin.get(f"{V1}/event_reports/{first['id']}")
    assert one.body["event_json"]["content"]["body"] == "bad 2"
    assert (await admin.delete(f"{V1}/event_reports/{first['id']}")).code == 200
    gone = await admin.get(f"{V1}/event_reports/{first['id']}")
    assert (gone.code, gone.body["errcode"]) == (404, "M_NOT_FOUND")
    bad = await admin.get(f"{V1}/event_reports/abc")
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_registration_token_crud_and_use(make_server) -> None:  # type: ignore[no-untyped-def]
    srv: TestServer = await make_server(enable_registration=True,
                                        registration_requires_token=True)
    admin = await srv.register("admin", admin=True)
    made = await admin.post(f"{V1}/registration_tokens/new",
                            {"token": "abc_123", "uses_allowed": 1})
    assert made.code == 200, made.body
    assert made.body == {"token": "abc_123", "uses_allowed": 1, "pending": 0, "completed": 0,
                         "expiry_time": None}
    generated = await admin.post(f"{V1}/registration_tokens/new", {"length": 10})
    assert len(generated.body["token"]) == 10
    dup = await admin.post(f"{V1}/registration_tokens/new", {"token": "abc_123"})
    assert (dup.code, dup.body["errcode"]) == (400, "M_INVALID_PARAM")
    bad = await admin.post(f"{V1}/registration_tokens/new", {"token": "no spaces"})
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")
    past = await admin.post(f"{V1}/registration_tokens/new", {"expiry_time": 1})
    assert past.code == 400
    # the token registers one account
    first = await srv.client().post(REGISTER, {"username": "newbie",
                                               "password": "a password here"})
    session = first.body["session"]
    done = await srv.client().post(REGISTER, {
        "username": "newbie", "password": "a password here",
        "auth": {"type": "m.login.registration_token", "token": "abc_123",
                 "session": session}})
    if done.code == 401:
        done = await srv.client().post(REGISTER, {
            "username": "newbie", "password": "a password here",
            "auth": {"type": "m.login.dummy", "session": session}})
    assert done.code == 200, done.body
    used = await admin.get(f"{V1}/registration_tokens/abc_123")
    assert used.body["completed"] == 1
    valid = await admin.get(f"{V1}/registration_tokens?valid=true")
    assert [t["token"] for t in valid.body["registration_tokens"]] == [
        generated.body["token"]]
    invalid = await admin.get(f"{V1}/registration_tokens?valid=false")
    assert [t["token"] for t in invalid.body["registration_tokens"]] == ["abc_123"]
    more = await admin.put(f"{V1}/registration_tokens/abc_123", {"uses_allowed": 5})
    assert more.body["uses_allowed"] == 5
    assert (await admin.delete(f"{V1}/registration_tokens/abc_123")).code == 200
    missing = await admin.get(f"{V1}/registration_tokens/abc_123")
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_destinations_list_and_reset(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    await server.hs.stores.federation_queue.set_retry_timings("down.example", 1000, 60000)
    await server.hs.stores.federation_queue.set_retry_timings("fine.example", 0, 0)
    listed = await admin.get(f"{V1}/federation/destinations")
    assert listed.code == 200, listed.body
    assert [d["destination"] for d in listed.body["destinations"]] == [
        "down.example", "fine.example"]
    assert listed.body["total"] == 2
    down = await admin.get(f"{V1}/federation/destinations/down.example")
    assert down.body == {"destination": "down.example", "retry_last_ts": 1000,
                         "retry_interval": 60000, "failure_ts": 1000,
                         "last_successful_stream_ordering": None}
    by_interval = await admin.get(
        f"{V1}/federation/destinations?order_by=retry_interval&dir=b")
    assert by_interval.body["destinations"][0]["destination"] == "down.example"
    not_needed = await admin.post(
        f"{V1}/federation/destinations/fine.example/reset_connection", {})
    assert not_needed.code == 400
    reset = await admin.post(f"{V1}/federation/destinations/down.example/reset_connection",
                             {})
    assert reset.code == 200, reset.body
    after = await admin.get(f"{V1}/federation/destinations/down.example")
    assert after.body["retry_interval"] == 0 and after.body["failure_ts"] is None
    unknown = await admin.get(f"{V1}/federation/destinations/nowhere.example")
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_a_destinations_rooms(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    await server.hs.stores.federation_queue.set_retry_timings("down.example", 0, 0)
    room_ids = sorted([await create_room(alice), await create_room(alice)])
    lonely = await create_room(alice)
    # a user of down.example joined the two rooms (as a join over federation leaves it)
    for room_id in room_ids:
        room = await server.hs.stores.rooms.get_room(room_id)
        assert room is not None
        await server.hs.db.execute(
            "t", "INSERT INTO room_memberships (user_id, room_nid, membership, event_nid,"
            " stream_ordering)"
            " SELECT '@eve:down.example', room_nid, 'join', event_nid, stream_ordering"
            " FROM room_memberships"
            " WHERE room_nid = ? AND user_id = ?", (room.room_nid, alice.user_id))

    resp = await admin.get(f"{V1}/federation/destinations/down.example/rooms")

    assert resp.code == 200, resp.body
    assert [r["room_id"] for r in resp.body["rooms"]] == room_ids
    assert lonely not in {r["room_id"] for r in resp.body["rooms"]}
    assert all(isinstance(r["stream_ordering"], int) and r["stream_ordering"] > 0
               for r in resp.body["rooms"])
    assert resp.body["total"] == 2
    page = await admin.get(f"{V1}/federation/destinations/down.example/rooms?limit=1&dir=b")
    assert [r["room_id"] for r in page.body["rooms"]] == [room_ids[1]]
    assert page.body["next_token"] == 1
    assert (await admin.get(f"{V1}/federation/destinations/nowhere.example/rooms")).code \
        == 404
    bad = await admin.get(f"{V1}/federation/destinations/down.example/rooms?dir=x")
    assert bad.code == 400
