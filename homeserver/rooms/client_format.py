"""Events as clients see them: the client-server API's ClientEvent format.

Never the raw PDU: no signatures, hashes, prev/auth events or depth. The room
ID is always set (a v12 ``m.room.create`` carries none in its PDU).
``unsigned`` carries ``age``, the sender's own ``transaction_id`` and, for a
state event that replaced another, ``prev_content``, ``prev_sender`` and
``replaces_state``. A redacted event (the store hands it out already
redacted) carries the redaction, itself in this format, as
``unsigned.redacted_because`` and its ID as ``unsigned.redacted_by``. A
redaction carries ``redacts`` at the top level in every room version (v11+
also keep it in ``content``, as Synapse serves it, so clients of either
shape find it). Bundled aggregations of the event's children
(``rooms/relations.py``) go in ``unsigned["m.relations"]``.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.model import Event
from homeserver.storage.events import REDACTED_BY


def redacted_by(event: Event) -> str | None:
    """The event ID of the redaction applied to ``event``, if it was redacted."""
    unsigned = event.json.get("unsigned")
    value = unsigned.get(REDACTED_BY) if isinstance(unsigned, dict) else None
    return value if isinstance(value, str) else None


def client_event(event: Event, room_id: str, now_ms: int, *,
                 transaction_id: str | None = None,
                 replaced: Event | None = None,
                 redacted_because: dict[str, Any] | None = None,
                 relations: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "room_id": room_id,
        "type": event.type,
        "sender": event.sender,
        "content": event.content,
        "origin_server_ts": event.origin_server_ts,
    }
    if event.state_key is not None:
        out["state_key"] = event.state_key
    if event.type == "m.room.redaction" and event.redacts is not None:
        out["redacts"] = event.redacts
    unsigned: dict[str, Any] = {"age": max(0, now_ms - event.origin_server_ts)}
    if transaction_id is not None:
        unsigned["transaction_id"] = transaction_id
    if replaced is not None:
        unsigned["prev_content"] = replaced.content
        unsigned["prev_sender"] = replaced.sender
        unsigned["replaces_state"] = replaced.event_id
    by = redacted_by(event)
    if by is not None:
        # the redaction's ID beside the redaction itself, as Synapse serves it
        unsigned["redacted_by"] = by
    if redacted_because is not None:
        unsigned["redacted_because"] = redacted_because
    if relations:
        unsigned["m.relations"] = relations
    out["unsigned"] = unsigned
    return out
