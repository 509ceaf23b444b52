"""The push rule evaluator over the spec's examples and the default ruleset."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.push.evaluator import (
    PushEvent,
    RoomContext,
    condition_matches,
    evaluate,
    flatten,
    highlights,
    notifies,
)
from homeserver.push.rules import DEFAULT_RULES, build_ruleset, client_ruleset

ALICE = "@alice:example.org"
ROOM = "!room:example.org"


def _event(content: dict[str, Any], type_: str = "m.room.message", sender: str = "@bob:x",
           **extra: Any) -> PushEvent:
    return PushEvent({"type": type_, "content": content, "sender": sender, "room_id": ROOM,
                      "event_id": "$e", **extra})


def _ctx(members: int = 5, name: str | None = "Alice Liddell", sender_power: int = 0,
         levels: dict[str, int] | None = None) -> RoomContext:
    return RoomContext(user_id=ALICE, member_count=lambda: members,
                       display_name=lambda: name, sender_power=lambda: sender_power,
                       notification_power=lambda key: (levels or {}).get(key, 50))


TOPIC = {"type": "m.room.topic", "state_key": "", "sender": "@example:example.org",
         "room_id": "!636q39766251:example.com", "content": {"topic": "Lunch plans"}}


@pytest.mark.parametrize(("topic", "matches"), [
    ("Lunch plans", True), ("LUNCH", True), (" lunch", False), ("lunc", False), (None, False),
])
def test_event_match_globs_the_whole_value_case_insensitively(topic: Any, matches: bool) -> None:
    event = PushEvent({**TOPIC, "content": {"topic": topic}})
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    assert condition_matches(cond, event, _ctx()) is matches


@pytest.mark.parametrize(("body", "matches"), [
    ("An example event.", True), ("exple", True), ("An exciting triple-whammy", True),
    ("counterexample", False), ("examples_", False),
])
def test_event_match_on_body_matches_at_word_boundaries(body: str, matches: bool) -> None:
    cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    assert condition_matches(cond, _event({"body": body}), _ctx()) is matches


def test_event_match_star_does_not_match_a_missing_key() -> None:
    cond = {"kind": "event_match", "key": "content.nothing", "pattern": "*"}
    assert not condition_matches(cond, _event({"body": "x"}), _ctx())


def test_dotted_keys_escape_dots_and_backslashes() -> None:
    flat = flatten({"content": {"m.relates_to": {"rel_type": "m.replace"}, "a\\b": 1}})
    assert flat == {"content.m\\.relates_to.rel_type": "m.replace", "content.a\\\\b": 1}


@pytest.mark.parametrize(("value", "matches"), [(True, True), ("true", False), (1, False)])
def test_event_property_is_compares_type_and_value(value: Any, matches: bool) -> None:
    event = PushEvent({"type": "m.room.create", "state_key": "", "sender": "@a:b",
                       "content": {"m.federate": True}})
    cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": value}
    assert condition_matches(cond, event, _ctx()) is matches


def test_event_property_is_matches_null_but_not_absence() -> None:
    event = _event({"x": None})
    assert condition_matches({"kind": "event_property_is", "key": "content.x", "value": None},
                             event, _ctx())
    assert not condition_matches(
        {"kind": "event_property_is", "key": "content.y", "value": None}, event, _ctx())


@pytest.mark.parametrize(("value", "matches"), [
    ("#myroom:example.com", True), (":example.com", False), ("#other:x", False),
])
def test_event_property_contains_needs_an_exact_element(value: str, matches: bool) -> None:
    event = PushEvent({"type": "m.room.canonical_alias", "state_key": "", "sender": "@a:b",
                       "content": {"alias": "#somewhere:localhost",
                                   "alt_aliases": ["#somewhere:example.org",
                                                   "#myroom:example.com"]}})
    cond = {"kind": "event_property_contains", "key": "content.alt_aliases", "value": value}
    assert condition_matches(cond, event, _ctx()) is matches


@pytest.mark.parametrize(("is_", "count", "matches"), [
    ("2", 2, True), ("==2", 3, False), ("<3", 2, True), ("<2", 2, False), (">2", 3, True),
    ("<=10", 10, True), (">=11", 10, False), ("2.5", 2, False), ("=<2", 2, False),
])
def test_room_member_count(is_: str, count: int, matches: bool) -> None:
    cond = {"kind": "room_member_count", "is": is_}
    assert condition_matches(cond, _event({}), _ctx(members=count)) is matches


@pytest.mark.parametrize(("power", "needed", "matches"), [
    (50, 50, True), (49, 50, False), (0, 0, True), (100, 101, False),
])
def test_sender_notification_permission(power: int, needed: int, matches: bool) -> None:
    cond = {"kind": "sender_notification_permission", "key": "room"}
    ctx = _ctx(sender_power=power, levels={"room": needed})
    assert condition_matches(cond, _event({}), ctx) is matches


@pytest.mark.parametrize(("body", "matches"), [
    ("hi Alice Liddell!", True), ("ALICE LIDDELL", True), ("Alice Liddells", False),
    ("no mention", False),
])
def test_contains_display_name(body: str, matches: bool) -> None:
    cond = {"kind": "contains_display_name"}
    assert condition_matches(cond, _event({"body": body}), _ctx()) is matches


def test_unknown_conditions_never_match() -> None:
    assert not condition_matches({"kind": "org.example.new"}, _event({}), _ctx())
    assert not condition_matches({"kind": "event_match", "key": 1}, _event({}), _ctx())


# -- the default ruleset --------------------------------------------------------

DEFAULTS = build_ruleset(ALICE, {}, {})


def _verdict(event: PushEvent, ctx: RoomContext | None = None,
             ruleset: dict[str, list[dict[str, Any]]] | None = None,
             ) -> tuple[str | None, bool, bool]:
    rule_id, actions = evaluate(ruleset or DEFAULTS, event, ctx or _ctx())
    return rule_id, notifies(actions), highlights(actions)


@pytest.mark.parametrize(("event", "ctx", "expected"), [
    (_event({"msgtype": "m.text", "body": "hello"}), _ctx(),
     (".m.rule.message", True, False)),
    (_event({"msgtype": "m.text", "body": "hello"}), _ctx(members=2),
     (".m.rule.room_one_to_one", True, False)),
    (_event({"algorithm": "x"}, "m.room.encrypted"), _ctx(), (".m.rule.encrypted", True, False)),
    (_event({"algorithm": "x"}, "m.room.encrypted"), _ctx(members=2),
     (".m.rule.encrypted_room_one_to_one", True, False)),
    (_event({"msgtype": "m.notice", "body": "bot"}), _ctx(),
     (".m.rule.suppress_notices", False, False)),
    (_event({"body": "hi", "m.mentions": {"user_ids": [ALICE]}}), _ctx(),
     (".m.rule.is_user_mention", True, True)),
    # m.mentions present: the legacy body rules are skipped
    (_event({"body": "hi alice", "m.mentions": {}}), _ctx(), (".m.rule.message", True, False)),
    (_event({"body": "hi alice"}), _ctx(), (".m.rule.contains_user_name", True, True)),
    (_event({"body": "Alice Liddell, lunch?"}), _ctx(),
     (".m.rule.contains_display_name", True, True)),
    (_event({"body": "hi", "m.mentions": {"room": True}}), _ctx(sender_power=50),
     (".m.rule.is_room_mention", True, True)),
    (_event({"body": "hi", "m.mentions": {"room": True}}), _ctx(sender_power=0),
     (".m.rule.message", True, False)),
    (_event({"body": "@room hi"}), _ctx(sender_power=100), (".m.rule.roomnotif", True, True)),
    (_event({"body": "* fixed", "m.new_content": {"body": "fixed"},
             "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}), _ctx(),
     (".m.rule.suppress_edits", False, False)),
    (_event({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
            "m.reaction"), _ctx(), (".m.rule.reaction", False, False)),
    (_event({"membership": "invite"}, "m.room.member", state_key=ALICE), _ctx(),
     (".m.rule.invite_for_me", True, False)),
    (_event({"membership": "join"}, "m.room.member", state_key="@carol:x"), _ctx(),
     (".m.rule.member_event", False, False)),
    (_event({"body": "Alice Liddell"}, "m.room.tombstone", state_key=""), _ctx(),
     (".m.rule.contains_display_name", True, True)),
    (_event({"replacement_room": "!new:x"}, "m.room.tombstone", state_key=""), _ctx(),
     (".m.rule.tombstone", True, True)),
    (_event({"allow": ["*"]}, "m.room.server_acl", state_key=""), _ctx(),
     (".m.rule.room.server_acl", False, False)),
    (_event({"call_id": "c"}, "m.call.invite"), _ctx(), (".m.rule.call", True, False)),
    (_event({"name": "x"}, "m.room.name", state_key=""), _ctx(), (None, False, False)),
])
def test_default_rules(event: PushEvent, ctx: RoomContext,
                       expected: tuple[str | None, bool, bool]) -> None:
    assert _verdict(event, ctx) == expected


def test_default_rules_are_in_the_spec_order() -> None:
    ids = {kind: [r["rule_id"] for r in rules] for kind, rules in DEFAULT_RULES.items()}
    assert ids["override"] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
        ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
        ".m.rule.is_room_mention", ".m.rule.roomnotif", ".m.rule.tombstone",
        ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"]
    assert ids["content"] == [".m.rule.contains_user_name"]
    assert ids["underride"] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted"]


def test_master_rule_silences_everything_when_enabled() -> None:
    ruleset = build_ruleset(ALICE, {}, {".m.rule.master": (True, None)})
    event = _event({"body": "hi", "m.mentions": {"user_ids": [ALICE]}})
    assert _verdict(event, ruleset=ruleset) == (".m.rule.master", False, False)


def test_user_rules_come_before_defaults_of_their_kind_and_after_master() -> None:
    own = {"room": [{"rule_id": ROOM, "enabled": True, "actions": ["dont_notify"]}],
           "content": [{"rule_id": "cake", "enabled": True, "pattern": "cake",
                        "actions": ["notify", {"set_tweak": "highlight", "value": False}]}]}
    ruleset = build_ruleset(ALICE, own, {})
    assert _verdict(_event({"body": "hello"}), ruleset=ruleset) == (ROOM, False, False)
    # content rules come before room rules: cake notifies without highlight
    assert _verdict(_event({"body": "Cake!"}), ruleset=ruleset) == ("cake", True, False)
    shown = client_ruleset(ruleset)
    assert shown["override"][0]["rule_id"] == ".m.rule.master"
    assert shown["room"] == [{"rule_id": ROOM, "default": False, "enabled": True,
                              "actions": ["dont_notify"]}]


def test_changed_default_actions_apply() -> None:
    ruleset = build_ruleset(ALICE, {}, {".m.rule.message": (None, [])})
    assert _verdict(_event({"body": "hello"}), ruleset=ruleset) == (".m.rule.message", False,
                                                                       False)
    disabled = build_ruleset(ALICE, {}, {".m.rule.message": (False, None)})
    assert _verdict(_event({"body": "hello"}), ruleset=disabled) == (None, False, False)


def test_sender_rule_matches_the_sender() -> None:
    own = {"sender": [{"rule_id": "@spam:x", "enabled": True, "actions": []}]}
    ruleset = build_ruleset(ALICE, own, {})
    assert _verdict(_event({"body": "buy"}, sender="@spam:x"), ruleset=ruleset)[:2] == (
        "@spam:x", False)
    assert _verdict(_event({"body": "hi"}), ruleset=ruleset)[0] == ".m.rule.message"
