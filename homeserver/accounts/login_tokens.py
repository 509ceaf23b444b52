"""Login tokens: ``m.login.token``, short-lived and single-use.

A login token lets a client log in without a password: SSO (``accounts/
sso.py``) hands one to the client in the ``loginToken`` query parameter of
its redirect URL, and ``POST /_matrix/client/v1/login/get_token`` gives one
to a logged-in device so that a new device can sign in with it (QR login,
Synapse's ``login_via_existing_session``). The token is random, stored as its
SHA-256 (``storage/sso.py``), expires after a short time, and the first
``m.login.token`` login that presents it spends it: a replay is refused like
an unknown token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.accounts.sessions import new_token
from homeserver.errors import Codes, MatrixError, forbidden

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.storage.sso import SpentLoginToken, SsoStore
    from homeserver.storage.users import UserStore

LOGIN_TYPE_TOKEN = "m.login.token"

# how long a token handed to a client after SSO lives (Synapse: 2 minutes)
SSO_LOGIN_TOKEN_LIFETIME_MS = 120_000


class LoginTokens:
    """Issuing and spending login tokens."""

    def __init__(self, ctx: "ServerContext", store: "SsoStore", users: "UserStore") -> None:
        self.ctx = ctx
        self.store = store
        self.users = users

    async def issue(self, user_id: str, lifetime_ms: int,
                    auth_provider_id: str | None = None,
                    auth_provider_session_id: str | None = None) -> str:
        token = new_token("hs_lt")
        now = self.ctx.now_ms()
        await self.store.add_login_token(token, user_id, now + lifetime_ms, now,
                                         auth_provider_id, auth_provider_session_id)
        return token

    async def spend(self, token: str) -> "SpentLoginToken":
        """The user ``token`` logs in; 403 M_FORBIDDEN when it is unknown,
        expired or used, M_USER_DEACTIVATED when the account is gone."""
        spent = await self.store.spend_login_token(token, self.ctx.now_ms())
        if spent is None:
            raise forbidden("Invalid login token")
        info = await self.users.get_user(spent.user_id)
        if info is None:
            raise forbidden("Invalid login token")
        if info.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        return spent

    async def logged_in(self, spent: "SpentLoginToken", device_id: str) -> None:
        """The token made ``device_id``: remember which provider session it
        came from, for that provider's back-channel logout."""
        if spent.auth_provider_id is not None and spent.auth_provider_session_id is not None:
            await self.store.add_device_auth_provider(spent.user_id, device_id,
                                                      spent.auth_provider_id,
                                                      spent.auth_provider_session_id)
