"""Access-token authentication: the request's token -> ``Requester``.

Tokens come in the ``Authorization: Bearer`` header or, deprecated but still
used by clients, the ``access_token`` query parameter. The database keeps only
the SHA-256 of each token; a token's row, once read, is cached
(``storage/tokens.py``) until a transaction that deletes or changes any token
commits. An expired token that came with a refresh token is
M_UNKNOWN_TOKEN with ``soft_logout: true`` so the client refreshes instead of
throwing its session away.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from homeserver.errors import Codes, MatrixError
from homeserver.http.request import HttpRequest, Requester

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.storage.devices import DeviceStore
    from homeserver.storage.tokens import TokenStore
    from homeserver.storage.users import UserStore

# Devices' last-seen columns are written at most this often per device.
LAST_SEEN_INTERVAL_S = 60.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_from_request(req: HttpRequest) -> str | None:
    header = req.raw.getHeader(b"Authorization")
    if header is not None:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer" or not value.strip():
            raise MatrixError(401, Codes.MISSING_TOKEN, "Invalid Authorization header")
        return value.strip().decode("utf-8", "replace")
    values = req.args.get(b"access_token")
    if values:
        return values[0].decode("utf-8", "replace")
    return None


class Auth:
    def __init__(self, ctx: "ServerContext", tokens: "TokenStore",
                 devices: "DeviceStore", users: "UserStore") -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.devices = devices
        # server admins: read per admin request, so a demotion counts at once
        self.users = users
        self._last_seen: dict[tuple[str, str], float] = {}

    async def get_requester(self, req: HttpRequest, *, required: bool = True,
                            allow_guest: bool = False) -> Requester | None:
        token = token_from_request(req)
        if token is None:
            if required:
                raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
            return None
        info = await self.tokens.get_access_token(hash_token(token))
        if info is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token",
                              soft_logout=False)
        now_ms = int(self.ctx.clock.seconds() * 1000)
        if info.valid_until_ms is not None and info.valid_until_ms <= now_ms:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token has expired",
                              soft_logout=True)
        if info.is_guest and not allow_guest:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN,
                              "Guest access not allowed")
        if info.refresh_token_id is not None and not info.used:
            # First use of a refreshed pair retires the refresh token it replaced.
            await self.tokens.mark_access_token_used(info.token_id,
                                                                info.refresh_token_id)
        if info.device_id is not None:
            self._note_last_seen(info.user_id, info.device_id, req)
        return Requester(info.user_id, info.device_id, info.token_id, info.is_guest)

    async def require_server_admin(self, requester: Requester) -> None:
        """403 M_FORBIDDEN unless ``requester`` is a server admin."""
        user = await self.users.get_user(requester.user_id)
        if user is None or not user.admin or user.deactivated:
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a server admin")

    def _note_last_seen(self, user_id: str, device_id: str, req: HttpRequest) -> None:
        now = self.ctx.clock.seconds()
        key = (user_id, device_id)
        if now - self._last_seen.get(key, -LAST_SEEN_INTERVAL_S) < LAST_SEEN_INTERVAL_S:
            return
        self._last_seen[key] = now
        if len(self._last_seen) > 100_000:
            self._last_seen.clear()
        self.ctx.run_in_background(self.devices.update_last_seen(
            user_id, device_id, int(now * 1000), req.client_ip, req.user_agent))
