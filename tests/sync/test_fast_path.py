"""A woken incremental /sync answered from memory (``sync/recent.py``) says
exactly what the full builder says from the database.

Each case: bob makes an initial sync, things happen, then bob syncs from
that token twice -- first with the fast path allowed, then with it off --
and the two bodies must be equal (``unsigned.age`` aside: time passes
between them). Cases of plain messages must actually take the fast path;
the others must fall back to the full builder and still agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted

from tests.api.test_receipts import receipt
from tests.api.test_rooms import create_room, join, send_text, two_users_in_a_room
from tests.api.test_to_device import send_to_device
from tests.harness import Client, TestServer
from tests.sync.test_sync import sleep, sync

V3 = "/_matrix/client/v3"
BOB = "@bob:test.local"


def without_age(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_age(v) for k, v in value.items()
                if k not in ("age", "last_active_ago")}
    if isinstance(value, list):
        return [without_age(v) for v in value]
    return value


async def messages(alice: Client, bob: Client, room_id: str) -> None:
    for k in range(3):
        await send_text(alice, room_id, f"plain {k}", f"m{k}")


async def mention(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "hello", "a")
    await send_text(alice, room_id, f"hey {BOB} look", "b")
    await send_text(alice, room_id, "bob: and you", "c")


async def other_room(alice: Client, bob: Client, room_id: str) -> None:
    elsewhere = await create_room(alice)  # bob is not in it
    await send_text(alice, elsewhere, "not for bob", "x")
    await send_text(alice, room_id, "for bob", "y")


async def state_change(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "before", "a")
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic/", {"topic": "new"})
    assert resp.code == 200
    await send_text(alice, room_id, "after", "b")


async def bobs_receipt(alice: Client, bob: Client, room_id: str) -> None:
    first = await send_text(alice, room_id, "one", "a")
    await send_text(alice, room_id, "two", "b")
    assert (await receipt(bob, room_id, first)).code == 200
    await send_text(alice, room_id, "three", "c")


async def bob_speaks(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "question", "a")
    await send_text(bob, room_id, "answer", "b")


async def to_device_for_bob(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "look", "a")
    resp = await send_to_device(alice, "m.x", "td", {BOB: {"*": {"n": 1}}})
    assert resp.code == 200


Case = Callable[[Client, Client, str], Awaitable[None]]
# (what happens, the sync filter, whether the fast path must answer)
CASES: dict[str, tuple[Case, dict[str, Any] | None, bool]] = {
    "plain messages": (messages, None, True),
    "mentions count as highlights": (mention, None, True),
    "a room bob is not in": (other_room, None, True),
    "timeline type filter keeps nothing": (
        messages, {"room": {"timeline": {"types": ["m.sticker"]}}}, True),
    "event_fields": (messages, {"event_fields": ["type", "content.body"]}, True),
    "more than the limit": (messages, {"room": {"timeline": {"limit": 2}}}, False),
    "a state change": (state_change, None, False),
    "bob's read receipt": (bobs_receipt, None, False),
    "bob's own message": (bob_speaks, None, False),
    "presence filtered out": (messages, {"presence": {"not_types": ["*"]}}, True),
    "a to-device message for bob": (to_device_for_bob, None, False),
    "lazy-loaded members, nothing read of them yet": (
        messages, {"room": {"state": {"lazy_load_members": True}}}, False),
}


@pytest_twisted.ensureDeferred
async def test_a_woken_long_poll_is_answered_from_memory(server: TestServer) -> None:
    from twisted.internet import defer

    alice, bob, room_id = await two_users_in_a_room(server)
    await send_text(alice, room_id, "warm", "w")
    await sleep(0.2)  # alice's presence (she came online by sending) lands
    token = (await sync(bob))["next_batch"]
    handler = server.hs.sync_handler
    answered = handler.fast_answers
    waiting = defer.ensureDeferred(sync(bob, since=token, timeout=30000))
    await send_text(alice, room_id, "news", "n")
    body = await waiting
    assert [e["content"]["body"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]
            ] == ["news"]
    assert body["rooms"]["join"][room_id]["unread_notifications"]["notification_count"] == 2
    assert handler.fast_answers > answered


@pytest_twisted.ensureDeferred
async def test_presence_does_not_wake_a_poll_whose_filter_drops_it(server: TestServer) -> None:
    """In a big room presence churns; a client that filters presence out is
    not woken for each change (to build a response that holds nothing)."""
    from twisted.internet import defer

    alice, bob, room_id = await two_users_in_a_room(server)
    no_presence = {"presence": {"not_types": ["*"]}}
    token = (await sync(bob, filter=no_presence))["next_batch"]
    waiting = defer.ensureDeferred(sync(bob, since=token, timeout=30000, filter=no_presence))
    await sleep(0.2)
    handler = server.hs.sync_handler
    built = handler.fast_answers
    resp = await alice.put(f"{V3}/presence/@alice:test.local/status",
                           {"presence": "unavailable", "status_msg": "away"})
    assert resp.code == 200
    await sleep(0.3)
    assert not waiting.called
    assert handler.fast_answers == built  # not woken, so nothing was built
    await send_text(alice, room_id, "now", "n")
    body = await waiting
    assert [e["content"]["body"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]
            ] == ["now"]


async def thread_and_mention(alice: Client, bob: Client, room_id: str) -> None:
    """Replies in the thread of the message before the token (a root and its
    replies in one range go to the full builder, which bundles them)."""
    resp = await alice.get(f"{V3}/rooms/{room_id}/messages",
                           params={"dir": "b", "limit": "1"})
    assert resp.code == 200
    root = resp.body["chunk"][0]["event_id"]
    for k in range(2):
        resp = await alice.put(
            f"{V3}/rooms/{room_id}/send/m.room.message/t{k}",
            {"msgtype": "m.text", "body": f"{BOB} in the thread {k}",
             "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
        assert resp.code == 200
    await send_text(alice, room_id, f"{BOB} in the main timeline", "m")


async def reaction(alice: Client, bob: Client, room_id: str) -> None:
    target = await send_text(alice, room_id, f"{BOB} react to this", "r")
    resp = await alice.put(f"{V3}/rooms/{room_id}/send/m.reaction/x", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "+1"}})
    assert resp.code == 200


async def alice_types(alice: Client, bob: Client, room_id: str) -> None:
    resp = await alice.put(f"{V3}/rooms/{room_id}/typing/@alice:test.local",
                           {"typing": True, "timeout": 30000})
    assert resp.code == 200


async def alice_types_and_talks(alice: Client, bob: Client, room_id: str) -> None:
    await alice_types(alice, bob, room_id)
    await send_text(alice, room_id, "typed", "t")


async def alices_receipts(alice: Client, bob: Client, room_id: str) -> None:
    first = await send_text(alice, room_id, "one", "a")
    assert (await receipt(alice, room_id, first)).code == 200
    second = await send_text(alice, room_id, "two", "b")
    assert (await receipt(alice, room_id, second, "m.read.private")).code == 200
    assert (await receipt(alice, room_id, second, "m.read",
                          {"thread_id": "main"})).code == 200


async def alices_private_receipt(alice: Client, bob: Client, room_id: str) -> None:
    first = await send_text(alice, room_id, "one", "a")
    assert (await receipt(alice, room_id, first, "m.read.private")).code == 200


async def alice_moves_her_receipt(alice: Client, bob: Client, room_id: str) -> None:
    """Only the latest write of a receipt is sent."""
    first = await send_text(alice, room_id, "one", "a")
    assert (await receipt(alice, room_id, first)).code == 200
    second = await send_text(alice, room_id, "two", "b")
    assert (await receipt(alice, room_id, second)).code == 200


THREADED = {"room": {"timeline": {"unread_thread_notifications": True}}}
CASES.update({
    "unread_thread_notifications": (thread_and_mention, THREADED, True),
    "alice types": (alice_types, None, True),
    "alice's receipts": (alices_receipts, None, True),
    "alice's private receipt": (alices_private_receipt, None, True),
    "alice moves her receipt": (alice_moves_her_receipt, None, True),
    "receipts filtered out": (alices_receipts,
                              {"room": {"ephemeral": {"not_types": ["m.receipt"]}}}, True),
    "alice types and talks": (alice_types_and_talks, None, True),
    "alice types, lazy members and thread counts": (
        alice_types_and_talks, {"room": {"timeline": {"unread_thread_notifications": True},
                                         "state": {"lazy_load_members": True}}}, False),
    "typing filtered out": (alice_types, {"room": {"ephemeral": {"not_types": ["m.typing"]}}},
                            True),
    "unread_thread_notifications with lazy members": (
        messages, {"room": {"timeline": {"unread_thread_notifications": True},
                            "state": {"lazy_load_members": True}}}, False),
})


@pytest.mark.parametrize("case", list(CASES))
@pytest_twisted.ensureDeferred
async def test_fast_path_answers_as_the_database_does(server: TestServer, case: str) -> None:
    happen, sync_filter, fast = CASES[case]
    alice, bob, room_id = await two_users_in_a_room(server)
    await send_text(alice, room_id, "before the token", "first")
    await sleep(0.2)  # alice's presence (she came online by sending) lands
    params: dict[str, Any] = {} if sync_filter is None else {"filter": sync_filter}
    start = (await sync(bob, **params))["next_batch"]
    await happen(alice, bob, room_id)

    handler = server.hs.sync_handler
    answered = handler.fast_answers
    from_memory = await sync(bob, since=start, **params)
    assert (handler.fast_answers > answered) is fast
    handler.fast_path = False
    from_database = await sync(bob, since=start, **params)
    assert from_database["next_batch"] == from_memory["next_batch"]
    assert without_age(from_memory) == without_age(from_database)
    if fast and sync_filter is None and happen is not alice_types:
        assert from_memory["rooms"]["join"][room_id]["timeline"]["events"]
    for answer in (from_memory, from_database):
        # bob's membership at each event (MSC4115), from memory as from the
        # database: he was joined all along
        for room in answer["rooms"]["join"].values():
            for event in room["timeline"]["events"]:
                if sync_filter is None or "event_fields" not in sync_filter:
                    assert event["unsigned"]["membership"] == "join", event
    if happen in (alices_receipts, alice_moves_her_receipt, alice_types) and sync_filter is None:
        assert from_memory["rooms"]["join"][room_id]["ephemeral"]["events"]


# -- lazy-loaded members ----------------------------------------------------------------

LAZY: dict[str, Any] = {"room": {"state": {"lazy_load_members": True}},
                        "presence": {"not_types": ["*"]}}
ELEMENT: dict[str, Any] = {"room": {"state": {"lazy_load_members": True},
                                    "timeline": {"limit": 20,
                                                 "unread_thread_notifications": True}}}


async def alice_again(alice: Client, carol: Client, room_id: str) -> None:
    for k in range(3):
        await send_text(alice, room_id, f"again {k}", f"a{k}")


async def carol_speaks(alice: Client, carol: Client, room_id: str) -> None:
    await send_text(carol, room_id, "hello from carol", "c1")
    await send_text(alice, room_id, "hi carol", "a1")


async def alice_renamed(alice: Client, carol: Client, room_id: str) -> None:
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.member/@alice:test.local",
                           {"membership": "join", "displayname": "Alice B."})
    assert resp.code == 200
    await send_text(alice, room_id, "renamed", "r1")


async def topic_then_carol(alice: Client, carol: Client, room_id: str) -> None:
    """Another state change of the room leaves what was read of its
    members valid once the range is past it."""
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic/", {"topic": "t"})
    assert resp.code == 200
    await send_text(carol, room_id, "after the topic", "c2")


# (what happens, the filter, whether the second device is answered from memory)
LAZY_CASES: dict[str, tuple[Case, dict[str, Any], bool]] = {
    "a sender already sent": (alice_again, LAZY, True),
    "a sender not sent yet": (carol_speaks, LAZY, True),
    "the Element filter, a sender already sent": (alice_again, ELEMENT, True),
    "the Element filter, a new sender whose presence comes too": (carol_speaks, ELEMENT,
                                                                   False),
    "redundant members asked for": (
        alice_again, {"room": {"state": {"lazy_load_members": True,
                                         "include_redundant_members": True}},
                      "presence": {"not_types": ["*"]}}, True),
    "the state filter drops members": (
        carol_speaks, {"room": {"state": {"lazy_load_members": True,
                                          "not_types": ["m.room.member"]}},
                       "presence": {"not_types": ["*"]}}, True),
    "event_fields": (carol_speaks, {**LAZY, "event_fields": ["type", "sender",
                                                             "content.displayname"]}, True),
    "a sender's member event changed": (alice_renamed, LAZY, False),
}


@pytest.mark.parametrize("case", list(LAZY_CASES))
@pytest_twisted.ensureDeferred
async def test_lazy_members_from_memory_as_from_the_database(server: TestServer,
                                                             case: str) -> None:
    """Bob's two devices are in the same place; after something happens, one
    syncs through the full builder, the other (from the same token) through
    the fast path: both get the same members, the summary with them, and
    next time neither gets them again."""
    happen, sync_filter, fast = LAZY_CASES[case]
    alice, bob, room_id = await two_users_in_a_room(server)
    carol = await server.register("carol")
    assert (await join(carol, room_id)).code == 200
    session = await server.hs.sessions.create_login_session(BOB, "SECOND")
    bob2 = server.client(session.access_token)
    for k in range(21):  # carol's join out of the initial syncs' timelines
        await send_text(alice, room_id, f"before the tokens {k}", f"f{k}")
    await sleep(0.2)
    handler = server.hs.sync_handler
    tokens = [(await sync(device, filter=sync_filter))["next_batch"] for device in (bob, bob2)]
    # one message read by the full builder on each device: what the
    # builder read of alice's member is left in memory
    await send_text(alice, room_id, "warm", "warm")
    handler.fast_path = False
    warm = [await sync(device, since=t, filter=sync_filter)
            for device, t in zip((bob, bob2), tokens, strict=True)]
    start = warm[0]["next_batch"]
    assert warm[1]["next_batch"] == start
    await happen(alice, carol, room_id)

    from_database = await sync(bob, since=start, filter=sync_filter)
    handler.fast_path = True
    answered = handler.fast_answers
    from_memory = await sync(bob2, since=start, filter=sync_filter)
    assert (handler.fast_answers > answered) is fast
    assert from_memory["next_batch"] == from_database["next_batch"]
    assert without_age(from_memory) == without_age(from_database)
    members = [e.get("sender") for e in
               from_database["rooms"]["join"][room_id]["state"]["events"]]
    if happen is carol_speaks and "not_types" not in sync_filter["room"]["state"]:
        assert members == ["@carol:test.local"]
    elif happen is alice_again:
        assert members == (["@alice:test.local"] if "include_redundant_members" in
                           sync_filter["room"]["state"] else [])

    # and what each device was sent is remembered alike
    await send_text(carol, room_id, "once more", "c9")
    handler.fast_path = False
    again_database = await sync(bob, since=from_database["next_batch"], filter=sync_filter)
    again_memory = await sync(bob2, since=from_memory["next_batch"], filter=sync_filter)
    assert without_age(again_memory["rooms"]) == without_age(again_database["rooms"])


@pytest_twisted.ensureDeferred
async def test_a_woken_lazy_loading_poll_gets_the_new_senders_member(
        server: TestServer) -> None:
    """With lazy-loaded members, a woken long-poll is answered from memory
    with the member event of a sender it has not seen, and only once."""
    from twisted.internet import defer

    alice, bob, room_id = await two_users_in_a_room(server)
    carol = await server.register("carol")
    assert (await join(carol, room_id)).code == 200
    dave = await server.register("dave")
    assert (await join(dave, room_id)).code == 200
    for k in range(10):  # carol's join out of the initial syncs' timelines
        await send_text(alice, room_id, f"filler {k}", f"f{k}")
    await sleep(0.2)
    token = (await sync(bob, filter=LAZY))["next_batch"]
    dave_token = (await sync(dave, filter=LAZY))["next_batch"]
    # dave's sync reads carol's member first (the full builder), then bob's
    # is answered from memory
    await send_text(carol, room_id, "hi", "c")
    handler = server.hs.sync_handler
    await sync(dave, since=dave_token, filter=LAZY)
    answered = handler.fast_answers
    body = await sync(bob, since=token, filter=LAZY)
    room = body["rooms"]["join"][room_id]
    assert [e["content"]["body"] for e in room["timeline"]["events"]] == ["hi"]
    assert [e["state_key"] for e in room["state"]["events"]] == ["@carol:test.local"]
    assert room["summary"]["m.joined_member_count"] == 4
    assert handler.fast_answers > answered

    waiting = defer.ensureDeferred(sync(bob, since=body["next_batch"], timeout=30000,
                                        filter=LAZY))
    await send_text(carol, room_id, "again", "c2")
    body = await waiting
    room = body["rooms"]["join"][room_id]
    assert [e["content"]["body"] for e in room["timeline"]["events"]] == ["again"]
    assert room["state"]["events"] == []
    assert "summary" not in room
    assert handler.fast_answers > answered + 1


@pytest.mark.parametrize("threaded", [False, True])
@pytest_twisted.ensureDeferred
async def test_unread_counts_carry_over_a_presence_change(server: TestServer,
                                                           threaded: bool) -> None:
    """A presence change in between (the full builder answers it, without
    the room) does not stop the next message's counts coming from memory."""
    alice, bob, room_id = await two_users_in_a_room(server)
    sync_filter = THREADED if threaded else {"room": {"timeline": {"limit": 10}}}
    await send_text(alice, room_id, f"{BOB} first", "first")
    await sleep(0.2)
    token = (await sync(bob, filter=sync_filter))["next_batch"]
    # a new status message (alice stays online and active: her next message
    # changes nothing more of her presence)
    resp = await alice.put(f"{V3}/presence/@alice:test.local/status",
                           {"presence": "online", "status_msg": "busy"})
    assert resp.code == 200
    body = await sync(bob, since=token, filter=sync_filter)
    assert [p["sender"] for p in body["presence"]["events"]] == ["@alice:test.local"]
    assert room_id not in body["rooms"]["join"]
    await send_text(alice, room_id, f"{BOB} second", "second")
    handler = server.hs.sync_handler
    answered = handler.fast_answers
    from_memory = await sync(bob, since=body["next_batch"], filter=sync_filter)
    assert handler.fast_answers > answered
    handler.fast_path = False
    from_database = await sync(bob, since=body["next_batch"], filter=sync_filter)
    assert without_age(from_memory) == without_age(from_database)
    assert from_memory["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 2, "highlight_count": 2}
