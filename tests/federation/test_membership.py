"""Membership rules across servers: restricted joins, knocks, server ACLs,
and events whose content was tampered with."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.federation.client import FederationError
from tests.federation.harness import server_name
from tests.federation.test_inbound import forge_message
from tests.federation.test_rooms import (
    _has_body,
    _joined,
    _membership_is,
    joined_pair,
    q,
    send_text,
    timeline_bodies,
    wait_for,
)
from tests.helpers import create_public_room as create_room


@pytest_twisted.ensureDeferred
async def test_restricted_room_admits_members_of_the_allowed_room_only(federation: Any,
                                                                       ) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    carol = await b.register("carol")
    lobby = await create_room(alice, name="Lobby")
    inner = await create_room(alice, preset="private_chat", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": lobby}]}}])
    via = {"server_name": server_name(a)}
    # carol is in no allowed room: refused by the resident server
    resp = await carol.post(f"/_matrix/client/v3/join/{q(inner)}", params=via)
    assert resp.code == 403, resp.body
    # bob joins the lobby first, then the restricted room
    assert (await bob.post(f"/_matrix/client/v3/join/{q(lobby)}", params=via)).code == 200
    await wait_for(lambda: _joined(alice, lobby, bob.user_id))
    resp = await bob.post(f"/_matrix/client/v3/join/{q(inner)}", params=via)
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, inner, bob.user_id))
    state = await bob.get(
        f"/_matrix/client/v3/rooms/{q(inner)}/state/m.room.member/{q(bob.user_id or '')}")
    assert state.body["join_authorised_via_users_server"] == alice.user_id


@pytest_twisted.ensureDeferred
async def test_knock_on_a_remote_room_then_get_invited_in(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, preset="private_chat", initial_state=[{
        "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    resp = await bob.post(f"/_matrix/client/v3/knock/{q(room_id)}",
                          {"reason": "let me in"}, params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _membership_is(alice, room_id, bob.user_id, "knock"))
    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    resp = await bob.post(f"/_matrix/client/v3/rooms/{q(room_id)}/join", {})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))


@pytest_twisted.ensureDeferred
async def test_server_acl_shuts_a_server_out(federation: Any) -> None:
    a = await federation()
    b = await federation()
    c = await federation(federation_host="127.0.0.1")  # a server we can name in an ACL
    alice = await a.register("alice")
    bob = await b.register("bob")
    mallory = await c.register("mallory")
    room_id = await create_room(alice)
    via = {"server_name": server_name(a)}
    for client in (bob, mallory):
        assert (await client.post(f"/_matrix/client/v3/join/{q(room_id)}",
                                  params=via)).code == 200
    await wait_for(lambda: _joined(alice, room_id, mallory.user_id))
    resp = await alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.server_acl",
                           {"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": True})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _acl_arrived(bob, room_id))
    await wait_for(lambda: _acl_arrived(mallory, room_id))
    await send_text(mallory, room_id, "you cannot hear me", "m1")
    await send_text(bob, room_id, "bob still talks", "b1")
    await wait_for(lambda: _has_body(alice, room_id, "bob still talks"))
    assert "you cannot hear me" not in await timeline_bodies(alice, room_id)
    # nor may it read the room
    create = await a.hs.stores.rooms.get_current_state_ids(
        (await a.hs.stores.rooms.get_room(room_id)).room_nid,  # type: ignore[union-attr]
        [("m.room.create", "")])
    try:
        await c.hs.federation_client.get_json(
            server_name(a), f"/_matrix/federation/v1/state_ids/{q(room_id)}",
            {"event_id": create[("m.room.create", "")]})
        raise AssertionError("a denied server read the room's state")
    except FederationError as e:
        assert e.code == 403 and e.errcode == "M_FORBIDDEN"


async def _acl_arrived(client: Any, room_id: str) -> bool:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.server_acl")
    return resp.code == 200


@pytest_twisted.ensureDeferred
async def test_an_event_with_tampered_content_arrives_redacted(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    pdu = await forge_message(a, room_id, alice.user_id, "the original", a.hs.signing_key)
    pdu["content"]["body"] = "tampered in transit"  # hash no longer matches; signature does
    resp = await a.hs.federation_client.put_json(
        server_name(b), "/_matrix/federation/v1/send/tamper1",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": [pdu]})
    assert all(not v.get("error") for v in resp["pdus"].values()), resp
    (event_id,) = resp["pdus"]
    got = await bob.get(f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}")
    assert got.code == 200 and got.body["content"] == {}


@pytest_twisted.ensureDeferred
async def test_leave_a_remote_invite_only_room_then_rejoin_on_a_new_invite(
        federation: Any) -> None:
    """Our old view of the room (ending with bob's leave) is history the
    rejoin descends from, not a rival branch: resolving it against the join
    would undo the join (a join from 'leave' in an invite-only room)."""
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, preset="private_chat")
    v3 = "/_matrix/client/v3"

    async def invite_and_join() -> str:
        resp = await alice.post(f"{v3}/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
        assert resp.code == 200, resp.body

        async def invited() -> bool:
            got = await bob.get(f"{v3}/sync", params={"timeout": "0"})
            return room_id in got.body["rooms"]["invite"]

        await wait_for(invited)
        since: str = (await bob.get(f"{v3}/sync")).body["next_batch"]
        resp = await bob.post(f"{v3}/join/{q(room_id)}", {},
                              params={"server_name": server_name(a)})
        assert resp.code == 200, resp.body
        await wait_for(lambda: _joined(alice, room_id, bob.user_id))
        return since

    await invite_and_join()
    assert (await bob.post(f"{v3}/rooms/{q(room_id)}/leave", {})).code == 200
    await wait_for(lambda: _membership_is(alice, room_id, bob.user_id, "leave"))

    since = await invite_and_join()
    got = await bob.get(f"{v3}/sync", params={"since": since, "timeout": "0"})
    assert room_id in got.body["rooms"]["join"]
    assert (await bob.get(f"{v3}/joined_rooms")).body["joined_rooms"] == [room_id]
