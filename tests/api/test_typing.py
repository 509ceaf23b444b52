"""Typing notifications: PUT /rooms/{roomId}/typing/{userId}, as the room's
members see them (through the typing manager and /sync)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from tests.api.test_rooms import create_room, send_text
from tests.api.test_rooms import two_users_in_a_room as shared_room
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"


async def set_typing(client: Client, room_id: str, body: Any,
                     user_id: str | None = None) -> Any:
    return await client.put(f"{V3}/rooms/{room_id}/typing/{user_id or client.user_id}", body)


async def start_typing(client: Client, room_id: str, timeout: int = 30_000) -> None:
    resp = await set_typing(client, room_id, {"typing": True, "timeout": timeout})
    assert resp.code == 200, resp.body
    assert resp.body == {}


def typing_in(server: TestServer, room_id: str, since: int = 0) -> list[str] | None:
    """Who types in the room, None for nobody (an initial view lists a room
    whose typing changed with an empty list)."""
    return server.hs.typing.get_typing([room_id], since).get(room_id) or None


@pytest_twisted.ensureDeferred
async def test_typing_users_appear_sorted_and_clear(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    await start_typing(bob, room_id)
    await start_typing(alice, room_id)
    assert typing_in(server, room_id) == [alice.user_id, bob.user_id]

    assert (await set_typing(bob, room_id, {"typing": False})).code == 200
    assert typing_in(server, room_id) == [alice.user_id]
    await set_typing(alice, room_id, {"typing": False})
    assert typing_in(server, room_id) is None  # initial view: nobody typing anywhere


@pytest_twisted.ensureDeferred
async def test_changes_since_a_position_include_the_empty_list(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    quiet_room = await create_room(alice)
    typing = server.hs.typing
    before = typing.current_position()
    await start_typing(alice, room_id)
    after_start = typing.current_position()
    assert after_start == before + 1
    assert typing.get_typing([room_id, quiet_room], before) == {room_id: [alice.user_id]}
    assert typing.rooms_changed_since(before) == [room_id]

    await set_typing(alice, room_id, {"typing": False})
    # a client that saw alice typing must be told the list is now empty
    assert typing.get_typing([room_id, quiet_room], after_start) == {room_id: []}
    assert typing.get_typing([room_id], typing.current_position()) == {}


@pytest_twisted.ensureDeferred
async def test_typing_again_only_extends_the_timeout(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock)
    alice, _, room_id = await shared_room(server)
    await start_typing(alice, room_id, timeout=10_000)
    position = server.hs.typing.current_position()
    clock.advance(8)
    await start_typing(alice, room_id, timeout=10_000)
    assert server.hs.typing.current_position() == position  # nothing new to tell
    clock.advance(8)
    assert typing_in(server, room_id) == [alice.user_id]
    clock.advance(3)
    assert typing_in(server, room_id) is None


@pytest_twisted.ensureDeferred
async def test_typing_expires_after_the_timeout(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock)
    alice, _, room_id = await shared_room(server)
    await start_typing(alice, room_id, timeout=5_000)
    position = server.hs.typing.current_position()
    clock.advance(4.9)
    assert typing_in(server, room_id) == [alice.user_id]
    clock.advance(0.2)
    assert server.hs.typing.get_typing([room_id], position) == {room_id: []}


@pytest_twisted.ensureDeferred
async def test_a_huge_timeout_is_capped(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock)
    alice, _, room_id = await shared_room(server)
    await start_typing(alice, room_id, timeout=10 ** 12)
    clock.advance(121)
    assert typing_in(server, room_id) is None


@pytest_twisted.ensureDeferred
async def test_an_initial_sync_shows_that_typing_stopped(server: TestServer) -> None:
    """As on Synapse: a room whose typing changed comes down an initial
    /sync with its typing list even when it is empty, so a client that saw
    the typing start elsewhere clears it."""
    alice, bob, room_id = await shared_room(server)
    await start_typing(alice, room_id)
    assert (await set_typing(alice, room_id, {"typing": False})).code == 200
    resp = await bob.get(f"{V3}/sync")
    assert resp.code == 200, resp.body
    ephemeral = resp.body["rooms"]["join"][room_id]["ephemeral"]["events"]
    assert {"type": "m.typing", "content": {"user_ids": []}} in ephemeral


@pytest_twisted.ensureDeferred
async def test_sending_a_message_does_not_stop_typing(server: TestServer) -> None:
    # as on Synapse: the client says when the user stops, a message does not
    alice, _, room_id = await shared_room(server)
    await start_typing(alice, room_id)
    await send_text(alice, room_id, "hello", "t1")
    assert typing_in(server, room_id) == [alice.user_id]


@pytest_twisted.ensureDeferred
async def test_leaving_the_room_stops_typing(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    await start_typing(bob, room_id)
    resp = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert resp.code == 200, resp.body
    assert typing_in(server, room_id) is None


@pytest_twisted.ensureDeferred
async def test_typing_without_a_timeout_lasts_thirty_seconds(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock)
    alice, _, room_id = await shared_room(server)
    resp = await set_typing(alice, room_id, {"typing": True})
    assert resp.code == 200, resp.body
    clock.advance(29)
    assert typing_in(server, room_id) == [alice.user_id]
    clock.advance(2)
    assert typing_in(server, room_id) is None


@pytest_twisted.ensureDeferred
async def test_typing_wakes_the_rooms_members(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    assert bob.user_id is not None
    notifier = server.hs.notifier
    before = notifier.counter(bob.user_id)
    woken = notifier.wait(bob.user_id, before, 5_000)
    await start_typing(alice, room_id)
    assert await woken is True


@pytest_twisted.ensureDeferred
async def test_typing_for_another_user_is_forbidden(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    resp = await set_typing(alice, room_id, {"typing": True, "timeout": 1000}, bob.user_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert typing_in(server, room_id) is None


@pytest_twisted.ensureDeferred
async def test_typing_in_a_room_you_are_not_in_is_forbidden(server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(alice)
    resp = await set_typing(carol, room_id, {"typing": True, "timeout": 1000})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    resp = await set_typing(carol, "!nowhere:test.local", {"typing": True, "timeout": 1000})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert typing_in(server, room_id) is None


@pytest.mark.parametrize("body,errcode", [
    ({}, "M_BAD_JSON"),
    ({"typing": "yes", "timeout": 1000}, "M_BAD_JSON"),
    ({"typing": True, "timeout": "1000"}, "M_BAD_JSON"),
    ({"typing": True, "timeout": 1.5}, "M_BAD_JSON"),
    ({"typing": True, "timeout": -1}, "M_INVALID_PARAM"),
])
@pytest_twisted.ensureDeferred
async def test_bad_bodies_are_refused(server: TestServer, body: Any, errcode: str) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await set_typing(alice, room_id, body)
    assert (resp.code, resp.body["errcode"]) == (400, errcode)
    assert typing_in(server, room_id) is None


@pytest_twisted.ensureDeferred
async def test_stopping_needs_no_timeout(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    assert (await set_typing(alice, room_id, {"typing": False})).code == 200


def typing_events(sync_body: Any, room_id: str) -> list[list[str]]:
    room = sync_body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e["content"]["user_ids"] for e in room.get("ephemeral", {}).get("events", [])
            if e["type"] == "m.typing"]


@pytest_twisted.ensureDeferred
async def test_typing_reaches_a_roommate_through_sync(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    first = await bob.get(f"{V3}/sync", params={"timeout": "0"})
    assert first.code == 200, first.body
    await start_typing(alice, room_id)
    resp = await bob.get(f"{V3}/sync", params={"since": first.body["next_batch"],
                                               "timeout": "5000"})
    assert resp.code == 200, resp.body
    assert typing_events(resp.body, room_id) == [[alice.user_id]]

    await set_typing(alice, room_id, {"typing": False})
    resp = await bob.get(f"{V3}/sync", params={"since": resp.body["next_batch"],
                                               "timeout": "5000"})
    assert resp.code == 200, resp.body
    assert typing_events(resp.body, room_id) == [[]]
