"""/sync details clients rely on (and SyTest checks against Synapse): typing
that outlives a message, filters in the query, the federation format, room
summaries, newly joined rooms and members, a join and leave between two
syncs, current state a rejoining member could not see, and lazy-loaded
members across gapped and ungapped incremental syncs."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.api.test_rooms import create_room, invite, join, send_text, two_users_in_a_room
from tests.harness import Client, TestServer
from tests.sync.test_sync import sync

V3 = "/_matrix/client/v3"

LAZY = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 10}}}


def room_of(body: dict[str, Any], room_id: str, section: str = "join") -> dict[str, Any]:
    room: dict[str, Any] = body["rooms"][section][room_id]
    return room


def members_in_state(room: dict[str, Any]) -> dict[str, str]:
    return {e["state_key"]: e["content"]["membership"]
            for e in room.get("state", {}).get("events", []) if e["type"] == "m.room.member"}


async def fill(client: Client, room_id: str, count: int) -> None:
    for n in range(count):
        await send_text(client, room_id, f"filler {n}")


@pytest_twisted.ensureDeferred
async def test_typing_shows_in_initial_sync_even_after_a_message(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    resp = await alice.put(f"{V3}/rooms/{room_id}/typing/{alice.user_id}",
                           {"typing": True, "timeout": 30000})
    assert resp.code == 200, resp.body
    await send_text(alice, room_id, "typed")
    body = await sync(alice, filter={"room": {"ephemeral": {"types": ["m.typing"]}}})
    ephemeral = room_of(body, room_id)["ephemeral"]["events"]
    assert ephemeral == [{"type": "m.typing", "content": {"user_ids": [alice.user_id]}}]


@pytest_twisted.ensureDeferred
async def test_a_json_filter_in_the_query_with_no_timeline(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    body = await sync(alice, filter={"room": {"state": {"types": ["m.room.member"]},
                                              "timeline": {"limit": 0}}})
    room = room_of(body, room_id)
    assert room["timeline"]["events"] == []
    assert [e["type"] for e in room["state"]["events"]] == ["m.room.member"]


@pytest_twisted.ensureDeferred
async def test_federation_format_events_carry_their_id(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    event_id = await send_text(alice, room_id, "Test message")
    body = await sync(alice, filter={"event_format": "federation",
                                     "room": {"timeline": {"limit": 1}}})
    [event] = room_of(body, room_id)["timeline"]["events"]
    assert event["event_id"] == event_id
    assert {"auth_events", "prev_events", "depth", "hashes", "signatures"} <= event.keys()


@pytest_twisted.ensureDeferred
async def test_a_named_room_has_counts_but_no_heroes(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)  # named "Chat"
    unnamed = await create_room(alice, preset="public_chat")
    assert (await join(bob, unnamed)).code == 200
    body = await sync(alice, filter=LAZY)
    assert room_of(body, room_id)["summary"] == {
        "m.joined_member_count": 2, "m.invited_member_count": 0}
    assert room_of(body, unnamed)["summary"] == {
        "m.joined_member_count": 2, "m.invited_member_count": 0,
        "m.heroes": [bob.user_id]}
    # and the counts follow membership changes, still without heroes
    carol = await server.register("carol")
    assert (await join(carol, room_id)).code == 200
    again = await sync(alice, filter=LAZY, since=body["next_batch"])
    assert room_of(again, room_id)["summary"] == {
        "m.joined_member_count": 3, "m.invited_member_count": 0}


@pytest_twisted.ensureDeferred
async def test_a_newly_joined_rooms_timeline_is_limited(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await send_text(alice, room_id, "before")
    only_messages = {"room": {"timeline": {"types": ["m.room.message"], "limit": 10},
                              "state": {"types": []}}}
    first = await sync(bob, filter=only_messages)
    assert (await join(bob, room_id)).code == 200
    body = await sync(bob, filter=only_messages, since=first["next_batch"])
    timeline = room_of(body, room_id)["timeline"]
    assert [e["content"]["body"] for e in timeline["events"]] == ["before"]
    assert timeline["limited"] is True  # the client has none of the history


@pytest_twisted.ensureDeferred
async def test_a_newly_joined_members_presence_comes_with_the_join(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    first = await sync(alice)
    assert (await join(bob, room_id)).code == 200
    body = await sync(alice, since=first["next_batch"])
    senders = [e["sender"] for e in body["presence"]["events"]]
    assert bob.user_id in senders


@pytest_twisted.ensureDeferred
async def test_joining_and_leaving_between_syncs_gives_the_full_state(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice)
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/a.madeup.test.state",
                           {"my_key": 1})
    assert resp.code == 200, resp.body
    assert (await invite(alice, room_id, bob.user_id or "")).code == 200
    only_madeup = {"room": {"timeline": {"types": []},
                            "state": {"types": ["a.madeup.test.state"]},
                            "include_leave": True}}
    first = await sync(bob, filter=only_madeup)
    assert (await join(bob, room_id)).code == 200
    assert (await bob.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    body = await sync(bob, filter=only_madeup, since=first["next_batch"])
    state = room_of(body, room_id, "leave")["state"]["events"]
    assert [(e["type"], e["content"]) for e in state] == [("a.madeup.test.state",
                                                           {"my_key": 1})]


@pytest_twisted.ensureDeferred
async def test_a_rejoining_member_sees_who_joined_while_they_were_away(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    assert (await join(bob, room_id)).code == 200
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.history_visibility",
                           {"history_visibility": "joined"})
    assert resp.code == 200, resp.body
    first = await sync(bob)
    assert (await bob.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    assert (await join(carol, room_id)).code == 200
    await fill(alice, room_id, 15)  # hidden from bob: he was away
    assert (await join(bob, room_id)).code == 200
    body = await sync(bob, since=first["next_batch"])
    timeline = room_of(body, room_id)["timeline"]["events"]
    # carol's join is current state: it shows although bob could not see it
    assert any(e["type"] == "m.room.member" and e["state_key"] == carol.user_id
               and e["content"]["membership"] == "join" for e in timeline)
    assert not any(e["type"] == "m.room.message" for e in timeline)


@pytest_twisted.ensureDeferred
async def test_lazy_members_in_a_gapped_sync_are_the_gaps_and_the_new_senders(
        server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    carol = await server.register("carol")
    dave = await server.register("dave")
    assert (await join(carol, room_id)).code == 200
    await fill(bob, room_id, 10)
    first = await sync(alice, filter=LAZY)
    assert members_in_state(room_of(first, room_id)) == {
        alice.user_id: "join", bob.user_id: "join"}

    assert (await join(dave, room_id)).code == 200
    await fill(carol, room_id, 20)
    second = await sync(alice, filter=LAZY, since=first["next_batch"])
    assert room_of(second, room_id)["timeline"]["limited"] is True
    # dave joined in the gap; carol speaks and alice never had her member event
    assert members_in_state(room_of(second, room_id)) == {
        carol.user_id: "join", dave.user_id: "join"}

    assert (await dave.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    await fill(carol, room_id, 20)
    third = await sync(alice, filter=LAZY, since=second["next_batch"])
    # carol's member event was sent already: only the gap's leave
    assert members_in_state(room_of(third, room_id)) == {dave.user_id: "leave"}


@pytest_twisted.ensureDeferred
async def test_lazy_members_already_sent_are_not_sent_again_unless_asked(
        server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    carol = await server.register("carol")
    assert (await join(carol, room_id)).code == 200
    await fill(bob, room_id, 12)  # the joins are out of the timeline
    first = await sync(alice, filter=LAZY)
    assert set(members_in_state(room_of(first, room_id))) == {
        alice.user_id, bob.user_id}

    await send_text(bob, room_id, "again")
    await send_text(carol, room_id, "first words")
    second = await sync(alice, filter=LAZY, since=first["next_batch"])
    # bob's was sent with the first sync; carol's never was
    assert members_in_state(room_of(second, room_id)) == {carol.user_id: "join"}

    await send_text(bob, room_id, "more")
    await send_text(carol, room_id, "more")
    third = await sync(alice, filter=LAZY, since=second["next_batch"])
    assert members_in_state(room_of(third, room_id)) == {}

    redundant = {"room": {"state": {"lazy_load_members": True,
                                    "include_redundant_members": True}}}
    await send_text(bob, room_id, "and more")
    fourth = await sync(alice, filter=redundant, since=third["next_batch"])
    assert members_in_state(room_of(fourth, room_id)) == {bob.user_id: "join"}


@pytest.mark.parametrize("threaded", [False, True])
@pytest_twisted.ensureDeferred
async def test_an_initial_syncs_unread_counts_read_at_once_match_each_rooms(
        server: TestServer, threaded: bool) -> None:
    """An initial sync reads every room's unread counts in one go; they are
    what a full-state sync, which reads them room by room, says."""
    alice, bob, first = await two_users_in_a_room(server)
    second = await create_room(alice, preset="public_chat")
    assert (await join(bob, second)).code == 200
    third = await create_room(alice, preset="public_chat")
    assert (await join(bob, third)).code == 200
    root = await send_text(alice, first, "@bob:test.local a root", "r")
    for k in range(2):
        resp = await alice.put(
            f"{V3}/rooms/{first}/send/m.room.message/t{k}",
            {"msgtype": "m.text", "body": f"@bob:test.local reply {k}",
             "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
        assert resp.code == 200
    read = await send_text(alice, second, "read", "s1")
    resp = await bob.post(f"{V3}/rooms/{second}/receipt/m.read/{read}", {})
    assert resp.code == 200
    await send_text(alice, second, "unread", "s2")
    resp = await bob.post(f"{V3}/rooms/{first}/receipt/m.read/{root}",
                          {"thread_id": "main"})
    assert resp.code == 200
    sync_filter = {"room": {"timeline": {"limit": 3,
                                         "unread_thread_notifications": threaded}}}
    initial = await sync(bob, filter=sync_filter)
    again = await sync(bob, filter=sync_filter, since=initial["next_batch"],
                       full_state="true", timeout=0)
    keys = ("unread_notifications", "unread_thread_notifications")
    for room_id in (first, second, third):
        assert {k: room_of(initial, room_id).get(k) for k in keys} == \
            {k: room_of(again, room_id).get(k) for k in keys}
    if threaded:
        assert room_of(initial, first)["unread_notifications"]["notification_count"] == 0
        assert room_of(initial, first)["unread_thread_notifications"][root][
            "highlight_count"] == 2
    else:
        # the "main" receipt at the root counts as read up to there
        assert room_of(initial, first)["unread_notifications"]["highlight_count"] == 2
    assert room_of(initial, second)["unread_notifications"]["notification_count"] == 1
