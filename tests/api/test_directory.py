"""Room aliases, canonical-alias checks and the published room directory."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted

from homeserver.errors import MatrixError
from tests.harness import Client, TestServer
from tests.helpers import create_public_room, join

V3 = "/_matrix/client/v3"
SERVER = "test.local"


# -- helpers: the common moves --------------------------------------------------


def alias_path(alias: str) -> str:
    return f"{V3}/directory/room/{quote(alias, safe='')}"


async def put_alias(client: Client, alias: str, room_id: str) -> Any:
    return await client.put(alias_path(alias), {"room_id": room_id})


async def make_alias(client: Client, alias: str, room_id: str) -> None:
    resp = await put_alias(client, alias, room_id)
    assert resp.code == 200, resp.body


async def resolve(client: Client, alias: str) -> Any:
    return await client.get(alias_path(alias), token=None)


async def local_aliases(client: Client, room_id: str) -> Any:
    return await client.get(f"{V3}/rooms/{room_id}/aliases")


async def set_visibility(client: Client, room_id: str, visibility: str) -> Any:
    return await client.put(f"{V3}/directory/list/room/{room_id}", {"visibility": visibility})


async def publish(client: Client, room_id: str) -> None:
    resp = await set_visibility(client, room_id, "public")
    assert resp.code == 200, resp.body


async def set_state(client: Client, room_id: str, event_type: str, content: Any) -> None:
    resp = await client.put(f"{V3}/rooms/{room_id}/state/{event_type}", content)
    assert resp.code == 200, resp.body


async def public_rooms(client: Client, body: Any = None, **params: str) -> Any:
    if body is None:
        resp = await client.get(f"{V3}/publicRooms", params=params or None)
    else:
        resp = await client.post(f"{V3}/publicRooms", body, params=params or None)
    assert resp.code == 200, resp.body
    return resp.body


def assert_error(resp: Any, code: int, errcode: str) -> None:
    assert (resp.code, resp.body.get("errcode")) == (code, errcode), resp.body


# -- aliases --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_alias_is_created_resolved_listed_and_deleted(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)

    assert (await put_alias(alice, "#hall:test.local", room_id)).code == 200

    resolved = await resolve(server.client(), "#hall:test.local")
    assert resolved.code == 200
    assert resolved.body == {"room_id": room_id, "servers": [SERVER]}
    assert (await local_aliases(alice, room_id)).body == {"aliases": ["#hall:test.local"]}

    assert (await alice.delete(alias_path("#hall:test.local"))).code == 200
    assert_error(await resolve(alice, "#hall:test.local"), 404, "M_NOT_FOUND")
    assert (await local_aliases(alice, room_id)).body == {"aliases": []}


@pytest_twisted.ensureDeferred
async def test_alias_can_hold_unicode(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    await make_alias(alice, "#café☕:test.local", room_id)
    assert (await resolve(alice, "#café☕:test.local")).body["room_id"] == room_id


@pytest_twisted.ensureDeferred
async def test_taken_alias_is_409(server: TestServer) -> None:
    alice = await server.register("alice")
    first = await create_public_room(alice)
    second = await create_public_room(alice)
    await make_alias(alice, "#hall:test.local", first)

    resp = await put_alias(alice, "#hall:test.local", second)

    assert_error(resp, 409, "M_UNKNOWN")
    assert (await resolve(alice, "#hall:test.local")).body["room_id"] == first


@pytest_twisted.ensureDeferred
async def test_alias_of_another_server_cannot_be_created(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    assert_error(await put_alias(alice, "#hall:elsewhere.org", room_id), 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("alias", ["hall:test.local", "#hall", "#:test.local",
                                   "#two words:test.local", "#hall:bad_server!",
                                   "#" + "x" * 250 + ":test.local"])
@pytest_twisted.ensureDeferred
async def test_malformed_alias_is_400(server: TestServer, alias: str) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    assert_error(await put_alias(alice, alias, room_id), 400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_alias_needs_an_existing_room(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await put_alias(alice, "#hall:test.local", "!nowhere:test.local")
    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_non_member_cannot_create_alias_but_server_admin_can(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    root = await server.register("root", admin=True)
    room_id = await create_public_room(alice)

    assert_error(await put_alias(bob, "#hall:test.local", room_id), 403, "M_FORBIDDEN")
    assert (await put_alias(root, "#hall:test.local", room_id)).code == 200


@pytest_twisted.ensureDeferred
async def test_any_joined_member_may_create_alias(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_public_room(alice)
    await join(bob, room_id)
    assert (await put_alias(bob, "#bobs:test.local", room_id)).code == 200


@pytest_twisted.ensureDeferred
async def test_unknown_alias_resolves_to_404(server: TestServer) -> None:
    client = server.client()
    assert_error(await resolve(client, "#nothing:test.local"), 404, "M_NOT_FOUND")
    # another server's alias is asked of it: unreachable (a blacklisted address) is 502
    assert_error(await resolve(client, "#nothing:192.0.2.1"), 502, "M_UNKNOWN")
    assert_error(await resolve(client, "nothing"), 400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_resolved_alias_lists_servers_of_the_room(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    await make_alias(alice, "#hall:test.local", room_id)
    assert (await resolve(alice, "#hall:test.local")).body["servers"] == [SERVER]


@pytest_twisted.ensureDeferred
async def test_who_may_delete_an_alias(server: TestServer) -> None:
    alice = await server.register("alice")  # room creator, power 100
    bob = await server.register("bob")  # joined member, made the alias
    carol = await server.register("carol")  # joined member, power 0
    dave = await server.register("dave")  # not in the room
    root = await server.register("root", admin=True)
    room_id = await create_public_room(alice)
    await join(bob, room_id)
    await join(carol, room_id)

    for n in range(3):
        await make_alias(bob, f"#bob{n}:test.local", room_id)

    assert_error(await carol.delete(alias_path("#bob0:test.local")), 403, "M_FORBIDDEN")
    assert_error(await dave.delete(alias_path("#bob0:test.local")), 403, "M_FORBIDDEN")
    assert (await bob.delete(alias_path("#bob0:test.local"))).code == 200
    assert (await alice.delete(alias_path("#bob1:test.local"))).code == 200
    assert (await root.delete(alias_path("#bob2:test.local"))).code == 200
    assert_error(await bob.delete(alias_path("#bob2:test.local")), 404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_deleted_alias_leaves_the_canonical_alias_event(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    await make_alias(alice, "#main:test.local", room_id)
    await make_alias(alice, "#other:test.local", room_id)
    await set_state(alice, room_id, "m.room.canonical_alias",
                    {"alias": "#main:test.local", "alt_aliases": ["#other:test.local"]})

    assert (await alice.delete(alias_path("#main:test.local"))).code == 200

    resp = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.canonical_alias")
    assert resp.body == {"alt_aliases": ["#other:test.local"]}


@pytest_twisted.ensureDeferred
async def test_local_aliases_are_for_members_and_world_readable_rooms(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    root = await server.register("root", admin=True)
    private = await create_public_room(alice, preset="private_chat")
    readable = await create_public_room(alice, initial_state=[{
        "type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    await make_alias(alice, "#private:test.local", private)
    await make_alias(alice, "#readable:test.local", readable)

    assert_error(await local_aliases(bob, private), 403, "M_FORBIDDEN")
    assert_error(await local_aliases(bob, "!unknown:test.local"), 403, "M_FORBIDDEN")
    assert (await local_aliases(bob, readable)).body == {"aliases": ["#readable:test.local"]}
    assert (await local_aliases(root, private)).body == {"aliases": ["#private:test.local"]}


# -- m.room.canonical_alias -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_canonical_alias_must_point_to_the_room(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    other = await create_public_room(alice)
    await make_alias(alice, "#here:test.local", room_id)
    await make_alias(alice, "#also:test.local", room_id)
    await make_alias(alice, "#there:test.local", other)

    await hs.room_directory.validate_canonical_alias(room_id, {
        "alias": "#here:test.local", "alt_aliases": ["#also:test.local"]})
    await hs.room_directory.validate_canonical_alias(room_id, {})
    await hs.room_directory.validate_canonical_alias(room_id, {"alias": ""})

    for content in ({"alias": "#there:test.local"},
                    {"alias": "#missing:test.local"},
                    {"alt_aliases": ["#also:test.local", "#there:test.local"]},
                    {"alias": "#remote:elsewhere.org"}):
        with pytest.raises(MatrixError) as err:
            await hs.room_directory.validate_canonical_alias(room_id, content)
        assert (err.value.status, err.value.errcode) == (400, "M_BAD_ALIAS"), content


@pytest.mark.parametrize("content", [{"alias": "not-an-alias"}, {"alias": 5},
                                     {"alt_aliases": "#here:test.local"},
                                     {"alt_aliases": ["#here:test.local", "nope"]}])
@pytest_twisted.ensureDeferred
async def test_malformed_canonical_alias_is_invalid_param(server: TestServer,
                                                          content: Any) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    await make_alias(alice, "#here:test.local", room_id)
    with pytest.raises(MatrixError) as err:
        await server.hs.room_directory.validate_canonical_alias(room_id, content)
    assert (err.value.status, err.value.errcode) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_aliases_already_in_the_event_are_not_checked_again(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    await make_alias(alice, "#old:test.local", room_id)
    await make_alias(alice, "#new:test.local", room_id)
    await set_state(alice, room_id, "m.room.canonical_alias", {"alias": "#old:test.local"})
    # gone from the directory, but the room's event still names it
    await server.hs.stores.directory.delete_alias("#old:test.local")

    directory = server.hs.room_directory
    await directory.validate_canonical_alias(room_id, {"alias": "#old:test.local",
                                                       "alt_aliases": ["#new:test.local"]})
    with pytest.raises(MatrixError):
        await directory.validate_canonical_alias(room_id, {"alt_aliases": ["#old:test.local"]})


# -- room creation hooks ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_room_creation_hooks_make_the_alias_and_publish(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room_id = await create_public_room(alice)

    alias = await hs.room_directory.check_new_room_alias("lobby")
    assert alias == "#lobby:test.local"
    assert alias is not None
    await hs.room_directory.create_alias_for_new_room(alice.user_id or "", room_id, alias)
    await hs.room_directory.publish_new_room(room_id)

    assert (await resolve(alice, alias)).body["room_id"] == room_id
    resp = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.canonical_alias")
    assert resp.body == {"alias": alias}
    assert (await alice.get(f"{V3}/directory/list/room/{room_id}")).body == {
        "visibility": "public"}
    assert await hs.room_directory.check_new_room_alias(None) is None
    for localpart, errcode in (("lobby", "M_ROOM_IN_USE"), ("a b", "M_INVALID_PARAM"),
                               ("a:b", "M_INVALID_PARAM")):
        with pytest.raises(MatrixError) as err:
            await hs.room_directory.check_new_room_alias(localpart)
        assert (err.value.status, err.value.errcode) == (400, errcode)


# -- the published room directory -------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_visibility_round_trip(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    anonymous = server.client()
    path = f"{V3}/directory/list/room/{room_id}"

    assert (await anonymous.get(path)).body == {"visibility": "private"}
    assert (await set_visibility(alice, room_id, "public")).code == 200
    assert (await anonymous.get(path)).body == {"visibility": "public"}
    assert (await set_visibility(alice, room_id, "private")).code == 200
    assert (await anonymous.get(path)).body == {"visibility": "private"}
    # the spec's default
    assert (await alice.put(path, {})).code == 200
    assert (await anonymous.get(path)).body == {"visibility": "public"}


@pytest_twisted.ensureDeferred
async def test_visibility_of_unknown_room_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    path = f"{V3}/directory/list/room/!nowhere:test.local"
    assert_error(await alice.get(path), 404, "M_NOT_FOUND")
    assert_error(await set_visibility(alice, "!nowhere:test.local", "public"), 404,
                 "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_who_may_publish_a_room(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    root = await server.register("root", admin=True)
    room_id = await create_public_room(alice)
    await join(bob, room_id)

    assert_error(await set_visibility(bob, room_id, "public"), 403, "M_FORBIDDEN")
    assert_error(await set_visibility(carol, room_id, "public"), 403, "M_FORBIDDEN")
    assert_error(await set_visibility(alice, room_id, "hidden"), 400, "M_INVALID_PARAM")
    assert (await set_visibility(root, room_id, "public")).code == 200


@pytest_twisted.ensureDeferred
async def test_public_rooms_lists_published_rooms(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    listed = await create_public_room(alice, name="Cheese", topic="Tasty cheese")
    await make_alias(alice, "#cheese:test.local", listed)
    await set_state(alice, listed, "m.room.canonical_alias", {"alias": "#cheese:test.local"})
    await set_state(alice, listed, "m.room.avatar", {"url": "mxc://test.local/abc"})
    await join(bob, listed)
    await publish(alice, listed)
    await create_public_room(alice, name="Unpublished")
    invite_only = await create_public_room(alice, preset="private_chat", name="Secret")
    await publish(alice, invite_only)

    body = await public_rooms(server.client())

    assert body["chunk"] == [{
        "room_id": listed,
        "name": "Cheese",
        "topic": "Tasty cheese",
        "canonical_alias": "#cheese:test.local",
        "avatar_url": "mxc://test.local/abc",
        "num_joined_members": 2,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
    }]
    assert body["total_room_count_estimate"] == 1
    assert "next_batch" not in body and "prev_batch" not in body
    assert (await public_rooms(alice, {}))["chunk"] == body["chunk"]


@pytest_twisted.ensureDeferred
async def test_world_readable_invite_only_room_is_listed(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice, preset="private_chat", initial_state=[{
        "type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    await publish(alice, room_id)
    [entry] = (await public_rooms(alice))["chunk"]
    assert entry["room_id"] == room_id
    assert entry["world_readable"] is True
    assert entry["guest_can_join"] is True
    assert entry["join_rule"] == "invite"


@pytest_twisted.ensureDeferred
async def test_public_rooms_paginate_largest_first(server: TestServer) -> None:
    users = [await server.register(f"user{n}") for n in range(3)]
    rooms = []
    for size in (1, 3, 2):
        room_id = await create_public_room(users[0])
        for user in users[1:size]:
            await join(user, room_id)
        await publish(users[0], room_id)
        rooms.append(room_id)
    expected = [rooms[1], rooms[2], rooms[0]]
    client = users[0]

    first = await public_rooms(client, limit="2")
    assert [e["room_id"] for e in first["chunk"]] == expected[:2]
    assert "prev_batch" not in first
    assert first["total_room_count_estimate"] == 3

    second = await public_rooms(client, {"limit": 2, "since": first["next_batch"]})
    assert [e["room_id"] for e in second["chunk"]] == expected[2:]
    assert "next_batch" not in second

    back = await public_rooms(client, limit="2", since=second["prev_batch"])
    assert [e["room_id"] for e in back["chunk"]] == expected[:2]
    assert "prev_batch" not in back and back["next_batch"] == first["next_batch"]

    one = await public_rooms(client, limit="1", since=first["next_batch"])
    assert [e["room_id"] for e in one["chunk"]] == expected[2:]
    middle = await public_rooms(client, limit="1", since=one["prev_batch"])
    assert [e["room_id"] for e in middle["chunk"]] == expected[1:2]
    assert "prev_batch" in middle and "next_batch" in middle

    assert_error(await client.get(f"{V3}/publicRooms", params={"since": "garbage"}), 400,
                 "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_public_rooms_search_and_room_types(server: TestServer) -> None:
    alice = await server.register("alice")
    cheese = await create_public_room(alice, name="Cheese Lovers")
    wine = await create_public_room(alice, topic="All about WINE")
    space = await create_public_room(alice, name="Space", creation_content={"type": "m.space"})
    await make_alias(alice, "#bread:test.local", wine)
    await set_state(alice, wine, "m.room.canonical_alias", {"alias": "#bread:test.local"})
    for room_id in (cheese, wine, space):
        await publish(alice, room_id)

    async def search(**search_filter: Any) -> set[str]:
        body = await public_rooms(alice, {"filter": search_filter})
        return {e["room_id"] for e in body["chunk"]}

    assert await search(generic_search_term="cheese") == {cheese}
    assert await search(generic_search_term="wine") == {wine}
    assert await search(generic_search_term="BREAD") == {wine}
    assert await search(generic_search_term=space) == {space}
    assert await search(generic_search_term="nothing like it") == set()
    assert await search(room_types=["m.space"]) == {space}
    assert await search(room_types=[None]) == {cheese, wine}
    assert await search(room_types=[None, "m.space"]) == {cheese, wine, space}
    assert await search() == {cheese, wine, space}
    [entry] = (await public_rooms(alice, {"filter": {"room_types": ["m.space"]}}))["chunk"]
    assert entry["room_type"] == "m.space"


@pytest_twisted.ensureDeferred
async def test_public_rooms_of_an_unreachable_server_are_502(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(f"{V3}/publicRooms", params={"server": "192.0.2.1"})
    assert_error(resp, 502, "M_UNKNOWN")
    assert (await alice.get(f"{V3}/publicRooms", params={"server": SERVER})).code == 200
    assert_error(await server.client().post(f"{V3}/publicRooms", {}), 401, "M_MISSING_TOKEN")


# -- through the createRoom and PUT /state endpoints --------------------------------

@pytest_twisted.ensureDeferred
async def test_create_room_with_alias_name_and_public_visibility(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice, room_alias_name="lobby", visibility="public")

    assert (await resolve(alice, "#lobby:test.local")).body["room_id"] == room_id
    resp = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.canonical_alias")
    assert resp.body == {"alias": "#lobby:test.local"}
    assert [e["room_id"] for e in (await public_rooms(alice))["chunk"]] == [room_id]
    again = await alice.post(f"{V3}/createRoom", {"room_alias_name": "lobby"})
    assert_error(again, 400, "M_ROOM_IN_USE")


@pytest_twisted.ensureDeferred
async def test_sending_canonical_alias_checks_the_aliases(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(alice)
    other = await create_public_room(alice)
    await make_alias(alice, "#here:test.local", room_id)
    await make_alias(alice, "#there:test.local", other)
    path = f"{V3}/rooms/{room_id}/state/m.room.canonical_alias"

    assert_error(await alice.put(path, {"alias": "#there:test.local"}), 400, "M_BAD_ALIAS")
    assert_error(await alice.put(path, {"alias": "nope"}), 400, "M_INVALID_PARAM")
    assert (await alice.put(path, {"alias": "#here:test.local"})).code == 200
