"""Relations as clients see them: reactions, edits, threads, references,
/relations and /threads, and the aggregations bundled on served events."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import nio
import pytest_twisted
from twisted.internet.defer import Deferred

from tests.api.test_rooms import V3, create_room, join, send, send_text
from tests.api.test_rooms import two_users_in_a_room as shared_room
from tests.harness import Client, Response, TestServer
from tests.sync.test_sync import sleep, sync

V1 = "/_matrix/client/v1"
T = TypeVar("T")


# -- helpers --------------------------------------------------------------------


async def relate(client: Client, room_id: str, txn_id: str, rel_type: str, parent: str,
                 event_type: str = "m.room.message", **content: Any) -> Response:
    relates: dict[str, Any] = {"rel_type": rel_type, "event_id": parent}
    if "key" in content:
        relates["key"] = content.pop("key")
    body = {"m.relates_to": relates, **content}
    return await send(client, room_id, body, txn_id, event_type)


async def react(client: Client, room_id: str, parent: str, key: str, txn_id: str) -> Response:
    return await relate(client, room_id, txn_id, "m.annotation", parent, "m.reaction", key=key)


async def sent(resp: Response) -> str:
    assert resp.code == 200, resp.body
    event_id: str = resp.body["event_id"]
    return event_id


async def edit(client: Client, room_id: str, parent: str, text: str, txn_id: str) -> str:
    return await sent(await relate(
        client, room_id, txn_id, "m.replace", parent, msgtype="m.text", body=f"* {text}",
        **{"m.new_content": {"msgtype": "m.text", "body": text}}))


async def reply_in_thread(client: Client, room_id: str, root: str, text: str,
                          txn_id: str) -> str:
    return await sent(await relate(client, room_id, txn_id, "m.thread", root,
                                   msgtype="m.text", body=text))


async def relations(client: Client, room_id: str, event_id: str, *path: str,
                    **params: str) -> Response:
    suffix = "".join(f"/{p}" for p in path)
    return await client.get(f"{V1}/rooms/{room_id}/relations/{event_id}{suffix}",
                            params=params or None)


async def get_event(client: Client, room_id: str, event_id: str) -> dict[str, Any]:
    resp = await client.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert resp.code == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


def bundled(event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = event["unsigned"].get("m.relations", {})
    return out


async def redact(client: Client, room_id: str, event_id: str, txn_id: str) -> None:
    resp = await client.put(f"{V3}/rooms/{room_id}/redact/{event_id}/{txn_id}", {})
    assert resp.code == 200, resp.body


# -- reactions -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_reactions_are_listed_and_a_duplicate_is_refused(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "lunch?", "t1")
    thumbs = await sent(await react(bob, room_id, message, "👍", "r1"))
    await sent(await react(alice, room_id, message, "👍", "r2"))

    again = await react(bob, room_id, message, "👍", "r3")

    assert again.code == 400, again.body
    assert again.body["errcode"] == "M_DUPLICATE_ANNOTATION"
    resp = await relations(bob, room_id, message, "m.annotation")
    assert resp.code == 200, resp.body
    assert [e["sender"] for e in resp.body["chunk"]] == ["@alice:test.local",
                                                         "@bob:test.local"]
    assert resp.body["chunk"][1]["event_id"] == thumbs
    # a different key is a different reaction; annotations are never bundled
    await sent(await react(bob, room_id, message, "🎉", "r4"))
    assert "m.annotation" not in bundled(await get_event(alice, room_id, message))


@pytest_twisted.ensureDeferred
async def test_redacted_reaction_is_gone_and_may_be_sent_again(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "lunch?", "t1")
    thumbs = await sent(await react(bob, room_id, message, "👍", "r1"))

    await redact(bob, room_id, thumbs, "x1")

    resp = await relations(alice, room_id, message)
    assert resp.body["chunk"] == []
    again = await react(bob, room_id, message, "👍", "r2")
    assert again.code == 200, again.body


@pytest_twisted.ensureDeferred
async def test_relation_to_an_unknown_event_is_refused(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)

    resp = await react(alice, room_id, "$nosuchevent", "👍", "r1")

    assert resp.code == 400
    assert resp.body["errcode"] == "M_UNKNOWN"


@pytest_twisted.ensureDeferred
async def test_relation_to_an_event_of_another_room_is_refused(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    other_room = await create_room(alice)
    elsewhere = await send_text(alice, other_room, "elsewhere", "t1")

    resp = await react(alice, room_id, elsewhere, "👍", "r1")

    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_reaction_without_a_key_is_refused(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "hi", "t1")

    resp = await relate(alice, room_id, "r1", "m.annotation", message, "m.reaction")

    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_relation_fields_holding_nul_are_refused_not_a_server_error(
        server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "hi", "t1")

    by_key = await react(alice, room_id, message, "\u00001", "r1")
    by_parent = await relate(alice, room_id, "r2", "m.thread", message + "\u0000")

    for resp in (by_key, by_parent):
        assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), resp.body
    assert (await sent(await react(alice, room_id, message, "1", "r3"))).startswith("$")


# -- edits -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_latest_edit_by_the_sender_is_bundled(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "I like cake", "t1")
    edits = [await edit(alice, room_id, message, "I like chocolate cake", "e1"),
             await edit(alice, room_id, message, "I like all cake", "e2")]

    seen = await get_event(bob, room_id, message)

    # the most recent by origin_server_ts, then the larger event ID (the spec's rule)
    served = [await get_event(bob, room_id, e) for e in edits]
    latest = max(served, key=lambda e: (e["origin_server_ts"], e["event_id"]))
    replace = bundled(seen)["m.replace"]
    assert replace["event_id"] == latest["event_id"]
    assert replace["content"] == latest["content"]
    # the original content is left as it was
    assert seen["content"]["body"] == "I like cake"


@pytest_twisted.ensureDeferred
async def test_edit_by_another_user_is_ignored(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "I like cake", "t1")

    resp = await relate(bob, room_id, "e1", "m.replace", message, msgtype="m.text",
                        body="* I hate cake",
                        **{"m.new_content": {"msgtype": "m.text", "body": "I hate cake"}})

    # accepted as an event (it may be a legitimate event to others), never as an edit
    assert resp.code == 200, resp.body
    assert "m.replace" not in bundled(await get_event(alice, room_id, message))
    body = (await alice.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b"})).body
    original = next(e for e in body["chunk"] if e["event_id"] == message)
    assert "m.replace" not in bundled(original)


@pytest_twisted.ensureDeferred
async def test_redacting_the_only_edit_reverts_the_bundle(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "typo", "t1")
    fixed = await edit(alice, room_id, message, "no typo", "e1")

    await redact(alice, room_id, fixed, "x1")

    assert "m.replace" not in bundled(await get_event(alice, room_id, message))


# -- threads ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_thread_summary_is_bundled_on_the_root(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    root = await send_text(alice, room_id, "thread root", "t1")
    await reply_in_thread(bob, room_id, root, "first", "h1")
    last = await reply_in_thread(bob, room_id, root, "second", "h2")

    for reader, participated in ((alice, True), (bob, True)):
        summary = bundled(await get_event(reader, room_id, root))["m.thread"]
        assert summary["count"] == 2
        assert summary["latest_event"]["event_id"] == last
        assert summary["latest_event"]["content"]["body"] == "second"
        assert summary["current_user_participated"] is participated

    carol = await server.register("carol")
    assert (await join(carol, room_id)).code == 200
    summary = bundled(await get_event(carol, room_id, root))["m.thread"]
    assert summary["current_user_participated"] is False


@pytest_twisted.ensureDeferred
async def test_thread_summary_bundles_the_latest_reply_edit(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    root = await send_text(alice, room_id, "root", "t1")
    reply = await reply_in_thread(bob, room_id, root, "repyl", "h1")
    fixed = await edit(bob, room_id, reply, "reply", "e1")

    summary = bundled(await get_event(alice, room_id, root))["m.thread"]

    assert summary["latest_event"]["event_id"] == reply
    assert bundled(summary["latest_event"])["m.replace"]["event_id"] == fixed


@pytest_twisted.ensureDeferred
async def test_thread_cannot_start_from_a_relation(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    root = await send_text(alice, room_id, "root", "t1")
    reply = await reply_in_thread(alice, room_id, root, "in thread", "h1")

    resp = await relate(alice, room_id, "h2", "m.thread", reply, msgtype="m.text", body="x")

    assert resp.code == 400
    assert resp.body["errcode"] == "M_UNKNOWN"


@pytest_twisted.ensureDeferred
async def test_threads_list_most_recent_first_and_participated(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    older = await send_text(alice, room_id, "older root", "t1")
    newer = await send_text(bob, room_id, "bob's root", "t2")
    quiet = await send_text(alice, room_id, "no thread here", "t3")
    await reply_in_thread(bob, room_id, newer, "a", "h1")
    await reply_in_thread(bob, room_id, older, "b", "h2")  # older is now the most active

    resp = await alice.get(f"{V1}/rooms/{room_id}/threads")
    assert resp.code == 200, resp.body
    assert [e["event_id"] for e in resp.body["chunk"]] == [older, newer]
    assert quiet not in [e["event_id"] for e in resp.body["chunk"]]
    assert resp.body["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 1

    mine = await alice.get(f"{V1}/rooms/{room_id}/threads",
                           params={"include": "participated"})
    assert [e["event_id"] for e in mine.body["chunk"]] == [older]

    first = await bob.get(f"{V1}/rooms/{room_id}/threads", params={"limit": "1"})
    assert [e["event_id"] for e in first.body["chunk"]] == [older]
    rest = await bob.get(f"{V1}/rooms/{room_id}/threads",
                         params={"limit": "1", "from": first.body["next_batch"]})
    assert [e["event_id"] for e in rest.body["chunk"]] == [newer]

    bad = await bob.get(f"{V1}/rooms/{room_id}/threads", params={"include": "some"})
    assert bad.code == 400


@pytest_twisted.ensureDeferred
async def test_thread_summary_reaches_sync(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    root = await send_text(alice, room_id, "root", "t1")
    await reply_in_thread(bob, room_id, root, "reply", "h1")

    resp = await alice.get(f"{V3}/sync")

    assert resp.code == 200, resp.body
    timeline = resp.body["rooms"]["join"][room_id]["timeline"]["events"]
    served_root = next(e for e in timeline if e["event_id"] == root)
    assert bundled(served_root)["m.thread"]["count"] == 1


# -- references ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_references_are_bundled(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    poll = await send_text(alice, room_id, "poll", "t1")
    first = await sent(await relate(bob, room_id, "f1", "m.reference", poll,
                                    msgtype="m.text", body="answer 1"))
    second = await sent(await relate(alice, room_id, "f2", "m.reference", poll,
                                     msgtype="m.text", body="answer 2"))

    seen = await get_event(bob, room_id, poll)

    assert bundled(seen)["m.reference"] == {"chunk": [{"event_id": first},
                                                      {"event_id": second}]}


# -- /relations ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_relations_paginate_both_ways(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "react to me", "t1")
    keys = ["a", "b", "c", "d", "e"]
    ids = [await sent(await react(alice, room_id, message, k, f"r{k}")) for k in keys]

    seen: list[str] = []
    params = {"limit": "2"}
    for _ in range(5):
        resp = await relations(alice, room_id, message, "m.annotation", "m.reaction",
                               **params)
        assert resp.code == 200, resp.body
        seen += [e["event_id"] for e in resp.body["chunk"]]
        if "next_batch" not in resp.body:
            break
        params = {"limit": "2", "from": resp.body["next_batch"]}
    assert seen == list(reversed(ids))

    forwards = await relations(alice, room_id, message, dir="f", limit="3")
    assert [e["event_id"] for e in forwards.body["chunk"]] == ids[:3]
    more = await relations(alice, room_id, message, dir="f", limit="3",
                           **{"from": forwards.body["next_batch"]})
    assert [e["event_id"] for e in more.body["chunk"]] == ids[3:]
    # a type filter that matches nothing
    none = await relations(alice, room_id, message, "m.annotation", "m.room.message")
    assert none.body["chunk"] == []


@pytest_twisted.ensureDeferred
async def test_relations_recurse_into_a_thread(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    root = await send_text(alice, room_id, "root", "t1")
    reply = await reply_in_thread(bob, room_id, root, "reply", "h1")
    reaction = await sent(await react(alice, room_id, reply, "👍", "r1"))

    direct = await relations(alice, room_id, root)
    assert [e["event_id"] for e in direct.body["chunk"]] == [reply]
    assert "recursion_depth" not in direct.body

    deep = await relations(alice, room_id, root, recurse="true")
    assert [e["event_id"] for e in deep.body["chunk"]] == [reaction, reply]
    assert deep.body["recursion_depth"] == 3


@pytest_twisted.ensureDeferred
async def test_relations_respect_room_and_history_visibility(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="private_chat")
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.history_visibility/",
                           {"history_visibility": "joined"})
    assert resp.code == 200, resp.body
    secret = await send_text(alice, room_id, "before bob", "t1")
    await sent(await react(alice, room_id, secret, "🤫", "r1"))

    outsider = await relations(bob, room_id, secret)
    assert outsider.code == 403

    resp = await alice.post(f"{V3}/rooms/{room_id}/invite", {"user_id": "@bob:test.local"})
    assert resp.code == 200, resp.body
    assert (await join(bob, room_id)).code == 200
    too_early = await relations(bob, room_id, secret)
    assert too_early.code == 404
    assert (await bob.get(f"{V1}/rooms/{room_id}/threads")).code == 200


# -- matrix-nio ------------------------------------------------------------------


async def call(coro: Coroutine[Any, Any, T]) -> T:
    return await Deferred.fromFuture(asyncio.ensure_future(coro))


@pytest_twisted.ensureDeferred
async def test_nio_reacts_edits_and_replies_in_a_thread(server: TestServer) -> None:
    alice, _, room_id = await shared_room(server)
    message = await send_text(alice, room_id, "hello nio", "t1")
    await server.register("niobob")
    client = nio.AsyncClient(server.base_url, "@niobob:test.local",
                             config=nio.AsyncClientConfig(store_sync_tokens=False,
                                                          encryption_enabled=False))
    try:
        login = await call(client.login("correct horse battery"))
        assert isinstance(login, nio.LoginResponse), login
        joined = await call(client.join(room_id))
        assert isinstance(joined, nio.JoinResponse), joined
        reaction = await call(client.room_send(room_id, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": message, "key": "👋"}}))
        assert isinstance(reaction, nio.RoomSendResponse), reaction
        twice = await call(client.room_send(room_id, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": message, "key": "👋"}}))
        assert isinstance(twice, nio.RoomSendError)
        assert twice.status_code == "M_DUPLICATE_ANNOTATION"
        threaded = await call(client.room_send(room_id, "m.room.message", {
            "msgtype": "m.text", "body": "in a thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": message}}))
        assert isinstance(threaded, nio.RoomSendResponse), threaded
        # nio has no relations API: the aggregations arrive with the root
        context = await call(client.room_context(room_id, message, limit=1))
        assert isinstance(context, nio.RoomContextResponse), context
        root = context.event.source
        assert root["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] \
            == threaded.event_id
        assert root["unsigned"]["m.relations"]["m.thread"]["current_user_participated"]
    finally:
        await call(client.close())


# -- threaded read receipts and per-thread unread counts --------------------------


async def unread_counts(server: TestServer, client: Client,
                        room_id: str) -> tuple[int, dict[str, int]]:
    """The room's main notification count and each thread's, as /sync gives them
    to a client that asks for per-thread counts (once no write is in flight:
    another user's presence write can hold the stream below the last message
    for a moment)."""
    for _ in range(200):
        if server.hs.db.stream_tracker.persisted_upto >= server.hs.db.stream_tracker.max_allocated:
            break
        await sleep(0.01)
    resp = await client.get(f"{V3}/sync", params={
        "filter": '{"room":{"timeline":{"unread_thread_notifications":true,"limit":1}}}'})
    assert resp.code == 200, resp.body
    room = resp.body["rooms"]["join"][room_id]
    threads = {root: c["notification_count"]
               for root, c in room.get("unread_thread_notifications", {}).items()}
    return room["unread_notifications"]["notification_count"], threads


async def read_up_to(client: Client, room_id: str, event_id: str,
                     thread_id: str | None) -> None:
    body = {} if thread_id is None else {"thread_id": thread_id}
    resp = await client.post(f"{V3}/rooms/{room_id}/receipt/m.read/{event_id}", body)
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_threaded_receipts_clear_their_own_thread_only(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    root = await send_text(bob, room_id, "root", "t1")
    first = await reply_in_thread(bob, room_id, root, "first", "h1")
    await reply_in_thread(bob, room_id, root, "second", "h2")
    later = await send_text(bob, room_id, "main again", "t2")

    assert await unread_counts(server, alice, room_id) == (2, {root: 2})

    await read_up_to(alice, room_id, first, root)
    assert await unread_counts(server, alice, room_id) == (2, {root: 1})

    await read_up_to(alice, room_id, later, "main")
    assert await unread_counts(server, alice, room_id) == (0, {root: 1})

    await read_up_to(alice, room_id, later, None)  # unthreaded: everything before it
    assert await unread_counts(server, alice, room_id) == (0, {})


@pytest_twisted.ensureDeferred
async def test_incremental_sync_bundles_a_thread_started_since(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    await send_text(bob, room_id, "warm", "t0")
    await sleep(0.2)  # bob's presence (he came online by sending) lands
    token = (await sync(alice))["next_batch"]
    root = await send_text(bob, room_id, "root", "t1")
    await reply_in_thread(bob, room_id, root, "reply", "h1")

    # a plain-looking range (messages from others only), yet the root needs its bundle
    body = await sync(alice, since=token)

    timeline = body["rooms"]["join"][room_id]["timeline"]["events"]
    served_root = next(e for e in timeline if e["event_id"] == root)
    assert bundled(served_root)["m.thread"]["current_user_participated"] is False
    assert bundled(served_root)["m.thread"]["count"] == 1
