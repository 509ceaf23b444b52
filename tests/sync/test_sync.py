"""/sync as clients see it: initial and incremental syncs, long-polling,
rooms joined, invited and left, state, limits, filters and bad tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import defer, task

from tests.api.test_rooms import create_room, invite, join, send_text, two_users_in_a_room
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"


async def sync(client: Client, **params: Any) -> dict[str, Any]:
    """One /sync. An incremental one waits (up to 5 s) for something new by
    default: a write is visible once every write before it has committed."""
    if "since" in params:
        params.setdefault("timeout", 5000)
    query = {k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in params.items()}
    resp = await client.get(f"{V3}/sync", params=query)
    assert resp.code == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


def timeline_bodies(body: dict[str, Any], room_id: str) -> list[str]:
    room = body["rooms"]["join"].get(room_id)
    if room is None:
        return []
    return [e["content"].get("body") for e in room["timeline"]["events"]
            if e["type"] == "m.room.message"]


@pytest_twisted.ensureDeferred
async def test_initial_sync_shows_joined_room_with_state_and_timeline(
        server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    await send_text(alice, room_id, "hello", "t1")
    body = await sync(bob)
    assert body["next_batch"]
    room = body["rooms"]["join"][room_id]
    assert timeline_bodies(body, room_id) == ["hello"]
    state_types = {e["type"] for e in room["state"]["events"]}
    timeline_types = {e["type"] for e in room["timeline"]["events"]}
    assert "m.room.create" in state_types | timeline_types
    assert room["summary"]["m.joined_member_count"] == 2
    assert "m.heroes" not in room["summary"]  # the room is named "Chat"
    assert room["unread_notifications"]["notification_count"] == 1


@pytest_twisted.ensureDeferred
async def test_incremental_sync_returns_only_what_is_new(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    await send_text(alice, room_id, "one", "t1")
    first = await sync(bob)
    await send_text(alice, room_id, "two", "t2")
    second = await sync(bob, since=first["next_batch"])
    assert timeline_bodies(second, room_id) == ["two"]
    assert second["rooms"]["join"][room_id]["timeline"]["limited"] is False
    assert second["rooms"]["join"][room_id]["state"]["events"] == []
    third = await sync(bob, since=second["next_batch"], timeout=0)
    assert third["rooms"]["join"] == {}


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_long_poll_wakes_when_a_message_arrives(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    first = await sync(bob)
    waiting = defer.ensureDeferred(sync(bob, since=first["next_batch"], timeout=30000))
    await sleep(0.2)
    assert not waiting.called
    await send_text(alice, room_id, "wake up", "t1")
    body = await waiting
    assert timeline_bodies(body, room_id) == ["wake up"]


@pytest_twisted.ensureDeferred
async def test_long_poll_ignores_rooms_the_user_is_not_in(server: TestServer) -> None:
    alice, bob, _ = await two_users_in_a_room(server)
    elsewhere = await create_room(alice)
    first = await sync(bob)
    waiting = defer.ensureDeferred(sync(bob, since=first["next_batch"], timeout=600))
    await send_text(alice, elsewhere, "not for bob", "t1")
    body = await waiting
    assert body["rooms"]["join"] == {}
    assert body["next_batch"] != ""


@pytest_twisted.ensureDeferred
async def test_long_poll_times_out_with_an_empty_response(server: TestServer) -> None:
    _, bob, _ = await two_users_in_a_room(server)
    first = await sync(bob)
    body = await sync(bob, since=first["next_batch"], timeout=100)
    assert body["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    again = await sync(bob, since=body["next_batch"], timeout=0)
    assert again["rooms"]["join"] == {}


@pytest_twisted.ensureDeferred
async def test_a_client_that_goes_away_stops_waiting(server: TestServer) -> None:
    from twisted.internet import reactor
    from twisted.web.client import Agent

    _, bob, _ = await two_users_in_a_room(server)
    first = await sync(bob)
    agent = Agent(reactor)
    url = (f"{server.base_url}{V3}/sync?timeout=60000&since={first['next_batch']}"
           f"&access_token={bob.access_token}")
    d = agent.request(b"GET", url.encode())
    d.addErrback(lambda _: None)  # cancelled below: the client hangs up
    for _ in range(50):
        if server.hs.notifier.waiting_count() == 1:
            break
        await sleep(0.02)
    assert server.hs.notifier.waiting_count() == 1
    d.cancel()
    for _ in range(50):
        if server.hs.notifier.waiting_count() == 0:
            break
        await sleep(0.02)
    assert server.hs.notifier.waiting_count() == 0


@pytest_twisted.ensureDeferred
async def test_limited_timeline_has_a_prev_batch_that_paginates_back(
        server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    for i in range(12):
        await send_text(alice, room_id, f"m{i}", f"t{i}")
    body = await sync(bob, filter={"room": {"timeline": {"limit": 5}}})
    room = body["rooms"]["join"][room_id]
    assert timeline_bodies(body, room_id) == [f"m{i}" for i in range(7, 12)]
    assert room["timeline"]["limited"] is True
    # the state is the state before the timeline: the room's name is there
    assert any(e["type"] == "m.room.name" for e in room["state"]["events"])
    resp = await bob.get(f"{V3}/rooms/{room_id}/messages",
                         params={"dir": "b", "from": room["timeline"]["prev_batch"],
                                 "limit": "3"})
    assert resp.code == 200, resp.body
    assert [e["content"]["body"] for e in resp.body["chunk"]] == ["m6", "m5", "m4"]


@pytest_twisted.ensureDeferred
async def test_incremental_limited_sync_carries_the_state_that_changed(
        server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    first = await sync(bob)
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic/", {"topic": "new"})
    assert resp.code == 200
    for i in range(8):
        await send_text(alice, room_id, f"m{i}", f"t{i}")
    body = await sync(bob, since=first["next_batch"],
                      filter={"room": {"timeline": {"limit": 3}}})
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    state = {(e["type"], e["state_key"]): e["content"] for e in room["state"]["events"]}
    assert state == {("m.room.topic", ""): {"topic": "new"}}


@pytest_twisted.ensureDeferred
async def test_invite_then_join_then_leave(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, name="Secret")
    first = await sync(bob)
    assert (await invite(alice, room_id, bob.user_id or "")).code == 200
    invited = await sync(bob, since=first["next_batch"])
    stripped = invited["rooms"]["invite"][room_id]["invite_state"]["events"]
    kinds = {(e["type"], e["state_key"]) for e in stripped}
    assert ("m.room.name", "") in kinds
    assert ("m.room.member", bob.user_id) in kinds
    # who invited them: the inviter's own member event
    assert ("m.room.member", alice.user_id) in kinds
    assert all("event_id" not in e for e in stripped)

    assert (await join(bob, room_id)).code == 200
    joined = await sync(bob, since=invited["next_batch"])
    room = joined["rooms"]["join"][room_id]
    # newly joined: the whole state, not just what changed since the token
    everything = room["state"]["events"] + room["timeline"]["events"]
    assert any(e["type"] == "m.room.create" for e in everything)
    assert room["summary"]["m.joined_member_count"] == 2
    assert joined["rooms"]["invite"] == {}

    assert (await bob.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    await send_text(alice, room_id, "after bob left", "t1")
    left = await sync(bob, since=joined["next_batch"])
    assert room_id in left["rooms"]["leave"]
    leave_timeline = left["rooms"]["leave"][room_id]["timeline"]["events"]
    assert leave_timeline[-1]["content"]["membership"] == "leave"
    assert all(e["content"].get("body") != "after bob left" for e in leave_timeline)
    assert room_id not in left["rooms"]["join"]


@pytest_twisted.ensureDeferred
async def test_initial_sync_hides_left_rooms_unless_asked(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    assert (await bob.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    assert (await sync(bob))["rooms"]["leave"] == {}
    with_leave = await sync(bob, filter={"room": {"include_leave": True}})
    assert room_id in with_leave["rooms"]["leave"]


@pytest_twisted.ensureDeferred
async def test_bad_since_tokens_are_invalid_params(server: TestServer) -> None:
    _, bob, _ = await two_users_in_a_room(server)
    for token in ["garbage", "s", "s-1_0_abc", "s1_2", "s99999999999_0_abcd",
                  "s1_0_" + "a" * 40, "\u0000"]:
        resp = await bob.get(f"{V3}/sync", params={"since": token})
        assert resp.code == 400, (token, resp.body)
        assert resp.body["errcode"] == "M_INVALID_PARAM"


@pytest_twisted.ensureDeferred
async def test_bad_query_parameters_are_invalid_params(server: TestServer) -> None:
    _, bob, _ = await two_users_in_a_room(server)
    for params in [{"timeout": "soon"}, {"timeout": "-5"}, {"full_state": "yes"},
                   {"set_presence": "busy"}, {"filter": "{not json"}, {"filter": "12345"},
                   {"filter": '{"room": {"timeline": {"limit": "ten"}}}'}]:
        resp = await bob.get(f"{V3}/sync", params=params)
        assert resp.code == 400, (params, resp.body)
        assert resp.body["errcode"].startswith("M_"), resp.body


@pytest_twisted.ensureDeferred
async def test_a_token_from_before_a_restart_still_works(make_server: Any) -> None:
    from twisted.internet import reactor

    from homeserver.server import HomeServer

    first: TestServer = await make_server()
    alice, bob, room_id = await two_users_in_a_room(first)
    await send_text(alice, room_id, "before", "t1")
    token = (await sync(bob))["next_batch"]
    await first.hs.stop()

    hs = HomeServer(first.hs.config, reactor)
    await hs.setup()
    hs.listen()
    try:
        url = TestServer(hs, first.engine).base_url
        alice.base_url = bob.base_url = url
        await send_text(alice, room_id, "after", "t2")
        body = await sync(bob, since=token)
        assert timeline_bodies(body, room_id) == ["after"]
    finally:
        await hs.stop()


@pytest_twisted.ensureDeferred
async def test_full_state_sends_the_state_again(server: TestServer) -> None:
    _, bob, room_id = await two_users_in_a_room(server)
    first = await sync(bob)
    again = await sync(bob, since=first["next_batch"], full_state="true")
    room = again["rooms"]["join"][room_id]
    assert any(e["type"] == "m.room.create" for e in room["state"]["events"])


@pytest_twisted.ensureDeferred
async def test_filters_shape_the_timeline_and_the_state(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    await send_text(alice, room_id, "text", "t1")
    resp = await alice.put(f"{V3}/rooms/{room_id}/send/m.custom/t2", {"x": 1})
    assert resp.code == 200
    body = await sync(bob, filter={"room": {
        "timeline": {"not_types": ["m.custom", "m.room.member"]},
        "state": {"types": ["m.room.name"]}}})
    room = body["rooms"]["join"][room_id]
    timeline_types = {e["type"] for e in room["timeline"]["events"]}
    assert "m.room.message" in timeline_types
    assert not timeline_types & {"m.custom", "m.room.member"}
    assert {e["type"] for e in room["state"]["events"]} <= {"m.room.name"}

    not_this = await sync(bob, filter={"room": {"not_rooms": [room_id]}})
    assert room_id not in not_this["rooms"]["join"]

    stored = await bob.post(f"{V3}/user/{bob.user_id}/filter",
                            {"event_fields": ["type", "content.body"],
                             "room": {"timeline": {"limit": 1}}})
    assert stored.code == 200
    projected = await sync(bob, filter=stored.body["filter_id"])
    events = projected["rooms"]["join"][room_id]["timeline"]["events"]
    assert events == [{"type": "m.custom"}]


@pytest_twisted.ensureDeferred
async def test_lazy_loading_sends_only_the_senders_members(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    carol = await server.register("carol")
    assert (await join(carol, room_id)).code == 200
    for i in range(3):
        await send_text(alice, room_id, f"m{i}", f"t{i}")
    body = await sync(bob, filter={"room": {"timeline": {"limit": 2},
                                            "state": {"lazy_load_members": True}}})
    room = body["rooms"]["join"][room_id]
    members = {e["state_key"] for e in room["state"]["events"]
               if e["type"] == "m.room.member"}
    assert members == {"@alice:test.local", "@bob:test.local"}


@pytest_twisted.ensureDeferred
async def test_account_data_arrives_in_sync(server: TestServer) -> None:
    _, bob, room_id = await two_users_in_a_room(server)
    first = await sync(bob)
    resp = await bob.put(f"{V3}/user/{bob.user_id}/account_data/m.tag.test", {"a": 1})
    assert resp.code == 200
    resp = await bob.put(f"{V3}/user/{bob.user_id}/rooms/{room_id}/account_data/m.tag",
                         {"tags": {"u.work": {}}})
    assert resp.code == 200
    body = await sync(bob, since=first["next_batch"])
    assert {"type": "m.tag.test", "content": {"a": 1}} in body["account_data"]["events"]
    room = body["rooms"]["join"][room_id]
    assert room["account_data"]["events"] == [
        {"type": "m.tag", "content": {"tags": {"u.work": {}}}}]


@pytest_twisted.ensureDeferred
async def test_device_lists_report_new_devices_of_room_mates(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    first = await sync(bob)
    resp = await server.client().post(f"{V3}/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "correct horse battery"})
    assert resp.code == 200, resp.body
    body = await sync(bob, since=first["next_batch"])
    assert "@alice:test.local" in body["device_lists"].get("changed", [])

    stranger = await server.register("stranger")
    assert stranger.user_id
    assert (await alice.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    after = await sync(bob, since=body["next_batch"])
    assert "@alice:test.local" in after["device_lists"].get("left", [])
    assert "@stranger:test.local" not in after["device_lists"].get("changed", [])


@pytest_twisted.ensureDeferred
async def test_device_lists_leave_out_empty_lists(server: TestServer) -> None:
    """As Synapse: a present ``changed`` means someone's devices changed.
    SyTest (and so clients written against Synapse) reads it that way: a
    sync that only reports a room mate leaving says nothing of ``changed``."""
    alice, bob, room_id = await two_users_in_a_room(server)
    first = await sync(bob)
    assert (await alice.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    after = await sync(bob, since=first["next_batch"])
    assert after["device_lists"] == {"left": ["@alice:test.local"]}
    quiet = await sync(bob, since=after["next_batch"])
    assert quiet["device_lists"] == {}


@pytest_twisted.ensureDeferred
async def test_history_before_joining_stays_hidden_when_visibility_is_joined(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "",
         "content": {"history_visibility": "joined"}}])
    await send_text(alice, room_id, "before bob", "t1")
    assert (await join(bob, room_id)).code == 200
    await send_text(alice, room_id, "after bob", "t2")
    body = await sync(bob)
    assert timeline_bodies(body, room_id) == ["after bob"]


@pytest_twisted.ensureDeferred
async def test_a_room_mates_new_device_wakes_a_waiting_sync(server: TestServer) -> None:
    _, bob, _ = await two_users_in_a_room(server)
    first = await sync(bob)
    waiting = defer.ensureDeferred(sync(bob, since=first["next_batch"], timeout=30000))
    await sleep(0.2)
    assert not waiting.called
    resp = await server.client().post(f"{V3}/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "correct horse battery"})
    assert resp.code == 200, resp.body
    body = await waiting
    assert body["device_lists"].get("changed", []) == ["@alice:test.local"]
