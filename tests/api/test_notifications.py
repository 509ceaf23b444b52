"""GET /notifications and the unread counts: what notified the user, and what they read."""

from __future__ import annotations

import pytest_twisted

from tests.api.test_receipts import receipt
from tests.api.test_rooms import V3, send_text
from tests.api.test_rooms import two_users_in_a_room as shared_room
from tests.harness import TestServer

MENTION_BOB = {"user_ids": ["@bob:test.local"]}


@pytest_twisted.ensureDeferred
async def test_notifications_list_newest_first_with_read_flags(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    first = await send_text(alice, room_id, "one", "t1")
    await receipt(bob, room_id, first)
    resp = await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t2",
                           {"msgtype": "m.text", "body": "two", "m.mentions": MENTION_BOB})
    second = resp.body["event_id"]
    await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t3",
                    {"msgtype": "m.notice", "body": "a notice does not notify"})

    resp = await bob.get(f"{V3}/notifications")

    assert resp.code == 200, resp.body
    got = resp.body["notifications"]
    assert [n["event"]["event_id"] for n in got] == [second, first]
    assert [n["read"] for n in got] == [False, True]
    assert all(n["room_id"] == room_id and isinstance(n["ts"], int) for n in got)
    # no rule has a profile tag; the key is there all the same, as on Synapse
    assert all("profile_tag" in n and n["profile_tag"] is None for n in got)
    assert {"set_tweak": "highlight"} in got[0]["actions"] and "notify" in got[0]["actions"]
    assert got[0]["event"]["content"]["body"] == "two"
    assert (await alice.get(f"{V3}/notifications")).body["notifications"] == []


@pytest_twisted.ensureDeferred
async def test_notifications_page_and_filter_highlights(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    sent = [await send_text(alice, room_id, f"msg {i}", f"t{i}") for i in range(3)]
    resp = await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/m",
                           {"msgtype": "m.text", "body": "hey", "m.mentions": MENTION_BOB})
    mention = resp.body["event_id"]

    page1 = await bob.get(f"{V3}/notifications", params={"limit": "2"})
    assert [n["event"]["event_id"] for n in page1.body["notifications"]] == [mention, sent[2]]
    page2 = await bob.get(f"{V3}/notifications",
                          params={"limit": "2", "from": page1.body["next_token"]})
    assert [n["event"]["event_id"] for n in page2.body["notifications"]] == [sent[1], sent[0]]

    only = await bob.get(f"{V3}/notifications", params={"only": "highlight"})
    assert [n["event"]["event_id"] for n in only.body["notifications"]] == [mention]
    bad = await bob.get(f"{V3}/notifications", params={"from": "nonsense"})
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_read_receipt_clears_the_unread_counts(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    await send_text(alice, room_id, "one", "t1")
    resp = await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t2",
                           {"msgtype": "m.text", "body": "two", "m.mentions": MENTION_BOB})
    second = resp.body["event_id"]

    synced = await bob.get(f"{V3}/sync")
    counts = synced.body["rooms"]["join"][room_id]["unread_notifications"]
    assert counts == {"notification_count": 2, "highlight_count": 1}

    await receipt(bob, room_id, second)
    # as clients sync: a long-poll answers once the receipt is persisted (a
    # write still in flight elsewhere may hold "persisted up to" back a moment)
    after = await bob.get(f"{V3}/sync", params={"since": synced.body["next_batch"],
                                                "timeout": "10000"})
    assert after.body["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 0, "highlight_count": 0}


@pytest_twisted.ensureDeferred
async def test_thread_counts_come_per_thread(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    root = await send_text(alice, room_id, "root", "t1")
    await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t2",
                    {"msgtype": "m.text", "body": "in thread", "m.mentions": MENTION_BOB,
                     "m.relates_to": {"rel_type": "m.thread", "event_id": root}})

    flt = '{"room":{"timeline":{"unread_thread_notifications":true}}}'
    synced = await bob.get(f"{V3}/sync", params={"filter": flt})

    room = synced.body["rooms"]["join"][room_id]
    assert room["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert room["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 1}}


