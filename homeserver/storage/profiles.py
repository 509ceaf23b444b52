"""Local users' profiles: display name and avatar URL.

Every local user has a row, created with the account (display name = the
localpart). A profile is looked up together with the account's state, since
who may see it depends on whether the account exists and is active.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class Profile:
    displayname: str | None
    avatar_url: str | None
    deactivated: bool


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
            "SELECT p.displayname, p.avatar_url, u.deactivated FROM users AS u"
            " LEFT JOIN profiles AS p ON p.user_id = u.user_id WHERE u.user_id = ?",
            (user_id,))
        if not rows:
            return None
        displayname, avatar_url, deactivated = rows[0]
        return Profile(displayname, avatar_url, bool(deactivated))

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
