"""Local users' profiles: display name, avatar URL and extended fields.

Every local user has a row, created with the account (display name = the
localpart). A profile is looked up together with the account's state, since
who may see it depends on whether the account exists and is active. Fields
beyond the two classic ones (``m.tz``, custom namespaced keys: Matrix 1.16,
MSC4133) are one JSON object in ``fields``; ``set_field_txn`` enforces the
spec's 64 KiB bound on the whole profile in the transaction that writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from canonicaljson import encode_canonical_json

from homeserver.storage.database import Database, Txn

# the spec's bound on a whole profile, in bytes of (canonical) JSON
MAX_PROFILE_BYTES = 64 * 1024


class ProfileTooLarge(Exception):
    """Setting the field would take the profile past ``MAX_PROFILE_BYTES``."""


@dataclass(frozen=True)
class Profile:
    displayname: str | None
    avatar_url: str | None
    deactivated: bool
    # extended fields (m.tz, custom keys)
    fields: dict[str, Any] = field(default_factory=dict)

    def all_fields(self) -> dict[str, Any]:
        """Every set field, the classic ones included."""
        out = dict(self.fields)
        if self.displayname is not None:
            out["displayname"] = self.displayname
        if self.avatar_url is not None:
            out["avatar_url"] = self.avatar_url
        return out


# field -> (update, insert); column names cannot be bound parameters
_SET_FIELD = {
    "displayname": ("UPDATE profiles SET displayname = ? WHERE user_id = ?",
                    "INSERT INTO profiles (user_id, displayname) VALUES (?, ?)"),
    "avatar_url": ("UPDATE profiles SET avatar_url = ? WHERE user_id = ?",
                   "INSERT INTO profiles (user_id, avatar_url) VALUES (?, ?)"),
}


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_profile(self, user_id: str) -> Profile | None:
        """The profile of an existing local user, else None."""
        rows = await self.db.execute(
            "get_profile",
            "SELECT p.displayname, p.avatar_url, u.deactivated, p.fields FROM users AS u"
            " LEFT JOIN profiles AS p ON p.user_id = u.user_id WHERE u.user_id = ?",
            (user_id,))
        if not rows:
            return None
        displayname, avatar_url, deactivated, fields = rows[0]
        return Profile(displayname, avatar_url, bool(deactivated),
                       json.loads(fields) if fields else {})

    async def set_extended_field(self, user_id: str, key: str, value: Any) -> None:
        """Set (``value`` not None) or remove (None) one extended field;
        ``ProfileTooLarge`` leaves the profile as it was."""
        await self.db.run_interaction("set_extended_field", self._set_extended_field_txn,
                                      user_id, key, value)

    @staticmethod
    def _set_extended_field_txn(txn: Txn, user_id: str, key: str, value: Any) -> None:
        txn.execute("SELECT displayname, avatar_url, fields FROM profiles WHERE user_id = ?",
                    (user_id,))
        row = txn.fetchone()
        if row is None:
            txn.execute("INSERT INTO profiles (user_id) VALUES (?)", (user_id,))
            row = (None, None, None)
        displayname, avatar_url, raw = row
        fields: dict[str, Any] = json.loads(raw) if raw else {}
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
        whole = Profile(displayname, avatar_url, False, fields).all_fields()
        if len(encode_canonical_json(whole)) > MAX_PROFILE_BYTES:
            raise ProfileTooLarge()
        txn.execute("UPDATE profiles SET fields = ? WHERE user_id = ?",
                    (json.dumps(fields) if fields else None, user_id))

    @staticmethod
    def _set_field_txn(txn: Txn, user_id: str, field: str, value: str | None) -> None:
        update, insert = _SET_FIELD[field]
        txn.execute(update, (value, user_id))
        if txn.rowcount == 0:
            # accounts imported without a profile row get one on first change
            txn.execute(insert, (user_id, value))

    async def set_displayname(self, user_id: str, displayname: str | None) -> None:
        await self.db.run_interaction("set_displayname", self._set_field_txn, user_id,
                                      "displayname", displayname)

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None:
        await self.db.run_interaction("set_avatar_url", self._set_field_txn, user_id,
                                      "avatar_url", avatar_url)
