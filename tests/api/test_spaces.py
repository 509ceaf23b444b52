"""Space hierarchies (one server) and mutual rooms."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.api.test_rooms import BOB, V3, create_room, invite, join
from tests.harness import Client, TestServer

V1 = "/_matrix/client/v1"


async def create_space(client: Client, **body: Any) -> str:
    return await create_room(client, creation_content={"type": "m.space"}, **body)


async def add_child(client: Client, space_id: str, child_id: str, **content: Any) -> None:
    resp = await client.put(f"{V3}/rooms/{space_id}/state/m.space.child/{child_id}",
                            {"via": ["test.local"], **content})
    assert resp.code == 200, resp.body


async def hierarchy(client: Client, room_id: str, **params: str) -> Any:
    return await client.get(f"{V1}/rooms/{room_id}/hierarchy", params=params)


def room_ids(body: dict[str, Any]) -> list[str]:
    return [r["room_id"] for r in body["rooms"]]


@pytest_twisted.ensureDeferred
async def test_hierarchy_walks_the_space_depth_first_in_order(server: TestServer) -> None:
    alice = await server.register("alice")
    space = await create_space(alice, preset="public_chat", name="Space", topic="All of it")
    sub = await create_space(alice, preset="public_chat", name="Sub")
    a = await create_room(alice, preset="public_chat", name="A")
    b = await create_room(alice, preset="public_chat", name="B")
    c = await create_room(alice, preset="public_chat", name="C")
    await add_child(alice, space, a, order="b")
    await add_child(alice, space, sub, order="a")
    await add_child(alice, sub, c)
    await add_child(alice, space, b)  # no order: after those with one
    # not children: no via, or an empty content (a removed child)
    await alice.put(f"{V3}/rooms/{space}/state/m.space.child/!x:test.local", {})
    await alice.put(f"{V3}/rooms/{space}/state/m.space.child/!y:test.local", {"via": []})

    resp = await hierarchy(alice, space)

    assert resp.code == 200, resp.body
    assert room_ids(resp.body) == [space, sub, c, a, b]
    top = resp.body["rooms"][0]
    assert {k: top[k] for k in ("name", "topic", "room_type", "join_rule", "world_readable",
                                "guest_can_join", "num_joined_members")} == {
        "name": "Space", "topic": "All of it", "room_type": "m.space", "join_rule": "public",
        "world_readable": False, "guest_can_join": False, "num_joined_members": 1}
    assert [c["state_key"] for c in top["children_state"]] == [sub, a, b]
    assert all("origin_server_ts" in c for c in top["children_state"])
    assert "allowed_room_ids" not in top
    assert "next_batch" not in resp.body


@pytest_twisted.ensureDeferred
async def test_hierarchy_pages_with_limit_and_keeps_its_options(server: TestServer) -> None:
    alice = await server.register("alice")
    space = await create_space(alice, preset="public_chat")
    children = [await create_room(alice, preset="public_chat") for _ in range(4)]
    for i, child in enumerate(children):
        await add_child(alice, space, child, order=str(i))

    seen: list[str] = []
    page = await hierarchy(alice, space, limit="2")
    pages = 1
    while True:
        assert page.code == 200, page.body
        assert len(page.body["rooms"]) <= 2
        seen += room_ids(page.body)
        token = page.body.get("next_batch")
        if token is None:
            break
        page = await hierarchy(alice, space, limit="2", **{"from": token})
        pages += 1
    assert seen == [space, *children]
    assert pages == 3

    first = await hierarchy(alice, space, limit="1")
    changed = await hierarchy(alice, space, limit="1", suggested_only="true",
                              **{"from": first.body["next_batch"]})
    unknown = await hierarchy(alice, space, **{"from": "nonsense"})
    assert (changed.code, changed.body["errcode"]) == (400, "M_INVALID_PARAM")
    assert (unknown.code, unknown.body["errcode"]) == (400, "M_INVALID_PARAM")
    for bad in ({"limit": "0"}, {"max_depth": "-1"}, {"suggested_only": "yes"}):
        resp = await hierarchy(alice, space, **bad)
        assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM"), bad


@pytest_twisted.ensureDeferred
async def test_suggested_only_and_max_depth(server: TestServer) -> None:
    alice = await server.register("alice")
    space = await create_space(alice, preset="public_chat")
    sub = await create_space(alice, preset="public_chat")
    deep = await create_room(alice, preset="public_chat")
    other = await create_room(alice, preset="public_chat")
    await add_child(alice, space, sub, suggested=True)
    await add_child(alice, space, other)
    await add_child(alice, sub, deep, suggested=True)

    suggested = await hierarchy(alice, space, suggested_only="true")
    shallow = await hierarchy(alice, space, max_depth="1")
    only_root = await hierarchy(alice, space, max_depth="0")

    assert room_ids(suggested.body) == [space, sub, deep]
    assert set(room_ids(shallow.body)) == {space, sub, other}
    assert room_ids(only_root.body) == [space]
    assert only_root.body["rooms"][0]["children_state"] == []


@pytest_twisted.ensureDeferred
async def test_hierarchy_shows_only_rooms_the_user_may_see(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    space = await create_space(alice, preset="public_chat")
    public = await create_room(alice, preset="public_chat")
    private = await create_room(alice, preset="private_chat")
    invited = await create_room(alice, preset="private_chat")
    restricted = await create_room(alice, preset="private_chat", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    for child in (public, private, invited, restricted):
        await add_child(alice, space, child)
    assert (await invite(alice, invited, BOB)).code == 200

    # bob is not in the space: the public space shows what he may join or peek
    outside = await hierarchy(bob, space)
    assert set(room_ids(outside.body)) == {space, public, invited}
    # once in the space, the room restricted to its members shows too
    assert (await join(bob, space)).code == 200
    inside = await hierarchy(bob, space)
    assert set(room_ids(inside.body)) == {space, public, invited, restricted}

    # a private root is 403 to outsiders, as is an unknown room
    closed = await hierarchy(bob, private)
    unknown = await hierarchy(bob, "!nowhere:test.local")
    assert (closed.code, closed.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (unknown.code, unknown.body["errcode"]) == (403, "M_FORBIDDEN")


# -- mutual rooms ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mutual_rooms_lists_rooms_both_have_joined(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    shared = [await create_room(alice, preset="public_chat") for _ in range(3)]
    for room_id in shared:
        assert (await join(bob, room_id)).code == 200
    await create_room(alice)  # alice alone
    invited = await create_room(alice)
    await invite(alice, invited, BOB)  # invited is not joined

    for path in (f"{V1}/mutual_rooms", f"{V1}/user/mutual_rooms",
                 "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms"):
        resp = await bob.get(path, params={"user_id": alice.user_id or ""})
        assert resp.code == 200, resp.body
        assert sorted(resp.body["joined"]) == sorted(shared)
        assert resp.body["count"] == 3
        assert "next_batch" not in resp.body

    nobody = await bob.get(f"{V1}/mutual_rooms", params={"user_id": "@ghost:test.local"})
    assert nobody.body == {"joined": [], "count": 0}


@pytest_twisted.ensureDeferred
async def test_mutual_rooms_pages_and_refuses_bad_requests(server: TestServer) -> None:
    from homeserver.api.client import spaces

    alice = await server.register("alice")
    bob = await server.register("bob")
    shared = [await create_room(alice, preset="public_chat") for _ in range(5)]
    for room_id in shared:
        assert (await join(bob, room_id)).code == 200
    old, spaces.MUTUAL_ROOMS_BATCH = spaces.MUTUAL_ROOMS_BATCH, 2
    try:
        got: list[str] = []
        params = {"user_id": alice.user_id or ""}
        while True:
            resp = await bob.get(f"{V1}/mutual_rooms", params=params)
            assert resp.code == 200, resp.body
            assert resp.body["count"] == 5
            got += resp.body["joined"]
            if "next_batch" not in resp.body:
                break
            params["from"] = resp.body["next_batch"]
    finally:
        spaces.MUTUAL_ROOMS_BATCH = old
    assert got == sorted(shared)

    for params in ({"user_id": bob.user_id or ""}, {"user_id": "not-a-user"},
                   {"user_id": alice.user_id or "", "from": "garbage!"}):
        resp = await bob.get(f"{V1}/mutual_rooms", params=params)
        assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM"), params
    missing = await bob.get(f"{V1}/mutual_rooms")
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")


@pytest_twisted.ensureDeferred
async def test_nio_pages_through_a_space(server: TestServer) -> None:
    """matrix-nio, an independent client, reads the hierarchy and its schema holds."""
    import nio

    from tests.interop.test_nio import call

    alice = await server.register("alice")
    space = await create_space(alice, preset="public_chat", name="Space")
    children = [await create_room(alice, preset="public_chat", name=f"R{i}")
                for i in range(3)]
    for i, child in enumerate(children):
        await add_child(alice, space, child, order=str(i), suggested=i != 1)
    client = nio.AsyncClient(server.base_url, alice.user_id or "",
                             config=nio.AsyncClientConfig(store_sync_tokens=False,
                                                          encryption_enabled=False))
    client.access_token = alice.access_token or ""
    try:
        seen: list[str] = []
        token: str | None = None
        while True:
            resp = await call(client.space_get_hierarchy(space, from_page=token, limit=2))
            assert isinstance(resp, nio.SpaceGetHierarchyResponse), resp
            seen += [r["room_id"] for r in resp.rooms]
            token = resp.next_batch
            if not token:
                break
        suggested = await call(client.space_get_hierarchy(space, suggested_only=True))
    finally:
        await call(client.close())
    assert seen == [space, *children]
    assert isinstance(suggested, nio.SpaceGetHierarchyResponse), suggested
    assert [r["room_id"] for r in suggested.rooms] == [space, children[0], children[2]]
