"""Account data: a user's private JSON objects, global and per room."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted

from homeserver.storage.streams import current_stream_id
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"
ROOM = "!room:test.local"


def global_path(client: Client, data_type: str) -> str:
    return f"{V3}/user/{client.user_id}/account_data/{data_type}"


def room_path(client: Client, room_id: str, data_type: str) -> str:
    return f"{V3}/user/{client.user_id}/rooms/{room_id}/account_data/{data_type}"


@pytest_twisted.ensureDeferred
async def test_global_account_data_round_trips(server: TestServer) -> None:
    alice = await server.register("alice")
    content = {"theme": "dark", "nested": {"list": [1, 2.5, None, True]}, "emoji": "🦊"}

    put = await alice.put(global_path(alice, "com.example.settings"), content)
    got = await alice.get(global_path(alice, "com.example.settings"))

    assert (put.code, put.body) == (200, {})
    assert (got.code, got.body) == (200, content)


@pytest_twisted.ensureDeferred
async def test_writing_again_replaces_the_content(server: TestServer) -> None:
    alice = await server.register("alice")
    await alice.put(global_path(alice, "m.ignored_user_list"),
                    {"ignored_users": {"@bob:test.local": {}}})

    await alice.put(global_path(alice, "m.ignored_user_list"), {"ignored_users": {}})

    got = await alice.get(global_path(alice, "m.ignored_user_list"))
    assert got.body == {"ignored_users": {}}


@pytest_twisted.ensureDeferred
async def test_room_account_data_round_trips_apart_from_global(server: TestServer) -> None:
    alice = await server.register("alice")
    await alice.put(room_path(alice, ROOM, "m.tag"), {"tags": {"u.work": {"order": 0.5}}})
    await alice.put(room_path(alice, "!other:test.local", "m.tag"), {"tags": {}})

    here = await alice.get(room_path(alice, ROOM, "m.tag"))
    there = await alice.get(room_path(alice, "!other:test.local", "m.tag"))
    global_ = await alice.get(global_path(alice, "m.tag"))

    assert (here.code, here.body) == (200, {"tags": {"u.work": {"order": 0.5}}})
    assert there.body == {"tags": {}}
    assert (global_.code, global_.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_missing_account_data_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    for path in (global_path(alice, "com.example.none"),
                 room_path(alice, ROOM, "com.example.none")):
        resp = await alice.get(path)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), path


@pytest_twisted.ensureDeferred
async def test_account_data_of_other_users_is_forbidden(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await alice.put(global_path(alice, "com.example.secret"), {"pin": "1234"})
    await alice.put(room_path(alice, ROOM, "com.example.secret"), {"pin": "1234"})

    for path in (global_path(alice, "com.example.secret"),
                 room_path(alice, ROOM, "com.example.secret")):
        read = await bob.get(path)
        write = await bob.put(path, {"pin": "0000"})
        assert (read.code, read.body["errcode"]) == (403, "M_FORBIDDEN")
        assert (write.code, write.body["errcode"]) == (403, "M_FORBIDDEN")
        still = await alice.get(path)
        assert still.body == {"pin": "1234"}


@pytest_twisted.ensureDeferred
async def test_content_must_be_a_json_object(server: TestServer) -> None:
    alice = await server.register("alice")
    for path in (global_path(alice, "com.example.x"), room_path(alice, ROOM, "com.example.x")):
        for body in ([1, 2], "text", 42, None):
            resp = await alice.put(path, raw=json.dumps(body).encode())
            assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), body
        broken = await alice.put(path, raw=b"{not json")
        assert (broken.code, broken.body["errcode"]) == (400, "M_NOT_JSON")
        got = await alice.get(path)
        assert got.code == 404


@pytest_twisted.ensureDeferred
async def test_server_managed_types_cannot_be_set(server: TestServer) -> None:
    alice = await server.register("alice")
    for data_type in ("m.push_rules", "m.fully_read"):
        for path in (global_path(alice, data_type), room_path(alice, ROOM, data_type)):
            resp = await alice.put(path, {"event_id": "$x"})
            assert (resp.code, resp.body["errcode"]) == (405, "M_BAD_JSON"), path
            got = await alice.get(path)
            if path == global_path(alice, "m.push_rules"):
                # nothing stored: the user's rules are still the defaults
                assert got.code == 200 and "event_id" not in got.body
                assert got.body["global"]["override"][0]["rule_id"] == ".m.rule.master"
            else:
                assert got.code == 404


@pytest_twisted.ensureDeferred
async def test_malformed_room_id_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    for bad in ("room:test.local", "!", "%23alias:test.local", "!a%20b:test.local"):
        put = await alice.put(room_path(alice, bad, "m.tag"), {"tags": {}})
        get = await alice.get(room_path(alice, bad, "m.tag"))
        assert (put.code, put.body["errcode"]) == (400, "M_INVALID_PARAM"), bad
        assert (get.code, get.body["errcode"]) == (400, "M_INVALID_PARAM"), bad


@pytest_twisted.ensureDeferred
async def test_overlong_type_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.put(global_path(alice, "t" * 256), {})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_strings_of_any_kind_survive_storage(server: TestServer) -> None:
    alice = await server.register("alice")
    raw = b'{"nul": "a\\u0000b", "quote": "\\"\'"}'
    # a lone surrogate has no UTF-8 form: not JSON a server can keep
    lone = await alice.put(global_path(alice, "com.example.odd"), raw=b'{"lone": "\\ud800"}')

    put = await alice.put(global_path(alice, "com.example.odd"), raw=raw)
    got = await alice.get(global_path(alice, "com.example.odd"))

    assert (lone.code, lone.body["errcode"]) == (400, "M_NOT_JSON")
    assert put.code == 200
    assert got.body == {"nul": "a\u0000b", "quote": "\"'"}


@pytest_twisted.ensureDeferred
async def test_each_write_takes_a_new_global_stream_position(server: TestServer) -> None:
    alice = await server.register("alice")
    before = await current_stream_id(server.hs.db)

    await alice.put(global_path(alice, "com.example.a"), {"n": 1})
    after_one = await current_stream_id(server.hs.db)
    await alice.put(room_path(alice, ROOM, "com.example.a"), {"n": 2})
    after_two = await current_stream_id(server.hs.db)

    assert before < after_one < after_two
    changed, by_room = await server.hs.stores.account_data.get_account_data_since(
        alice.user_id or "", after_one)
    assert changed == {}
    assert by_room == {ROOM: {"com.example.a": {"n": 2}}}


@pytest_twisted.ensureDeferred
async def test_a_waiting_sync_wakes_with_the_users_new_account_data(server: TestServer) -> None:
    """matrix-js-sdk's setAccountData waits for the echo in /sync."""
    from twisted.internet import defer, reactor, task

    from tests.helpers import create_room

    alice = await server.register("alice")
    room_id = await create_room(alice)
    since = (await alice.get(f"{V3}/sync", params={"timeout": "0"})).body["next_batch"]

    async def write_while_waiting(path: str) -> Any:
        waiting = defer.ensureDeferred(alice.get(
            f"{V3}/sync", params={"timeout": "20000", "since": since}))
        await task.deferLater(reactor, 0.2, lambda: None)
        assert not waiting.called
        assert (await alice.put(path, {"written": path})).code == 200
        return (await waiting).body

    # a sync that missed the write would answer at its timeout, empty
    body = await write_while_waiting(global_path(alice, "m.direct"))
    assert {"type": "m.direct", "content": {"written": global_path(alice, "m.direct")}} \
        in body["account_data"]["events"]
    since = body["next_batch"]
    path = room_path(alice, room_id, "com.example.x")
    body = await write_while_waiting(path)
    assert {"type": "com.example.x", "content": {"written": path}} \
        in body["rooms"]["join"][room_id]["account_data"]["events"]
