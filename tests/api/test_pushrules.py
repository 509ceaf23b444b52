"""Push rules: a user reads and edits their ruleset; the rules decide what notifies."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest_twisted

from tests.api.test_rooms import ALICE, V3, send_text
from tests.api.test_rooms import two_users_in_a_room as shared_room
from tests.harness import Client, TestServer

RULES = f"{V3}/pushrules"


async def sync_counts(client: Client, room_id: str) -> dict[str, int]:
    resp = await client.get(f"{V3}/sync")
    assert resp.code == 200, resp.body
    counts: dict[str, int] = resp.body["rooms"]["join"][room_id]["unread_notifications"]
    return counts


def ids(rules: list[dict[str, Any]]) -> list[str]:
    return [r["rule_id"] for r in rules]


@pytest_twisted.ensureDeferred
async def test_new_user_gets_the_server_default_rules(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await alice.get(f"{RULES}/")

    assert resp.code == 200, resp.body
    rules = resp.body["global"]
    assert ids(rules["override"])[:2] == [".m.rule.master", ".m.rule.suppress_notices"]
    assert ids(rules["underride"])[-2:] == [".m.rule.message", ".m.rule.encrypted"]
    assert rules["room"] == [] and rules["sender"] == []
    assert rules["content"] == [{
        "rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True,
        "pattern": "alice",
        "actions": ["notify", {"set_tweak": "sound", "value": "default"},
                    {"set_tweak": "highlight"}]}]
    mention = (await alice.get(f"{RULES}/global/override/.m.rule.is_user_mention")).body
    assert mention["conditions"][0]["value"] == ALICE
    scope = await alice.get(f"{RULES}/global/")
    assert scope.body == rules


@pytest_twisted.ensureDeferred
async def test_user_adds_orders_and_deletes_rules(server: TestServer) -> None:
    alice = await server.register("alice")
    cake = {"pattern": "cake", "actions": ["notify"]}

    assert (await alice.put(f"{RULES}/global/content/cake", cake)).code == 200
    assert (await alice.put(f"{RULES}/global/content/lie", {"pattern": "cake*lie",
                                                           "actions": ["notify"]},
                            params={"before": "cake"})).code == 200
    assert (await alice.put(f"{RULES}/global/content/pie", {"pattern": "pie",
                                                           "actions": []},
                            params={"after": "cake"})).code == 200

    content = (await alice.get(f"{RULES}/global/content")).code
    assert content in (400, 404)  # no rule ID: not a rule
    rules = (await alice.get(f"{RULES}/")).body["global"]["content"]
    assert ids(rules) == ["lie", "cake", "pie", ".m.rule.contains_user_name"]
    got = await alice.get(f"{RULES}/global/content/cake")
    assert got.body == {"rule_id": "cake", "default": False, "enabled": True,
                        "pattern": "cake", "actions": ["notify"]}

    assert (await alice.delete(f"{RULES}/global/content/cake")).code == 200
    gone = await alice.get(f"{RULES}/global/content/cake")
    assert (gone.code, gone.body["errcode"]) == (404, "M_NOT_FOUND")
    again = await alice.delete(f"{RULES}/global/content/cake")
    assert again.code == 404


@pytest_twisted.ensureDeferred
async def test_server_default_rules_can_be_toggled_but_not_deleted(server: TestServer) -> None:
    alice = await server.register("alice")
    master = f"{RULES}/global/override/.m.rule.master"

    assert (await alice.get(f"{master}/enabled")).body == {"enabled": False}
    assert (await alice.put(f"{master}/enabled", {"enabled": True})).code == 200
    assert (await alice.get(f"{master}/enabled")).body == {"enabled": True}
    assert (await alice.put(f"{RULES}/global/underride/.m.rule.message/actions",
                            {"actions": ["notify", {"set_tweak": "sound",
                                                    "value": "ping"}]})).code == 200
    message = await alice.get(f"{RULES}/global/underride/.m.rule.message/actions")
    assert message.body == {"actions": ["notify", {"set_tweak": "sound", "value": "ping"}]}

    deleted = await alice.delete(master)
    assert deleted.code == 400
    assert (await alice.get(master)).code == 200
    replaced = await alice.put(master, {"actions": ["notify"]})
    assert replaced.code == 400
    # the change is in the m.push_rules account data too
    data = await alice.get(f"{V3}/user/{ALICE}/account_data/m.push_rules")
    assert data.body["global"]["override"][0]["enabled"] is True


@pytest_twisted.ensureDeferred
async def test_bad_rules_are_refused_and_nothing_is_stored(server: TestServer) -> None:
    alice = await server.register("alice")
    rule = f"{RULES}/global/override/mine"
    cases = [
        ({"conditions": []}, "M_BAD_JSON"),
        ({"actions": "notify"}, "M_BAD_JSON"),
        ({"actions": ["explode"]}, "M_INVALID_PARAM"),
        ({"actions": [{"value": 1}]}, "M_INVALID_PARAM"),
        ({"actions": [], "conditions": "x"}, "M_BAD_JSON"),
        ({"actions": [], "conditions": [{"key": "type"}]}, "M_BAD_JSON"),
        ({"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]},
         "M_INVALID_PARAM"),
        ({"actions": [], "conditions": [{"kind": "room_member_count", "is": 2}]},
         "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        resp = await alice.put(rule, body)
        assert (resp.code, resp.body.get("errcode")) == (400, errcode), body
    no_pattern = await alice.put(f"{RULES}/global/content/x", {"actions": []})
    assert no_pattern.code == 400
    bad_kind = await alice.put(f"{RULES}/global/middle/x", {"actions": []})
    assert bad_kind.code == 400
    missing_anchor = await alice.put(rule, {"actions": []}, params={"before": "nope"})
    assert (missing_anchor.code, missing_anchor.body["errcode"]) == (400, "M_UNKNOWN")
    assert (await alice.get(rule)).code == 404
    assert (await alice.put(f"{rule}/enabled", {"enabled": True})).code == 404
    assert (await alice.put(f"{rule}/actions", {"actions": []})).code == 404
    assert (await alice.get(f"{RULES}/")).body["global"]["override"][1]["rule_id"] == \
        ".m.rule.suppress_notices"


@pytest_twisted.ensureDeferred
async def test_room_rule_silences_a_room_for_that_user(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    await send_text(alice, room_id, "before the rule", "t1")
    assert (await sync_counts(bob, room_id))["notification_count"] == 1

    resp = await bob.put(f"{RULES}/global/room/{quote(room_id)}", {"actions": []})
    assert resp.code == 200, resp.body
    await send_text(alice, room_id, "after the rule", "t2")

    assert (await sync_counts(bob, room_id))["notification_count"] == 1


@pytest_twisted.ensureDeferred
async def test_keyword_rule_highlights_and_disabled_rule_does_not(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    await bob.put(f"{RULES}/global/content/lunch",
                  {"pattern": "lunch", "actions": ["notify", {"set_tweak": "highlight"}]})

    await send_text(alice, room_id, "Lunch time?", "t1")
    assert await sync_counts(bob, room_id) == {"notification_count": 1, "highlight_count": 1}

    await bob.put(f"{RULES}/global/content/lunch/enabled", {"enabled": False})
    await send_text(alice, room_id, "lunch now", "t2")
    assert await sync_counts(bob, room_id) == {"notification_count": 2, "highlight_count": 1}


@pytest_twisted.ensureDeferred
async def test_mentions_and_notices_follow_the_default_rules(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/n1",
                    {"msgtype": "m.notice", "body": "bot says hi"})
    assert await sync_counts(bob, room_id) == {"notification_count": 0, "highlight_count": 0}

    await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/m1",
                    {"msgtype": "m.text", "body": "hey you",
                     "m.mentions": {"user_ids": ["@bob:test.local"]}})
    assert await sync_counts(bob, room_id) == {"notification_count": 1, "highlight_count": 1}
    # the sender's own messages never count for the sender
    assert await sync_counts(alice, room_id) == {"notification_count": 0, "highlight_count": 0}


@pytest_twisted.ensureDeferred
async def test_default_rules_are_in_the_first_sync_and_account_data(server: TestServer) -> None:
    # a client (Element) reads the ruleset from the initial sync's account data
    # before the user ever changed a rule
    alice = await server.register("alice")
    first = await alice.get(f"{V3}/sync")
    data = {e["type"]: e["content"] for e in first.body["account_data"]["events"]}
    rules = data["m.push_rules"]["global"]
    assert rules == (await alice.get(f"{RULES}/")).body["global"]
    assert [r["rule_id"] for r in rules["override"]][0] == ".m.rule.master"
    # an incremental sync does not repeat it
    later = await alice.get(f"{V3}/sync", params={"since": first.body["next_batch"],
                                                  "timeout": "0"})
    assert "m.push_rules" not in [e["type"] for e in
                                  later.body.get("account_data", {}).get("events", [])]
    stored = await alice.get(f"{V3}/user/{ALICE}/account_data/m.push_rules")
    assert stored.code == 200 and stored.body["global"] == rules


@pytest_twisted.ensureDeferred
async def test_trailing_slash_lists_a_scope_or_a_kind(server: TestServer) -> None:
    alice = await server.register("alice")
    assert (await alice.put(f"{RULES}/global/room/{quote('!a:example.org')}",
                            {"actions": ["notify"]})).code == 200
    assert (await alice.put(f"{RULES}/global/room/{quote('!b:example.org')}",
                            {"actions": ["dont_notify"]},
                            params={"after": "!a:example.org"})).code == 200

    room = await alice.get(f"{RULES}/global/room/")
    assert room.code == 200, room.body
    assert room.body == [
        {"rule_id": "!a:example.org", "default": False, "enabled": True, "actions": ["notify"]},
        {"rule_id": "!b:example.org", "default": False, "enabled": True,
         "actions": ["dont_notify"]}]
    assert (await alice.get(f"{RULES}/global/")).body["room"] == room.body
    assert (await alice.get(f"{RULES}/global/underride/")).body[-1]["rule_id"] == \
        ".m.rule.encrypted"
    pattern = await alice.get(f"{RULES}/global/content/.m.rule.contains_user_name/pattern")
    assert pattern.body == {"pattern": "alice"}


@pytest_twisted.ensureDeferred
async def test_paths_that_name_no_rule_are_refused_as_synapse_does(server: TestServer) -> None:
    alice = await server.register("alice")
    master = f"{RULES}/global/override/.m.rule.master"
    backslashed = quote("#fo\\o:example.com", safe="")
    refused = [
        ("GET", f"{RULES}/global"),  # a listing needs its trailing slash
        ("GET", f"{RULES}/global/room"),
        ("GET", f"{RULES}/not_a_scope/"),
        ("GET", f"{RULES}/global/not_a_kind/"),
        ("GET", f"{master}/not_an_attr"),
        ("PUT", f"{master}/not_an_attr"),
        ("PUT", f"{RULES}/"),  # no scope
        ("PUT", f"{RULES}/global"),  # no kind
        ("PUT", f"{RULES}/global/room"),  # no rule ID
        ("PUT", f"{RULES}/global/room/"),
        ("PUT", f"{RULES}/global/room/{backslashed}"),
    ]
    for method, path in refused:
        resp = await alice.request(method, path, {"enabled": True, "actions": ["notify"]}
                                   if method == "PUT" else None)
        assert resp.code == 400, (method, path, resp.body)
        assert "errcode" in resp.body, (method, path)
    no_slash = await alice.get(RULES)
    assert (no_slash.code, no_slash.body["errcode"]) == (404, "M_UNRECOGNIZED")
    assert (await alice.get(f"{RULES}/global/override/not_a_rule")).code == 404
    # nothing was stored
    assert (await alice.get(f"{RULES}/global/room/")).body == []
