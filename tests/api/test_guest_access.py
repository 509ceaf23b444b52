"""Guest accounts (client-server API, "Guest Access"): registering one, what a
guest may do, ``m.room.guest_access`` on join and on revocation, upgrading
to a full account."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor

from tests.harness import Client, TestServer
from tests.helpers import V3, create_room, join, q, send_text

REGISTER = f"{V3}/register"
PASSWORD = "correct horse battery"


async def guest(server: TestServer) -> Client:
    resp = await server.client().post(REGISTER, {}, params={"kind": "guest"})
    assert resp.code == 200, resp.body
    client = server.client(resp.body["access_token"])
    client.user_id = resp.body["user_id"]
    client.device_id = resp.body["device_id"]
    return client


async def guest_server(make_server: Any) -> TestServer:
    return await make_server(allow_guest_access=True)  # type: ignore[no-any-return]


async def set_guest_access(client: Client, room_id: str, value: str) -> None:
    resp = await client.put(f"{V3}/rooms/{q(room_id)}/state/m.room.guest_access",
                            {"guest_access": value})
    assert resp.code == 200, resp.body


async def membership(client: Client, room_id: str, user_id: str) -> str | None:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}")
    return resp.body.get("membership") if resp.code == 200 else None


async def sleep(seconds: float) -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    await d


@pytest_twisted.ensureDeferred
async def test_guest_registration_is_refused_unless_allowed(server: TestServer) -> None:
    resp = await server.client().post(REGISTER, {}, params={"kind": "guest"})
    assert (resp.code, resp.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_a_guest_gets_a_numeric_id_and_whoami_says_guest(make_server: Any) -> None:
    server = await guest_server(make_server)
    visitor = await guest(server)
    assert visitor.user_id is not None
    assert visitor.user_id[1:].split(":")[0].isdigit()
    resp = await visitor.get(f"{V3}/account/whoami")
    assert (resp.code, resp.body["is_guest"]) == (200, True)


@pytest_twisted.ensureDeferred
async def test_guests_are_kept_off_endpoints_not_listed_for_them(make_server: Any) -> None:
    server = await guest_server(make_server)
    visitor = await guest(server)
    resp = await visitor.post(f"{V3}/createRoom", {})
    assert (resp.code, resp.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_guest_joins_only_rooms_that_allow_guests(make_server: Any) -> None:
    server = await guest_server(make_server)
    alice = await server.register("alice")
    visitor = await guest(server)
    room_id = await create_room(alice, preset="public_chat")
    refused = await visitor.post(f"{V3}/rooms/{q(room_id)}/join", {})
    assert (refused.code, refused.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    await set_guest_access(alice, room_id, "can_join")
    await join(visitor, room_id)
    await send_text(visitor, room_id, "hello as a guest")
    synced = await visitor.get(f"{V3}/sync")
    assert room_id in synced.body["rooms"]["join"]


@pytest_twisted.ensureDeferred
async def test_guests_leave_when_the_room_revokes_guest_access(make_server: Any) -> None:
    server = await guest_server(make_server)
    alice = await server.register("alice")
    visitor = await guest(server)
    room_id = await create_room(alice, preset="public_chat")
    await set_guest_access(alice, room_id, "can_join")
    await join(visitor, room_id)
    assert visitor.user_id is not None
    await set_guest_access(alice, room_id, "forbidden")
    for _ in range(50):
        if await membership(alice, room_id, visitor.user_id) == "leave":
            break
        await sleep(0.05)
    assert await membership(alice, room_id, visitor.user_id) == "leave"


@pytest_twisted.ensureDeferred
async def test_guest_sets_its_display_name_and_its_rooms_see_it(make_server: Any) -> None:
    server = await guest_server(make_server)
    alice = await server.register("alice")
    visitor = await guest(server)
    room_id = await create_room(alice, preset="public_chat")
    await set_guest_access(alice, room_id, "can_join")
    await join(visitor, room_id)
    assert visitor.user_id is not None
    resp = await visitor.put(f"{V3}/profile/{q(visitor.user_id)}/displayname",
                             {"displayname": "creeper"})
    assert resp.code == 200, resp.body
    member = await alice.get(
        f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(visitor.user_id)}")
    assert member.body["displayname"] == "creeper"


@pytest_twisted.ensureDeferred
async def test_guest_upgrades_itself_keeping_its_id_and_rooms(make_server: Any) -> None:
    server = await guest_server(make_server)
    alice = await server.register("alice")
    visitor = await guest(server)
    room_id = await create_room(alice, preset="public_chat")
    await set_guest_access(alice, room_id, "can_join")
    await join(visitor, room_id)
    assert visitor.user_id is not None
    localpart = visitor.user_id[1:].split(":")[0]
    body = {"username": localpart, "password": PASSWORD,
            "guest_access_token": visitor.access_token}
    first = await server.client().post(REGISTER, body)
    assert first.code == 401, first.body
    # the session carries the request on (not the guest's token, which it
    # never stores): the second request need only authenticate
    done = await server.client().post(REGISTER, {
        "auth": {"type": "m.login.dummy", "session": first.body["session"]}})
    assert done.code == 200, done.body
    assert done.body["user_id"] == visitor.user_id
    full = server.client(done.body["access_token"])
    whoami = await full.get(f"{V3}/account/whoami")
    assert whoami.body["is_guest"] is False
    # a full user now: endpoints closed to guests open up
    assert (await full.post(f"{V3}/createRoom", {})).code == 200
    assert await membership(alice, room_id, visitor.user_id) == "join"


@pytest_twisted.ensureDeferred
async def test_a_guest_cannot_upgrade_another_guest(make_server: Any) -> None:
    server = await guest_server(make_server)
    first_guest = await guest(server)
    second_guest = await guest(server)
    assert first_guest.user_id is not None
    resp = await server.client().post(REGISTER, {
        "username": first_guest.user_id[1:].split(":")[0], "password": PASSWORD,
        "guest_access_token": second_guest.access_token})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_numeric_names_stay_reserved_without_a_guest_token(server: TestServer) -> None:
    resp = await server.client().post(REGISTER, {"username": "12345", "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_USERNAME")


@pytest_twisted.ensureDeferred
async def test_guest_reads_a_world_readable_room_without_joining(make_server: Any) -> None:
    server = await guest_server(make_server)
    alice = await server.register("alice")
    visitor = await guest(server)
    room_id = await create_room(alice, preset="public_chat")
    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/state/m.room.history_visibility",
                           {"history_visibility": "world_readable"})
    assert resp.code == 200
    event_id = await send_text(alice, room_id, "for everyone")
    messages = await visitor.get(f"{V3}/rooms/{q(room_id)}/messages?dir=b")
    assert event_id in [e["event_id"] for e in messages.body["chunk"]]
    state = await visitor.get(f"{V3}/rooms/{q(room_id)}/state")
    assert state.code == 200
    # but sending needs a join
    refused = await visitor.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/t1",
                                {"msgtype": "m.text", "body": "hi"})
    assert refused.code == 403
