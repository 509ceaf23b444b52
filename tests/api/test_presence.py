"""Presence: PUT/GET /presence/{userId}/status, the idle and offline rules on
a virtual clock, and the m.presence events /sync hands out."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from homeserver.edu.presence import (
    IDLE_TIMEOUT_MS,
    LAST_ACTIVE_GRANULARITY_MS,
    SYNC_ONLINE_TIMEOUT_MS,
    _UserState,
    apply_timeouts,
    next_check_ms,
)
from homeserver.storage.streams import current_stream_id
from tests.api.test_rooms import join
from tests.api.test_rooms import two_users_in_a_room as roommates
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"


async def put_presence(client: Client, body: Any, user_id: str | None = None) -> Any:
    return await client.put(f"{V3}/presence/{user_id or client.user_id}/status", body)


async def set_presence(client: Client, presence: str, status_msg: str | None = None) -> None:
    body: dict[str, Any] = {"presence": presence}
    if status_msg is not None:
        body["status_msg"] = status_msg
    resp = await put_presence(client, body)
    assert resp.code == 200, resp.body
    assert resp.body == {}


async def get_presence(client: Client, user_id: str | None = None) -> Any:
    return await client.get(f"{V3}/presence/{user_id or client.user_id}/status")


async def presence_of(client: Client, user_id: str | None = None) -> dict[str, Any]:
    resp = await get_presence(client, user_id)
    assert resp.code == 200, resp.body
    content: dict[str, Any] = resp.body
    return content


async def position(server: TestServer) -> int:
    return await current_stream_id(server.hs.db)


def senders(events: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    assert all(e["type"] == "m.presence" for e in events)
    return {e["sender"]: e["content"] for e in events}


# -- setting and getting --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_user_never_seen_is_offline(server: TestServer) -> None:
    alice = await server.register("alice")
    assert await presence_of(alice) == {"presence": "offline"}


@pytest_twisted.ensureDeferred
async def test_set_presence_and_status_message_are_read_back(server: TestServer) -> None:
    alice = await server.register("alice")
    await set_presence(alice, "online", "In a meeting")
    content = await presence_of(alice)
    assert content["presence"] == "online"
    assert content["status_msg"] == "In a meeting"
    assert content["currently_active"] is True
    assert 0 <= content["last_active_ago"] < 60_000

    await set_presence(alice, "unavailable")
    content = await presence_of(alice)
    assert content["presence"] == "unavailable"
    assert "status_msg" not in content  # a PUT without status_msg clears it
    assert "currently_active" not in content


@pytest_twisted.ensureDeferred
async def test_null_status_message_clears_it(server: TestServer) -> None:
    alice = await server.register("alice")
    await set_presence(alice, "online", "Lunch")
    assert (await put_presence(alice, {"presence": "online", "status_msg": None})).code == 200
    assert "status_msg" not in await presence_of(alice)


@pytest_twisted.ensureDeferred
async def test_setting_another_users_presence_is_forbidden(server: TestServer) -> None:
    alice, bob, _ = await roommates(server)
    resp = await put_presence(alice, {"presence": "online"}, bob.user_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert await presence_of(bob) == {"presence": "offline"}


@pytest.mark.parametrize("body,errcode", [
    ({}, "M_BAD_JSON"),
    ({"presence": 1}, "M_BAD_JSON"),
    ({"presence": "busy"}, "M_INVALID_PARAM"),
    ({"presence": "online", "status_msg": 5}, "M_BAD_JSON"),
    ({"presence": "online", "status_msg": "x" * 5000}, "M_INVALID_PARAM"),
    ({"presence": "online", "status_msg": "nul\u0000"}, "M_INVALID_PARAM"),
])
@pytest_twisted.ensureDeferred
async def test_bad_bodies_are_refused(server: TestServer, body: Any, errcode: str) -> None:
    alice = await server.register("alice")
    resp = await put_presence(alice, body)
    assert (resp.code, resp.body["errcode"]) == (400, errcode)
    assert await presence_of(alice) == {"presence": "offline"}


# -- who may see whose presence -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_roommates_see_each_others_presence(server: TestServer) -> None:
    alice, bob, _ = await roommates(server)
    await set_presence(alice, "unavailable", "Away")
    content = await presence_of(bob, alice.user_id)
    assert (content["presence"], content["status_msg"]) == ("unavailable", "Away")


@pytest_twisted.ensureDeferred
async def test_a_stranger_cannot_see_presence(server: TestServer) -> None:
    alice, _, room_id = await roommates(server)
    carol = await server.register("carol")
    await set_presence(alice, "online")
    resp = await get_presence(carol, alice.user_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    # joining a shared room makes it visible
    assert (await join(carol, room_id)).code == 200
    assert (await presence_of(carol, alice.user_id))["presence"] == "online"


@pytest_twisted.ensureDeferred
async def test_unknown_user_is_not_found(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await get_presence(alice, "@nobody:test.local")
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    resp = await get_presence(alice, "not-a-user-id")
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


# -- syncing, idling, going offline ----------------------------------------------


@pytest_twisted.ensureDeferred
async def test_syncing_makes_a_user_online(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None
    await server.hs.presence.user_syncing(alice.user_id, None)
    content = await presence_of(alice)
    assert (content["presence"], content["currently_active"]) == ("online", True)


@pytest_twisted.ensureDeferred
async def test_set_presence_on_sync(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None
    await server.hs.presence.user_syncing(alice.user_id, "unavailable")
    assert (await presence_of(alice))["presence"] == "unavailable"
    await server.hs.presence.user_syncing(alice.user_id, "offline")  # changes nothing
    assert (await presence_of(alice))["presence"] == "unavailable"
    await server.hs.presence.user_syncing(alice.user_id, "online")
    assert (await presence_of(alice))["presence"] == "online"


@pytest_twisted.ensureDeferred
async def test_syncing_again_keeps_the_status_message(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None
    await set_presence(alice, "online", "Coding")
    await server.hs.presence.user_syncing(alice.user_id, None)
    assert (await presence_of(alice))["status_msg"] == "Coding"


@pytest_twisted.ensureDeferred
async def test_a_user_goes_offline_after_syncing_stops(make_server: Any) -> None:
    clock = Clock()
    clock.advance(1_000_000)
    server = await make_server(clock=clock)
    alice, bob, _ = await roommates(server)
    assert alice.user_id is not None
    presence = server.hs.presence
    await presence.user_syncing(alice.user_id, None)
    clock.advance(30)
    await presence.user_syncing(alice.user_id, None)  # still syncing: still online
    assert (await presence_of(bob, alice.user_id))["presence"] == "online"
    clock.advance(LAST_ACTIVE_GRANULARITY_MS / 1000 + 1)
    content = await presence_of(bob, alice.user_id)
    assert (content["presence"], content["currently_active"]) == ("online", False)
    assert content["last_active_ago"] == (LAST_ACTIVE_GRANULARITY_MS + 1000)
    clock.advance(120)
    assert (await presence_of(bob, alice.user_id))["presence"] == "offline"


@pytest_twisted.ensureDeferred
async def test_offline_thirty_seconds_after_the_last_sync_ends(make_server: Any) -> None:
    clock = Clock()
    clock.advance(1_000_000)
    server = await make_server(clock=clock)
    alice = await server.register("alice")
    assert alice.user_id is not None
    presence = server.hs.presence
    await presence.user_syncing(alice.user_id, None)
    presence.sync_ended(alice.user_id, None)
    clock.advance(SYNC_ONLINE_TIMEOUT_MS / 1000 - 1)
    assert (await presence_of(alice))["presence"] == "online"
    clock.advance(2)
    assert (await presence_of(alice))["presence"] == "offline"


@pytest_twisted.ensureDeferred
async def test_a_connected_idle_user_becomes_unavailable(make_server: Any) -> None:
    clock = Clock()
    clock.advance(1_000_000)
    server = await make_server(clock=clock)
    alice = await server.register("alice")
    assert alice.user_id is not None
    presence = server.hs.presence
    await presence.user_syncing(alice.user_id, None)
    presence.sync_ended(alice.user_id, None)
    await presence.user_syncing(alice.user_id, None)  # a connection that stays open
    clock.advance(IDLE_TIMEOUT_MS / 1000 - 1)
    assert (await presence_of(alice))["presence"] == "online"
    clock.advance(2)
    content = await presence_of(alice)
    assert content["presence"] == "unavailable"
    assert content["last_active_ago"] == IDLE_TIMEOUT_MS + 1000
    # activity brings the user back
    await presence.user_activity(alice.user_id)
    assert (await presence_of(alice))["presence"] == "online"
    presence.sync_ended(alice.user_id, None)
    clock.advance(SYNC_ONLINE_TIMEOUT_MS / 1000 + 1)
    assert (await presence_of(alice))["presence"] == "offline"


@pytest_twisted.ensureDeferred
async def test_syncs_do_not_write_a_new_position_each_time(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None
    await server.hs.presence.user_syncing(alice.user_id, None)
    before = await position(server)
    for _ in range(3):
        await server.hs.presence.user_syncing(alice.user_id, None)
    assert await position(server) == before


@pytest_twisted.ensureDeferred
async def test_presence_is_not_tracked_when_disabled(make_server: Any) -> None:
    server = await make_server(presence={"enabled": False})
    alice, bob, _ = await roommates(server)
    assert alice.user_id is not None and bob.user_id is not None
    await set_presence(alice, "online", "Here")
    await server.hs.presence.user_syncing(alice.user_id, None)
    assert await presence_of(bob, alice.user_id) == {"presence": "offline"}
    assert await server.hs.presence.get_presence_events(
        bob.user_id, None, await position(server)) == []


# -- what /sync is given -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_presence_events_only_of_users_sharing_a_room(server: TestServer) -> None:
    alice, bob, _ = await roommates(server)
    carol = await server.register("carol")
    assert bob.user_id is not None
    await set_presence(alice, "online", "Hi")
    await set_presence(bob, "unavailable")
    await set_presence(carol, "online")
    events = await server.hs.presence.get_presence_events(bob.user_id, None,
                                                          await position(server))
    content = senders(events)
    assert set(content) == {alice.user_id, bob.user_id}
    assert content[alice.user_id]["presence"] == "online"
    assert content[alice.user_id]["status_msg"] == "Hi"
    assert content[alice.user_id]["currently_active"] is True
    assert content[bob.user_id]["presence"] == "unavailable"


@pytest_twisted.ensureDeferred
async def test_initial_presence_leaves_out_plain_offline_users(server: TestServer) -> None:
    alice, bob, room_id = await roommates(server)
    dave = await server.register("dave")
    assert (await join(dave, room_id)).code == 200
    assert bob.user_id is not None
    await set_presence(alice, "offline", "On holiday")
    await set_presence(dave, "offline")
    events = await server.hs.presence.get_presence_events(bob.user_id, None,
                                                          await position(server))
    content = senders(events)
    assert set(content) == {alice.user_id}  # dave is offline with nothing to say
    assert content[alice.user_id]["presence"] == "offline"
    assert content[alice.user_id]["status_msg"] == "On holiday"


@pytest_twisted.ensureDeferred
async def test_presence_changes_only_in_the_range(server: TestServer) -> None:
    alice, bob, _ = await roommates(server)
    assert bob.user_id is not None
    presence = server.hs.presence
    await set_presence(alice, "online")
    first = await position(server)
    await set_presence(bob, "online")
    second = await position(server)
    assert second > first

    changes = senders(await presence.get_presence_events(bob.user_id, first, second))
    assert set(changes) == {bob.user_id}
    earlier = senders(await presence.get_presence_events(bob.user_id, 0, first))
    assert set(earlier) == {alice.user_id}
    assert await presence.get_presence_events(bob.user_id, second, second) == []

    await set_presence(alice, "unavailable", "brb")
    third = await position(server)
    changes = senders(await presence.get_presence_events(bob.user_id, second, third))
    assert changes == {alice.user_id: {"presence": "unavailable", "status_msg": "brb",
                                       "last_active_ago": changes[alice.user_id][
                                           "last_active_ago"]}}


@pytest_twisted.ensureDeferred
async def test_a_change_wakes_the_users_sharing_a_room(server: TestServer) -> None:
    alice, bob, _ = await roommates(server)
    carol = await server.register("carol")
    assert bob.user_id is not None and carol.user_id is not None
    notifier = server.hs.notifier
    # carol's new device has woken carol herself (device lists): let it land
    assert await notifier.wait(carol.user_id, 0, 5_000) is True
    bob_before = notifier.counter(bob.user_id)
    carol_before = notifier.counter(carol.user_id)
    woken = notifier.wait(bob.user_id, bob_before, 5_000)
    await set_presence(alice, "online")
    assert await woken is True
    assert notifier.counter(carol.user_id) == carol_before


@pytest_twisted.ensureDeferred
async def test_presence_reaches_a_roommate_through_sync(server: TestServer) -> None:
    alice, bob, _ = await roommates(server)
    first = await bob.get(f"{V3}/sync", params={"timeout": "0"})
    assert first.code == 200, first.body
    await set_presence(alice, "online", "Hello")
    resp = await bob.get(f"{V3}/sync", params={"since": first.body["next_batch"],
                                               "timeout": "5000"})
    assert resp.code == 200, resp.body
    content = senders(resp.body.get("presence", {}).get("events", []))
    assert content[alice.user_id]["status_msg"] == "Hello"


# -- the rules, without a server ---------------------------------------------------


@pytest.mark.parametrize("start,idle_ms,offline_at,expected", [
    ("online", LAST_ACTIVE_GRANULARITY_MS - 1, 0, ("online", True)),
    ("online", LAST_ACTIVE_GRANULARITY_MS, 0, ("online", False)),
    ("online", IDLE_TIMEOUT_MS, 0, ("unavailable", False)),
    ("unavailable", IDLE_TIMEOUT_MS * 10, 0, ("unavailable", False)),
    ("online", 10, 5, ("offline", False)),
    ("unavailable", 10, 5, ("offline", False)),
])
def test_timeout_rules(start: str, idle_ms: int, offline_at: int,
                       expected: tuple[str, bool]) -> None:
    state = _UserState(presence=start, last_active_ts=1000,
                       currently_active=start == "online", offline_at_ms=offline_at)
    now = 1000 + idle_ms
    apply_timeouts(state, now)
    assert (state.presence, state.currently_active) == expected


def test_an_in_progress_sync_holds_off_offline() -> None:
    state = _UserState(presence="unavailable", last_active_ts=0, offline_at_ms=5)
    apply_timeouts(state, 10, syncing=True)
    assert state.presence == "unavailable"
    assert state.offline_at_ms == 10 + SYNC_ONLINE_TIMEOUT_MS


def test_next_check_is_the_earliest_rule() -> None:
    state = _UserState(presence="online", last_active_ts=0, currently_active=True,
                       offline_at_ms=10 ** 9)
    assert next_check_ms(state) == LAST_ACTIVE_GRANULARITY_MS
    state.currently_active = False
    assert next_check_ms(state) == IDLE_TIMEOUT_MS
    state.presence = "offline"
    assert next_check_ms(state) is None
