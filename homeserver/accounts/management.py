"""A logged-in user managing their account: logout, password change, deactivation.

Each change is one transaction, so a password change never leaves the other
devices half logged out, and a deactivated account never keeps a live token.
A deactivated account's row stays (password removed, flagged) so its user ID
is never given to someone else.

``AccountManagement`` (``HomeServer.account_management``) is the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.accounts.passwords import hash_password
from homeserver.accounts.sessions import check_password_policy
from homeserver.accounts.uia import PASSWORD_HASH, UiAuthAttempt
from homeserver.errors import missing_param
from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.users import UserStore

if TYPE_CHECKING:
    from homeserver.accounts.uia import UiAuth
    from homeserver.context import ServerContext
    from homeserver.http.request import Requester
    from homeserver.storage.database import Database
    from homeserver.storage.tokens import TokenStore


def _set_password_txn(txn: Txn, user_id: str, password_hash: str,
                      keep_device_id: str | None, logout_devices: bool) -> None:
    UserStore.set_password_hash_txn(txn, user_id, password_hash)
    if logout_devices:
        DeviceStore.delete_all_devices_txn(txn, user_id, keep_device_id)


def _deactivate_txn(txn: Txn, user_id: str, erase: bool) -> None:
    UserStore.mark_deactivated_txn(txn, user_id)
    DeviceStore.delete_all_devices_txn(txn, user_id)
    if erase:
        UserStore.mark_erased_txn(txn, user_id)


class AccountManagement:
    """Logout, password change and deactivation of a logged-in user's account."""

    def __init__(self, ctx: "ServerContext", db: "Database", tokens: "TokenStore",
                 devices: DeviceStore, ui_auth: "UiAuth") -> None:
        self.ctx = ctx
        # each change is one transaction over the users, devices and tokens
        self.db = db
        self.tokens = tokens
        self.devices = devices
        self.ui_auth = ui_auth

    async def logout(self, requester: "Requester") -> None:
        """End this session: its device and every token of that device."""
        if requester.device_id is None:
            await self.tokens.delete_access_token(requester.access_token_id)
        else:
            await self.devices.delete_devices(requester.user_id, [requester.device_id])

    async def logout_all(self, user_id: str) -> None:
        await self.db.run_interaction("logout_all", DeviceStore.delete_all_devices_txn, user_id)

    async def change_password(self, requester: "Requester", attempt: UiAuthAttempt,
                              new_password: str | None, logout_devices: bool) -> None:
        """Re-authenticate, then set the new password; other devices are logged out
        unless ``logout_devices`` is false (this one stays logged in).

        Raises ``UiAuthIncomplete`` until the user has re-authenticated."""
        config = self.ctx.config
        server_data = {}
        if new_password is not None and PASSWORD_HASH not in attempt.server_data:
            check_password_policy(config.password_config, new_password)
            # Hashed into the session: the plain password is never stored.
            server_data[PASSWORD_HASH] = await hash_password(new_password,
                                                             config.bcrypt_rounds)
        kept = {k: v for k, v in attempt.params.items() if k != "new_password"}
        result = await self.ui_auth.reauthenticate(attempt, requester,
                                                   "modify your account password",
                                                   params=kept, server_data=server_data)
        password_hash = result.server_data.get(PASSWORD_HASH)
        if password_hash is None:
            raise missing_param("new_password")
        await self.db.run_interaction("change_password", _set_password_txn, requester.user_id,
                                      password_hash, requester.device_id, logout_devices)
        if result.session_id is not None:
            # done: the session must not authorise a second change
            await self.ui_auth.discard(result.session_id)

    async def deactivate_account(self, user_id: str, erase: bool) -> None:
        """Deactivate: no password, no devices, no tokens; the ID stays taken.

        ``erase``: the user's events are from now on served redacted to other
        servers (``federation/visibility.py``), as Synapse does.
        """
        await self.db.run_interaction("deactivate_account", _deactivate_txn, user_id, erase)
