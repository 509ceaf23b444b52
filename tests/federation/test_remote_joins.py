"""Joining a room on another server, as the joining user and the peer see it:
by the other server's alias, the resident server's refusals passed on as
given, the v1 send_join of servers without v2, a send_join answer without
the room's create event, a join replayed by a third server, and what moves
when we join a room that replaces one of ours."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.errors import MatrixError
from homeserver.federation.client import FederationError
from tests.federation.harness import server_name
from tests.federation.test_rooms import _joined, members, q, wait_for
from tests.harness import Client, TestServer
from tests.helpers import create_public_room

V3 = "/_matrix/client/v3"


async def aliased_room(a: TestServer, alice: Client, localpart: str) -> tuple[str, str]:
    room_id = await create_public_room(alice, room_alias_name=localpart)
    return room_id, f"#{localpart}:{server_name(a)}"


@pytest_twisted.ensureDeferred
async def test_join_by_another_servers_alias(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id, alias = await aliased_room(a, alice, "lobby")

    resp = await bob.post(f"{V3}/join/{q(alias)}", {})

    assert resp.code == 200, resp.body
    assert resp.body == {"room_id": room_id}
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))
    assert (await members(bob, room_id))[bob.user_id or ""] == "join"
    # an alias the other server does not have: its 404, at once
    resp = await bob.post(f"{V3}/join/{q('#nowhere:' + server_name(a))}", {})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_make_join_refusal_reaches_the_client_as_given(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    _, alias = await aliased_room(a, alice, "old")

    async def refuse(*_: Any) -> Any:
        raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "y u no upgrade",
                          room_version="org.example.future")

    a.hs.federation_membership.make_membership = refuse  # type: ignore[method-assign]
    resp = await bob.post(f"{V3}/join/{q(alias)}", {})

    assert resp.code == 400, resp.body
    assert resp.body["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION"
    assert resp.body["room_version"] == "org.example.future"
    assert (await bob.get(f"{V3}/joined_rooms")).body["joined_rooms"] == []


@pytest_twisted.ensureDeferred
async def test_send_join_falls_back_to_v1_where_v2_is_unknown(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id, alias = await aliased_room(a, alice, "older")
    client = b.hs.federation_client
    real_put = client.put_json
    asked: list[str] = []

    async def without_v2(destination: str, path: str, body: Any, **kw: Any) -> Any:
        if "send_join" in path:
            asked.append(path.split("/")[3] + "/" + path.split("/")[4])
        if "/v2/send_join/" in path:  # an older server: no such endpoint
            raise FederationError(404, None, b"")
        return await real_put(destination, path, body, **kw)

    client.put_json = without_v2  # type: ignore[method-assign]
    resp = await bob.post(f"{V3}/join/{q(alias)}", {})

    assert resp.code == 200, resp.body
    assert asked == ["v2/send_join", "v1/send_join"]
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))


@pytest_twisted.ensureDeferred
async def test_send_join_answer_without_the_create_event_fails_the_join(federation: Any,
                                                                        ) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    _, alias = await aliased_room(a, alice, "nocreate")
    client = b.hs.federation_client
    real_put = client.put_json

    async def without_create(destination: str, path: str, body: Any, **kw: Any) -> Any:
        answer = await real_put(destination, path, body, **kw)
        if "/send_join/" in path:
            answer["state"] = [e for e in answer["state"] if e["type"] != "m.room.create"]
        return answer

    client.put_json = without_create  # type: ignore[method-assign]
    resp = await bob.post(f"{V3}/join/{q(alias)}", {})

    assert resp.code == 502, resp.body
    assert (await bob.get(f"{V3}/joined_rooms")).body["joined_rooms"] == []


@pytest_twisted.ensureDeferred
async def test_a_join_sent_by_another_server_than_the_joiners_is_forbidden(federation: Any,
                                                                           ) -> None:
    a = await federation()
    b = await federation()
    c = await federation()
    alice = await a.register("alice")
    room_id = await create_public_room(alice)
    bob_id = f"@bob:{server_name(b)}"
    join = {"type": "m.room.member", "room_id": room_id, "sender": bob_id,
            "state_key": bob_id, "content": {"membership": "join"}}
    try:
        await c.hs.federation_client.put_json(
            server_name(a), f"/_matrix/federation/v2/send_join/{q(room_id)}/$x", join)
    except FederationError as e:
        assert (e.code, e.errcode) == (403, "M_FORBIDDEN")
    else:
        raise AssertionError("the replayed join was accepted")


@pytest_twisted.ensureDeferred
async def test_joining_the_replacement_room_moves_our_alias_and_listing(federation: Any,
                                                                         ) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice, room_version="10")
    via = {"server_name": server_name(a)}
    assert (await bob.post(f"{V3}/join/{q(room_id)}", {}, params=via)).code == 200
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))
    # bob's server has its own alias for the room, and lists it
    bob_alias = f"#ours:{server_name(b)}"
    resp = await bob.put(f"{V3}/directory/room/{q(bob_alias)}", {"room_id": room_id})
    assert resp.code == 200, resp.body
    levels = await alice.get(f"{V3}/rooms/{q(room_id)}/state/m.room.power_levels/")
    levels.body["users"][bob.user_id] = 100
    assert (await alice.put(f"{V3}/rooms/{q(room_id)}/state/m.room.power_levels/",
                            levels.body)).code == 200

    async def bob_is_admin() -> bool:
        resp = await bob.get(f"{V3}/rooms/{q(room_id)}/state/m.room.power_levels/")
        return bool(resp.body.get("users", {}).get(bob.user_id) == 100)
    await wait_for(bob_is_admin)
    resp = await bob.put(f"{V3}/directory/list/room/{q(room_id)}", {"visibility": "public"})
    assert resp.code == 200, resp.body

    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/upgrade", {"new_version": "11"})
    assert resp.code == 200, resp.body
    new_room_id = resp.body["replacement_room"]

    async def tombstone_arrived() -> bool:
        resp = await bob.get(f"{V3}/rooms/{q(room_id)}/state/m.room.tombstone/")
        return resp.code == 200
    await wait_for(tombstone_arrived)
    assert (await bob.post(f"{V3}/join/{q(new_room_id)}", {}, params=via)).code == 200

    resp = await bob.get(f"{V3}/directory/room/{q(bob_alias)}")
    assert resp.body["room_id"] == new_room_id
    listed = await bob.get(f"{V3}/directory/list/room/{q(new_room_id)}")
    assert listed.body == {"visibility": "public"}
    listed = await bob.get(f"{V3}/directory/list/room/{q(room_id)}")
    assert listed.body == {"visibility": "private"}
