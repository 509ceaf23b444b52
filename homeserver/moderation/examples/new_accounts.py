"""An example spam checker: new accounts go slowly.

```yaml
modules:
  - module: homeserver.moderation.examples.new_accounts.NewAccountLimits
    config:
      min_age_ms: 86400000       # younger than a day: "new"
      invites_per_hour: 5        # a new account's invites
      may_create_rooms: false    # new accounts create no rooms
      may_send_links: false      # nor send links
```

Counts live in memory, per process (a restart forgets them).
"""

from __future__ import annotations

from typing import Any

NOT_SPAM = "NOT_SPAM"
HOUR_MS = 3_600_000


class NewAccountLimits:
    def __init__(self, config: dict[str, Any], api: Any) -> None:
        self.api = api
        self.min_age_ms = int(config.get("min_age_ms", 86_400_000))
        self.invites_per_hour = int(config.get("invites_per_hour", 5))
        self.may_create_rooms = bool(config.get("may_create_rooms", False))
        self.may_send_links = bool(config.get("may_send_links", False))
        # user -> times of their recent invites (ms)
        self._invites: dict[str, list[int]] = {}
        api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room,
            user_may_invite=self.user_may_invite,
            check_event_for_spam=self.check_event_for_spam)

    async def _is_new(self, user_id: str) -> bool:
        if not self.api.is_mine(user_id):
            return False
        info = await self.api.get_userinfo_by_id(user_id)
        return info is not None and self.api.time_msec() - info.creation_ts < self.min_age_ms

    async def user_may_create_room(self, user_id: str) -> Any:
        if not self.may_create_rooms and await self._is_new(user_id):
            return "M_FORBIDDEN"
        return NOT_SPAM

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        if not await self._is_new(inviter):
            return NOT_SPAM
        now = self.api.time_msec()
        recent = [t for t in self._invites.get(inviter, []) if now - t < HOUR_MS]
        if len(recent) >= self.invites_per_hour:
            self._invites[inviter] = recent
            return "M_LIMIT_EXCEEDED"
        recent.append(now)
        self._invites[inviter] = recent
        return NOT_SPAM

    async def check_event_for_spam(self, event: dict[str, Any]) -> Any:
        body = event.get("content", {}).get("body")
        if self.may_send_links or not isinstance(body, str) or "://" not in body:
            return NOT_SPAM
        return "M_FORBIDDEN" if await self._is_new(event["sender"]) else NOT_SPAM
