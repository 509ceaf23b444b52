"""Relations across two servers: reactions, edits and threads sent on one
server are indexed and aggregated on the other (the persist hook runs for
events from other servers and backfilled history too)."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.federation.harness import server_name
from tests.federation.test_rooms import _has_body, _joined, q, send_text, wait_for
from tests.harness import Client
from tests.helpers import create_public_room as create_room

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


async def send(client: Client, room_id: str, event_type: str, content: dict[str, Any],
               txn: str) -> str:
    resp = await client.put(f"{V3}/rooms/{q(room_id)}/send/{event_type}/{txn}", content)
    assert resp.code == 200, resp.body
    return str(resp.body["event_id"])


async def children(client: Client, room_id: str, event_id: str, *path: str) -> list[str]:
    suffix = "".join(f"/{p}" for p in path)
    resp = await client.get(f"{V1}/rooms/{q(room_id)}/relations/{q(event_id)}{suffix}",
                            params={"limit": "50"})
    assert resp.code == 200, resp.body
    return [e["event_id"] for e in resp.body["chunk"]]


async def bundle(client: Client, room_id: str, event_id: str) -> dict[str, Any]:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}")
    if resp.code != 200:
        return {}
    out: dict[str, Any] = resp.body["unsigned"].get("m.relations", {})
    return out


def edit_of(parent: str, text: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": f"* {text}",
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": parent}}


@pytest_twisted.ensureDeferred
async def test_relations_federate_and_aggregate_on_both_servers(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice)
    # a thread from before bob joins: B gets it by backfill
    old_root = await send_text(alice, room_id, "old root", "t0")
    old_reply = await send(alice, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "old reply",
        "m.relates_to": {"rel_type": "m.thread", "event_id": old_root}}, "t0r")
    resp = await bob.post(f"{V3}/join/{q(room_id)}", params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))

    message = await send_text(alice, room_id, "federated cake", "t1")
    await wait_for(lambda: _has_body(bob, room_id, "federated cake"))
    reaction = await send(bob, room_id, "m.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": message, "key": "🍰"}}, "r1")
    reply = await send(bob, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "bob in a thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": message}}, "h1")
    # bob may not edit alice's message; alice may
    await send(bob, room_id, "m.room.message", edit_of(message, "bob's cake"), "e1")
    alice_edit = await send(alice, room_id, "m.room.message", edit_of(message, "all cake"),
                            "e2")

    async def a_aggregated() -> bool:
        got = await bundle(alice, room_id, message)
        return "m.thread" in got and got["m.thread"]["latest_event"]["event_id"] == reply \
            and set(await children(alice, room_id, message, "m.annotation")) == {reaction}

    await wait_for(a_aggregated)

    async def b_edited() -> bool:
        return (await bundle(bob, room_id, message)).get("m.replace", {}).get(
            "event_id") == alice_edit

    await wait_for(b_edited)
    on_a = await bundle(alice, room_id, message)
    assert on_a["m.replace"]["event_id"] == alice_edit
    on_b = await bundle(bob, room_id, message)
    assert on_b["m.thread"]["count"] == 1
    assert on_b["m.thread"]["current_user_participated"] is True
    threads = await bob.get(f"{V1}/rooms/{q(room_id)}/threads")
    assert threads.code == 200, threads.body
    assert [e["event_id"] for e in threads.body["chunk"]][0] == message

    # the redaction of a remote reaction removes it from the other server's index
    resp = await bob.put(f"{V3}/rooms/{q(room_id)}/redact/{q(reaction)}/x1", {})
    assert resp.code == 200, resp.body

    async def reaction_gone() -> bool:
        return await children(alice, room_id, message, "m.annotation") == []

    await wait_for(reaction_gone)

    # history from before bob joined: backfilled, and indexed on the way in
    resp = await bob.get(f"{V3}/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "50"})
    assert resp.code == 200, resp.body
    assert old_reply in await children(bob, room_id, old_root, "m.thread")
