"""Canonical JSON, per room version.

Every hash and signature in Matrix is over the canonical encoding of a JSON
object (appendices.md "Canonical JSON"): UTF-8, no insignificant whitespace,
keys sorted by code point. ``canonicaljson`` does the encoding; this module adds
the part it leaves to us, the *strict* value rules that room versions 6 and
later enforce: no floats (NaN and the infinities included) and no integers
outside [-(2**53)+1, 2**53-1], at any depth. Versions 1-5 MUST NOT enforce them
(rooms/fragments/v1-canonical-json.md): old events carry such values and must
still hash the way their senders hashed them.
"""

from __future__ import annotations

from typing import Any

import canonicaljson

from homeserver.events.room_versions import RoomVersion

CANONICALJSON_MAX_INT = 2**53 - 1
CANONICALJSON_MIN_INT = -CANONICALJSON_MAX_INT


class CanonicalJSONError(ValueError):
    """The value cannot be encoded as canonical JSON (under the rules in force)."""


def check_strict_json(value: Any, path: str = "") -> None:
    """Raise ``CanonicalJSONError`` unless ``value`` obeys the strict (v6+) rules.

    Walks the whole value: ints in range, no floats, string keys, only JSON types.
    """
    # bool is a subclass of int: test it first so True/False are not range-checked
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not CANONICALJSON_MIN_INT <= value <= CANONICALJSON_MAX_INT:
            raise CanonicalJSONError(f"integer out of range at {path or '<root>'}: {value}")
        return
    if isinstance(value, float):
        raise CanonicalJSONError(f"float not allowed at {path or '<root>'}: {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CanonicalJSONError(f"non-string key at {path or '<root>'}: {k!r}")
            check_strict_json(v, f"{path}.{k}" if path else k)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_strict_json(v, f"{path}[{i}]")
        return
    raise CanonicalJSONError(
        f"not a JSON value at {path or '<root>'}: {type(value).__name__}")


def encode_canonical_json(value: Any, *, strict: bool = True) -> bytes:
    """The canonical JSON bytes of ``value``.

    ``strict=False`` is the lenient encoding of room versions 1-5: floats and
    big integers are encoded as Python's json module writes them.
    """
    if strict:
        check_strict_json(value)
    try:
        return canonicaljson.encode_canonical_json(value)
    except (TypeError, ValueError) as e:  # NaN/Infinity, unknown types
        raise CanonicalJSONError(str(e)) from e


def encode_for_room_version(value: Any, room_version: RoomVersion) -> bytes:
    """Canonical JSON under the rules of ``room_version``."""
    return encode_canonical_json(value, strict=room_version.strict_canonicaljson)
