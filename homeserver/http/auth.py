"""Access-token authentication: the request's token -> ``Requester``.

Tokens come in the ``Authorization: Bearer`` header or, deprecated but still
used by clients, the ``access_token`` query parameter. The database keeps only
the SHA-256 of each token; a token's row, once read, is cached
(``storage/tokens.py``) until a transaction that deletes or changes any token
commits. An application service's ``as_token`` (appservice/registration.py)
authenticates as the service's own user or, with ``?user_id=``, as any
registered user in its namespace (masquerading), on the device named by
``?device_id=`` (or MSC3202's ``org.matrix.msc3202.device_id``) if the user
has it. An expired token that came with a refresh token is
M_UNKNOWN_TOKEN with ``soft_logout: true`` so the client refreshes instead of
throwing its session away.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

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
                 devices: "DeviceStore", users: "UserStore | None" = None) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.devices = devices
        # masqueraded users must exist; server admins are read per admin
        # request, so a demotion counts at once
        self.users = users
        self.app_services = ctx.config.app_services
        self._last_seen: dict[tuple[str, str], float] = {}

    async def get_requester(self, req: HttpRequest, *, required: bool = True,
                            allow_guest: bool = False) -> Requester | None:
        token = token_from_request(req)
        if token is None:
            if required:
                raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
            return None
        service = self.app_services.by_token(token) if self.app_services else None
        if service is not None:
            return await self._app_service_requester(service, req)
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

    def get_app_service(self, req: HttpRequest) -> Any:
        """The application service whose as_token the request carries (None:
        not a service's): for registration, where ``?user_id=`` names the
        user about to exist (as mautrix sends it)."""
        token = token_from_request(req)
        if token is None or not self.app_services:
            return None
        return self.app_services.by_token(token)

    async def _app_service_requester(self, service: Any, req: HttpRequest) -> Requester:
        """The service's own user, or the namespace user it masquerades as."""
        user_id = service.sender
        values = req.args.get(b"user_id")
        if values:
            wanted = values[0].decode("utf-8", "replace")
            if wanted != service.sender:
                if not service.is_interested_in_user(wanted):
                    raise MatrixError(403, Codes.FORBIDDEN,
                                      "Application service cannot masquerade as this user "
                                      f"({wanted}).")
                if not self.ctx.is_mine(wanted):
                    raise MatrixError(403, Codes.FORBIDDEN,
                                      "Application service cannot masquerade as a user of "
                                      "another server")
                info = await self.users.get_user(wanted) if self.users is not None else None
                if info is None:
                    raise MatrixError(403, Codes.FORBIDDEN,
                                      "Application service has not registered this user "
                                      f"({wanted})")
                if info.deactivated:
                    raise MatrixError(403, Codes.USER_DEACTIVATED,
                                      f"This user has been deactivated ({wanted})")
            user_id = wanted
        device_id = None
        values = req.args.get(b"device_id") or req.args.get(b"org.matrix.msc3202.device_id")
        if values:
            wanted_device = values[0].decode("utf-8", "replace")
            if await self.devices.get_device(user_id, wanted_device) is None:
                raise MatrixError(403, Codes.FORBIDDEN,
                                  "Application service has not registered this device")
            device_id = wanted_device
        return Requester(user_id, device_id, -1, False, service)

    async def require_server_admin(self, requester: Requester) -> None:
        """403 M_FORBIDDEN unless ``requester`` is a server admin."""
        assert self.users is not None, "Auth needs the user store for admin routes"
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
