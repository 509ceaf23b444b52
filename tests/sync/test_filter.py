"""The sync filter model: what a client's filter asks /sync to send."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import pytest_twisted

from homeserver.errors import MatrixError
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.access import RoomEventFilter
from homeserver.sync.filter import (
    DEFAULT_SYNC_FILTER,
    MAX_LIMIT,
    MAX_TIMELINE_LIMIT,
    EventFilter,
    apply_event_fields,
    parse_sync_filter,
    room_event_matches,
    room_filter_blocks_all,
    split_field_path,
    type_matches,
)
from tests.harness import TestServer
from tests.rooms.helpers import make_event

V3 = "/_matrix/client/v3"
ROOM_A = "!a:test.local"
ROOM_B = "!b:test.local"
ROOM_C = "!c:test.local"


# -- types and senders --------------------------------------------------------------


@pytest.mark.parametrize("event_type, pattern, expected", [
    ("m.room.message", "m.room.message", True),
    ("m.room.message", "m.room.messag", False),
    ("m.room.message", "m.room.*", True),
    ("m.room.message", "m.*", True),
    ("m.room.message", "*", True),
    ("m.room.message", "*.message", True),
    ("m.room.message", "m.*.message", True),
    ("m.room.member", "m.*.message", False),
    ("m.room.message", "m.room.*.x", False),
    ("m.room", "m.room.*", False),
    ("m.room.", "m.room.*", True),
    # only * is special: these are literal characters
    ("m.room.message", "m.room.messag?", False),
    ("m.room.messag?", "m.room.messag?", True),
    ("m.room.a", "m.room.[a]", False),
    ("mxroom", "m.room", False),
    ("m.room\nx", "m.room*", True),
])
def test_type_patterns_follow_the_spec_wildcard(event_type: str, pattern: str,
                                                expected: bool) -> None:
    assert type_matches(event_type, pattern) is expected


@pytest.mark.parametrize("body, event_type, sender, expected", [
    ({}, "m.presence", "@a:x", True),
    ({"types": ["m.presence"]}, "m.presence", "@a:x", True),
    ({"types": ["m.*"]}, "org.example", "@a:x", False),
    ({"types": []}, "m.presence", "@a:x", False),
    ({"not_types": ["m.presence"]}, "m.presence", "@a:x", False),
    ({"not_types": ["*"]}, "m.presence", "@a:x", False),
    ({"types": ["m.*"], "not_types": ["m.presence"]}, "m.presence", "@a:x", False),
    ({"senders": ["@a:x"]}, "m.presence", "@a:x", True),
    ({"senders": ["@a:x"]}, "m.presence", "@b:x", False),
    ({"not_senders": ["@a:x"]}, "m.presence", "@a:x", False),
    ({"senders": ["@a:x"], "not_senders": ["@a:x"]}, "m.presence", "@a:x", False),
    ({"senders": []}, "m.presence", "@a:x", False),
    # account data has no sender: a sender allow-list keeps none of it
    ({"senders": ["@a:x"]}, "m.push_rules", None, False),
    ({"not_senders": ["@a:x"]}, "m.push_rules", None, True),
])
def test_event_filter_keeps_what_it_names(body: dict[str, Any], event_type: str,
                                          sender: str | None, expected: bool) -> None:
    presence = parse_sync_filter({"presence": body}).presence
    account_data = parse_sync_filter({"account_data": body}).account_data

    assert presence.matches(event_type, sender) is expected
    assert account_data.matches(event_type, sender) is expected


@pytest.mark.parametrize("body, blocks", [
    ({}, False),
    ({"types": []}, True),
    ({"senders": []}, True),
    ({"not_types": ["*"]}, True),
    ({"not_types": ["m.*"]}, False),
])
def test_a_filter_that_keeps_nothing_says_so(body: dict[str, Any], blocks: bool) -> None:
    sync_filter = parse_sync_filter({"presence": body, "room": {"ephemeral": body}})

    assert sync_filter.presence.blocks_all() is blocks
    assert room_filter_blocks_all(sync_filter.ephemeral) is blocks


@pytest.mark.parametrize("body, event_type, sender, content, expected", [
    ({}, "m.typing", None, {}, True),
    ({"types": ["m.receipt"]}, "m.typing", None, {}, False),
    ({"types": ["m.*"], "not_types": ["m.typing"]}, "m.typing", None, {}, False),
    ({"senders": ["@a:x"]}, "m.room.message", "@a:x", {}, True),
    ({"not_senders": ["@a:x"]}, "m.room.message", "@a:x", {}, False),
    ({"contains_url": True}, "m.room.message", "@a:x", {"url": "mxc://x/y"}, True),
    ({"contains_url": True}, "m.room.message", "@a:x", {"body": "hi"}, False),
    ({"contains_url": True}, "m.room.message", "@a:x", {"url": 5}, False),
    ({"contains_url": False}, "m.room.message", "@a:x", {"url": "mxc://x/y"}, False),
    ({"contains_url": False}, "m.room.message", "@a:x", None, True),
])
def test_room_sections_match_events_without_an_event_object(
        body: dict[str, Any], event_type: str, sender: str | None,
        content: dict[str, Any] | None, expected: bool) -> None:
    section = parse_sync_filter({"room": {"ephemeral": body}}).ephemeral

    assert room_event_matches(section, event_type, sender, content) is expected


def test_timeline_section_is_the_room_event_filter_room_reads_apply() -> None:
    sync_filter = parse_sync_filter({"room": {"timeline": {
        "types": ["m.room.message"], "not_senders": ["@spam:x"], "contains_url": False}}})
    version = KNOWN_ROOM_VERSIONS["10"]
    hello = make_event(version, "m.room.message", "@alice:x", {"body": "hi"}, room_id=ROOM_A)
    spam = make_event(version, "m.room.message", "@spam:x", {"body": "buy"}, room_id=ROOM_A)
    image = make_event(version, "m.room.message", "@alice:x", {"url": "mxc://x/y"},
                       room_id=ROOM_A)

    assert isinstance(sync_filter.timeline, RoomEventFilter)
    assert [sync_filter.timeline.matches(e) for e in (hello, spam, image)] == [
        True, False, False]
    assert [room_event_matches(sync_filter.timeline, e.type, e.sender, e.content)
            for e in (hello, spam, image)] == [True, False, False]


# -- rooms --------------------------------------------------------------------------


@pytest.mark.parametrize("room, expected", [
    ({}, {ROOM_A: True, ROOM_B: True}),
    ({"rooms": [ROOM_A]}, {ROOM_A: True, ROOM_B: False}),
    ({"not_rooms": [ROOM_A]}, {ROOM_A: False, ROOM_B: True}),
    ({"rooms": [ROOM_A, ROOM_B], "not_rooms": [ROOM_A]}, {ROOM_A: False, ROOM_B: True}),
    ({"rooms": []}, {ROOM_A: False, ROOM_B: False}),
])
def test_room_filter_lists_decide_which_rooms_a_sync_mentions(
        room: dict[str, Any], expected: dict[str, bool]) -> None:
    sync_filter = parse_sync_filter({"room": room})

    assert {r: sync_filter.room_allowed(r) for r in expected} == expected


@pytest.mark.parametrize("room, section, expected", [
    # the section alone
    ({"timeline": {"not_rooms": [ROOM_A]}}, "timeline",
     {ROOM_A: False, ROOM_B: True, ROOM_C: True}),
    ({"state": {"rooms": [ROOM_A]}}, "state",
     {ROOM_A: True, ROOM_B: False, ROOM_C: False}),
    ({"ephemeral": {"rooms": [ROOM_A], "not_rooms": [ROOM_A]}}, "ephemeral",
     {ROOM_A: False, ROOM_B: False, ROOM_C: False}),
    ({"account_data": {"not_rooms": [ROOM_C]}}, "room_account_data",
     {ROOM_A: True, ROOM_B: True, ROOM_C: False}),
    # both levels must allow a room
    ({"rooms": [ROOM_A, ROOM_B], "timeline": {"rooms": [ROOM_B, ROOM_C]}}, "timeline",
     {ROOM_A: False, ROOM_B: True, ROOM_C: False}),
    ({"not_rooms": [ROOM_A], "state": {"rooms": [ROOM_A, ROOM_B]}}, "state",
     {ROOM_A: False, ROOM_B: True, ROOM_C: False}),
    # another section's lists do not matter
    ({"timeline": {"rooms": [ROOM_A]}}, "state",
     {ROOM_A: True, ROOM_B: True, ROOM_C: True}),
])
def test_a_section_is_filled_only_for_rooms_both_levels_allow(
        room: dict[str, Any], section: Any, expected: dict[str, bool]) -> None:
    sync_filter = parse_sync_filter({"room": room})
    named = getattr(sync_filter, f"{section}_room_allowed")

    assert {r: sync_filter.section_room_allowed(section, r) for r in expected} == expected
    assert {r: named(r) for r in expected} == expected


# -- limits and flags ---------------------------------------------------------------


@pytest.mark.parametrize("timeline, expected", [
    ({}, 10),
    ({"limit": 1}, 1),
    ({"limit": 50}, 50),
    ({"limit": 0}, 0),
    ({"limit": MAX_TIMELINE_LIMIT + 1}, MAX_TIMELINE_LIMIT),
    ({"limit": 10**30}, MAX_TIMELINE_LIMIT),
    ({"limit": -5}, 0),
    ({"limit": "20"}, 10),
    ({"limit": 20.0}, 10),
    ({"limit": True}, 10),
    ({"limit": None}, 10),
])
def test_timeline_limit_defaults_to_ten_and_is_capped(timeline: dict[str, Any],
                                                      expected: int) -> None:
    sync_filter = parse_sync_filter({"room": {"timeline": timeline}})

    assert sync_filter.timeline.limit == expected
    assert sync_filter.timeline_limit == expected


def test_a_timeline_limit_of_zero_blocks_the_timeline() -> None:
    assert room_filter_blocks_all(parse_sync_filter(
        {"room": {"timeline": {"limit": 0}}}).timeline)
    assert not room_filter_blocks_all(DEFAULT_SYNC_FILTER.timeline)


@pytest.mark.parametrize("limit, expected", [
    (None, None), (1, 1), (7, 7), (0, 1), (-3, 1), (MAX_LIMIT + 1, MAX_LIMIT), ("7", None),
])
def test_other_limits_are_clamped_or_absent(limit: Any, expected: int | None) -> None:
    section = {} if limit is None else {"limit": limit}
    sync_filter = parse_sync_filter({
        "presence": section, "account_data": section,
        "room": {"state": section, "ephemeral": section, "account_data": section}})

    assert sync_filter.presence.limit == expected
    assert sync_filter.account_data.limit == expected
    assert sync_filter.state.limit == expected
    assert sync_filter.ephemeral.limit == expected
    assert sync_filter.room_account_data.limit == expected


@pytest.mark.parametrize("room, lazy, redundant, threads", [
    ({}, False, False, False),
    ({"state": {"lazy_load_members": True}}, True, False, False),
    ({"state": {"lazy_load_members": True, "include_redundant_members": True}},
     True, True, False),
    # redundant members mean nothing without lazy loading
    ({"state": {"include_redundant_members": True}}, False, False, False),
    # lazy loading is read from the state section, as Synapse does
    ({"timeline": {"lazy_load_members": True}}, False, False, False),
    ({"timeline": {"unread_thread_notifications": True}}, False, False, True),
    ({"state": {"unread_thread_notifications": True}}, False, False, False),
    ({"state": {"lazy_load_members": "yes"}}, False, False, False),
])
def test_member_and_thread_flags_come_from_their_sections(
        room: dict[str, Any], lazy: bool, redundant: bool, threads: bool) -> None:
    sync_filter = parse_sync_filter({"room": room})

    assert (sync_filter.lazy_load_members, sync_filter.include_redundant_members,
            sync_filter.unread_thread_notifications) == (lazy, redundant, threads)


@pytest.mark.parametrize("body, include_leave, event_format, event_fields", [
    ({}, False, "client", None),
    ({"room": {"include_leave": True}}, True, "client", None),
    ({"room": {"include_leave": "true"}}, False, "client", None),
    ({"event_format": "federation"}, False, "federation", None),
    ({"event_format": "client"}, False, "client", None),
    ({"event_format": "other"}, False, "client", None),
    ({"event_fields": ["type", "content.body"]}, False, "client", ("type", "content.body")),
    # an empty list counts as absent, as on Synapse
    ({"event_fields": []}, False, "client", None),
    ({"event_fields": "type"}, False, "client", None),
])
def test_top_level_options(body: dict[str, Any], include_leave: bool, event_format: str,
                           event_fields: tuple[str, ...] | None) -> None:
    sync_filter = parse_sync_filter(body)

    assert sync_filter.include_leave is include_leave
    assert sync_filter.event_format == event_format
    assert sync_filter.event_fields == event_fields


def test_an_empty_filter_is_the_default() -> None:
    assert parse_sync_filter({}) == DEFAULT_SYNC_FILTER
    assert DEFAULT_SYNC_FILTER.timeline_limit == 10
    assert DEFAULT_SYNC_FILTER.presence == EventFilter()
    assert DEFAULT_SYNC_FILTER.room_allowed(ROOM_A)
    assert DEFAULT_SYNC_FILTER.timeline_room_allowed(ROOM_A)


@pytest.mark.parametrize("body", [
    None, [], "x", 5,
    {"room": 5}, {"room": []}, {"presence": "x"}, {"account_data": None},
    {"room": {"timeline": "x", "state": [], "ephemeral": 1, "account_data": True}},
    {"room": {"rooms": "!a:x", "not_rooms": {"!a:x": 1}}},
    {"room": {"rooms": [1, None, ROOM_A], "timeline": {"types": [1, {"x": 1}], "senders": [2],
                                                      "not_types": [None]}}},
    {"presence": {"types": [None], "senders": 3, "limit": [1]}},
    {"event_fields": [1, None, "type"], "event_format": 7},
])
def test_odd_values_never_crash_and_count_as_absent_or_matching_nothing(body: Any) -> None:
    sync_filter = parse_sync_filter(body)

    sync_filter.room_allowed(ROOM_A)
    sync_filter.presence.matches("m.presence", "@a:x")
    room_event_matches(sync_filter.timeline, "m.room.message", "@a:x", {})
    assert sync_filter.event_format == "client"


def test_non_strings_in_lists_are_dropped() -> None:
    sync_filter = parse_sync_filter({
        "room": {"rooms": [1, ROOM_A], "timeline": {"types": [5, "m.room.*"]}},
        "presence": {"senders": [None]},
        "event_fields": [1, "type"]})

    assert sync_filter.rooms == (ROOM_A,)
    assert sync_filter.timeline.types == ("m.room.*",)
    assert sync_filter.presence.senders == ()
    assert sync_filter.event_fields == ("type",)


def test_parsing_leaves_the_body_alone() -> None:
    body = {"room": {"timeline": {"limit": 500, "types": ["m.*"]}}, "event_fields": []}
    before = copy.deepcopy(body)

    parse_sync_filter(body)

    assert body == before


# -- event_fields -------------------------------------------------------------------


@pytest.mark.parametrize("path, keys", [
    ("type", ["type"]),
    ("content.body", ["content", "body"]),
    ("content.m\\.relates_to", ["content", "m.relates_to"]),
    ("content.m\\\\foo", ["content", "m\\foo"]),
    ("content.m\\xfoo", ["content", "m\\xfoo"]),
    ("content.a\\\\.b", ["content", "a\\", "b"]),
    ("trailing\\", ["trailing\\"]),
    ("a..b", ["a", "", "b"]),
    ("", [""]),
])
def test_field_paths_split_on_unescaped_dots(path: str, keys: list[str]) -> None:
    assert split_field_path(path) == keys


EVENT: dict[str, Any] = {
    "type": "m.room.message",
    "sender": "@alice:test.local",
    "event_id": "$e",
    "origin_server_ts": 5,
    "content": {
        "body": "hello",
        "msgtype": "m.text",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
        "m\\foo": 1,
    },
    "unsigned": {"age": 3},
}


@pytest.mark.parametrize("fields, expected", [
    ([], {}),
    (["type"], {"type": "m.room.message"}),
    (["type", "sender"], {"type": "m.room.message", "sender": "@alice:test.local"}),
    (["content.body"], {"content": {"body": "hello"}}),
    (["content.body", "content.msgtype"],
     {"content": {"body": "hello", "msgtype": "m.text"}}),
    (["content.m\\.relates_to.rel_type"],
     {"content": {"m.relates_to": {"rel_type": "m.thread"}}}),
    (["content.m\\\\foo"], {"content": {"m\\foo": 1}}),
    # a path that is not there adds nothing, not even empty objects
    (["content.nope"], {}),
    (["nope.deeper"], {}),
    (["type.deeper"], {}),
    (["content.body.deeper"], {}),
    # a shorter path wins over a longer one, in either order
    (["content", "content.body"], {"content": EVENT["content"]}),
    (["content.body", "content"], {"content": EVENT["content"]}),
    (["unsigned.age", "origin_server_ts"], {"unsigned": {"age": 3}, "origin_server_ts": 5}),
])
def test_event_fields_keep_only_the_named_paths(fields: list[str],
                                                expected: dict[str, Any]) -> None:
    before = copy.deepcopy(EVENT)

    out = apply_event_fields(EVENT, fields)

    assert out == expected
    assert EVENT == before


def test_projecting_overlapping_paths_never_changes_the_event() -> None:
    event = copy.deepcopy(EVENT)

    out = apply_event_fields(event, ["content", "content.m\\.relates_to.event_id", "content.x"])

    assert out["content"] == EVENT["content"]
    assert event == EVENT


def test_projection_skips_non_string_fields() -> None:
    assert apply_event_fields(EVENT, [5, None, "type"]) == {  # type: ignore[list-item]
        "type": "m.room.message"}


# -- loading the filter a /sync names (a real server, both engines) -----------------


async def _error_of(coro: Any) -> tuple[int, str, str]:
    with pytest.raises(MatrixError) as info:
        await coro
    return info.value.status, info.value.errcode, info.value.msg


@pytest_twisted.ensureDeferred
async def test_load_sync_filter_reads_absent_stored_and_inline_filters(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    body = {"room": {"timeline": {"limit": 3}, "state": {"lazy_load_members": True}}}
    made = await alice.post(f"{V3}/user/{alice.user_id}/filter", body)
    filter_id = made.body["filter_id"]
    assert alice.user_id is not None and bob.user_id is not None

    absent = await server.hs.filter_cache.load(alice.user_id, None)
    stored = await server.hs.filter_cache.load(alice.user_id, filter_id)
    inline = await server.hs.filter_cache.load(alice.user_id, json.dumps(body))

    assert absent == DEFAULT_SYNC_FILTER
    assert stored == inline == parse_sync_filter(body)
    assert (stored.timeline_limit, stored.lazy_load_members) == (3, True)
    # a filter ID is per user: bob's 0 is not alice's
    assert await _error_of(server.hs.filter_cache.load(bob.user_id, filter_id)) == (
        400, "M_INVALID_PARAM", "No such filter")


BAD_FILTER_PARAMS: list[tuple[str, int, str]] = [
    ("{", 400, "M_NOT_JSON"),
    ("{\"room\": }", 400, "M_NOT_JSON"),
    ("{} trailing", 400, "M_NOT_JSON"),
    ("{\"limit\": NaN}", 400, "M_NOT_JSON"),
    ("{\"room\": {\"timeline\": {\"limit\": \"ten\"}}}", 400, "M_BAD_JSON"),
    ("{\"room\": {\"rooms\": [\"not-a-room\"]}}", 400, "M_BAD_JSON"),
    ("{\"event_format\": \"xml\"}", 400, "M_BAD_JSON"),
    ("{\"a\":" * 100 + "1" + "}" * 100, 400, "M_BAD_JSON"),
    ("{\"types\": \"" + "x" * 70000 + "\"}", 413, "M_TOO_LARGE"),
    ("12345", 400, "M_INVALID_PARAM"),
    ("abc", 400, "M_INVALID_PARAM"),
    ("-1", 400, "M_INVALID_PARAM"),
    ("1" * 19, 400, "M_INVALID_PARAM"),
    ("", 400, "M_INVALID_PARAM"),
    ("[]", 400, "M_INVALID_PARAM"),
]


@pytest_twisted.ensureDeferred
async def test_load_sync_filter_refuses_bad_filters(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None

    got = [(await _error_of(server.hs.filter_cache.load(alice.user_id, param)))[:2]
           for param, _, _ in BAD_FILTER_PARAMS]

    assert got == [(status, errcode) for _, status, errcode in BAD_FILTER_PARAMS]
