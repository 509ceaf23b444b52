"""The one place the send, membership and room-creation paths ask whether a
local user's action may go ahead: the content filter, then the spam checker
modules.

- ``check_message``: an event about to be sent. A filter hit in a message
  answers 403 M_FORBIDDEN with the reason (``action: reject``), or lets the
  message through and has it redacted at once by its sender (``action:
  redact``: members see that a message was removed, and why); in a room's
  name or topic it is always 403. Then ``check_event_for_spam`` of every
  module, for every event type, and ``user_may_send_state_event`` for state.
- ``is_federated_spam``: an event another server sends us (asked by
  ``federation/event_handler.py check_pdu``, for every PDU it receives) is
  spam if the filter catches it, a policy list bans its sender or a module
  refuses it: it is kept redacted, as Synapse keeps spam from federation.
- policy lists (``policy_lists.py``): a banned user may not send, join,
  invite or be invited, a banned room may not be joined;
- ``check_join``, ``check_invite``, ``check_federated_invite`` (an invite
  from another server), ``check_knock``, ``check_create_room``,
  ``check_create_alias``, ``check_publish_room``: the modules' ``user_may_*``;
  ``check_media`` and ``check_registration`` their
  ``check_media_file_for_spam`` and ``check_registration_for_spam``;
  ``hide_from_directory`` their ``check_username_for_spam``, ``check_login``
  their ``check_login_for_spam``.

Server admins' and the server's own actions pass the filter (notices,
moderation); modules see everything. Nothing here may break the send path:
a module's exception is the spam checker's to handle (``spam_checker.py``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.moderation.content_filter import (
    ROOM_RULES_EVENT,
    ContentFilter,
    filtered_content,
    room_words,
)
from homeserver.rooms.retention import RETENTION_TYPE
from homeserver.rooms.retention import content_error as retention_content_error

if TYPE_CHECKING:
    from homeserver.events.model import Event
    from homeserver.moderation.policy_lists import PolicyLists
    from homeserver.moderation.spam_checker import SpamChecker
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

ALLOW = "allow"
REDACT = "redact"


class ModerationGate:
    def __init__(self, stores: "Stores", config: dict[str, Any],
                 spam_checker: "SpamChecker", policy: "PolicyLists | None" = None,
                 hostname: str = "") -> None:
        self.stores = stores
        self.policy = policy
        self.hostname = hostname
        self.filter_on = bool(config.get("enabled"))
        self.filter = ContentFilter.from_config(config)
        self.action = config.get("action") or "reject"
        self.room_rules = bool(config.get("room_rules", True))
        self.spam_checker = spam_checker

    @property
    def has_modules(self) -> bool:
        """Whether any module or policy list checks anything (else the callers
        skip the reads a check needs)."""
        return self.spam_checker.active or (self.policy is not None and self.policy.active)

    async def _check_policy_user(self, user_id: str) -> None:
        if self.policy is not None:
            reason = await self.policy.banned_user(user_id)
            if reason is not None:
                raise MatrixError(403, Codes.FORBIDDEN, f"{user_id} is banned: {reason}")

    async def _room_words(self, room_id: str) -> frozenset[str]:
        if not self.room_rules:
            return frozenset()
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return frozenset()
        ids = await self.stores.rooms.get_current_state_ids(room.room_nid,
                                                            [(ROOM_RULES_EVENT, "")])
        event_id = ids.get((ROOM_RULES_EVENT, ""))
        if event_id is None:
            return frozenset()
        event = await self.stores.events.get_event(event_id)
        return room_words(event.content if event is not None else None)

    async def check_message(self, user_id: str, room_id: str, event_type: str,
                            content: dict[str, Any], state_key: str | None = None) -> str:
        """ALLOW or REDACT; raises 403 for a refusal (400 for a retention
        policy Synapse would refuse too)."""
        if event_type == RETENTION_TYPE and state_key == "":
            problem = retention_content_error(content)
            if problem is not None:
                raise MatrixError(400, Codes.BAD_JSON, problem)
        await self._check_policy_user(user_id)
        verdict = ALLOW
        text = filtered_content(event_type, state_key, content) if self.filter_on else None
        if text is not None:
            reason = self.filter.check(text, await self._room_words(room_id))
            if reason is not None:
                # a room's name or topic is refused whatever the action:
                # redacting it would leave the room without one
                if self.action == "reject" or state_key is not None:
                    raise MatrixError(403, Codes.FORBIDDEN, reason)
                verdict = REDACT
        event: dict[str, Any] = {"type": event_type, "room_id": room_id, "sender": user_id,
                                 "content": content}
        if state_key is not None:
            event["state_key"] = state_key
        await self.spam_checker.check_event_for_spam(event)
        if state_key is not None:
            await self.check_state_event(user_id, room_id, event_type, state_key, content)
        return verdict

    @property
    def checks_federated_events(self) -> bool:
        return self.filter_on or self.has_modules

    async def is_federated_spam(self, event: "Event") -> bool:
        """Whether an event from another server is spam (Synapse's
        ``check_event_for_spam`` on federation): the content filter, a
        policy list banning its sender, or a module refusing it. The caller
        keeps it redacted, as Synapse does; nothing here raises."""
        try:
            if self.policy is not None and await self.policy.banned_user(event.sender):
                return True
            text = filtered_content(event.type, event.state_key, event.content) \
                if self.filter_on else None
            if text is not None and self.filter.check(
                    text, await self._room_words(event.room_id)) is not None:
                return True
            pdu = dict(event.json, event_id=event.event_id)
            await self.spam_checker.check_event_for_spam(pdu)
            # one a module drops from transactions may still come back as
            # another event's prev_event: then it is kept redacted
            await self.spam_checker.should_drop_federated_event(pdu)
        except MatrixError:
            return True
        except Exception:
            logger.exception("checking %s for spam failed", event.event_id)
        return False

    async def check_join(self, user_id: str, room_id: str, is_invited: bool) -> None:
        await self._check_policy_user(user_id)
        if self.policy is not None:
            reason = await self.policy.banned_room(room_id)
            if reason is not None:
                raise MatrixError(403, Codes.FORBIDDEN, f"This room is banned: {reason}")
        await self.spam_checker.user_may_join_room(user_id, room_id, is_invited)

    async def check_invite(self, inviter: str, invitee: str, room_id: str) -> None:
        await self._check_policy_user(inviter)
        await self._check_policy_user(invitee)
        await self.spam_checker.user_may_invite(inviter, invitee, room_id)

    async def check_federated_invite(self, event: "Event") -> None:
        """An invite of one of our users from another server (403 refuses
        it): policy lists, the modules' ``user_may_invite`` and
        ``federated_user_may_invite`` (handed the event as a dict)."""
        invitee = event.state_key or ""
        await self._check_policy_user(event.sender)
        await self._check_policy_user(invitee)
        await self.spam_checker.user_may_invite(event.sender, invitee, event.room_id)
        await self.spam_checker.federated_user_may_invite(
            dict(event.json, event_id=event.event_id))

    async def check_login(self, user_id: str, device_id: str | None,
                          display_name: str | None, client_ip: str,
                          auth_provider_id: str | None) -> None:
        await self.spam_checker.check_login_for_spam(user_id, device_id, display_name,
                                                     [("", client_ip)], auth_provider_id)

    async def check_3pid_invite(self, inviter: str, medium: str, address: str,
                                room_id: str) -> None:
        await self._check_policy_user(inviter)
        await self.spam_checker.user_may_send_3pid_invite(inviter, medium, address, room_id)

    async def should_drop_federated_event(self, pdu: Any) -> bool:
        """Whether a module drops a PDU of a transaction unseen (never
        stored, answered as accepted, as Synapse does); never raises."""
        try:
            await self.spam_checker.should_drop_federated_event(pdu)
        except MatrixError:
            return True
        except Exception:
            logger.exception("should_drop_federated_event failed")
        return False

    async def check_knock(self, user_id: str, room_id: str) -> None:
        await self._check_policy_user(user_id)
        await self.spam_checker.user_may_knock(user_id, room_id)

    async def check_create_alias(self, user_id: str, alias: str) -> None:
        await self.spam_checker.user_may_create_room_alias(user_id, alias)

    async def check_publish_room(self, user_id: str, room_id: str) -> None:
        await self.spam_checker.user_may_publish_room(user_id, room_id)

    async def check_state_event(self, user_id: str, room_id: str, event_type: str,
                                state_key: str, content: dict[str, Any]) -> None:
        await self.spam_checker.user_may_send_state_event(user_id, room_id, event_type,
                                                          state_key, content)

    async def check_create_room(self, user_id: str) -> None:
        await self.spam_checker.user_may_create_room(user_id)

    async def check_media(self, user_id: str, data: bytes, media_type: str,
                          upload_name: str | None) -> None:
        if self.has_modules:
            await self.spam_checker.check_media_file_for_spam(
                data, {"media_type": media_type, "upload_name": upload_name,
                       "user_id": user_id})

    async def hide_from_directory(self, results: list[dict[str, Any]],
                                  requester_id: str) -> list[dict[str, Any]]:
        """User directory results less those a module finds spammy."""
        if not self.spam_checker.active:
            return results
        return [r for r in results
                if not await self.spam_checker.check_username_for_spam(r, requester_id)]

    async def check_registration(self, email: dict[str, Any] | None, username: str | None,
                                 client_ip: str) -> str:
        """"allow", "deny" or "shadow_ban"."""
        if not self.has_modules:
            return "allow"
        if username is not None and self.policy is not None and \
                await self.policy.banned_user(f"@{username}:{self.hostname}") is not None:
            return "deny"
        return await self.spam_checker.check_registration_for_spam(
            email, username, [("", client_ip)], None)