@pytest_twisted.ensureDeferred
async def test_messages_from_an_ignored_user_do_not_notify(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    assert (await bob.put(f"{V3}/user/@bob:test.local/account_data/m.ignored_user_list",
                          {"ignored_users": {"@alice:test.local": {}}})).code == 200
    await send_text(alice, room_id, "you will not see this", "t1")
    await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t2",
                    {"msgtype": "m.text", "body": "nor this", "m.mentions": MENTION_BOB})

    synced = await bob.get(f"{V3}/sync")
    assert synced.body["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 0, "highlight_count": 0}
    assert (await bob.get(f"{V3}/notifications")).body["notifications"] == []

    # un-ignored, the next message notifies again
    await bob.put(f"{V3}/user/@bob:test.local/account_data/m.ignored_user_list",
                  {"ignored_users": {}})
    await send_text(alice, room_id, "hello again", "t3")
    after = await bob.get(f"{V3}/sync", params={"since": synced.body["next_batch"]})
    assert after.body["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 1, "highlight_count": 0}


@pytest_twisted.ensureDeferred
async def test_a_redacted_message_no_longer_notifies(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    kept = await send_text(alice, room_id, "kept", "t1")
    resp = await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t2",
                           {"msgtype": "m.text", "body": "oops", "m.mentions": MENTION_BOB})
    oops = resp.body["event_id"]
    synced = await bob.get(f"{V3}/sync")
    assert synced.body["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 2, "highlight_count": 1}

    assert (await alice.put(f"{V3}/rooms/{room_id}/redact/{oops}/r1", {})).code == 200

    after = await bob.get(f"{V3}/sync", params={"since": synced.body["next_batch"]})
    assert after.body["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 1, "highlight_count": 0}
    listed = (await bob.get(f"{V3}/notifications")).body["notifications"]
    assert [n["event"]["event_id"] for n in listed] == [kept]


@pytest_twisted.ensureDeferred
async def test_a_reaction_to_a_thread_reply_counts_in_that_thread(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    # bob wants to hear about reactions
    rule = await bob.put(f"{V3}/pushrules/global/override/reactions",
                         {"conditions": [{"kind": "event_match", "key": "type",
                                          "pattern": "m.reaction"}],
                          "actions": ["notify"]})
    assert rule.code == 200, rule.body
    root = await send_text(bob, room_id, "root", "b1")
    resp = await bob.put(f"{V3}/rooms/{room_id}/send/m.room.message/b2",
                         {"msgtype": "m.text", "body": "reply",
                          "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    reply = resp.body["event_id"]
    assert (await alice.put(f"{V3}/rooms/{room_id}/send/m.reaction/a1",
                            {"m.relates_to": {"rel_type": "m.annotation", "event_id": reply,
                                              "key": "👍"}})).code == 200

    flt = '{"room":{"timeline":{"unread_thread_notifications":true}}}'
    synced = await bob.get(f"{V3}/sync", params={"filter": flt})

    room = synced.body["rooms"]["join"][room_id]
    assert room["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert room["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}}


@pytest_twisted.ensureDeferred
async def test_messages_sent_at_once_each_notify_and_are_searchable(server: TestServer) -> None:
    """Concurrent sends are written in batches (one transaction, one read of
    the room's members and rules for the batch): each message still notifies
    each reader by their own rules, and each is indexed for search."""
    from twisted.internet import defer

    alice, bob, room_id = await shared_room(server)
    carol = await server.register("carol")
    assert (await carol.post(f"{V3}/join/{room_id}", {})).code == 200
    assert (await bob.put(f"{V3}/user/@bob:test.local/account_data/m.ignored_user_list",
                          {"ignored_users": {"@carol:test.local": {}}})).code == 200

    def content(k: int) -> dict[str, object]:
        body: dict[str, object] = {"msgtype": "m.text", "body": f"burst word{k}"}
        if k == 0:
            body["m.mentions"] = MENTION_BOB
        return body
    sends = [defer.ensureDeferred((alice if k % 2 == 0 else carol).put(
        f"{V3}/rooms/{room_id}/send/m.room.message/b{k}", content(k))) for k in range(24)]
    results = await defer.gatherResults(sends)
    assert [r.code for r in results] == [200] * 24

    counts = {}
    for who in (alice, bob, carol):
        synced = await who.get(f"{V3}/sync")
        counts[who.user_id] = synced.body["rooms"]["join"][room_id]["unread_notifications"]
    # bob: alice's 12 (one a mention), none of carol's; alice and carol: each other's
    assert counts["@bob:test.local"] == {"notification_count": 12, "highlight_count": 1}
    assert counts["@alice:test.local"] == {"notification_count": 12, "highlight_count": 0}
    assert counts["@carol:test.local"] == {"notification_count": 12, "highlight_count": 0}

    found = await alice.post(f"{V3}/search", {"search_categories": {"room_events": {
        "search_term": "burst", "order_by": "recent", "filter": {"limit": 50}}}})
    assert found.code == 200, found.body
    assert found.body["search_categories"]["room_events"]["count"] == 24
