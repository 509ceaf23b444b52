"""Sending a local user's message or state event: the checks before the writer.

PUT /send and PUT /state (and the WebSocket's ``send`` and ``state``) all
come here, so the rules hold whichever way an event arrives:

- a transaction ID is at most ``MAX_TXN_ID_BYTES`` long (400 M_INVALID_PARAM);
- a room this server does not know is 403, what non-members get;
- the sender is rate limited (``rc_message``);
- a message's relation obeys ``rooms/relations.py``; an
  ``m.room.canonical_alias`` state event, ``rooms/directory.py``;
- a retried transaction ID (per device, else per access token) returns the
  first event's ID: the writer (``rooms/creator.py``) remembers it with the
  event (``NewEventTxn``), so a retry sends nothing new;
- a state event identical to the current one is not sent again;
- a shadow-banned sender (``admin/user_moderation.py``) is answered with an
  event ID that names nothing, and nothing is sent;
- the moderation gate (``moderation/gate.py``: content filter, spam checker
  modules) may refuse the event, or have a message redacted once sent.

The API layer only parses; this is the use case, built once by ``server.py``
(``hs.room_sender``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.admin.user_moderation import fake_event_id
from homeserver.errors import forbidden, invalid_param
from homeserver.moderation.gate import ALLOW, REDACT
from homeserver.rooms.access import txn_scope
from homeserver.rooms.redaction import redact_event
from homeserver.rooms.relations import check_new_relation
from homeserver.storage.events import NewEventTxn

if TYPE_CHECKING:
    from homeserver.admin.user_moderation import UserModeration
    from homeserver.http.ratelimit import Ratelimiter
    from homeserver.http.request import Requester
    from homeserver.moderation.gate import ModerationGate
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.directory import RoomDirectory
    from homeserver.storage import Stores

# Long enough for any client; short enough for a database index entry.
MAX_TXN_ID_BYTES = 1024


def check_txn_id(txn_id: str) -> None:
    """400 M_INVALID_PARAM for a transaction ID too long to keep."""
    if len(txn_id.encode("utf-8")) > MAX_TXN_ID_BYTES:
        raise invalid_param(f"Transaction IDs are limited to {MAX_TXN_ID_BYTES} bytes")


class RoomSender:
    """Sends local users' message and state events (module docstring)."""

    def __init__(self, stores: "Stores", event_creator: "EventCreator",
                 directory: "RoomDirectory", ratelimiter: "Ratelimiter",
                 user_moderation: "UserModeration | None" = None,
                 gate: "ModerationGate | None" = None) -> None:
        self.stores = stores
        # content filter and spam checker modules
        self.gate = gate
        # shadow-bans
        self.user_moderation = user_moderation
        self.event_creator = event_creator
        # checks the aliases an m.room.canonical_alias names
        self.directory = directory
        # rc_message: shared with redactions, which the API sends
        self.ratelimiter = ratelimiter

    def _shadow_banned(self, user_id: str) -> bool:
        return self.user_moderation is not None and self.user_moderation.is_shadow_banned(user_id)

    def _refuse_if_suspended(self, user_id: str) -> None:
        if self.user_moderation is not None:
            self.user_moderation.refuse_if_suspended(user_id, "Sending messages")

    async def require_room(self, room_id: str) -> None:
        """Writers to a room we do not know get what non-members get: 403."""
        if await self.stores.rooms.get_room(room_id) is None:
            raise forbidden("You are not in this room.")

    async def send_message(self, requester: "Requester", room_id: str, event_type: str,
                           content: dict[str, Any], txn_id: str | None) -> str:
        """Send a message event (PUT /send, and the WebSocket's ``send``).

        A retried ``txn_id`` (per device) returns the first event's ID; None
        (the deprecated POST /send without one) sends every time.
        """
        if txn_id is not None:
            check_txn_id(txn_id)
        await self.require_room(room_id)
        self._refuse_if_suspended(requester.user_id)
        self.ratelimiter.ratelimit(requester.user_id)
        if self._shadow_banned(requester.user_id):
            return fake_event_id()
        await check_new_relation(self.stores, requester.user_id, room_id, event_type, content)
        verdict = ALLOW if self.gate is None else await self.gate.check_message(
            requester.user_id, room_id, event_type, content)
        txn = NewEventTxn(requester.user_id, txn_scope(requester), txn_id) \
            if txn_id is not None else None
        event_id: str = await self.event_creator.send(requester.user_id, room_id, event_type,
                                                      content, txn_id=txn)
        if verdict == REDACT:
            await redact_event(self.stores, self.event_creator, requester.user_id, room_id,
                               event_id, reason="Removed by the content filter", txn_id=None)
        return event_id

    async def send_state(self, user_id: str, room_id: str, event_type: str,
                         state_key: str, content: dict[str, Any]) -> str:
        """Send a state event (PUT /state, and the WebSocket's ``state``)."""
        await self.require_room(room_id)
        self._refuse_if_suspended(user_id)
        self.ratelimiter.ratelimit(user_id)
        if self._shadow_banned(user_id):
            return fake_event_id()
        if (event_type, state_key) == ("m.room.canonical_alias", ""):
            await self.directory.validate_canonical_alias(room_id, content)
        if self.gate is not None:
            await self.gate.check_message(user_id, room_id, event_type, content, state_key)
        event_id: str = await self.event_creator.send(user_id, room_id, event_type, content,
                                                      state_key=state_key, dedupe_state=True)
        return event_id
