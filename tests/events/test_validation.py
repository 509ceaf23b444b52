"""PDU format validation per room version."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.validation import MAX_PDU_BYTES, ValidationError, validate_pdu
from tests.events.helpers import ALL_VERSIONS, rv

H43 = "A" * 43
V3_ID = "$" + "a+/" * 14 + "b"
V4_ID = "$" + "a-_" * 14 + "b"


def _pdu(version: str, **overrides: Any) -> dict[str, Any]:
    v = int(version)
    ref = "$p:b.org" if v <= 2 else (V3_ID if v == 3 else V4_ID)
    pdu: dict[str, Any] = {
        "type": "m.room.message", "sender": "@u:a.org", "content": {"body": "hi"},
        "depth": 2, "origin_server_ts": 1000, "hashes": {"sha256": "h"},
        "signatures": {"a.org": {"ed25519:1": "s"}},
        "room_id": "!" + H43 if v >= 12 else "!r:a.org",
        "prev_events": [[ref, {"sha256": "h"}]] if v <= 2 else [ref],
        "auth_events": [],
    }
    if v <= 2:
        pdu["event_id"] = "$e:a.org"
    for key, value in overrides.items():
        if value is _DROP:
            pdu.pop(key, None)
        else:
            pdu[key] = value
    return pdu


_DROP = object()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_well_formed_pdu_passes(version: str) -> None:
    validate_pdu(_pdu(version), rv(version))


BAD_EVERYWHERE: list[tuple[str, dict[str, Any]]] = [
    ("no type", {"type": _DROP}),
    ("type not str", {"type": 5}),
    ("type too long", {"type": "t" * 256}),
    ("state_key too long", {"state_key": "s" * 256}),
    ("state_key null", {"state_key": None}),
    ("no sender", {"sender": _DROP}),
    ("sender no sigil", {"sender": "u:a.org"}),
    ("sender no server", {"sender": "@u"}),
    ("sender bad server", {"sender": "@u:a b"}),
    ("sender too long", {"sender": "@" + "u" * 250 + ":a.org"}),
    ("no room_id", {"room_id": _DROP}),
    ("no content", {"content": _DROP}),
    ("content list", {"content": []}),
    ("no hashes", {"hashes": _DROP}),
    ("hashes without sha256", {"hashes": {}}),
    ("no signatures", {"signatures": _DROP}),
    ("signatures wrong shape", {"signatures": {"a.org": "s"}}),
    ("unsigned list", {"unsigned": []}),
    ("no depth", {"depth": _DROP}),
    ("depth negative", {"depth": -1}),
    ("depth bool", {"depth": True}),
    ("depth str", {"depth": "2"}),
    ("depth too big", {"depth": 2**63}),
    ("ts str", {"origin_server_ts": "1"}),
    ("ts missing", {"origin_server_ts": _DROP}),
    ("no prev_events", {"prev_events": _DROP}),
    ("no auth_events", {"auth_events": _DROP}),
    ("auth_events not list", {"auth_events": {}}),
    ("too many auth events", {"auth_events": "many"}),
    ("too big", {"content": {"body": "x" * MAX_PDU_BYTES}}),
    ("not an object", {"__root__": []}),
]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("name, overrides", BAD_EVERYWHERE, ids=[b[0] for b in BAD_EVERYWHERE])
def test_malformed_pdus_are_rejected(version: str, name: str, overrides: dict) -> None:
    if "__root__" in overrides:
        pdu: Any = overrides["__root__"]
    else:
        pdu = _pdu(version, **overrides)
        if pdu.get("auth_events") == "many":
            good = _pdu(version)["prev_events"][0]
            pdu["auth_events"] = [good] * 11
    with pytest.raises(ValidationError):
        validate_pdu(pdu, rv(version))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_size_limit_is_65536_bytes_of_canonical_json(version: str) -> None:
    pdu = _pdu(version, content={"body": ""})
    from homeserver.events.canonical import encode_canonical_json
    room = MAX_PDU_BYTES - len(encode_canonical_json(pdu))
    validate_pdu(_pdu(version, content={"body": "x" * room}), rv(version))
    with pytest.raises(ValidationError, match="bytes"):
        validate_pdu(_pdu(version, content={"body": "x" * (room + 1)}), rv(version))


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("value", [0.5, 2**53, -(2**53), {"x": [1.0]}])
def test_strict_json_only_from_v6(version: str, value: Any) -> None:
    pdu = _pdu(version, content={"n": value})
    if rv(version).strict_canonicaljson:
        with pytest.raises(ValidationError, match="canonical"):
            validate_pdu(pdu, rv(version))
    else:
        validate_pdu(pdu, rv(version))


@pytest.mark.parametrize("version, depth, ok", [
    ("5", 2**53, True), ("5", 2**63 - 1, True), ("6", 2**53 - 1, True), ("6", 2**53, False),
    ("12", 0, True),
])
def test_depth_range(version: str, depth: int, ok: bool) -> None:
    pdu = _pdu(version, depth=depth)
    if ok:
        validate_pdu(pdu, rv(version))
    else:
        with pytest.raises(ValidationError):
            validate_pdu(pdu, rv(version))


@pytest.mark.parametrize("version, refs, ok", [
    ("1", [["$p:b.org", {"sha256": "h"}]], True),
    ("1", ["$p:b.org"], False),  # v1/v2 need pairs
    ("2", [["$p:b.org"]], False),
    ("2", [["$p:b.org", "h"]], False),
    ("2", [["$nodomain", {"sha256": "h"}]], False),
    ("3", [V3_ID], True),
    ("3", [V4_ID], False),  # v3 uses the standard alphabet
    ("4", [V4_ID], True),
    ("4", [V3_ID], False),  # v4+ the URL-safe one
    ("10", [[V4_ID, {"sha256": "h"}]], False),
    ("10", ["$p:b.org"], False),
    ("10", ["$" + "A" * 42], False),
    ("11", [V4_ID] * 20, True),
    ("11", [V4_ID] * 21, False),
])
def test_prev_events_shape(version: str, refs: list, ok: bool) -> None:
    pdu = _pdu(version, prev_events=refs)
    if ok:
        validate_pdu(pdu, rv(version))
    else:
        with pytest.raises(ValidationError):
            validate_pdu(pdu, rv(version))


@pytest.mark.parametrize("version, overrides, ok", [
    ("1", {"event_id": _DROP}, False),
    ("2", {"event_id": "$e"}, False),
    ("2", {"event_id": "$" + "e" * 250 + ":a.org"}, False),
    ("3", {"event_id": _DROP}, True),
    ("11", {"room_id": "!" + H43}, False),  # before v12 room IDs name a server
    ("12", {"room_id": "!r:a.org"}, False),  # v12 room IDs are hashes
    ("12", {"type": "m.room.create", "state_key": "", "room_id": _DROP}, True),
    ("11", {"type": "m.room.create", "state_key": "", "room_id": _DROP}, False),
    ("10", {"redacts": "$r:a.org"}, False),  # not a v10 event ID
    ("10", {"redacts": V4_ID}, True),
    ("11", {"redacts": 5}, True),  # top-level redacts means nothing from v11
    ("10", {"sender": "@:a.org"}, True),  # historical user IDs are accepted
    ("10", {"sender": "@Üñï©ødé:a.org"}, True),
    ("10", {"sender": "@u:[::1]:8448"}, True),
    ("10", {"sender": "@u:1.2.3.4:8"}, True),
    ("10", {"sender": "@u:a.org:123456"}, False),
    ("10", {"sender": "@u\x00:a.org"}, False),
])
def test_identifier_rules(version: str, overrides: dict, ok: bool) -> None:
    pdu = _pdu(version, **overrides)
    if ok:
        validate_pdu(pdu, rv(version))
    else:
        with pytest.raises(ValidationError):
            validate_pdu(pdu, rv(version))


@pytest.mark.parametrize("version, persist", [("10", True), ("11", False), ("12", False)])
def test_over_255_bytes_within_255_code_points(version: str, persist: bool) -> None:
    pdu = _pdu(version, state_key="é" * 200)  # 200 code points, 400 bytes
    with pytest.raises(ValidationError) as info:
        validate_pdu(pdu, rv(version))
    assert info.value.persist_as_rejected is persist


def test_too_long_in_code_points_is_never_persisted() -> None:
    with pytest.raises(ValidationError) as info:
        validate_pdu(_pdu("5", type="t" * 256), rv("5"))
    assert not info.value.persist_as_rejected
