"""Events as clients see them: the client-server API's ClientEvent format.

Never the raw PDU: no signatures, hashes, prev/auth events or depth. The room
ID is always set (a v12 ``m.room.create`` carries none in its PDU).
``unsigned`` carries ``age``, the sender's own ``transaction_id`` and, for a
state event that replaced another, ``prev_content``, ``prev_sender`` and
``replaces_state``.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.model import Event


def client_event(event: Event, room_id: str, now_ms: int, *,
                 transaction_id: str | None = None,
                 replaced: Event | None = None) -> dict[str, Any]:
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
    redacts = event.json.get("redacts")
    if isinstance(redacts, str):
        out["redacts"] = redacts
    unsigned: dict[str, Any] = {"age": max(0, now_ms - event.origin_server_ts)}
    if transaction_id is not None:
        unsigned["transaction_id"] = transaction_id
    if replaced is not None:
        unsigned["prev_content"] = replaced.content
        unsigned["prev_sender"] = replaced.sender
        unsigned["replaces_state"] = replaced.event_id
    out["unsigned"] = unsigned
    return out
