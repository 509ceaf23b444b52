"""The redaction algorithm, version by version (content/rooms/fragments/*-redactions.md)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from homeserver.events.redaction import redact
from tests.events.helpers import ALL_VERSIONS, rv

# Every top-level key any version might keep, plus some that none keep.
TOP = {
    "event_id": "$e:a", "room_id": "!r:a", "sender": "@u:a", "state_key": "",
    "hashes": {"sha256": "h"}, "signatures": {"a": {"ed25519:1": "s"}}, "depth": 5,
    "prev_events": ["$p"], "auth_events": ["$q"], "origin_server_ts": 7,
    "origin": "a", "membership": "join", "prev_state": [],
    "unsigned": {"age_ts": 1}, "redacts": "$x", "age_ts": 1, "other": 1,
}
ALWAYS_KEPT = {
    "event_id", "room_id", "sender", "state_key", "hashes", "signatures", "depth",
    "prev_events", "auth_events", "origin_server_ts", "type", "content",
}
PRE_V11_ALSO_KEPT = {"origin", "membership", "prev_state"}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_top_level_keys(version: str) -> None:
    out = redact({**TOP, "type": "m.room.message", "content": {}}, rv(version))
    expected = ALWAYS_KEPT | (set() if int(version) >= 11 else PRE_V11_ALSO_KEPT)
    assert set(out) == expected
    # never kept: unsigned, top-level redacts, unknown keys
    assert not {"unsigned", "redacts", "age_ts", "other"} & set(out)


MEMBER = {"membership": "join", "displayname": "Alice", "avatar_url": "mxc://a/b",
          "join_authorised_via_users_server": "@admin:a", "reason": "r",
          "third_party_invite": {"display_name": "x", "signed": {"mxid": "@u:a", "token": "t"}}}
CREATE = {"creator": "@u:a", "room_version": "1", "m.federate": False,
          "predecessor": {"room_id": "!old:a"}, "additional_creators": ["@b:a"]}
JOIN_RULES = {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1}
POWER_LEVELS = {"ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "invite": 0,
                "kick": 50, "redact": 50, "state_default": 50, "users": {"@u:a": 100},
                "users_default": 0, "notifications": {"room": 50}, "x": 1}
ALIASES = {"aliases": ["#a:a"], "x": 1}
HISTORY = {"history_visibility": "shared", "x": 1}
REDACTION = {"redacts": "$x", "reason": "spam"}
MESSAGE = {"body": "hi", "msgtype": "m.text"}

PL_V1 = {k: POWER_LEVELS[k] for k in ("ban", "events", "events_default", "kick", "redact",
                                      "state_default", "users", "users_default")}

# (event type, content, {first version of a rule set: expected content})
CONTENT_TABLE: list[tuple[str, dict[str, Any], dict[int, dict[str, Any]]]] = [
    ("m.room.member", MEMBER, {
        1: {"membership": "join"},
        9: {"membership": "join", "join_authorised_via_users_server": "@admin:a"},
        11: {"membership": "join", "join_authorised_via_users_server": "@admin:a",
             "third_party_invite": {"signed": {"mxid": "@u:a", "token": "t"}}},
    }),
    ("m.room.create", CREATE, {1: {"creator": "@u:a"}, 11: CREATE}),
    ("m.room.join_rules", JOIN_RULES, {
        1: {"join_rule": "restricted"},
        8: {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
    }),
    ("m.room.power_levels", POWER_LEVELS, {1: PL_V1, 11: {**PL_V1, "invite": 0}}),
    ("m.room.aliases", ALIASES, {1: {"aliases": ["#a:a"]}, 6: {}}),
    ("m.room.history_visibility", HISTORY, {1: {"history_visibility": "shared"}}),
    ("m.room.redaction", REDACTION, {1: {}, 11: {"redacts": "$x"}}),
    ("m.room.message", MESSAGE, {1: {}}),
    ("m.room.name", {"name": "n"}, {1: {}}),
    ("m.room.third_party_invite", {"public_key": "k", "display_name": "d"}, {1: {}}),
]


def _expected_for(version: str, by_rules: dict[int, dict[str, Any]]) -> dict[str, Any]:
    rules = rv(version).redaction_rules
    return by_rules[max(r for r in by_rules if r <= rules)]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("event_type, content, by_rules", CONTENT_TABLE,
                         ids=[row[0] for row in CONTENT_TABLE])
def test_content_keys_kept(version: str, event_type: str, content: dict,
                           by_rules: dict[int, dict[str, Any]]) -> None:
    event = {"type": event_type, "content": copy.deepcopy(content), "sender": "@u:a"}
    assert redact(event, rv(version))["content"] == _expected_for(version, by_rules)


@pytest.mark.parametrize("version, rules", [
    ("1", 1), ("2", 1), ("3", 1), ("4", 1), ("5", 1), ("6", 6), ("7", 6), ("8", 8),
    ("9", 9), ("10", 9), ("11", 11), ("12", 11),
])
def test_versions_pick_the_spec_rules(version: str, rules: int) -> None:
    assert rv(version).redaction_rules == rules


@pytest.mark.parametrize("tpi, expected", [
    ({"signed": {"token": "t"}, "display_name": "d"}, {"signed": {"token": "t"}}),
    ({"display_name": "d"}, {}),  # the object stays, emptied (as Synapse does)
    ("not-an-object", None),
])
def test_v11_member_keeps_only_signed_of_third_party_invite(tpi: Any, expected: Any) -> None:
    out = redact({"type": "m.room.member", "content": {"membership": "invite",
                                                       "third_party_invite": tpi}}, rv("11"))
    assert out["content"].get("third_party_invite") == expected


@pytest.mark.parametrize("content", [None, "str", [1], 5])
def test_non_object_content_becomes_empty(content: Any) -> None:
    assert redact({"type": "m.room.member", "content": content}, rv("10"))["content"] == {}


def test_missing_content_becomes_empty() -> None:
    assert redact({"type": "m.room.message"}, rv("1"))["content"] == {}


def test_redaction_copies_and_does_not_touch_the_input() -> None:
    event = {"type": "m.room.power_levels", "content": {"users": {"@u:a": 100}}}
    out = redact(event, rv("11"))
    out["content"]["users"]["@v:a"] = 1
    assert event == {"type": "m.room.power_levels", "content": {"users": {"@u:a": 100}}}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction_is_idempotent(version: str) -> None:
    event = {**TOP, "type": "m.room.member", "content": copy.deepcopy(MEMBER)}
    once = redact(event, rv(version))
    assert redact(once, rv(version)) == once
