"""Admin use cases on local accounts (Synapse's user admin API).

``AdminUsers`` reads and changes any local account: create or modify
(password, profile, admin flag, deactivation, 3PIDs, user type), deactivate
with erase, reset a password, devices, joined rooms, and logging in as a user
(a token with no device, as Synapse's "puppet" tokens). Each change is logged
on the audit logger by the caller's user ID.

The rules are Synapse's: only local users; an admin may not demote
themselves; reactivating an account needs a password when passwords are on;
a 3PID already on another account is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.passwords import hash_password
from homeserver.accounts.sessions import check_password_policy, new_token
from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, invalid_param, not_found
from homeserver.http.auth import hash_token
from homeserver.storage.admin_users import UserListQuery, UserRow
from homeserver.storage.devices import Device, DeviceStore
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.accounts.management import AccountManagement
    from homeserver.accounts.registration import Registrations
    from homeserver.context import ServerContext
    from homeserver.identity.threepids import Threepids
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.storage import Stores

USER_TYPES = (None, "support", "bot")
CROSS_SIGNING_REPLACEMENT_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class UserChanges:
    """A validated ``PUT /_synapse/admin/v2/users/{userId}`` body; None: unchanged."""

    password: str | None = None
    logout_devices: bool = True
    displayname: str | None = None
    avatar_url: str | None = None
    threepids: list[tuple[str, str]] | None = None
    admin: bool | None = None
    deactivated: bool | None = None
    user_type: str | None = None
    set_user_type: bool = False
    # (auth provider, external ID): the user's whole list of them
    external_ids: list[tuple[str, str]] | None = None


def parse_external_ids(value: Any) -> list[tuple[str, str]]:
    """``external_ids`` of a ``PUT /v2/users`` body (400 for a bad shape)."""
    if not isinstance(value, list) or len(value) > 100:
        raise MatrixError(400, Codes.INVALID_PARAM, "'external_ids' must be a list")
    out = []
    for entry in value:
        provider = entry.get("auth_provider") if isinstance(entry, dict) else None
        external = entry.get("external_id") if isinstance(entry, dict) else None
        if not isinstance(provider, str) or not isinstance(external, str) or \
                not provider or not external or len(provider) > 255 or len(external) > 255:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "external_ids entries need auth_provider and external_id strings")
        out.append((provider, external))
    return out


def admin_device(device: Device) -> dict[str, Any]:
    return {"device_id": device.device_id, "display_name": device.display_name,
            "last_seen_ip": device.last_seen_ip, "last_seen_ts": device.last_seen_ts,
            "last_seen_user_agent": device.last_seen_user_agent, "user_id": device.user_id}


class AdminUsers:
    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 accounts: "AccountManagement", registrations: "Registrations",
                 threepids: "Threepids", membership: "MembershipHandler") -> None:
        self.ctx = ctx
        self.stores = stores
        self.accounts = accounts
        self.registrations = registrations
        self.threepids = threepids
        self.membership = membership
        # user ID -> until when (ms) they may replace their cross-signing
        # keys without user-interactive auth (kept in memory: ten minutes)
        self._replace_cross_signing_until: dict[str, int] = {}

    # -- reads ---------------------------------------------------------------

    def check_local(self, user_id: str) -> None:
        if not self.ctx.is_mine(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "This endpoint can only be used with local users")

    async def require_user(self, user_id: str) -> UserRow:
        self.check_local(user_id)
        row = await self.stores.admin_users.get_user_row(user_id)
        if row is None:
            raise not_found("User not found")
        return row

    async def list_users(self, query: UserListQuery) -> tuple[list[UserRow], int]:
        return await self.stores.admin_users.list_users(query)

    async def user_details(self, user_id: str) -> dict[str, Any]:
        row = await self.require_user(user_id)
        body = row.to_admin()
        body["threepids"] = [{"medium": t.medium, "address": t.address,
                              "added_at": t.added_at, "validated_at": t.validated_at}
                             for t in await self.stores.threepids.get_threepids(user_id)]
        body.update({"appservice_id": None, "consent_server_notice_sent": None,
                     "consent_version": None, "consent_ts": None,
                     "external_ids": [{"auth_provider": provider, "external_id": external}
                                      for provider, external
                                      in await self.stores.sso.get_external_ids(user_id)],
                     "approved": True, "suspended": row.suspended})
        return body

    async def _set_external_ids(self, admin: str, user_id: str,
                                ids: list[tuple[str, str]]) -> None:
        taken = await self.stores.admin_users.replace_external_ids(user_id, ids)
        if taken is not None:
            raise MatrixError(409, Codes.UNKNOWN, "External id is already in use.")
        log_admin_action(admin, "set_external_ids", user_id, count=len(ids))

    async def memberships(self, user_id: str) -> dict[str, str]:
        """Every room's latest membership of a user (local or remote)."""
        return await self.stores.admin_users.memberships(user_id)

    async def _memberships_sent(self, user_id: str, from_ts: int, own: bool,
                                membership: str) -> list[int]:
        await self.require_user(user_id)
        found = []
        for room_nid, raw in await self.stores.admin_users.member_events_since(
                user_id, from_ts, own):
            try:
                content = json.loads(raw).get("content")
            except ValueError:
                continue
            if isinstance(content, dict) and content.get("membership") == membership:
                found.append(room_nid)
        return found

    async def sent_invite_count(self, user_id: str, from_ts: int) -> int:
        return len(await self._memberships_sent(user_id, from_ts, False, "invite"))

    async def cumulative_joined_room_count(self, user_id: str, from_ts: int) -> int:
        return len(set(await self._memberships_sent(user_id, from_ts, True, "join")))

    async def user_by_threepid(self, medium: str, address: str) -> str:
        user_id = await self.stores.threepids.get_user_by_threepid(medium, address)
        if user_id is None:
            raise not_found("User not found")
        return user_id

    async def user_by_external_id(self, provider: str, external_id: str) -> str:
        """``GET /auth_providers/{provider}/users/{externalId}``"""
        user_id = await self.stores.sso.get_user_by_external_id(provider, external_id)
        if user_id is None:
            raise not_found("User not found")
        return user_id

    # -- create or modify ----------------------------------------------------

    async def upsert_user(self, admin: str, user_id: str, changes: UserChanges) -> bool:
        """Create the account or change it; True when it was created."""
        self.check_local(user_id)
        existing = await self.stores.users.get_user(user_id)
        if changes.password is not None:
            check_password_policy(self.ctx.config.password_config, changes.password)
        if existing is None:
            await self._create(admin, user_id, changes)
            return True
        await self._modify(admin, user_id, existing.deactivated, changes)
        return False

    async def _create(self, admin: str, user_id: str, changes: UserChanges) -> None:
        localpart = user_id[1:].split(":", 1)[0]
        await self.registrations.check_username(localpart)
        await self._check_threepids_free(user_id, changes.threepids or [])
        password_hash = None
        if changes.password is not None:
            password_hash = await hash_password(changes.password, self.ctx.config.bcrypt_rounds)
        try:
            await self.stores.db.run_interaction(
                "admin_create_user", UserStore.create_user_txn, user_id, password_hash,
                self.ctx.now_ms(), bool(changes.admin), False, changes.user_type,
                changes.displayname)
        except UserExists:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.") from None
        log_admin_action(admin, "create_user", user_id, admin_flag=bool(changes.admin),
                         password=changes.password is not None)
        if changes.avatar_url is not None:
            await self.stores.profiles.set_avatar_url(user_id, changes.avatar_url)
        if changes.threepids:
            await self._set_threepids(user_id, changes.threepids)
        profile = await self.stores.profiles.get_profile(user_id)
        if profile is not None:
            await self.stores.user_directory.update_profile(user_id, profile.displayname,
                                                            profile.avatar_url)
        if changes.external_ids is not None:
            await self._set_external_ids(admin, user_id, changes.external_ids)
        if changes.deactivated:
            await self.deactivate(admin, user_id, erase=False)

    async def _modify(self, admin: str, user_id: str, deactivated: bool,
                      changes: UserChanges) -> None:
        if changes.threepids is not None:
            await self._check_threepids_free(user_id, changes.threepids)
        if changes.external_ids is not None:
            await self._set_external_ids(admin, user_id, changes.external_ids)
        if changes.admin is not None:
            await self.set_admin(admin, user_id, changes.admin)
        if changes.user_type is not None or changes.set_user_type:
            await self.stores.users.set_user_type(user_id, changes.user_type)
            log_admin_action(admin, "set_user_type", user_id, user_type=changes.user_type)
        if changes.threepids is not None:
            await self._set_threepids(user_id, changes.threepids)
            log_admin_action(admin, "set_threepids", user_id, count=len(changes.threepids))
        if changes.deactivated is False and deactivated:
            if changes.password is None and self.ctx.config.password_config["enabled"]:
                raise MatrixError(400, Codes.MISSING_PARAM,
                                  "Must provide a password to re-activate an account.")
            await self.stores.users.reactivate(user_id)
            log_admin_action(admin, "reactivate_user", user_id)
            deactivated = False
        if changes.password is not None and not deactivated:
            await self.reset_password(admin, user_id, changes.password, changes.logout_devices)
        profile_changed = False
        if changes.displayname is not None:
            await self.stores.profiles.set_displayname(user_id, changes.displayname)
            profile_changed = True
        if changes.avatar_url is not None:
            await self.stores.profiles.set_avatar_url(user_id, changes.avatar_url)
            profile_changed = True
        if profile_changed:
            log_admin_action(admin, "set_profile", user_id, displayname=changes.displayname,
                             avatar_url=changes.avatar_url)
            await self.membership.profile_changed(user_id)
            profile = await self.stores.profiles.get_profile(user_id)
            if profile is not None:
                await self.stores.user_directory.update_profile(
                    user_id, profile.displayname, profile.avatar_url)
        if changes.deactivated and not deactivated:
            await self.deactivate(admin, user_id, erase=False)

    async def _check_threepids_free(self, user_id: str,
                                    threepids: list[tuple[str, str]]) -> None:
        for medium, address in threepids:
            owner = await self.stores.threepids.get_user_by_threepid(medium, address)
            if owner is not None and owner != user_id:
                raise MatrixError(409, Codes.THREEPID_IN_USE, "Threepid already in use")

    async def _set_threepids(self, user_id: str, threepids: list[tuple[str, str]]) -> None:
        wanted = set(threepids)
        for t in await self.stores.threepids.get_threepids(user_id):
            if (t.medium, t.address) not in wanted:
                await self.stores.threepids.delete_threepid(user_id, t.medium, t.address)
        now = self.ctx.now_ms()
        for medium, address in threepids:
            await self.stores.threepids.add_threepid(user_id, medium, address, now, now)

    # -- single changes ------------------------------------------------------

    async def deactivate(self, admin: str, user_id: str, erase: bool) -> str:
        """Deactivate (and with ``erase``, erase) a local user; the unbind result."""
        await self.require_user(user_id)
        unbound = await self.threepids.deactivate(user_id, None)
        await self.accounts.deactivate_account(user_id, erase)
        log_admin_action(admin, "deactivate_user", user_id, erase=erase)
        return unbound

    async def reset_password(self, admin: str, user_id: str, new_password: str,
                             logout_devices: bool) -> None:
        row = await self.require_user(user_id)
        if row.deactivated:
            raise MatrixError(400, Codes.UNKNOWN, "Cannot set a password for a deactivated user")
        check_password_policy(self.ctx.config.password_config, new_password)
        password_hash = await hash_password(new_password, self.ctx.config.bcrypt_rounds)
        await self.stores.db.run_interaction("admin_reset_password", _reset_password_txn,
                                             user_id, password_hash, logout_devices)
        log_admin_action(admin, "reset_password", user_id, logout_devices=logout_devices)

    async def set_admin(self, admin: str, user_id: str, flag: bool) -> None:
        await self.require_user(user_id)
        if user_id == admin and not flag:
            raise MatrixError(400, Codes.UNKNOWN, "You may not demote yourself.")
        await self.stores.users.set_admin(user_id, flag)
        log_admin_action(admin, "set_admin", user_id, admin_flag=flag)

    async def login_as(self, admin: str, user_id: str, valid_until_ms: int | None) -> str:
        """A new access token for ``user_id``, on no device (it does not show in
        the user's device list, and logging out does not end it)."""
        await self.require_user(user_id)
        if user_id == admin:
            raise MatrixError(400, Codes.UNKNOWN, "Cannot use admin API to login as self")
        token = new_token("syt")
        await self.stores.tokens.add_access_token(hash_token(token), user_id, None,
                                                  valid_until_ms, self.ctx.now_ms())
        log_admin_action(admin, "login_as_user", user_id, valid_until_ms=valid_until_ms)
        return token

    # -- devices -------------------------------------------------------------

    async def devices(self, user_id: str) -> list[Device]:
        await self.require_user(user_id)
        return await self.stores.devices.get_devices(user_id)

    async def device(self, user_id: str, device_id: str) -> Device:
        await self.require_user(user_id)
        device = await self.stores.devices.get_device(user_id, device_id)
        if device is None:
            raise not_found("No device found")
        return device

    async def rename_device(self, admin: str, user_id: str, device_id: str,
                            name: str | None) -> None:
        await self.device(user_id, device_id)
        if name is not None:
            await self.stores.devices.set_display_name(user_id, device_id, name)
        log_admin_action(admin, "rename_device", user_id, device_id=device_id)

    async def delete_devices(self, admin: str, user_id: str, device_ids: list[str]) -> None:
        await self.require_user(user_id)
        await self.stores.devices.delete_devices(user_id, device_ids)
        log_admin_action(admin, "delete_devices", user_id, device_ids=device_ids)

    async def create_device(self, admin: str, user_id: str, device_id: str) -> None:
        """``POST /v2/users/{userId}/devices``: a device with no access token
        (kept as it is if it exists)."""
        await self.require_user(user_id)
        await self.stores.db.run_interaction("admin_create_device",
                                             DeviceStore.ensure_device_txn, user_id, device_id,
                                             None)
        log_admin_action(admin, "create_device", user_id, device_id=device_id)

    async def allow_cross_signing_replacement(self, admin: str, user_id: str) -> int:
        """``POST /users/{userId}/_allow_cross_signing_replacement_without_uia``:
        for ten minutes the user may upload new cross-signing keys without
        user-interactive auth (to recover when they lost their keys and, as
        an SSO user, have no password). Until when; 404 without a master key."""
        await self.require_user(user_id)
        if "master" not in await self.stores.cross_signing.get_user_keys(user_id):
            raise not_found("No master key found")
        until = self.ctx.now_ms() + CROSS_SIGNING_REPLACEMENT_MS
        self._replace_cross_signing_until[user_id] = until
        log_admin_action(admin, "allow_cross_signing_replacement_without_uia", user_id)
        return until

    def may_replace_cross_signing_without_uia(self, user_id: str) -> bool:
        until = self._replace_cross_signing_until.get(user_id)
        return until is not None and self.ctx.now_ms() < until

    async def joined_rooms(self, user_id: str) -> list[str]:
        # Synapse answers for remote users too, from what this server knows
        if self.ctx.is_mine(user_id):
            await self.require_user(user_id)
        return await self.stores.rooms.get_rooms_for_user(user_id)

    async def username_available(self, localpart: str) -> None:
        """M_INVALID_USERNAME or M_USER_IN_USE unless ``localpart`` is free."""
        await self.registrations.check_username(localpart)


def _reset_password_txn(txn: Any, user_id: str, password_hash: str,
                        logout_devices: bool) -> None:
    UserStore.set_password_hash_txn(txn, user_id, password_hash)
    if logout_devices:
        DeviceStore.delete_all_devices_txn(txn, user_id)


def parse_threepids(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise invalid_param("threepids must be a list")
    out = []
    for t in value:
        if (not isinstance(t, dict) or not isinstance(t.get("medium"), str)
                or not isinstance(t.get("address"), str)):
            raise invalid_param("Each threepid needs a medium and an address")
        medium, address = t["medium"], t["address"]
        if medium == "email":
            address = address.lower()
        out.append((medium, address))
    return list(dict.fromkeys(out))
