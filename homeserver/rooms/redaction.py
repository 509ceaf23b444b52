"""Redacting events: PUT /rooms/{roomId}/redact/{eventId}/{txnId}.

A redaction is an ``m.room.redaction`` event (``redacts`` at the top level
before v11, in ``content`` from v11; ``events/builder.py`` places it). It is
authorised by the auth rules like any event (in v1-v2 those rules also check
the redaction itself). Whether it is *applied* to its target is a separate
decision (client-server API, "Redactions"; room versions v3+, "Handling
redactions"): the redaction's sender must be the target's sender or hold the
room's ``redact`` level. Like Synapse, we make that decision before sending
for our own users, so a client that may not redact an event gets 403
M_FORBIDDEN (404 M_NOT_FOUND for an event we do not know, unless they hold
the redact level) and no redaction is stored; every redaction we store is
one to apply (``storage/events.py`` records it and serves its target
redacted from then on). Like Synapse, nobody may redact ``m.room.create``.

``may_apply_redaction`` is the pure rule, for the inbound federation path
to reuse: there the target may arrive later, and a redaction from another
server applies when the servers of the two senders match (the spec's rule;
it trusts the remote server to have checked its own user).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.rooms.power_levels import (
    CREATE,
    POWER_LEVELS,
    StateMap,
    get_named_level,
    get_user_power_level,
)
from homeserver.storage.events import NewEventTxn

if TYPE_CHECKING:
    from homeserver.rooms.creator import EventCreator
    from homeserver.storage import Stores


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def has_redact_level(user_id: str, state: StateMap, room_version: RoomVersion) -> bool:
    """Whether ``user_id`` holds the ``redact`` level in ``state`` (power levels, create)."""
    return get_user_power_level(user_id, state, room_version) >= get_named_level(
        "redact", state, room_version)


def may_apply_redaction(redaction_sender: str, original: Event, state: StateMap,
                        *, same_server_suffices: bool = False) -> bool:
    """Whether a redaction by ``redaction_sender`` may redact ``original``,
    with ``state`` (at least power levels and create) the room's state at it."""
    if original.type == "m.room.create":
        return False
    if redaction_sender == original.sender:
        return True
    if same_server_suffices and _server_of(redaction_sender) == _server_of(original.sender):
        return True
    return has_redact_level(redaction_sender, state, original.room_version)


async def redact_event(stores: "Stores", event_creator: "EventCreator", sender: str,
                       room_id: str, event_id: str, *,
                       reason: str | None, txn_id: NewEventTxn | None) -> str:
    """Send a redaction of ``event_id`` if ``sender`` may redact it; returns its ID."""
    room = await stores.rooms.get_room(room_id)
    if room is None:
        raise forbidden("You are not in this room.")
    if txn_id is not None:
        earlier = await stores.rooms.get_txn_event_id(txn_id.user_id, txn_id.scope,
                                                      room.room_nid, txn_id.txn_id)
        if earlier is not None:
            return earlier
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    membership = await stores.rooms.get_membership(sender, room.room_nid)
    if membership is None or membership.membership != "join":
        raise forbidden("You are not in this room.")
    ids = await stores.rooms.get_current_state_ids(room.room_nid, [CREATE, POWER_LEVELS])
    events = await stores.events.get_events(list(ids.values()))
    state = {k: events[v] for k, v in ids.items() if v in events}

    pos = await stores.events.get_event_position(event_id)
    if pos is not None and pos.room_nid != room.room_nid:
        # Synapse refuses it too: a redaction names an event of its own room
        raise invalid_param("Cannot redact an event from a different room")
    original = await stores.events.get_event(event_id) if pos is not None else None
    if original is None:
        # Synapse: only a moderator may redact an event the server does not have
        if not has_redact_level(sender, state, rv):
            raise not_found(f"Could not find event {event_id}")
    elif not may_apply_redaction(sender, original, state):
        if original.type == "m.room.create":
            raise forbidden("Redacting create events is not permitted")
        raise forbidden("You don't have permission to redact events")

    content: dict[str, object] = {}
    if reason is not None:
        content["reason"] = reason
    return await event_creator.send(sender, room_id, "m.room.redaction", content,
                                    redacts=event_id, txn_id=txn_id)
