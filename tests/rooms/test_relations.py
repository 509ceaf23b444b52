"""The pure rules of relations: reading m.relates_to, which edits are valid,
and when a sync range needs bundled aggregations."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.relations import is_valid_edit, relates_within
from homeserver.storage.relations import relation_of
from tests.rooms.helpers import ALICE, BOB, make_event

RV = KNOWN_ROOM_VERSIONS["10"]
ROOM = "!room:a.test"


def message(sender: str = ALICE, **content: Any) -> Event:
    return make_event(RV, "m.room.message", sender, {"msgtype": "m.text", "body": "hi",
                                                     **content}, room_id=ROOM)


def edit(original: Event, sender: str = ALICE, event_type: str = "m.room.message",
         new_content: Any = None) -> Event:
    content: dict[str, Any] = {"msgtype": "m.text", "body": "* hi!",
                               "m.relates_to": {"rel_type": "m.replace",
                                                "event_id": original.event_id}}
    if new_content is not False:
        content["m.new_content"] = new_content or {"msgtype": "m.text", "body": "hi!"}
    return make_event(RV, event_type, sender, content, room_id=ROOM)


@pytest.mark.parametrize(("relates_to", "expected"), [
    ({"rel_type": "m.annotation", "event_id": "$p", "key": "👍"}, ("m.annotation", "$p", "👍")),
    ({"rel_type": "m.thread", "event_id": "$p", "key": "ignored"}, ("m.thread", "$p", None)),
    ({"rel_type": "m.annotation", "event_id": "$p", "key": 5}, ("m.annotation", "$p", None)),
    ({"rel_type": "org.example.custom", "event_id": "$p"}, ("org.example.custom", "$p", None)),
    ({"m.in_reply_to": {"event_id": "$p"}}, None),  # a plain reply is no relation
    ({"rel_type": 5, "event_id": "$p"}, None),
    ({"rel_type": "m.thread", "event_id": ["$p"]}, None),
    ({"rel_type": "", "event_id": "$p"}, None),
    ("not an object", None),
])
def test_relation_is_read_from_odd_content_without_error(relates_to: Any,
                                                         expected: Any) -> None:
    event = message(**{"m.relates_to": relates_to})
    assert relation_of(event) == expected


def test_edit_by_the_sender_is_valid() -> None:
    original = message()
    assert is_valid_edit(original, edit(original))


@pytest.mark.parametrize("case", ["other sender", "other type", "no new content",
                                  "new content not an object", "original is an edit",
                                  "original is state"])
def test_invalid_edits_are_ignored(case: str) -> None:
    original = message()
    if case == "other sender":
        bad = edit(original, sender=BOB)
    elif case == "other type":
        bad = edit(original, event_type="m.sticker")
    elif case == "no new content":
        bad = edit(original, new_content=False)
    elif case == "new content not an object":
        bad = edit(original, new_content="hi!")
    elif case == "original is an edit":
        original = edit(message())
        bad = edit(original)
    else:
        original = make_event(RV, "m.room.topic", ALICE, {"topic": "t"}, room_id=ROOM,
                              state_key="")
        bad = edit(original, event_type="m.room.topic")
    assert not is_valid_edit(original, bad)


def test_encrypted_edit_needs_no_visible_new_content() -> None:
    original = make_event(RV, "m.room.encrypted", ALICE, {"ciphertext": "x"}, room_id=ROOM)
    encrypted_edit = make_event(RV, "m.room.encrypted", ALICE, {
        "ciphertext": "y",
        "m.relates_to": {"rel_type": "m.replace", "event_id": original.event_id}},
        room_id=ROOM)
    assert is_valid_edit(original, encrypted_edit)


def test_range_with_a_parent_and_its_child_needs_bundling() -> None:
    root = message()
    reply = message(BOB, **{"m.relates_to": {"rel_type": "m.thread",
                                             "event_id": root.event_id}})
    elsewhere = message(BOB, **{"m.relates_to": {"rel_type": "m.thread",
                                                 "event_id": "$older"}})
    assert relates_within([(1, root), (2, reply)])
    assert not relates_within([(1, root), (2, elsewhere)])
    assert not relates_within([(2, reply)])
