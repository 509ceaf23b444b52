"""A committed write as JSON and back: what travels on the replication channel.

The record is the one the write hub hands its subscribers
(``storage/hub.py``), so a reader process feeds its own subscribers exactly
what the main process's got. Events travel as their PDU JSON with their
room version and rejection; the push rules' verdicts of each event (computed
inside the main process's transaction, ``push/actions.py``) travel beside
them, so a reader's fast path can carry unread counts forward too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.hub import Committed

Verdicts = Mapping[str, Mapping[str, tuple[int, int]]]


def encode_committed(committed: Committed, verdicts: Verdicts) -> dict[str, Any]:
    """``committed`` as a JSON-able dict; ``verdicts``: event ID -> {user:
    (notify, highlight)} for those of its events that have them."""
    return {
        "positions": list(committed.positions),
        "events": [[{"event_id": event.event_id, "room_version": event.room_version.identifier,
                     "json": event.json, "rejected_reason": event.rejected_reason}, pos]
                   for event, pos in committed.events],
        "scopes": {str(pos): [list(s) for s in scopes]
                   for pos, scopes in committed.scopes.items()},
        "device_list_changes": [list(c) for c in committed.device_list_changes],
        "tokens_changed": committed.tokens_changed,
        "receipts": [list(r) for r in committed.receipts],
        "push": {event_id: {user: list(v) for user, v in found.items()}
                 for event_id, found in verdicts.items()},
    }


def decode_committed(data: Mapping[str, Any]) -> tuple[Committed, dict[str, dict[str,
                                                                                tuple[int, int]]]]:
    """The ``Committed`` record and the push verdicts of ``encode_committed``'s output.
    Raises KeyError, TypeError or ValueError on a record that is not one."""
    events = []
    for event_json, pos in data["events"]:
        version = KNOWN_ROOM_VERSIONS[event_json["room_version"]]
        events.append((Event(str(event_json["event_id"]), version, dict(event_json["json"]),
                             event_json["rejected_reason"]), int(pos)))
    committed = Committed(
        positions=tuple(int(p) for p in data["positions"]),
        events=tuple(events),
        scopes={int(pos): tuple((s[0], s[1]) for s in scopes)
                for pos, scopes in data["scopes"].items()},
        device_list_changes=tuple((str(u), int(p)) for u, p in data["device_list_changes"]),
        tokens_changed=bool(data["tokens_changed"]),
        receipts=tuple((int(r[0]), r[1], r[2], r[3], r[4], r[5], dict(r[6]))
                       for r in data["receipts"]),
    )
    verdicts = {str(event_id): {str(user): (int(v[0]), int(v[1])) for user, v in found.items()}
                for event_id, found in data.get("push", {}).items()}
    return committed, verdicts
