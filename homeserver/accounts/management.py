"""A logged-in user managing their account: logout, password change, deactivation.

Each change is one transaction, so a password change never leaves the other
devices half logged out, and a deactivated account never keeps a live token.
A deactivated account's row stays (password removed, flagged) so its user ID
is never given to someone else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.accounts.passwords import hash_password
from homeserver.accounts.sessions import check_password_policy
from homeserver.accounts.uia import (
    PASSWORD_HASH,
    UiAuthAttempt,
    discard_ui_auth_session,
    reauthenticate,
)
from homeserver.errors import missing_param
from homeserver.http.request import HttpRequest, Requester
from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.users import UserStore

if TYPE_CHECKING:
    from homeserver.server import HomeServer


async def logout(hs: "HomeServer", requester: Requester) -> None:
    """End this session: its device and every token of that device."""
    if requester.device_id is None:
        await hs.stores.tokens.delete_access_token(requester.access_token_id)
    else:
        await hs.stores.devices.delete_devices(requester.user_id, [requester.device_id])


async def logout_all(hs: "HomeServer", user_id: str) -> None:
    await hs.db.run_interaction("logout_all", DeviceStore.delete_all_devices_txn, user_id)


def _set_password_txn(txn: Txn, user_id: str, password_hash: str,
                      keep_device_id: str | None, logout_devices: bool) -> None:
    UserStore.set_password_hash_txn(txn, user_id, password_hash)
    if logout_devices:
        DeviceStore.delete_all_devices_txn(txn, user_id, keep_device_id)


async def change_password(hs: "HomeServer", req: HttpRequest, requester: Requester,
                          attempt: UiAuthAttempt, new_password: str | None,
                          logout_devices: bool) -> None:
    """Re-authenticate, then set the new password; other devices are logged out
    unless ``logout_devices`` is false (this one stays logged in)."""
    server_data = {}
    if new_password is not None and PASSWORD_HASH not in attempt.server_data:
        check_password_policy(hs, new_password)
        # Hashed into the session: the plain password is never stored.
        server_data[PASSWORD_HASH] = await hash_password(new_password, hs.config.bcrypt_rounds)
    kept = {k: v for k, v in attempt.params.items() if k != "new_password"}
    result = await reauthenticate(hs, req, requester, "modify your account password",
                                  attempt=attempt, params=kept, server_data=server_data)
    password_hash = result.server_data.get(PASSWORD_HASH)
    if password_hash is None:
        raise missing_param("new_password")
    await hs.db.run_interaction("change_password", _set_password_txn, requester.user_id,
                                password_hash, requester.device_id, logout_devices)
    if result.session_id is not None:
        # done: the session must not authorise a second change
        await discard_ui_auth_session(hs, result.session_id)


def _deactivate_txn(txn: Txn, user_id: str) -> None:
    UserStore.mark_deactivated_txn(txn, user_id)
    DeviceStore.delete_all_devices_txn(txn, user_id)


async def deactivate_account(hs: "HomeServer", user_id: str, erase: bool) -> None:
    """Deactivate: no password, no devices, no tokens; the ID stays taken.

    ``erase`` is accepted; there is no stored content yet that it would redact.
    """
    await hs.db.run_interaction("deactivate_account", _deactivate_txn, user_id)
