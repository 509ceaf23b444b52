"""Moderating local users: shadow-bans, rate-limit overrides, and the admin's
reads of a user's account data and pushers.

Both flags live in the database (migration 0037) and in memory: the send
path asks ``is_shadow_banned`` and the rate limiter ``ratelimit_override`` on
every request, so neither may cost a query. ``load`` fills the memory at
start; the admin API changes both together.

A shadow-banned user's requests seem to succeed and reach nobody, as on
Synapse: a message or state event is answered with an event ID that names
nothing and is never stored (``rooms/sending.py``), an invite with 200 and
no invite (``rooms/membership.py``), so room creation drops its invites,
typing with 200 and no notification (``edu/typing.py``); joins and leaves
go through. Synapse also sleeps a random 1-10 s before
answering; we do not hold the request.

A suspended user (Synapse's ``PUT /suspend/{userId}``, MSC3823; the flag in
migration 0038, in memory too) reads as before and is refused, with 403
M_USER_SUSPENDED, sending messages and state (``rooms/sending.py``),
creating rooms, inviting, joining and knocking (``rooms/membership.py``),
redacting others' events (``api/client/rooms.py``) and changing their
profile (``api/client/profile.py``); they may leave rooms and redact their
own events, as on Synapse.
"""

from __future__ import annotations

import secrets
import string
from typing import TYPE_CHECKING, Any

from homeserver.admin.audit import log_admin_action
from homeserver.config import RateLimit
from homeserver.errors import Codes, MatrixError, not_found

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.storage import Stores
    from homeserver.storage.user_moderation import UserModerationStore

_ID_ALPHABET = string.ascii_letters + string.digits + "-_"


def fake_event_id() -> str:
    """An event ID shaped like a real one (room versions 4 and later)."""
    return "$" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(43))


class UserModeration:
    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 store: "UserModerationStore") -> None:
        self.ctx = ctx
        self.stores = stores
        self.store = store
        self._shadow_banned: set[str] = set()
        self._suspended: set[str] = set()
        self._overrides: dict[str, RateLimit] = {}

    async def load(self) -> None:
        self._shadow_banned = await self.store.shadow_banned_users()
        self._suspended = await self.store.suspended_users()
        self._overrides = {u: RateLimit(float(m), float(b))
                           for u, (m, b) in (await self.store.ratelimit_overrides()).items()}

    # -- asked on every request --

    def is_shadow_banned(self, user_id: str) -> bool:
        return user_id in self._shadow_banned

    def ratelimit_override(self, user_id: str) -> RateLimit | None:
        return self._overrides.get(user_id)

    def is_suspended(self, user_id: str) -> bool:
        return user_id in self._suspended

    def refuse_if_suspended(self, user_id: str, what: str) -> None:
        """403 M_USER_SUSPENDED ("``what`` while account is suspended is not
        allowed.") for a suspended user."""
        if user_id in self._suspended:
            raise MatrixError(403, Codes.USER_SUSPENDED,
                              f"{what} while account is suspended is not allowed.")

    # -- the admin API --

    async def _require_local_user(self, user_id: str) -> None:
        if not self.ctx.is_mine(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Only local users can be moderated")
        if await self.stores.users.get_user(user_id) is None:
            raise not_found("User not found")

    async def set_shadow_banned(self, admin: str, user_id: str, banned: bool) -> None:
        await self._require_local_user(user_id)
        await self.store.set_shadow_banned(user_id, banned)
        if banned:
            self._shadow_banned.add(user_id)
        else:
            self._shadow_banned.discard(user_id)
        log_admin_action(admin, "shadow_ban" if banned else "unshadow_ban", user_id)

    async def set_suspended(self, admin: str, user_id: str, suspended: bool) -> None:
        if not self.ctx.is_mine(user_id):
            raise MatrixError(400, Codes.UNKNOWN, "Can only suspend local users")
        if await self.stores.users.get_user(user_id) is None:
            raise not_found("User not found")
        await self.store.set_suspended(user_id, suspended)
        if suspended:
            self._suspended.add(user_id)
        else:
            self._suspended.discard(user_id)
        log_admin_action(admin, "suspend" if suspended else "unsuspend", user_id)

    async def get_override(self, user_id: str) -> dict[str, int]:
        await self._require_local_user(user_id)
        own = self._overrides.get(user_id)
        if own is None:
            return {}
        return {"messages_per_second": int(own.per_second), "burst_count": int(own.burst_count)}

    async def set_override(self, admin: str, user_id: str, per_second: int,
                           burst: int) -> dict[str, int]:
        await self._require_local_user(user_id)
        await self.store.set_ratelimit_override(user_id, per_second, burst)
        self._overrides[user_id] = RateLimit(float(per_second), float(burst))
        log_admin_action(admin, "override_ratelimit", user_id, messages_per_second=per_second,
                         burst_count=burst)
        return {"messages_per_second": per_second, "burst_count": burst}

    async def delete_override(self, admin: str, user_id: str) -> None:
        await self._require_local_user(user_id)
        await self.store.delete_ratelimit_override(user_id)
        self._overrides.pop(user_id, None)
        log_admin_action(admin, "delete_ratelimit_override", user_id)

    async def account_data(self, user_id: str) -> dict[str, Any]:
        await self._require_local_user(user_id)
        global_data, rooms = await self.stores.account_data.get_account_data_since(user_id, 0)
        return {"global": global_data, "rooms": rooms}

    async def pushers(self, user_id: str) -> list[dict[str, Any]]:
        await self._require_local_user(user_id)
        out = []
        for p in await self.stores.pushers.get_pushers_for_user(user_id):
            out.append({"app_display_name": p.app_display_name, "app_id": p.app_id,
                        "data": p.data, "device_display_name": p.device_display_name,
                        "kind": p.kind, "lang": p.lang, "profile_tag": p.profile_tag or "",
                        "pushkey": p.pushkey})
        return out
