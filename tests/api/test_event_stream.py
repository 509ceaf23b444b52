"""The deprecated API older clients still use: ``GET /events``,
``/initialSync``, room ``initialSync``, ``GET /events/{eventId}``,
``POST /send`` without a transaction ID, and the ``r0`` prefix."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer

from tests.harness import Client, TestServer
from tests.helpers import V3, create_room, join, q, send_text

R0 = "/_matrix/client/r0"


async def events(client: Client, **params: Any) -> Any:
    resp = await client.get(f"{V3}/events",
                            params={k: str(v) for k, v in params.items()})
    assert resp.code == 200, resp.body
    return resp.body


async def world_readable(client: Client, room_id: str) -> None:
    resp = await client.put(f"{V3}/rooms/{q(room_id)}/state/m.room.history_visibility",
                            {"history_visibility": "world_readable"})
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_r0_serves_every_v3_endpoint(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(f"{R0}/account/whoami")
    assert (resp.code, resp.body["user_id"]) == (200, alice.user_id)
    room_id = await create_room(alice)
    sent = await alice.put(f"{R0}/rooms/{q(room_id)}/send/m.room.message/r0txn",
                           {"msgtype": "m.text", "body": "old prefix"})
    assert sent.code == 200
    # v1-only endpoints gain no r0 form
    assert (await alice.get(f"{R0}/rooms/{q(room_id)}/hierarchy")).code == 404


@pytest_twisted.ensureDeferred
async def test_events_without_from_gives_a_token_then_new_events(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    first = await events(alice, timeout=0)
    assert first["chunk"] == [] and first["start"] and first["end"]
    event_id = await send_text(alice, room_id, "after the token")
    later = await events(alice, **{"from": first["end"], "timeout": 0})
    assert [e["event_id"] for e in later["chunk"] if e["type"] == "m.room.message"] \
        == [event_id]
    assert later["chunk"][0]["room_id"] == room_id
    again = await events(alice, **{"from": later["end"], "timeout": 0})
    # (sending made alice active: her presence may come next, nothing else)
    assert [e for e in again["chunk"] if e["type"] != "m.presence"] == []


@pytest_twisted.ensureDeferred
async def test_an_empty_from_means_from_now(server: TestServer) -> None:
    """Clients that never had a token send ``from=`` (SyTest does): as on
    Synapse, the stream starts now rather than refusing the request."""
    alice = await server.register("alice")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "before")
    first = await events(alice, **{"from": "", "timeout": 0})
    assert "before" not in [e["content"].get("body") for e in first["chunk"]]
    event_id = await send_text(alice, room_id, "after")
    later = await events(alice, **{"from": first["end"], "timeout": 0})
    assert event_id in [e["event_id"] for e in later["chunk"]]


@pytest_twisted.ensureDeferred
async def test_events_catches_up_in_order_a_page_at_a_time(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    token = (await events(alice, timeout=0))["end"]
    sent = [await send_text(alice, room_id, f"message {i}") for i in range(12)]
    seen: list[str] = []
    for _ in range(5):
        body = await events(alice, **{"from": token, "timeout": 0, "limit": 5})
        token = body["end"]
        seen.extend(e["event_id"] for e in body["chunk"] if e["type"] == "m.room.message")
    assert seen == sent


@pytest_twisted.ensureDeferred
async def test_events_long_poll_wakes_on_a_new_message(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    token = (await events(bob, timeout=0))["end"]
    waiting = defer.ensureDeferred(events(bob, **{"from": token, "timeout": 5000}))
    event_id = await send_text(alice, room_id, "wake up")
    body = await waiting
    assert event_id in [e.get("event_id") for e in body["chunk"]]


@pytest_twisted.ensureDeferred
async def test_events_of_a_room_not_readable_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    eve = await server.register("eve")
    room_id = await create_room(alice)
    resp = await eve.get(f"{V3}/events", params={"room_id": room_id, "timeout": "0"})
    assert resp.code == 403


@pytest_twisted.ensureDeferred
async def test_non_member_follows_a_world_readable_room_by_id(server: TestServer) -> None:
    alice = await server.register("alice")
    eve = await server.register("eve")
    room_id = await create_room(alice, preset="public_chat")
    await world_readable(alice, room_id)
    token = (await events(eve, room_id=room_id, timeout=0))["end"]
    waiting = defer.ensureDeferred(events(eve, **{"from": token, "timeout": 5000,
                                                  "room_id": room_id}))
    event_id = await send_text(alice, room_id, "public news")
    body = await waiting
    assert event_id in [e.get("event_id") for e in body["chunk"]]


@pytest_twisted.ensureDeferred
async def test_initial_sync_lists_rooms_with_messages_and_state(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, name="Lobby")
    event_id = await send_text(alice, room_id, "hello")
    resp = await alice.get(f"{V3}/initialSync", params={"limit": "2"})
    assert resp.code == 200, resp.body
    assert resp.body["end"]
    (room,) = resp.body["rooms"]
    assert (room["room_id"], room["membership"]) == (room_id, "join")
    assert room["messages"]["chunk"][-1]["event_id"] == event_id
    assert len(room["messages"]["chunk"]) == 2
    assert "m.room.name" in [e["type"] for e in room["state"]]
    none = await alice.get(f"{V3}/initialSync", params={"limit": "0"})
    assert none.body["rooms"][0]["messages"]["chunk"] == []


@pytest_twisted.ensureDeferred
async def test_room_initial_sync_for_a_non_member_shows_only_what_they_may_see(
        server: TestServer) -> None:
    alice = await server.register("alice")
    eve = await server.register("eve")
    room_id = await create_room(alice, preset="public_chat")
    await send_text(alice, room_id, "private")
    assert (await eve.get(f"{V3}/rooms/{q(room_id)}/initialSync")).code == 403
    await world_readable(alice, room_id)
    await send_text(alice, room_id, "public")
    resp = await eve.get(f"{V3}/rooms/{q(room_id)}/initialSync")
    assert resp.code == 200, resp.body
    chunk = resp.body["messages"]["chunk"]
    assert [e["type"] for e in chunk] == ["m.room.history_visibility", "m.room.message"]
    assert chunk[1]["content"]["body"] == "public"
    assert {"room_id", "state", "presence", "messages"} <= set(resp.body)


@pytest_twisted.ensureDeferred
async def test_room_initial_sync_of_a_departed_room_stops_at_the_leave(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await send_text(alice, room_id, "before bob left")
    assert (await bob.post(f"{V3}/rooms/{q(room_id)}/leave", {})).code == 200
    await send_text(alice, room_id, "after bob left")
    resp = await bob.get(f"{V3}/rooms/{q(room_id)}/initialSync")
    assert resp.code == 200, resp.body
    assert resp.body["membership"] == "leave"
    bodies = [e["content"].get("body") for e in resp.body["messages"]["chunk"]]
    assert "before bob left" in bodies and "after bob left" not in bodies


@pytest_twisted.ensureDeferred
async def test_get_event_by_id_only_when_visible(server: TestServer) -> None:
    alice = await server.register("alice")
    eve = await server.register("eve")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello")
    mine = await alice.get(f"{V3}/events/{q(event_id)}")
    assert (mine.code, mine.body["event_id"]) == (200, event_id)
    assert (await eve.get(f"{V3}/events/{q(event_id)}")).code == 404
    # as /rooms/{roomId}/event does for a room one may not see
    other = await eve.get(f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}")
    assert (other.code, other.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_post_send_without_a_transaction_id(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    body = {"msgtype": "m.text", "body": "no txn"}
    first = await alice.post(f"{V3}/rooms/{q(room_id)}/send/m.room.message", body)
    second = await alice.post(f"{V3}/rooms/{q(room_id)}/send/m.room.message", body)
    assert first.code == second.code == 200
    assert first.body["event_id"] != second.body["event_id"]


@pytest_twisted.ensureDeferred
async def test_bad_limit_and_timeout_are_400(server: TestServer) -> None:
    alice = await server.register("alice")
    for params in ({"limit": "x"}, {"limit": "-1"}, {"timeout": "soon"}):
        resp = await alice.get(f"{V3}/events", params=params)
        assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM"), params


@pytest_twisted.ensureDeferred
async def test_joined_members_names_both_profile_fields(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.get(f"{V3}/rooms/{q(room_id)}/joined_members")
    assert resp.body["joined"][alice.user_id] == {"display_name": "alice",
                                                  "avatar_url": None}


@pytest_twisted.ensureDeferred
async def test_reading_the_event_stream_makes_a_user_online(server: TestServer) -> None:
    alice = await server.register("alice")
    await events(alice, timeout=0)
    resp = await alice.get(f"{V3}/presence/{q(alice.user_id or '')}/status")
    assert (resp.code, resp.body["presence"]) == (200, "online")
    body = (await alice.get(f"{V3}/initialSync")).body
    mine = [p for p in body["presence"] if p["content"]["user_id"] == alice.user_id]
    assert mine and mine[0]["content"]["presence"] == "online"
