"""Rooms: creation, sending, state, the timeline and membership, as clients see them."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.harness import Client, TestServer
from tests.helpers import create_room, send, send_text

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"
BOB = "@bob:test.local"


# -- helpers: the common moves --------------------------------------------------


async def state(client: Client, room_id: str) -> dict[tuple[str, str], Any]:
    resp = await client.get(f"{V3}/rooms/{room_id}/state")
    assert resp.code == 200, resp.body
    return {(e["type"], e["state_key"]): e for e in resp.body}


async def messages(client: Client, room_id: str, **params: str) -> Any:
    resp = await client.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b", **params})
    assert resp.code == 200, resp.body
    return resp.body


async def join(client: Client, room_id: str) -> Any:
    return await client.post(f"{V3}/rooms/{room_id}/join", {})


async def invite(client: Client, room_id: str, user_id: str) -> Any:
    return await client.post(f"{V3}/rooms/{room_id}/invite", {"user_id": user_id})


async def two_users_in_a_room(server: TestServer) -> tuple[Client, Client, str]:
    """alice's public room "Chat", with bob joined."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    resp = await join(bob, room_id)
    assert resp.code == 200, resp.body
    return alice, bob, room_id


async def joined_members(client: Client, room_id: str) -> Any:
    resp = await client.get(f"{V3}/rooms/{room_id}/joined_members")
    assert resp.code == 200, resp.body
    return resp.body["joined"]


# -- creation -------------------------------------------------------------------


@pytest.mark.parametrize("preset,join_rule,guest_access", [
    ("private_chat", "invite", "can_join"),
    ("trusted_private_chat", "invite", "can_join"),
    ("public_chat", "public", None),
])
@pytest_twisted.ensureDeferred
async def test_each_preset_sets_up_its_state(server: TestServer, preset: str, join_rule: str,
                                             guest_access: str | None) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset=preset, name="Room", topic="Things")

    room_state = await state(alice, room_id)

    create = room_state[("m.room.create", "")]
    assert create["content"]["room_version"] == "12"
    assert create["sender"] == ALICE
    assert create["room_id"] == room_id
    assert room_state[("m.room.member", ALICE)]["content"]["membership"] == "join"
    assert room_state[("m.room.join_rules", "")]["content"] == {"join_rule": join_rule}
    assert room_state[("m.room.history_visibility", "")]["content"] == {
        "history_visibility": "shared"}
    if guest_access is None:  # as Synapse: no event, which means no guests
        assert ("m.room.guest_access", "") not in room_state
    else:
        assert room_state[("m.room.guest_access", "")]["content"] == {
            "guest_access": guest_access}
    assert room_state[("m.room.name", "")]["content"] == {"name": "Room"}
    assert room_state[("m.room.topic", "")]["content"] == {
        "topic": "Things", "m.topic": {"m.text": [{"body": "Things"}]}}
    levels = room_state[("m.room.power_levels", "")]["content"]
    assert levels["state_default"] == 50
    assert levels["invite"] == (50 if preset == "public_chat" else 0)
    for event in room_state.values():
        assert "signatures" not in event and "hashes" not in event
        assert "age" in event["unsigned"]


@pytest_twisted.ensureDeferred
async def test_visibility_public_means_public_chat(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, visibility="public")
    room_state = await state(alice, room_id)
    assert room_state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}


@pytest.mark.parametrize("version", ["1", "6", "10", "11"])
@pytest_twisted.ensureDeferred
async def test_rooms_of_older_versions_work(server: TestServer, version: str) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, room_version=version, name="Old")
    assert room_id.endswith(":test.local")
    event_id = await send_text(alice, room_id, "hello", "t1")
    chunk = (await messages(alice, room_id))["chunk"]
    assert chunk[0]["event_id"] == event_id
    room_state = await state(alice, room_id)
    assert room_state[("m.room.create", "")]["content"]["room_version"] == version
    assert room_state[("m.room.power_levels", "")]["content"]["users"] == {ALICE: 100}


