"""Is this JSON a well-formed PDU of its room version?

Check 1 of server-server-api.md "Checks performed on receipt of a PDU": an
event that does not match its version's event format is dropped. The format
is the PDU schema of the version (data/api/server-server/definitions/pdu_v*.yaml)
plus the size limits of client-server-api "Size limits" and, in v6+, strict
canonical JSON. Auth-rule matters (a v12 create event carrying a room_id, a
member event without a membership) are left to the auth rules, which reject
rather than drop.

Checked here:
- the whole event as canonical JSON is at most 65,536 bytes;
- ``type``, ``state_key``, ``sender``, ``room_id``, ``event_id`` are strings of
  at most 255 bytes, and the identifiers follow their grammar;
- ``content``, ``hashes`` (with ``sha256``), ``signatures`` are objects,
  ``unsigned`` too when present;
- ``prev_events`` (<= 20) and ``auth_events`` (<= 10): ``[event_id, hashes]``
  pairs in v1/v2, event IDs of the version's format after;
- ``depth`` an integer in [0, 2**63 - 1], ``origin_server_ts`` an int64;
- v6+: no floats and no integer outside [-(2**53)+1, 2**53-1], anywhere;
- no NUL (nor lone surrogate) in a string the stores copy into a column of
  their own: the top-level identifiers above, and in ``content`` the
  ``membership`` of a member event, the ``redacts`` of a v11+ redaction and
  ``m.relates_to``'s ``rel_type``, ``event_id`` and ``key``. PostgreSQL's
  text cannot hold NUL, so such an event could not be stored (the insert
  failed, and with it every message persisted in the same transaction) and
  SQLite would keep what PostgreSQL cannot. It is dropped like any other
  malformed PDU, wherever it comes from (/send, a join, a fetch). The rest
  of ``content`` is kept as JSON, where a NUL stays an escape: a message
  body may hold one, as on Synapse.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.canonical import CanonicalJSONError, check_strict_json, encode_canonical_json
from homeserver.events.identifiers import (
    MAX_ID_BYTES,
    byte_length,
    is_storable_text,
    is_valid_event_id,
    is_valid_room_id,
    is_valid_user_id,
)
from homeserver.events.room_versions import RoomVersion

MAX_PDU_BYTES = 65536
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
MAX_DEPTH = 2**63 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ValidationError(ValueError):
    """The PDU does not have the format of its room version.

    ``persist_as_rejected`` is set when the only fault is a field over 255 bytes
    but within 255 code points in a room version before 11: Synapse kept such
    events (as rejected) rather than dropping them, and so should we.
    """

    def __init__(self, message: str, *, persist_as_rejected: bool = False) -> None:
        super().__init__(message)
        self.persist_as_rejected = persist_as_rejected


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_id_length(name: str, value: str, room_version: RoomVersion) -> None:
    if len(value) > MAX_ID_BYTES:
        raise ValidationError(f"'{name}' longer than {MAX_ID_BYTES} characters")
    if byte_length(value) > MAX_ID_BYTES:
        raise ValidationError(f"'{name}' longer than {MAX_ID_BYTES} bytes",
                              persist_as_rejected=not room_version.strict_event_byte_limits)


def _check_storable(name: str, value: str) -> None:
    if not is_storable_text(value):
        raise ValidationError(f"'{name}' holds NUL or a lone surrogate")


def _string_field(pdu: dict[str, Any], name: str, room_version: RoomVersion) -> str:
    value = pdu.get(name)
    if not isinstance(value, str):
        raise ValidationError(f"'{name}' must be a string")
    _check_storable(name, value)
    _check_id_length(name, value, room_version)
    return value


def _check_content_columns(event_type: str, content: dict[str, Any],
                           room_version: RoomVersion) -> None:
    """The strings of ``content`` that the stores copy into columns (the
    membership table, redactions, relations and the thread lookups of push)
    must be storable; their other checks, if any, belong to the auth rules."""
    fields: list[tuple[str, Any]] = []
    if event_type == "m.room.member":
        fields.append(("content.membership", content.get("membership")))
    if event_type == "m.room.redaction" and room_version.redaction_rules >= 11:
        fields.append(("content.redacts", content.get("redacts")))
    relates = content.get("m.relates_to")
    if isinstance(relates, dict):
        fields += [(f"content.m.relates_to.{k}", relates.get(k))
                   for k in ("rel_type", "event_id", "key")]
    for name, value in fields:
        if isinstance(value, str):
            _check_storable(name, value)


def _check_refs(pdu: dict[str, Any], name: str, limit: int, room_version: RoomVersion) -> None:
    refs = pdu.get(name)
    if not isinstance(refs, list):
        raise ValidationError(f"'{name}' must be a list")
    if len(refs) > limit:
        raise ValidationError(f"'{name}' has more than {limit} entries")
    for ref in refs:
        if room_version.event_ids_are_hashes:
            event_id = ref
        else:
            # the hashes object is informational (nothing checks it) and
            # Synapse accepts it empty: only its shape is required
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[1], dict)):
                raise ValidationError(f"'{name}' entries must be [event_id, {{hashes}}]")
            event_id = ref[0]
        if not isinstance(event_id, str) or not is_valid_event_id(event_id, room_version):
            raise ValidationError(f"malformed event ID in '{name}': {event_id!r}")


def validate_pdu(pdu: Any, room_version: RoomVersion) -> None:
    """Raise ``ValidationError`` unless ``pdu`` is a well-formed PDU of ``room_version``."""
    if not isinstance(pdu, dict):
        raise ValidationError("PDU must be a JSON object")

    if room_version.strict_canonicaljson:
        try:
            check_strict_json(pdu)
        except CanonicalJSONError as e:
            raise ValidationError(f"not canonical JSON: {e}") from e
    try:
        size = len(encode_canonical_json(pdu, strict=False))
    except CanonicalJSONError as e:
        raise ValidationError(f"not JSON: {e}") from e
    if size > MAX_PDU_BYTES:
        raise ValidationError(f"event is {size} bytes, over {MAX_PDU_BYTES}")

    event_type = _string_field(pdu, "type", room_version)
    if "state_key" in pdu:
        _string_field(pdu, "state_key", room_version)

    sender = _string_field(pdu, "sender", room_version)
    if not is_valid_user_id(sender):
        raise ValidationError(f"malformed sender {sender!r}")

    # v12 create events have no room_id (the auth rules reject one that does)
    if not (room_version.room_id_from_create_event and event_type == "m.room.create"):
        room_id = _string_field(pdu, "room_id", room_version)
        if not is_valid_room_id(room_id, room_version):
            raise ValidationError(f"malformed room_id {room_id!r}")

    if not room_version.event_ids_are_hashes:
        event_id = _string_field(pdu, "event_id", room_version)
        if not is_valid_event_id(event_id, room_version):
            raise ValidationError(f"malformed event_id {event_id!r}")

    if not isinstance(pdu.get("content"), dict):
        raise ValidationError("'content' must be an object")
    _check_content_columns(event_type, pdu["content"], room_version)
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise ValidationError("'hashes' must be an object with a 'sha256' string")
    signatures = pdu.get("signatures")
    if not isinstance(signatures, dict) or not all(
            isinstance(sigs, dict) and all(isinstance(s, str) for s in sigs.values())
            for sigs in signatures.values()):
        raise ValidationError("'signatures' must map servers to {key_id: signature}")
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], dict):
        raise ValidationError("'unsigned' must be an object")

    depth = pdu.get("depth")
    if not (isinstance(depth, int) and _is_int(depth) and 0 <= depth <= MAX_DEPTH):
        raise ValidationError(f"'depth' must be an integer in [0, {MAX_DEPTH}]")
    ts = pdu.get("origin_server_ts")
    if not (isinstance(ts, int) and _is_int(ts) and INT64_MIN <= ts <= INT64_MAX):
        raise ValidationError("'origin_server_ts' must be a 64-bit integer")

    _check_refs(pdu, "prev_events", MAX_PREV_EVENTS, room_version)
    _check_refs(pdu, "auth_events", MAX_AUTH_EVENTS, room_version)

    # before v11 a redaction names its target at the top level
    if "redacts" in pdu and room_version.redaction_rules < 11:
        redacts = pdu["redacts"]
        if not isinstance(redacts, str) or not is_valid_event_id(redacts, room_version):
            raise ValidationError(f"malformed redacts {redacts!r}")
    elif isinstance(pdu.get("redacts"), str):
        # v11+ reads content.redacts, but a top-level one is the fallback
        _check_storable("redacts", pdu["redacts"])
