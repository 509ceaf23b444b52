"""Room tags: a user's labels on rooms, kept as m.tag room account data."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.api.test_rooms import V3, create_room
from tests.harness import Client, TestServer
from tests.sync.test_sync import sync


def tags_path(client: Client, room_id: str, tag: str | None = None) -> str:
    path = f"{V3}/user/{client.user_id}/rooms/{room_id}/tags"
    return path if tag is None else f"{path}/{tag}"


def room_account_data(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = body["rooms"]["join"].get(room_id, {})
    return {e["type"]: e["content"] for e in room.get("account_data", {}).get("events", [])}


@pytest_twisted.ensureDeferred
async def test_tags_are_added_listed_and_removed(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)

    assert (await alice.get(tags_path(alice, room_id))).body == {"tags": {}}
    assert (await alice.put(tags_path(alice, room_id, "m.favourite"), {"order": 0.25})).code \
        == 200
    assert (await alice.put(tags_path(alice, room_id, "u.work"), {})).code == 200
    listed = await alice.get(tags_path(alice, room_id))
    assert listed.body == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}

    assert (await alice.delete(tags_path(alice, room_id, "m.favourite"))).code == 200
    assert (await alice.get(tags_path(alice, room_id))).body == {"tags": {"u.work": {}}}
    # removing what is not there is fine
    assert (await alice.delete(tags_path(alice, room_id, "m.lowpriority"))).code == 200


@pytest_twisted.ensureDeferred
async def test_tags_arrive_in_sync_as_room_account_data(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    first = await sync(alice)

    await alice.put(tags_path(alice, room_id, "m.favourite"), {"order": 0.5})
    later = await sync(alice, since=first["next_batch"])

    assert room_account_data(later, room_id)["m.tag"] == {
        "tags": {"m.favourite": {"order": 0.5}}}
    # and through the account data API, the same item
    stored = await alice.get(f"{V3}/user/{alice.user_id}/rooms/{room_id}/account_data/m.tag")
    assert stored.body == {"tags": {"m.favourite": {"order": 0.5}}}


@pytest_twisted.ensureDeferred
async def test_tags_set_at_once_are_all_kept(server: TestServer) -> None:
    from twisted.internet import defer

    alice = await server.register("alice")
    room_id = await create_room(alice)
    names = [f"u.tag{i}" for i in range(6)]

    results = await defer.gatherResults([
        defer.ensureDeferred(alice.put(tags_path(alice, room_id, n), {})) for n in names])

    assert all(r.code == 200 for r in results)
    listed = await alice.get(tags_path(alice, room_id))
    assert sorted(listed.body["tags"]) == names


@pytest_twisted.ensureDeferred
async def test_bad_tags_and_other_users_are_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice)

    for body in ({"order": 2}, {"order": -0.1}, {"order": "0.5"}, {"order": True}):
        resp = await alice.put(tags_path(alice, room_id, "u.x"), body)
        assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM"), body
    resp = await alice.put(tags_path(alice, room_id, "u." + "x" * 300), {})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")
    resp = await alice.put(tags_path(alice, room_id, "u.x"), raw=b"[1]")
    assert resp.code == 400

    # bob may neither read nor write alice's tags
    other = f"{V3}/user/{alice.user_id}/rooms/{room_id}/tags"
    assert (await bob.get(other)).code == 403
    assert (await bob.put(f"{other}/u.x", {})).code == 403
    assert (await bob.delete(f"{other}/u.x")).code == 403