@pytest_twisted.ensureDeferred
async def test_unknown_room_version_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.post(f"{V3}/createRoom", {"room_version": "99"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION")


@pytest_twisted.ensureDeferred
async def test_initial_state_and_power_level_override_apply(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(
        alice, preset="private_chat",
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "public"}},
                       {"type": "org.example.thing", "state_key": "k", "content": {"a": 1}}],
        power_level_content_override={"state_default": 20})
    room_state = await state(alice, room_id)
    assert room_state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    assert room_state[("org.example.thing", "k")]["content"] == {"a": 1}
    assert room_state[("m.room.power_levels", "")]["content"]["state_default"] == 20


@pytest_twisted.ensureDeferred
async def test_invitees_of_a_new_room_are_invited(server: TestServer) -> None:
    alice = await server.register("alice")
    await server.register("bob")
    room_id = await create_room(alice, invite=[BOB], is_direct=True)
    member = (await state(alice, room_id))[("m.room.member", BOB)]
    assert member["content"]["membership"] == "invite"
    assert member["content"]["is_direct"] is True


@pytest_twisted.ensureDeferred
async def test_capabilities_list_room_versions(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(f"{V3}/capabilities")
    versions = resp.body["capabilities"]["m.room_versions"]
    assert versions["default"] == "12"
    assert versions["available"] == {str(v): "stable" for v in range(1, 13)}


# -- sending ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sent_message_appears_in_messages(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello", "txn1")

    body = await messages(alice, room_id, limit="1")

    [event] = body["chunk"]
    assert event["event_id"] == event_id
    assert event["content"] == {"msgtype": "m.text", "body": "hello"}
    assert event["sender"] == ALICE
    assert event["room_id"] == room_id
    assert event["unsigned"]["transaction_id"] == "txn1"
    assert "signatures" not in event and "depth" not in event
    assert body["end"]


@pytest_twisted.ensureDeferred
async def test_retried_txn_id_returns_the_same_event(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    first = await send_text(alice, room_id, "hello", "txn1")
    again = await send_text(alice, room_id, "hello", "txn1")
    other = await send_text(alice, room_id, "hello", "txn2")

    assert first == again
    assert other != first
    chunk = (await messages(alice, room_id, limit="3"))["chunk"]
    assert [e["event_id"] for e in chunk[:2]] == [other, first]
    assert chunk[2]["type"] != "m.room.message"


@pytest_twisted.ensureDeferred
async def test_concurrent_sends_into_one_room_form_one_chain(server: TestServer) -> None:
    """Many sends at once are written in batches: every one is stored once, in
    the order of the timeline, each event following the one before it; a
    retry queued beside its first attempt gets the same event; a send the
    auth rules refuse fails alone."""
    from twisted.internet import defer

    alice, bob, room_id = await two_users_in_a_room(server)
    carol = await server.register("carol")  # not in the room
    sends = [defer.ensureDeferred(send(alice if k % 2 else bob, room_id,
                                       {"msgtype": "m.text", "body": f"m{k}"}, f"t{k}"))
             for k in range(30)]
    sends.append(defer.ensureDeferred(send(bob, room_id, {"msgtype": "m.text", "body": "m0"},
                                           "t0")))  # bob's retry of t0
    sends.append(defer.ensureDeferred(send(carol, room_id, {"msgtype": "m.text",
                                                            "body": "intruder"}, "c")))
    results = await defer.gatherResults(sends)
    assert [r.code for r in results[:31]] == [200] * 31, [r.body for r in results]
    assert results[31].code == 403
    ids = [r.body["event_id"] for r in results[:30]]
    assert len(set(ids)) == 30
    assert results[30].body["event_id"] == ids[0]

    chunk = (await messages(alice, room_id, limit="30"))["chunk"][::-1]
    assert sorted(e["content"]["body"] for e in chunk) == sorted(f"m{k}" for k in range(30))
    assert {e["event_id"] for e in chunk} == set(ids)
    by_id = {e["event_id"]: e for e in chunk}
    for before, after in zip(chunk, chunk[1:], strict=False):
        pdu = (await server.hs.stores.events.get_event(after["event_id"]))
        assert pdu is not None and list(pdu.prev_event_ids) == [before["event_id"]]
    room = await server.hs.stores.rooms.get_room(room_id)
    assert room is not None
    tips = await server.hs.stores.rooms.get_forward_extremities(room.room_nid)
    assert [t.event_id for t in tips] == [chunk[-1]["event_id"]]
    assert set(by_id) == set(ids)


@pytest_twisted.ensureDeferred
async def test_txn_ids_are_per_device(server: TestServer) -> None:
    alice = await server.register("alice")
    session = await server.hs.sessions.create_login_session(ALICE, None)
    other_device = server.client(session.access_token)
    room_id = await create_room(alice)
    first = await send_text(alice, room_id, "hello", "same")
    second = await send_text(other_device, room_id, "hello", "same")
    assert first != second
    # each device sees its own transaction ID only
    chunk = (await messages(other_device, room_id, limit="2"))["chunk"]
    assert chunk[0]["unsigned"]["transaction_id"] == "same"
    assert "transaction_id" not in chunk[1]["unsigned"]


@pytest_twisted.ensureDeferred
async def test_retried_txn_id_after_restart_returns_the_same_event(
        make_server: Any) -> None:
    from twisted.internet import reactor

    from homeserver.server import HomeServer

    first: TestServer = await make_server()
    alice = await first.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello", "txn1")
    await first.hs.stop()

    hs = HomeServer(first.hs.config, reactor)
    await hs.setup()
    hs.listen()
    try:
        alice.base_url = TestServer(hs, first.engine).base_url
        assert await send_text(alice, room_id, "hello", "txn1") == event_id
        chunk = (await messages(alice, room_id, limit="2"))["chunk"]
        assert chunk[0]["event_id"] == event_id
        assert chunk[1]["event_id"] != event_id
        assert await send_text(alice, room_id, "again", "txn2") != event_id
    finally:
        await hs.stop()


@pytest_twisted.ensureDeferred
async def test_non_member_cannot_send(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    resp = await send(bob, room_id, {"msgtype": "m.text", "body": "hi"}, "t")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_sending_to_an_unknown_room_is_forbidden(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await send(alice, "!nowhere:test.local", {"body": "hi"}, "t")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_content_must_be_an_object(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await send(alice, room_id, [1, 2], "t")
    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_too_large_event_is_413(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await send(alice, room_id, {"body": "x" * 65_000}, "t")
    assert (resp.code, resp.body["errcode"]) == (413, "M_TOO_LARGE")


@pytest_twisted.ensureDeferred
async def test_floats_are_refused_in_v12_rooms(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await send(alice, room_id, {"body": "x", "n": 1.5}, "t")
    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


# -- state -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_state_get_returns_what_was_put(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    path = f"{V3}/rooms/{room_id}/state/org.example.config/some-key"

    put = await alice.put(path, {"colour": "blue"})
    got = await alice.get(path)

    assert put.code == 200
    assert (got.code, got.body) == (200, {"colour": "blue"})
    full = await alice.get(path, params={"format": "event"})
    assert full.body["event_id"] == put.body["event_id"]
    assert full.body["state_key"] == "some-key"


@pytest_twisted.ensureDeferred
async def test_empty_state_key_has_its_own_route(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    put = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic", {"topic": "new"})
    assert put.code == 200
    got = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic/")
    assert got.body == {"topic": "new"}
    prev = (await state(alice, room_id))[("m.room.topic", "")]
    assert prev["content"] == {"topic": "new"}


@pytest_twisted.ensureDeferred
async def test_replaced_state_carries_prev_content(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, topic="old")
    await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic", {"topic": "new"})
    topic = (await state(alice, room_id))[("m.room.topic", "")]
    assert topic["unsigned"]["prev_content"]["topic"] == "old"


@pytest_twisted.ensureDeferred
async def test_putting_the_same_state_twice_is_one_event(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    path = f"{V3}/rooms/{room_id}/state/m.room.name"
    first = await alice.put(path, {"name": "A"})
    second = await alice.put(path, {"name": "A"})
    assert first.body["event_id"] == second.body["event_id"]


@pytest_twisted.ensureDeferred
async def test_missing_state_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.avatar")
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_user_below_state_default_cannot_set_the_topic(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)

    resp = await bob.put(f"{V3}/rooms/{room_id}/state/m.room.topic", {"topic": "mine"})

    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    topic = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic")
    assert topic.code == 404


@pytest_twisted.ensureDeferred
async def test_bad_state_key_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/org.example/{'k' * 300}", {})
    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_non_member_cannot_read_state_or_messages(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    for path in (f"/rooms/{room_id}/state", f"/rooms/{room_id}/state/m.room.create",
                 f"/rooms/{room_id}/messages?dir=b", f"/rooms/{room_id}/joined_members",
                 f"/rooms/{room_id}/members", "/rooms/!nowhere:test.local/state"):
        resp = await bob.get(V3 + path)
        assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN"), path


# -- the timeline -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_messages_paginate_backwards_and_forwards(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    sent = [await send_text(alice, room_id, f"m{i}", f"t{i}") for i in range(5)]

    page1 = await messages(alice, room_id, limit="2")
    page2 = await messages(alice, room_id, limit="2", **{"from": page1["end"]})
    assert [e["event_id"] for e in page1["chunk"]] == [sent[4], sent[3]]
    assert [e["event_id"] for e in page2["chunk"]] == [sent[2], sent[1]]

    forward = await messages(alice, room_id, dir="f", limit="3", **{"from": page2["end"]})
    assert [e["event_id"] for e in forward["chunk"]] == [sent[1], sent[2], sent[3]]

    everything = await messages(alice, room_id, limit="100")
    assert everything["chunk"][-1]["type"] == "m.room.create"
    # as on Synapse: a page with events has an end; the empty page past the
    # start of the room has none, which tells the client to stop
    beyond = await messages(alice, room_id, limit="100", **{"from": everything["end"]})
    assert beyond["chunk"] == [] and "end" not in beyond


@pytest_twisted.ensureDeferred
async def test_bad_pagination_parameters_are_400(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    for params in ({"dir": "x"}, {"dir": "b", "from": "nonsense"}, {"dir": "b", "limit": "x"}):
        resp = await alice.get(f"{V3}/rooms/{room_id}/messages", params=params)
        assert resp.code == 400, params


@pytest_twisted.ensureDeferred
async def test_get_event_by_id(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello", "t")

    resp = await alice.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert resp.code == 200
    assert resp.body["content"]["body"] == "hello"
    missing = await alice.get(f"{V3}/rooms/{room_id}/event/$nothere")
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")
    stranger = await bob.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert (stranger.code, stranger.body["errcode"]) == (404, "M_NOT_FOUND")


# -- membership --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_invite_then_join_shows_both_in_joined_members(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice)

    assert (await join(bob, room_id)).code == 403  # invite-only
    assert (await invite(alice, room_id, BOB)).code == 200
    assert (await join(bob, room_id)).code == 200

    for client in (alice, bob):
        assert await joined_members(client, room_id) == {
            ALICE: {"display_name": "alice", "avatar_url": None},
            BOB: {"display_name": "bob", "avatar_url": None}}
    assert (await bob.get(f"{V3}/joined_rooms")).body == {"joined_rooms": [room_id]}
    members = await bob.get(f"{V3}/rooms/{room_id}/members")
    assert sorted(e["state_key"] for e in members.body["chunk"]) == [ALICE, BOB]


@pytest_twisted.ensureDeferred
async def test_join_by_room_id_or_alias_route(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    resp = await bob.post(f"{V3}/join/{room_id}", {})
    assert (resp.code, resp.body) == (200, {"room_id": room_id})
    unknown = await bob.post(f"{V3}/join/!nowhere:test.local", {})
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_banned_user_cannot_rejoin(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)

    ban = await alice.post(f"{V3}/rooms/{room_id}/ban", {"user_id": BOB, "reason": "spam"})
    assert ban.code == 200

    rejoin = await join(bob, room_id)
    assert (rejoin.code, rejoin.body["errcode"]) == (403, "M_FORBIDDEN")
    assert BOB not in await joined_members(alice, room_id)
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{BOB}")
    assert member.body == {"membership": "ban", "reason": "spam"}

    unban = await alice.post(f"{V3}/rooms/{room_id}/unban", {"user_id": BOB})
    assert unban.code == 200
    assert (await join(bob, room_id)).code == 200


@pytest_twisted.ensureDeferred
async def test_kick_and_leave(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)

    bob_kicks = await bob.post(f"{V3}/rooms/{room_id}/kick", {"user_id": ALICE})
    assert bob_kicks.code == 403
    assert (await alice.post(f"{V3}/rooms/{room_id}/kick", {"user_id": BOB})).code == 200
    assert BOB not in await joined_members(alice, room_id)
    assert (await bob.get(f"{V3}/joined_rooms")).body == {"joined_rooms": []}

    assert (await join(bob, room_id)).code == 200
    assert (await bob.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    assert BOB not in await joined_members(alice, room_id)


@pytest_twisted.ensureDeferred
async def test_a_user_who_left_sees_the_room_as_it_was(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Before")
    await join(bob, room_id)
    before = await send_text(alice, room_id, "before", "t1")
    await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    await send_text(alice, room_id, "after", "t2")
    await alice.put(f"{V3}/rooms/{room_id}/state/m.room.name", {"name": "After"})

    name = await bob.get(f"{V3}/rooms/{room_id}/state/m.room.name")
    assert name.body == {"name": "Before"}
    chunk = (await messages(bob, room_id))["chunk"]
    assert chunk[0]["type"] == "m.room.member" and chunk[0]["state_key"] == BOB
    assert chunk[1]["event_id"] == before
    assert (await bob.get(f"{V3}/rooms/{room_id}/joined_members")).code == 403


@pytest_twisted.ensureDeferred
async def test_forget_needs_the_user_to_have_left(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    early = await alice.post(f"{V3}/rooms/{room_id}/forget", {})
    assert early.code == 400
    await alice.post(f"{V3}/rooms/{room_id}/leave", {})
    assert (await alice.post(f"{V3}/rooms/{room_id}/forget", {})).code == 200


@pytest_twisted.ensureDeferred
async def test_invite_needs_a_valid_user(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    bad = await alice.post(f"{V3}/rooms/{room_id}/invite", {"user_id": "not-a-user"})
    assert bad.code == 400
    missing = await alice.post(f"{V3}/rooms/{room_id}/invite", {})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    nobody = await invite(alice, room_id, "@nobody:test.local")
    assert nobody.code == 404


# -- storage seen through the API -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_state_changes_share_snapshot_blocks(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    for i in range(300):
        await server.hs.event_creator.send(ALICE, room_id, "org.example.item", {"n": i},
                                           state_key=f"item{i}")
    state_size = len(await state(alice, room_id))
    before = await server.hs.stores.state.counts()
    changes = 30
    for i in range(changes):
        resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic", {"topic": f"t{i}"})
        assert resp.code == 200
    after = await server.hs.stores.state.counts()

    assert after.snapshots - before.snapshots == changes
    assert after.blocks - before.blocks == changes
    # a copy of the whole state per change would be changes * state_size entries
    new_entries = after.block_entries - before.block_entries
    assert new_entries * 8 < changes * state_size
    # messages reuse the state's snapshot
    await send_text(alice, room_id, "hi", "t")
    assert (await server.hs.stores.state.counts()).snapshots == after.snapshots
    assert (await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic")).body == {
        "topic": f"t{changes - 1}"}
    # every snapshot belongs to an event: garbage collection finds nothing
    assert await server.hs.stores.state.garbage_collect() == (0, 0)


@pytest_twisted.ensureDeferred
async def test_state_types_sent_as_messages_are_refused_by_the_auth_rules(
        server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    for event_type in ("m.room.create", "m.room.member"):
        resp = await send(alice, room_id, {"membership": "join"}, f"t-{event_type}",
                          event_type=event_type)
        assert resp.code in (400, 403), (event_type, resp.body)
    create = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.create", {})
    assert create.code in (400, 403), create.body


@pytest_twisted.ensureDeferred
async def test_concurrent_sends_to_one_room_form_a_single_chain(server: TestServer) -> None:
    from twisted.internet import defer

    alice = await server.register("alice")
    room_id = await create_room(alice)
    sends = [defer.ensureDeferred(send_text(alice, room_id, f"m{i}", f"c{i}"))
             for i in range(10)]
    sent = await defer.gatherResults(sends)
    assert len(set(sent)) == 10

    room = await server.hs.stores.rooms.get_room(room_id)
    assert room is not None
    extremities = await server.hs.stores.rooms.get_forward_extremities(room.room_nid)
    assert len(extremities) == 1
    events = await server.hs.stores.events.get_events(sent)
    depths = sorted(e.depth for e in events.values())
    assert depths == list(range(depths[0], depths[0] + 10))


@pytest_twisted.ensureDeferred
async def test_create_room_with_an_unknown_invitee_creates_nothing(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.post(f"{V3}/createRoom", {"invite": ["@nobody:test.local"]})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    assert (await alice.get(f"{V3}/joined_rooms")).body == {"joined_rooms": []}


@pytest_twisted.ensureDeferred
async def test_rooms_created_concurrently_all_work(server: TestServer) -> None:
    from twisted.internet import defer

    alice = await server.register("alice")
    bob = await server.register("bob")
    creations = [defer.ensureDeferred(create_room(client, preset="public_chat", name=f"r{i}"))
                 for i in range(4) for client in (alice, bob)]
    room_ids = await defer.gatherResults(creations)
    assert len(set(room_ids)) == 8
    joins = [defer.ensureDeferred(join(alice, r)) for r in room_ids]
    assert {resp.code for resp in await defer.gatherResults(joins)} == {200}
    assert sorted((await alice.get(f"{V3}/joined_rooms")).body["joined_rooms"]) == sorted(
        room_ids)


@pytest_twisted.ensureDeferred
async def test_hostile_input_is_400_not_500(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    for token in ("s\u00b2", "s" + "9" * 30, "s--1", ""):
        resp = await alice.get(f"{V3}/rooms/{room_id}/messages",
                               params={"dir": "b", "from": token})
        assert resp.code == 400, token
    long_txn = await send(alice, room_id, {"body": "x"}, "t" * 2000)
    assert long_txn.code == 400
    nul = await alice.post(f"{V3}/createRoom", {
        "initial_state": [{"type": "a\u0000b", "state_key": "", "content": {}}]})
    assert nul.code == 400
    nul_key = await alice.post(f"{V3}/createRoom", {
        "initial_state": [{"type": "org.example", "state_key": "\u0000", "content": {}}]})
    assert nul_key.code == 400
    surrogate = await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/s",
                                raw=b'{"body": "\\ud800"}')
    assert surrogate.code == 400
    nul_content = await send(alice, room_id, {"body": "a\u0000b"}, "nul")
    assert nul_content.code == 200
    event = await alice.get(f"{V3}/rooms/{room_id}/event/{nul_content.body['event_id']}")
    assert event.body["content"] == {"body": "a\u0000b"}


@pytest_twisted.ensureDeferred
async def test_a_message_just_sent_is_in_the_next_messages_while_another_write_is_slow(
        tmp_path: Any) -> None:
    # PostgreSQL only: SQLite has one writer at a time, so a slow write
    # there holds the send back too. Another write (presence, a device
    # list) took a stream position before the message and has not
    # committed yet: the next /messages still shows the client its message.
    import threading

    from twisted.internet import reactor, task

    from homeserver.storage.streams import next_stream_id_txn
    from tests.harness import start_server, stop_server

    srv = await start_server("postgres", str(tmp_path))
    release = threading.Event()
    try:
        alice = await srv.register("alice")
        room_id = await create_room(alice)

        def slow_write(txn: Any) -> None:
            next_stream_id_txn(txn)
            release.wait(10)
        slow = srv.hs.db.run_interaction("test_slow_write", slow_write)
        while srv.hs.db.stream_tracker.persisted_upto >= srv.hs.db.stream_tracker.max_allocated:
            await task.deferLater(reactor, 0.01, lambda: None)
        sent = await send_text(alice, room_id, "mine")
        reactor.callLater(0.3, release.set)  # type: ignore[attr-defined]
        chunk = (await messages(alice, room_id, limit="1"))["chunk"]
        assert [e["event_id"] for e in chunk] == [sent]
        await slow
    finally:
        release.set()
        await stop_server(srv)
