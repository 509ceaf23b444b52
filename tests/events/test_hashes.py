"""Content hashes, reference hashes, event IDs and v12 room IDs."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.hashes import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    compute_room_id_from_create_event,
    decode_base64_unpadded,
    encode_base64_unpadded,
)
from homeserver.events.identifiers import (
    create_event_id_from_room_id,
    is_valid_event_id,
    is_valid_room_id,
)
from homeserver.events.model import Event
from tests.events.helpers import ALL_VERSIONS, rv

EVENT = {
    "type": "m.room.message", "room_id": "!r:a", "sender": "@u:a",
    "content": {"body": "hi"}, "depth": 4, "origin_server_ts": 10,
    "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"},
    "signatures": {"a": {"ed25519:1": "sig"}}, "unsigned": {"age": 3},
}


def _sha(obj: dict) -> bytes:
    return hashlib.sha256(encode_canonical_json(obj)).digest()


def test_content_hash_excludes_unsigned_signatures_and_hashes() -> None:
    bare = {k: v for k, v in EVENT.items() if k not in ("unsigned", "signatures", "hashes")}
    assert compute_content_hash(EVENT) == _sha(bare)


@pytest.mark.parametrize("change", [
    {"unsigned": {"age": 99}}, {"signatures": {}}, {"hashes": {"sha256": "y"}},
])
def test_content_hash_ignores_what_servers_may_change(change: dict) -> None:
    assert compute_content_hash({**EVENT, **change}) == compute_content_hash(EVENT)


@pytest.mark.parametrize("change", [
    {"content": {"body": "HI"}}, {"depth": 5}, {"origin_server_ts": 11}, {"extra": 1},
])
def test_content_hash_detects_tampering(change: dict) -> None:
    hashed = add_content_hash(EVENT)
    assert check_content_hash(hashed)
    assert not check_content_hash({**hashed, **change})


@pytest.mark.parametrize("hashes", [None, {}, {"sha256": 5}, {"sha256": "!!!notb64"},
                                    {"sha256": ""}, "str"])
def test_missing_or_malformed_hash_fails_the_check(hashes: object) -> None:
    assert not check_content_hash({**EVENT, "hashes": hashes})


def test_reference_hash_is_over_the_redacted_event_without_signatures() -> None:
    # v1 rules keep "origin"; unsigned and signatures are dropped
    expected = {k: v for k, v in EVENT.items() if k not in ("unsigned", "signatures")}
    expected["content"] = {}
    assert compute_reference_hash(EVENT, rv("1")) == _sha(expected)


@pytest.mark.parametrize("change", [{"content": {"body": "other"}}, {"unsigned": {}},
                                    {"signatures": {"b": {"ed25519:2": "z"}}}])
def test_reference_hash_ignores_redactable_content_and_signatures(change: dict) -> None:
    assert compute_reference_hash({**EVENT, **change}, rv("10")) == \
        compute_reference_hash(EVENT, rv("10"))


def test_reference_hash_covers_the_content_hash() -> None:
    assert compute_reference_hash({**EVENT, "hashes": {"sha256": "z"}}, rv("10")) != \
        compute_reference_hash(EVENT, rv("10"))


@pytest.mark.parametrize("version, pattern", [
    ("3", r"\$[A-Za-z0-9+/]{43}"),
    *[(v, r"\$[A-Za-z0-9_\-]{43}") for v in ("4", "5", "6", "7", "8", "9", "10", "11", "12")],
])
def test_event_id_format_per_version(version: str, pattern: str) -> None:
    event_id = compute_event_id(EVENT, rv(version))
    assert re.fullmatch(pattern, event_id)
    assert is_valid_event_id(event_id, rv(version))
    digest = compute_reference_hash(EVENT, rv(version))
    alt = base64.b64encode(digest) if version == "3" else base64.urlsafe_b64encode(digest)
    assert event_id == "$" + alt.decode().rstrip("=")


def test_v3_and_v4_ids_differ_only_in_alphabet() -> None:
    # pick content until the hash contains + or /, so the alphabets differ visibly
    for i in range(200):
        ev = {**EVENT, "depth": i}
        v3, v4 = compute_event_id(ev, rv("3")), compute_event_id(ev, rv("4"))
        if "+" in v3 or "/" in v3:
            assert v4 == v3.replace("+", "-").replace("/", "_")
            return
    pytest.fail("no hash with + or / in 200 tries")


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_v2_event_id_is_the_field(version: str) -> None:
    assert compute_event_id({**EVENT, "event_id": "$abc:a"}, rv(version)) == "$abc:a"
    with pytest.raises(ValueError):
        compute_event_id(EVENT, rv(version))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_from_pdu_uses_the_version_rule(version: str) -> None:
    pdu = {**EVENT, "event_id": "$abc:a"} if int(version) <= 2 else EVENT
    event = Event.from_pdu(pdu, rv(version))
    assert event.event_id == compute_event_id(pdu, rv(version))
    assert event.json is pdu


CREATE_V12 = {
    "type": "m.room.create", "state_key": "", "sender": "@u:a",
    "content": {"room_version": "12"}, "depth": 1, "origin_server_ts": 10,
    "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"}, "signatures": {},
}


def test_v12_room_id_is_the_create_event_id_with_a_bang() -> None:
    room_id = compute_room_id_from_create_event(CREATE_V12, rv("12"))
    digest = compute_reference_hash(CREATE_V12, rv("12"))
    assert room_id == "!" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert create_event_id_from_room_id(room_id) == compute_event_id(CREATE_V12, rv("12"))
    assert is_valid_room_id(room_id, rv("12"))
    assert not is_valid_room_id(room_id, rv("11"))  # no server name


@pytest.mark.parametrize("version", [v for v in ALL_VERSIONS if v != "12"])
def test_room_ids_are_not_derived_before_v12(version: str) -> None:
    with pytest.raises(ValueError):
        compute_room_id_from_create_event(CREATE_V12, rv(version))


@pytest.mark.parametrize("data", [b"", b"\x00", b"ab", b"abc", bytes(range(256))])
def test_unpadded_base64_round_trips(data: bytes) -> None:
    for urlsafe in (False, True):
        text = encode_base64_unpadded(data, urlsafe=urlsafe)
        assert "=" not in text
        assert decode_base64_unpadded(text) == data
