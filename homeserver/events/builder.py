"""Building, hashing and signing the events this server creates.

``build_event`` turns the parts of a new event into the signed PDU JSON (the
exact form sent to other servers and stored) and its ``Event``:

- v1/v2: the event ID is ``$random:origin``, chosen here and part of the PDU;
  ``prev_events``/``auth_events`` are ``[event_id, {"sha256": reference_hash}]``
  pairs, so the caller supplies the referenced events' reference hashes
  (``hashes.reference_hash_base64`` of each, kept by the store);
- v3+: the lists are plain event IDs and the event ID is the reference hash,
  computed after signing (it covers the hashes, not the signatures);
- v12: ``m.room.create`` has no ``room_id``; the room ID is derived from it
  (``build_create_event`` returns it).

The result is checked with ``validation.validate_pdu``, so a local event that
another server would drop (too big, bad identifiers, a float in v6+) is never
produced: ``ValidationError`` is raised instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from signedjson.types import SigningKey

from homeserver.events.hashes import compute_event_id
from homeserver.events.identifiers import generate_assigned_event_id, room_id_from_create_event_id
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import sign_event
from homeserver.events.validation import validate_pdu

ReferenceHashes = Mapping[str, str] | Callable[[str], str]


def _refs(event_ids: Iterable[str], room_version: RoomVersion,
          reference_hashes: ReferenceHashes | None) -> list[Any]:
    ids = list(event_ids)
    if room_version.event_ids_are_hashes:
        return ids
    if reference_hashes is None:
        raise ValueError("v1/v2 events need the reference hashes of their prev/auth events")
    lookup = reference_hashes if callable(reference_hashes) else reference_hashes.__getitem__
    return [[eid, {"sha256": lookup(eid)}] for eid in ids]


def build_event(
    *,
    room_version: RoomVersion,
    room_id: str | None,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    prev_event_ids: Iterable[str],
    auth_event_ids: Iterable[str],
    depth: int,
    origin: str,
    origin_server_ts: int,
    signing_key: SigningKey,
    state_key: str | None = None,
    reference_hashes: ReferenceHashes | None = None,
    redacts: str | None = None,
    unsigned: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> tuple[dict[str, Any], Event]:
    """The signed PDU JSON of a new event and its ``Event``.

    ``origin`` is our server name (it signs, and names v1/v2 event IDs).
    ``redacts``: for ``m.room.redaction``; placed at the top level before v11 and
    in ``content`` from v11 (the caller may also put it in ``content`` itself).
    ``event_id``: v1/v2 only, to impose an ID (tests); otherwise one is generated.
    ``unsigned`` is carried but covered by neither hash nor signature.
    """
    is_v12_create = room_version.room_id_from_create_event and event_type == "m.room.create"
    if room_id is None and not is_v12_create:
        raise ValueError("room_id is required")
    if room_id is not None and is_v12_create:
        raise ValueError("v12 create events have no room_id")
    if event_id is not None and room_version.event_ids_are_hashes:
        raise ValueError("event IDs are reference hashes in this room version")

    content = dict(content)
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": content,
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": _refs(prev_event_ids, room_version, reference_hashes),
        "auth_events": _refs(auth_event_ids, room_version, reference_hashes),
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if room_version.redaction_rules >= 11:
            content.setdefault("redacts", redacts)
        else:
            pdu["redacts"] = redacts
    if not room_version.event_ids_are_hashes:
        pdu["event_id"] = event_id or generate_assigned_event_id(origin)

    # sign before adding unsigned (it is excluded from both anyway)
    pdu = sign_event(pdu, room_version, origin, signing_key)
    if unsigned is not None:
        pdu["unsigned"] = dict(unsigned)
    validate_pdu(pdu, room_version)
    return pdu, Event(compute_event_id(pdu, room_version), room_version, pdu)


def build_create_event(
    *,
    room_version: RoomVersion,
    sender: str,
    content: dict[str, Any],
    origin: str,
    origin_server_ts: int,
    signing_key: SigningKey,
    room_id: str | None = None,
) -> tuple[dict[str, Any], Event, str]:
    """A room's ``m.room.create`` event: (PDU, Event, room ID).

    v12+: pass no ``room_id``; it is derived from the signed event. Before v12
    the caller picks the room ID (``identifiers.generate_room_id``).
    """
    if room_version.room_id_from_create_event:
        if room_id is not None:
            raise ValueError("v12 room IDs are derived from the create event")
    elif room_id is None:
        raise ValueError("room_id is required before room version 12")
    pdu, event = build_event(
        room_version=room_version, room_id=room_id, sender=sender,
        event_type="m.room.create", state_key="", content=content,
        prev_event_ids=(), auth_event_ids=(), depth=1, origin=origin,
        origin_server_ts=origin_server_ts, signing_key=signing_key,
        reference_hashes={},
    )
    derived = (room_id_from_create_event_id(event.event_id)
               if room_version.room_id_from_create_event else room_id)
    assert derived is not None
    return pdu, event, derived
