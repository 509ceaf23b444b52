"""Globs users write (filter types, push rule patterns) cannot freeze the server,
and the absurd ones are refused at the door (issue 14, SQLite and PostgreSQL).

With the regexes the server used to build from these patterns, each request
below took from seconds to minutes of CPU, during which no other request
was answered."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted

from tests.api.test_pushrules import RULES, sync_counts
from tests.api.test_rooms import V3, create_room, send_text
from tests.api.test_rooms import two_users_in_a_room as shared_room
from tests.harness import Client, TestServer

# long runs of one character: what a backtracking match of many stars chokes on
LONG_TYPE = "a" * 200
MANY_STARS = "*" * 13 + "x"


async def room_with_types(alice: Client) -> str:
    room_id = await create_room(alice)
    await send_text(alice, room_id, "plain", "t1")
    for i, event_type in enumerate((LONG_TYPE, "org.example.x", LONG_TYPE + ".x")):
        resp = await alice.put(f"{V3}/rooms/{room_id}/send/{event_type}/c{i}", {"n": i})
        assert resp.code == 200, resp.body
    return room_id


@pytest_twisted.ensureDeferred
async def test_messages_with_a_many_star_type_filter_answers_and_filters(
        server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await room_with_types(alice)

    resp = await alice.get(f"{V3}/rooms/{room_id}/messages", params={
        "dir": "b", "filter": json.dumps({"types": [MANY_STARS, "*a*a*a*a*b"]})})

    assert resp.code == 200, resp.body
    assert [e["type"] for e in resp.body["chunk"]] == [LONG_TYPE + ".x", "org.example.x"]


@pytest_twisted.ensureDeferred
async def test_context_with_a_many_star_not_types_filter_answers(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await room_with_types(alice)
    event_id = await send_text(alice, room_id, "middle", "t2")

    resp = await alice.get(f"{V3}/rooms/{room_id}/context/{event_id}", params={
        "limit": "10", "filter": json.dumps({"not_types": [MANY_STARS, "m.room.*"]})})

    assert resp.code == 200, resp.body
    assert [e["type"] for e in resp.body["events_before"]] == [LONG_TYPE]


@pytest_twisted.ensureDeferred
async def test_sync_with_many_star_not_types_answers_and_filters(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await room_with_types(alice)
    sync_filter = {"room": {"timeline": {"limit": 20, "not_types": ["*" * 10 + "x"]}}}

    resp = await alice.get(f"{V3}/sync", params={"filter": json.dumps(sync_filter)})

    assert resp.code == 200, resp.body
    types = [e["type"] for e in resp.body["rooms"]["join"][room_id]["timeline"]["events"]]
    assert LONG_TYPE in types and "m.room.message" in types
    assert "org.example.x" not in types and LONG_TYPE + ".x" not in types


@pytest_twisted.ensureDeferred
async def test_over_cap_type_patterns_are_400_on_every_filter_edge(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hi", "t1")
    for pattern in ("*" * 21 + "x", "m." * 128):
        room_filter = {"types": [pattern]}
        reads = [
            await alice.get(f"{V3}/rooms/{room_id}/messages",
                            params={"dir": "b", "filter": json.dumps(room_filter)}),
            await alice.get(f"{V3}/rooms/{room_id}/context/{event_id}",
                            params={"filter": json.dumps(room_filter)}),
            await alice.get(f"{V3}/sync", params={"filter": json.dumps(
                {"room": {"timeline": {"not_types": [pattern]}}})}),
            await alice.post(f"{V3}/user/{alice.user_id}/filter",
                             {"presence": {"types": [pattern]}}),
        ]
        for resp in reads:
            assert (resp.code, resp.body.get("errcode")) == (400, "M_BAD_JSON"), resp.body
            assert "type pattern" in resp.body["error"]
    # at the caps: accepted
    at_cap = {"room": {"timeline": {"types": ["*" * 20, "m" * 255]}}}
    assert (await alice.post(f"{V3}/user/{alice.user_id}/filter", at_cap)).code == 200


@pytest_twisted.ensureDeferred
async def test_a_many_star_push_rule_neither_stalls_messages_nor_stops_working(
        server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    rule: dict[str, Any] = {"pattern": "*******x",
                            "actions": ["notify", {"set_tweak": "highlight"}]}
    assert (await bob.put(f"{RULES}/global/content/stars", rule)).code == 200

    await send_text(alice, room_id, "a" * 3000, "t1")
    await send_text(alice, room_id, "look in the box", "t2")

    resp = await bob.get(f"{V3}/sync")
    assert resp.code == 200, resp.body
    timeline = resp.body["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["content"].get("body") for e in timeline][-2:] == ["a" * 3000, "look in the box"]
    # both notify (the default rule for messages, then ours); only the box highlights
    assert await sync_counts(bob, room_id) == {"notification_count": 2, "highlight_count": 1}


@pytest_twisted.ensureDeferred
async def test_over_cap_push_patterns_are_400_and_not_stored(server: TestServer) -> None:
    alice = await server.register("alice")
    too_many = "*" * 21 + "x"
    too_long = "x" * 1001
    cases = [
        ("content/a", {"pattern": too_many, "actions": ["notify"]}),
        ("content/b", {"pattern": too_long, "actions": ["notify"]}),
        ("override/c", {"actions": ["notify"], "conditions": [
            {"kind": "event_match", "key": "content.body", "pattern": too_many}]}),
        ("underride/d", {"actions": ["notify"], "conditions": [
            {"kind": "event_match", "key": "type", "pattern": too_long}]}),
    ]
    for path, body in cases:
        resp = await alice.put(f"{RULES}/global/{path}", body)
        assert (resp.code, resp.body.get("errcode")) == (400, "M_INVALID_PARAM"), (path, resp.body)
        assert (await alice.get(f"{RULES}/global/{path}")).code == 404
    at_cap = {"pattern": "*" * 20 + "x" * 980, "actions": ["notify"]}
    assert (await alice.put(f"{RULES}/global/content/e", at_cap)).code == 200
