"""Content hashes, reference hashes and the event/room IDs derived from them.

server-server-api.md "Calculating the content hash for an event" and
"Calculating the reference hash for an event":

- content hash: sha256 over the canonical JSON of the *full* event without
  ``unsigned``, ``signatures`` and ``hashes``; stored unpadded-base64 in
  ``hashes.sha256``. It lets a receiver tell a full event from a redacted copy.
- reference hash: sha256 over the canonical JSON of the *redacted* event without
  ``signatures`` and ``unsigned``. In v3+ it is the event ID (v3 standard base64,
  v4+ URL-safe); in v1/v2 it travels beside the ID in prev_events/auth_events.

Hashing encodes leniently: whether a v6+ event's values are legal is the job
of validation, and a hash must reproduce what the sender computed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.identifiers import room_id_from_create_event_id
from homeserver.events.redaction import redact
from homeserver.events.room_versions import EventIdFormat, RoomVersion


def encode_base64_unpadded(data: bytes, *, urlsafe: bool = False) -> str:
    enc = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return enc.decode("ascii").rstrip("=")


def decode_base64_unpadded(text: str) -> bytes:
    """Decode unpadded (or padded) base64, standard or URL-safe alphabet.

    Raises ``ValueError`` on malformed input.
    """
    s = text.rstrip("=")
    if "-" in s or "_" in s:
        s = s.replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


def compute_content_hash(event: dict[str, Any]) -> bytes:
    """The raw sha256 content hash of a PDU."""
    stripped = {k: v for k, v in event.items()
                if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(stripped, strict=False)).digest()


def add_content_hash(event: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` with ``hashes`` set to ``{"sha256": <content hash>}``."""
    out = dict(event)
    out["hashes"] = {"sha256": encode_base64_unpadded(compute_content_hash(event))}
    return out


def check_content_hash(event: dict[str, Any]) -> bool:
    """Whether ``hashes.sha256`` matches the event's content hash.

    False (never an exception) for a missing or malformed hash: the spec's
    answer to a failed hash check is to use the redacted event, not to drop it.
    """
    hashes = event.get("hashes")
    claimed = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not isinstance(claimed, str):
        return False
    try:
        claimed_bytes = decode_base64_unpadded(claimed)
    except ValueError:
        return False
    return hmac.compare_digest(claimed_bytes, compute_content_hash(event))


def compute_reference_hash(event: dict[str, Any], room_version: RoomVersion) -> bytes:
    """The raw sha256 reference hash of a PDU."""
    redacted = redact(event, room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(redacted, strict=False)).digest()


def reference_hash_base64(event: dict[str, Any], room_version: RoomVersion) -> str:
    """The reference hash as v1/v2 ``prev_events`` pairs carry it (standard base64)."""
    return encode_base64_unpadded(compute_reference_hash(event, room_version))


def compute_event_id(event: dict[str, Any], room_version: RoomVersion) -> str:
    """The event ID of a PDU in ``room_version``.

    v1/v2: the PDU's own ``event_id`` field (``ValueError`` if missing);
    v3+: ``$`` + the reference hash (standard base64 in v3, URL-safe after).
    """
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.ASSIGNED:
        event_id = event.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError("v1/v2 event has no event_id")
        return event_id
    digest = compute_reference_hash(event, room_version)
    return "$" + encode_base64_unpadded(
        digest, urlsafe=fmt is EventIdFormat.REFERENCE_HASH_URLSAFE)


def compute_room_id_from_create_event(
        create_event: dict[str, Any], room_version: RoomVersion) -> str:
    """The v12+ room ID: ``!`` + the create event's URL-safe reference hash."""
    if not room_version.room_id_from_create_event:
        raise ValueError(f"room version {room_version.identifier} does not derive room IDs")
    return room_id_from_create_event_id(compute_event_id(create_event, room_version))
