"""Space hierarchies across servers: our /hierarchy federation endpoint, and a
client walk that asks another server about the rooms we are not in."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.federation.client import FederationError
from tests.federation.harness import server_name
from tests.federation.test_rooms import q
from tests.harness import Client
from tests.helpers import create_public_room as create_room

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


async def add_child(client: Client, space_id: str, child_id: str, via: str,
                    **content: Any) -> None:
    resp = await client.put(f"{V3}/rooms/{q(space_id)}/state/m.space.child/{q(child_id)}",
                            {"via": [via], **content})
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_a_walk_asks_the_other_server_about_rooms_we_are_not_in(
        federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    here = server_name(a)
    space = await create_room(alice, name="Space", creation_content={"type": "m.space"})
    sub = await create_room(alice, name="Sub", creation_content={"type": "m.space"})
    lobby = await create_room(alice, name="Lobby")
    open_room = await create_room(alice, name="Open")
    secret = await create_room(alice, name="Secret", preset="private_chat")
    await add_child(alice, space, lobby, here, order="a")
    await add_child(alice, space, sub, here, order="b")
    await add_child(alice, sub, open_room, here)
    await add_child(alice, sub, secret, here)

    joined = await bob.post(f"{V3}/join/{q(space)}", params={"server_name": here})
    assert joined.code == 200, joined.body

    resp = await bob.get(f"{V1}/rooms/{q(space)}/hierarchy")

    assert resp.code == 200, resp.body
    rooms = {r["room_id"]: r for r in resp.body["rooms"]}
    assert list(rooms) == [space, lobby, sub, open_room]
    assert rooms[lobby]["name"] == "Lobby"
    assert rooms[lobby]["num_joined_members"] == 1
    assert rooms[sub]["room_type"] == "m.space"
    # the private room is listed as a child, but bob may not see it
    assert {c["state_key"] for c in rooms[sub]["children_state"]} == {open_room, secret}
    assert all("allowed_room_ids" not in r for r in rooms.values())


@pytest_twisted.ensureDeferred
async def test_the_federation_endpoint_answers_what_the_asker_may_see(
        federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    here = server_name(a)
    space = await create_room(alice, name="Space", creation_content={"type": "m.space"})
    public = await create_room(alice, name="Public")
    secret = await create_room(alice, name="Secret", preset="private_chat")
    await add_child(alice, space, public, here, suggested=True)
    await add_child(alice, space, secret, here)
    await add_child(alice, space, "!elsewhere:unknown.example", "unknown.example")
    client = b.hs.federation_client
    path = f"/_matrix/federation/v1/hierarchy/{q(space)}"

    answer = await client.get_json(here, path)
    suggested = await client.get_json(here, path, {"suggested_only": "true"})

    assert answer["room"]["room_id"] == space
    assert answer["room"]["room_type"] == "m.space"
    assert {c["state_key"] for c in answer["room"]["children_state"]} == {
        public, secret, "!elsewhere:unknown.example"}
    assert [c["room_id"] for c in answer["children"]] == [public]
    assert answer["inaccessible_children"] == [secret]
    assert [c["state_key"] for c in suggested["room"]["children_state"]] == [public]

    for room_id in (secret, "!unknown:nowhere.example"):
        try:
            await client.get_json(here, f"/_matrix/federation/v1/hierarchy/{q(room_id)}")
        except FederationError as e:
            assert (e.code, e.errcode) == (404, "M_NOT_FOUND")
        else:
            raise AssertionError("expected 404")
    try:
        await client.get_json(here, path, {"suggested_only": "maybe"})
    except FederationError as e:
        assert (e.code, e.errcode) == (400, "M_INVALID_PARAM")
    else:
        raise AssertionError("expected 400")


def test_malformed_answers_from_other_servers_are_reduced_or_dropped() -> None:
    from homeserver.rooms.hierarchy import _check_remote_answer, children_of

    room = "!space:there.example"
    assert _check_remote_answer(room, ["not", "an", "object"]) is None
    assert _check_remote_answer(room, {"room": {"room_id": "!other:there.example"}}) is None
    answer = _check_remote_answer(room, {
        "room": {"room_id": room, "num_joined_members": "many", "name": 7,
                 "children_state": ["junk", {"type": "m.space.child", "state_key": "!a:x",
                                             "content": {"via": ["x"]}, "extra": 1}]},
        "children": [{"room_id": "!a:x", "world_readable": "yes"}, {"no": "id"}, 3],
        "inaccessible_children": ["!b:x", 5],
    })
    assert answer is not None
    assert answer["room"]["num_joined_members"] == 0
    assert "name" not in answer["room"]
    assert [c["room_id"] for c in answer["children"]] == ["!a:x"]
    assert answer["children"][0]["world_readable"] is False
    assert answer["inaccessible_children"] == ["!b:x"]
    assert children_of(answer["room"]["children_state"], False) == [
        {"type": "m.space.child", "state_key": "!a:x", "content": {"via": ["x"]}}]


def test_children_are_ordered_as_the_spec_says() -> None:
    from homeserver.rooms.hierarchy import children_of

    def child(room: str, ts: int, **content: Any) -> dict[str, Any]:
        return {"type": "m.space.child", "state_key": room, "origin_server_ts": ts,
                "content": {"via": ["x"], **content}}

    events = [child("!d", 1), child("!c", 2, order="b"), child("!b", 3, order="a"),
              child("!a", 1), child("!e", 0, order="\n bad"), child("!f", 0, order="x" * 51),
              child("!g", 5, suggested=True, order="a")]
    ordered = [c["state_key"] for c in children_of(events, False)]
    assert ordered == ["!b", "!g", "!c", "!e", "!f", "!a", "!d"]
    assert [c["state_key"] for c in children_of(events, True)] == ["!g"]


@pytest_twisted.ensureDeferred
async def test_a_room_summary_of_a_room_on_another_server(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    here = server_name(a)
    public = await create_room(alice, name="Lobby", topic="Say hello",
                               room_alias_name="lobby")
    secret = await create_room(alice, name="Secret", preset="private_chat")

    by_alias = await bob.get(f"{V1}/room_summary/{q('#lobby:' + here)}")
    assert by_alias.code == 200, by_alias.body
    assert by_alias.body["room_id"] == public
    assert by_alias.body["name"] == "Lobby"
    assert by_alias.body["topic"] == "Say hello"
    assert by_alias.body["num_joined_members"] == 1
    assert by_alias.body["membership"] == "leave"
    assert "children_state" not in by_alias.body

    hidden = await bob.get(f"{V1}/room_summary/{q(secret)}", params={"via": here})
    assert hidden.code == 404
    # a room we know nothing of, with no server to ask
    nowhere = await bob.get(f"{V1}/room_summary/{q('!elsewhere:' + here)}")
    assert nowhere.code == 404
