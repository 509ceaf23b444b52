"""Redactions: PUT /rooms/{roomId}/redact/{eventId}/{txnId} and every read
path serving the redacted form (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted

from tests.api.test_rooms import BOB, V3, create_room, join, send_text, state
from tests.harness import Client, TestServer


async def redact(client: Client, room_id: str, event_id: str, txn_id: str,
                 **body: Any) -> Any:
    # v1-v3 event IDs may hold "/" and "+"
    return await client.put(f"{V3}/rooms/{room_id}/redact/{quote(event_id, safe='')}/{txn_id}",
                            body)


async def redacted_ok(client: Client, room_id: str, event_id: str, txn_id: str,
                      **body: Any) -> str:
    resp = await redact(client, room_id, event_id, txn_id, **body)
    assert resp.code == 200, resp.body
    redaction_id: str = resp.body["event_id"]
    return redaction_id


async def get_event(client: Client, room_id: str, event_id: str) -> Any:
    resp = await client.get(f"{V3}/rooms/{room_id}/event/{quote(event_id, safe='')}")
    assert resp.code == 200, resp.body
    return resp.body


@pytest_twisted.ensureDeferred
async def test_a_user_redacts_their_own_message(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    event_id = await send_text(bob, room_id, "oops", "t1")

    redaction_id = await redacted_ok(bob, room_id, event_id, "r1", reason="typo")

    for reader in (alice, bob):
        event = await get_event(reader, room_id, event_id)
        assert event["content"] == {}
        because = event["unsigned"]["redacted_because"]
        assert because["event_id"] == redaction_id
        assert because["type"] == "m.room.redaction"
        assert because["sender"] == BOB
        assert because["redacts"] == event_id
        assert because["content"]["reason"] == "typo"
    chunk = (await alice.get(f"{V3}/rooms/{room_id}/messages",
                             params={"dir": "b", "limit": "2"})).body["chunk"]
    assert [e["event_id"] for e in chunk] == [redaction_id, event_id]
    assert chunk[0]["redacts"] == event_id
    assert chunk[1]["content"] == {}
    assert chunk[1]["unsigned"]["redacted_because"]["event_id"] == redaction_id
    assert chunk[1]["unsigned"]["redacted_by"] == redaction_id
    # the sender's own transaction ID survives on the redacted event
    mine = await get_event(bob, room_id, event_id)
    assert mine["unsigned"]["transaction_id"] == "t1"
    context = await alice.get(f"{V3}/rooms/{room_id}/context/{event_id}")
    assert context.body["event"]["content"] == {}


@pytest_twisted.ensureDeferred
async def test_redact_is_idempotent_per_transaction_id(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello", "t1")
    first = await redacted_ok(alice, room_id, event_id, "r1")
    again = await redacted_ok(alice, room_id, event_id, "r1")
    other = await redacted_ok(alice, room_id, event_id, "r2")
    assert first == again != other
    # the first redaction is the one shown
    event = await get_event(alice, room_id, event_id)
    assert event["unsigned"]["redacted_because"]["event_id"] == first


@pytest_twisted.ensureDeferred
async def test_redact_without_a_transaction_id_is_a_new_redaction_each_time(
        server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello", "t1")
    path = f"{V3}/rooms/{room_id}/redact/{quote(event_id, safe='')}"
    first = await alice.post(path, {"reason": "spam"})
    again = await alice.post(path, {})
    assert (first.code, again.code) == (200, 200), (first.body, again.body)
    assert first.body["event_id"] != again.body["event_id"]
    event = await get_event(alice, room_id, event_id)
    assert event["content"] == {}
    assert event["unsigned"]["redacted_by"] == first.body["event_id"]


@pytest_twisted.ensureDeferred
async def test_redacting_another_users_event_needs_the_redact_level(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    alices = await send_text(alice, room_id, "alice's", "t1")
    bobs = await send_text(bob, room_id, "bob's", "t2")

    refused = await redact(bob, room_id, alices, "r1")
    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await get_event(alice, room_id, alices))["content"]["body"] == "alice's"
    # no redaction event was sent
    latest = (await alice.get(f"{V3}/rooms/{room_id}/messages",
                              params={"dir": "b", "limit": "1"})).body["chunk"]
    assert latest[0]["event_id"] == bobs

    # alice is a moderator (100 >= redact 50)
    await redacted_ok(alice, room_id, bobs, "r2")
    assert (await get_event(bob, room_id, bobs))["content"] == {}


@pytest_twisted.ensureDeferred
async def test_redacting_an_unknown_event(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    resp = await redact(bob, room_id, "$nothere", "r1")
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    # as on Synapse, a moderator may
    assert (await redact(alice, room_id, "$nothere", "r2")).code == 200
    # an event of another room is refused, as Synapse refuses it
    other_room = await create_room(bob)
    elsewhere = await send_text(bob, other_room, "elsewhere", "t")
    resp = await redact(bob, room_id, elsewhere, "r3")
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_outsiders_and_create_events_cannot_be_redacted_by_anyone(
        server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    event_id = await send_text(alice, room_id, "hello", "t1")
    outsider = await redact(carol, room_id, event_id, "r1")
    assert (outsider.code, outsider.body["errcode"]) == (403, "M_FORBIDDEN")
    nowhere = await redact(carol, "!nowhere:test.local", event_id, "r1")
    assert (nowhere.code, nowhere.body["errcode"]) == (403, "M_FORBIDDEN")
    create = (await state(alice, room_id))[("m.room.create", "")]
    resp = await redact(alice, room_id, create["event_id"], "r2")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_redacted_state_keeps_its_place_but_not_its_content(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, topic="secret plans")
    topic_id = (await state(alice, room_id))[("m.room.topic", "")]["event_id"]

    redaction_id = await redacted_ok(alice, room_id, topic_id, "r1")

    topic = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic")
    assert (topic.code, topic.body) == (200, {})
    full = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic",
                           params={"format": "event"})
    assert full.body["event_id"] == topic_id
    assert full.body["unsigned"]["redacted_because"]["event_id"] == redaction_id
    in_state = (await state(alice, room_id))[("m.room.topic", "")]
    assert (in_state["event_id"], in_state["content"]) == (topic_id, {})
    # the next topic's prev_content is the redacted one
    await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic", {"topic": "new"})
    new = (await state(alice, room_id))[("m.room.topic", "")]
    assert new["unsigned"]["prev_content"] == {}


@pytest_twisted.ensureDeferred
async def test_redacting_a_member_event_keeps_the_membership(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    member = (await state(alice, room_id))[("m.room.member", BOB)]
    await redacted_ok(alice, room_id, member["event_id"], "r1")
    members = await alice.get(f"{V3}/rooms/{room_id}/members")
    bobs = [e for e in members.body["chunk"] if e["state_key"] == BOB][0]
    assert bobs["content"] == {"membership": "join"}
    # bob is still in the room
    assert (await send_text(bob, room_id, "still here", "t")) is not None


@pytest.mark.parametrize("version,in_content", [("10", False), ("11", True), ("12", True)])
@pytest_twisted.ensureDeferred
async def test_redacts_lives_in_content_from_v11(server: TestServer, version: str,
                                                 in_content: bool) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, room_version=version)
    event_id = await send_text(alice, room_id, "hello", "t1")
    redaction_id = await redacted_ok(alice, room_id, event_id, "r1", reason="why")

    redaction = await get_event(alice, room_id, redaction_id)
    assert redaction["redacts"] == event_id
    assert ("redacts" in redaction["content"]) == in_content
    assert redaction["content"]["reason"] == "why"
    assert (await get_event(alice, room_id, event_id))["content"] == {}
    # the PDU itself carries it where the room version says
    pdu = (await server.hs.stores.events.get_event(redaction_id))
    assert pdu is not None
    assert ("redacts" in pdu.json) != in_content


@pytest_twisted.ensureDeferred
async def test_a_redaction_survives_a_cold_cache(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello", "t1")
    await redacted_ok(alice, room_id, event_id, "r1")
    server.hs.stores.events.cache.invalidate(event_id)
    assert (await get_event(alice, room_id, event_id))["content"] == {}
    # the original is kept in the database
    rows = await server.hs.stores.db.execute(
        "t", "SELECT json FROM events WHERE event_id = ?", (event_id,))
    assert "hello" in rows[0][0]


@pytest_twisted.ensureDeferred
async def test_redact_needs_a_sane_transaction_id_and_body(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hello", "t1")
    long_txn = await redact(alice, room_id, event_id, "t" * 2000)
    assert long_txn.code == 400
    bad_reason = await alice.put(f"{V3}/rooms/{room_id}/redact/{event_id}/r1", {"reason": 5})
    assert bad_reason.code == 400


@pytest.mark.parametrize("version", ["1", "3"])
@pytest_twisted.ensureDeferred
async def test_own_redactions_work_in_old_room_versions(server: TestServer,
                                                        version: str) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", room_version=version)
    await join(bob, room_id)
    event_id = await send_text(bob, room_id, "mine", "t1")
    await redacted_ok(bob, room_id, event_id, "r1")
    assert (await get_event(alice, room_id, event_id))["content"] == {}
    alices = await send_text(alice, room_id, "hers", "t2")
    assert (await redact(bob, room_id, alices, "r2")).code == 403
