"""An example spam checker: keep listed servers and domains out.

```yaml
modules:
  - module: homeserver.moderation.examples.blocked_servers.BlockedServers
    config:
      servers: [spam.example]
```

Invites from or to a user of a listed server, joins to a room whose ID
names one, and messages linking to one (or a subdomain) are refused.
"""

from __future__ import annotations

import re
from typing import Any

NOT_SPAM = "NOT_SPAM"
_URL_HOST = re.compile(r"https?://([A-Za-z0-9.\-]+)", re.IGNORECASE)


def _server_of(matrix_id: str) -> str:
    return matrix_id.split(":", 1)[1].lower() if ":" in matrix_id else ""


class BlockedServers:
    def __init__(self, config: dict[str, Any], api: Any) -> None:
        self.servers = frozenset(s.lower() for s in config.get("servers", []))
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            user_may_join_room=self.user_may_join_room,
            check_event_for_spam=self.check_event_for_spam)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        servers = config.get("servers")
        if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
            raise ValueError("BlockedServers: servers must be a list of server names")
        return config

    def _blocked(self, host: str) -> bool:
        host = host.lower().split(":", 1)[0]
        return any(host == s or host.endswith("." + s) for s in self.servers)

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        if self._blocked(_server_of(inviter)) or self._blocked(_server_of(invitee)):
            return "M_FORBIDDEN"
        return NOT_SPAM

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Any:
        return "M_FORBIDDEN" if self._blocked(_server_of(room_id)) else NOT_SPAM

    async def check_event_for_spam(self, event: dict[str, Any]) -> Any:
        body = event.get("content", {}).get("body")
        if isinstance(body, str) and any(self._blocked(h) for h in _URL_HOST.findall(body)):
            return "M_FORBIDDEN"
        return NOT_SPAM
