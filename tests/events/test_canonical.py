"""Canonical JSON: the encoding, and the strict value rules of v6+."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.canonical import (
    CanonicalJSONError,
    encode_canonical_json,
    encode_for_room_version,
)
from tests.events.helpers import ALL_VERSIONS, rv

MAX = 2**53 - 1


@pytest.mark.parametrize("value, expected", [
    ({}, b"{}"),
    ({"one": 1, "two": "Two"}, b'{"one":1,"two":"Two"}'),
    ({"b": "2", "a": "1"}, b'{"a":"1","b":"2"}'),
    ({"auth": {"success": True, "mxid": "@john.doe:example.com", "profile": {
        "display_name": "John Doe", "three_pids": [
            {"medium": "email", "address": "john.doe@example.org"},
            {"medium": "msisdn", "address": "123456789"}]}}},
     b'{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
     b'"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
     b'{"address":"123456789","medium":"msisdn"}]},"success":true}}'),
    ({"a": "日本語"}, '{"a":"日本語"}'.encode()),
    ({"本": 2, "日": 1}, '{"日":1,"本":2}'.encode()),
    ({"a": "\u65e5"}, '{"a":"日"}'.encode()),
    ({"a": None}, b'{"a":null}'),
    ({"a": -0}, b'{"a":0}'),
    ({"a": MAX, "b": -MAX}, b'{"a":9007199254740991,"b":-9007199254740991}'),
])
def test_encoding_matches_the_appendix_examples(value: Any, expected: bytes) -> None:
    assert encode_canonical_json(value) == expected
    assert encode_canonical_json(value, strict=False) == expected


BAD_IN_STRICT = [
    1.5, 1.0, -0.0, float("inf"), float("nan"),
    MAX + 1, -MAX - 1, 2**63,
    {"deep": {"deeper": [1, 2, {"x": 0.5}]}},
    {"deep": [[[2**60]]]},
    {"content": {"ts": -(2**53)}},
]


@pytest.mark.parametrize("value", BAD_IN_STRICT)
def test_strict_rejects_floats_and_big_integers_at_any_depth(value: Any) -> None:
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json({"v": value})


@pytest.mark.parametrize("value", [1.5, MAX + 1, {"deep": [[[2**60]]]}, -(2**53)])
def test_lenient_accepts_them(value: Any) -> None:
    assert encode_canonical_json({"v": value}, strict=False).startswith(b'{"v":')


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_room_versions_6_and_later_are_strict(version: str) -> None:
    value = {"a": 2**53, "b": 0.5}
    if int(version) >= 6:
        with pytest.raises(CanonicalJSONError):
            encode_for_room_version(value, rv(version))
    else:
        assert encode_for_room_version(value, rv(version)) == b'{"a":9007199254740992,"b":0.5}'


@pytest.mark.parametrize("value", [True, False, None, "s", [], {}])
def test_booleans_and_null_are_not_numbers(value: Any) -> None:
    assert encode_canonical_json({"v": value})


def test_nan_is_rejected_even_when_lenient() -> None:
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json({"v": float("nan")}, strict=False)


@pytest.mark.parametrize("value", [{1: "int key"}, {"s": {1, 2}}, {"b": b"bytes"}])
def test_strict_rejects_non_json_values(value: Any) -> None:
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json(value)


def test_error_names_the_path() -> None:
    with pytest.raises(CanonicalJSONError, match=r"content\.list\[1\]"):
        encode_canonical_json({"content": {"list": [1, 2.5]}})
