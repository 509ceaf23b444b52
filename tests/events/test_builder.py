"""Building our own events: build -> validate -> verify -> content hash, every version."""

from __future__ import annotations

import pytest

from homeserver.events.builder import build_create_event, build_event
from homeserver.events.hashes import check_content_hash, compute_event_id, reference_hash_base64
from homeserver.events.identifiers import is_valid_event_id, is_valid_room_id
from homeserver.events.model import Event
from homeserver.events.signing import verify_event_signatures
from homeserver.events.validation import ValidationError, validate_pdu
from tests.events.helpers import ALL_VERSIONS, new_key, rv

SK, VK = new_key("k1")
KEYS = {("a.org", "ed25519:k1"): VK}


def _create(version: str) -> tuple[dict, Event, str]:
    room_version = rv(version)
    content = {"room_version": version}
    if not room_version.implicit_room_creator:
        content["creator"] = "@alice:a.org"
    return build_create_event(
        room_version=room_version, sender="@alice:a.org", content=content, origin="a.org",
        origin_server_ts=1000, signing_key=SK,
        room_id=None if room_version.room_id_from_create_event else "!room:a.org")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_then_join_round_trip(version: str) -> None:
    room_version = rv(version)
    create_pdu, create, room_id = _create(version)
    validate_pdu(create_pdu, room_version)
    assert is_valid_room_id(room_id, room_version)
    assert verify_event_signatures(create_pdu, room_version, KEYS) == {"a.org"}
    assert check_content_hash(create_pdu)
    assert create.event_id == compute_event_id(create_pdu, room_version)
    assert is_valid_event_id(create.event_id, room_version)
    if room_version.room_id_from_create_event:
        assert "room_id" not in create_pdu
        assert room_id == "!" + create.event_id[1:]

    refs = {create.event_id: reference_hash_base64(create_pdu, room_version)}
    # v12: the create event is implied by the room ID, never an auth event
    auth = [] if room_version.room_id_from_create_event else [create.event_id]
    join_pdu, join = build_event(
        room_version=room_version, room_id=room_id, sender="@alice:a.org",
        event_type="m.room.member", state_key="@alice:a.org",
        content={"membership": "join"}, prev_event_ids=[create.event_id],
        auth_event_ids=auth, depth=2, origin="a.org", origin_server_ts=1001,
        signing_key=SK, reference_hashes=refs, unsigned={"age": 0})
    validate_pdu(join_pdu, room_version)
    verify_event_signatures(join_pdu, room_version, KEYS)
    assert check_content_hash(join_pdu)
    assert join.prev_event_ids == (create.event_id,)
    assert join.room_id == room_id and join.state_key == "@alice:a.org"
    assert join.membership == "join" and join.depth == 2
    if room_version.event_ids_are_hashes:
        assert join_pdu["prev_events"] == [create.event_id]
        assert "event_id" not in join_pdu
    else:
        assert join_pdu["prev_events"] == [[create.event_id, {"sha256": refs[create.event_id]}]]
        assert join.event_id == join_pdu["event_id"] and join.event_id.endswith(":a.org")


@pytest.mark.parametrize("version, top_level", [("10", True), ("11", False), ("12", False)])
def test_redacts_goes_where_the_version_wants_it(version: str, top_level: bool) -> None:
    pdu, event = build_event(
        room_version=rv(version), room_id="!" + "A" * 43 if version == "12" else "!r:a.org",
        sender="@u:a.org", event_type="m.room.redaction", content={},
        prev_event_ids=["$" + "B" * 43], auth_event_ids=[], depth=3, origin="a.org",
        origin_server_ts=5, signing_key=SK, redacts="$" + "C" * 43)
    assert ("redacts" in pdu) is top_level
    assert ("redacts" in pdu["content"]) is not top_level
    assert event.redacts == "$" + "C" * 43


def test_v1_imposed_event_id_and_callback_reference_hashes() -> None:
    pdu, event = build_event(
        room_version=rv("1"), room_id="!r:a.org", sender="@u:a.org",
        event_type="m.room.message", content={"body": "x"}, prev_event_ids=["$p:b.org"],
        auth_event_ids=["$q:b.org"], depth=3, origin="a.org", origin_server_ts=5,
        signing_key=SK, reference_hashes=lambda eid: "hash-of-" + eid, event_id="$mine:a.org")
    assert event.event_id == "$mine:a.org"
    assert pdu["auth_events"] == [["$q:b.org", {"sha256": "hash-of-$q:b.org"}]]


def test_v1_without_reference_hashes_is_refused() -> None:
    with pytest.raises(ValueError):
        build_event(room_version=rv("2"), room_id="!r:a.org", sender="@u:a.org",
                    event_type="m.room.message", content={}, prev_event_ids=["$p:a.org"],
                    auth_event_ids=[], depth=2, origin="a.org", origin_server_ts=5,
                    signing_key=SK)


@pytest.mark.parametrize("version, room_id", [("12", "!r:a.org"), ("11", None)])
def test_create_room_id_rules(version: str, room_id: str | None) -> None:
    with pytest.raises(ValueError):
        build_create_event(room_version=rv(version), sender="@u:a.org", content={},
                           origin="a.org", origin_server_ts=1, signing_key=SK, room_id=room_id)


@pytest.mark.parametrize("version, content, ok", [
    ("5", {"n": 0.5}, True), ("6", {"n": 0.5}, False),
    ("5", {"n": 2**60}, True), ("12", {"n": 2**60}, False),
    ("12", {"body": "x" * 70000}, False),
])
def test_builder_refuses_events_others_would_drop(version: str, content: dict, ok: bool) -> None:
    def build() -> None:
        build_event(room_version=rv(version), room_id="!" + "A" * 43 if version == "12"
                    else "!r:a.org", sender="@u:a.org", event_type="m.room.message",
                    content=content, prev_event_ids=[], auth_event_ids=[], depth=2,
                    origin="a.org", origin_server_ts=5, signing_key=SK,
                    reference_hashes={})
    if ok:
        build()
    else:
        with pytest.raises(ValidationError):
            build()


def test_builder_does_not_alias_the_callers_content() -> None:
    content = {"body": "x"}
    pdu, _ = build_event(room_version=rv("11"), room_id="!r:a.org", sender="@u:a.org",
                         event_type="m.room.redaction", content=content, prev_event_ids=[],
                         auth_event_ids=[], depth=2, origin="a.org", origin_server_ts=5,
                         signing_key=SK, redacts="$" + "C" * 43)
    assert content == {"body": "x"}
    assert pdu["content"] is not content
