"""The admin API's reads over all local accounts: the paged, filtered and
ordered user list (``GET /_synapse/admin/v2/users``) and the last-seen time.

Filters match substrings case-insensitively; the user's text is a bound
parameter with LIKE's wildcards escaped, never part of the SQL. Ordering is by
a column from a fixed table, then by user ID so pages are stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn

# order_by value -> SQL expression (Synapse's UserSortOrder)
USER_ORDER_COLUMNS = {
    "name": "u.user_id",
    "is_guest": "u.is_guest",
    "admin": "u.admin",
    "user_type": "u.user_type",
    "deactivated": "u.deactivated",
    "shadow_banned": "u.shadow_banned",
    "displayname": "p.displayname",
    "avatar_url": "p.avatar_url",
    "creation_ts": "u.creation_ts",
    "last_seen_ts": "last_seen_ts",
}


@dataclass(frozen=True)
class UserListQuery:
    start: int = 0
    limit: int = 100
    guests: bool = True
    # None: deactivated users too; False: not them; True: only them
    deactivated: bool | None = False
    admins: bool | None = None
    name: str | None = None
    user_id: str | None = None
    order_by: str = "name"
    backwards: bool = False


@dataclass(frozen=True)
class UserRow:
    user_id: str
    user_type: str | None
    is_guest: bool
    admin: bool
    deactivated: bool
    erased: bool
    displayname: str | None
    avatar_url: str | None
    creation_ts: int
    last_seen_ts: int | None
    shadow_banned: bool = False
    suspended: bool = False

    def to_admin(self) -> dict[str, Any]:
        return {"name": self.user_id, "user_type": self.user_type, "is_guest": self.is_guest,
                "admin": self.admin, "deactivated": self.deactivated, "erased": self.erased,
                "shadow_banned": self.shadow_banned, "locked": False,
                "displayname": self.displayname,
                "avatar_url": self.avatar_url, "creation_ts": self.creation_ts,
                "last_seen_ts": self.last_seen_ts}


def like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE ... ESCAPE '!'``, the user's wildcards made literal."""
    escaped = text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped.lower()}%"


_SELECT = (
    "SELECT u.user_id, u.user_type, u.is_guest, u.admin, u.deactivated,"
    " (SELECT 1 FROM erased_users e WHERE e.user_id = u.user_id),"
    " p.displayname, p.avatar_url, u.creation_ts,"
    " (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts,"
    " u.shadow_banned, u.suspended"
    " FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id")


def _row(r: tuple[Any, ...]) -> UserRow:
    return UserRow(str(r[0]), r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5] is not None,
                   r[6], r[7], int(r[8]), None if r[9] is None else int(r[9]), bool(r[10]),
                   bool(r[11]))


class AdminUserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_users(self, q: UserListQuery) -> tuple[list[UserRow], int]:
        """One page of users and how many match in all."""
        where: list[str] = []
        params: list[Any] = []
        if not q.guests:
            where.append("u.is_guest = 0")
        if q.deactivated is not None:
            where.append("u.deactivated = ?")
            params.append(int(q.deactivated))
        if q.admins is not None:
            where.append("u.admin = ?")
            params.append(int(q.admins))
        if q.name:
            where.append("(lower(u.user_id) LIKE ? ESCAPE '!'"
                         " OR lower(p.displayname) LIKE ? ESCAPE '!')")
            params += [like_pattern(q.name)] * 2
        elif q.user_id:
            where.append("lower(u.user_id) LIKE ? ESCAPE '!'")
            params.append(like_pattern(q.user_id))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        column = USER_ORDER_COLUMNS[q.order_by]
        direction = "DESC" if q.backwards else "ASC"
        # NULLs sort as the smallest value on both engines
        nulls = " NULLS LAST" if q.backwards else " NULLS FIRST"
        order = f" ORDER BY {column} {direction}{nulls}, u.user_id ASC"

        def txn_fn(txn: Txn) -> tuple[list[UserRow], int]:
            total = txn.select_value(
                "SELECT COUNT(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
                + clause, params)
            rows = txn.select_all(_SELECT + clause + order + " LIMIT ? OFFSET ?",
                                  [*params, q.limit, q.start])
            return [_row(r) for r in rows], int(total)

        return await self.db.run_interaction("admin_list_users", txn_fn)

    async def get_user_row(self, user_id: str) -> UserRow | None:
        rows = await self.db.execute("admin_get_user", _SELECT + " WHERE u.user_id = ?",
                                     (user_id,))
        return _row(rows[0]) if rows else None

    async def replace_external_ids(self, user_id: str,
                                   ids: list[tuple[str, str]]) -> str | None:
        """Make ``ids`` ((auth provider, external ID)) the user's external
        IDs, in one transaction; the first one another user holds (nothing
        changed then), or None."""
        def txn_fn(txn: Txn) -> str | None:
            for provider, external_id in ids:
                holder = txn.select_one(
                    "SELECT user_id FROM user_external_ids"
                    " WHERE auth_provider = ? AND external_id = ?", (provider, external_id))
                if holder is not None and holder[0] != user_id:
                    return f"{provider}/{external_id}"
            txn.execute("DELETE FROM user_external_ids WHERE user_id = ?", (user_id,))
            for provider, external_id in dict.fromkeys(ids):
                txn.execute("INSERT INTO user_external_ids (auth_provider, external_id, user_id)"
                            " VALUES (?, ?, ?)", (provider, external_id, user_id))
            return None
        return await self.db.run_interaction("admin_replace_external_ids", txn_fn)

    async def memberships(self, user_id: str) -> dict[str, str]:
        """room ID -> the user's latest membership, of every room we know."""
        rows = await self.db.execute(
            "admin_user_memberships",
            "SELECT r.room_id, m.membership FROM room_memberships m"
            " JOIN rooms r ON r.room_nid = m.room_nid WHERE m.user_id = ?", (user_id,))
        return {str(r[0]): str(r[1]) for r in rows}

    async def member_events_since(self, user_id: str, from_ts: int,
                                  own: bool) -> list[tuple[int, str]]:
        """(room NID, event JSON) of the member events the user sent since
        ``from_ts``: about themselves (``own``) or about others."""
        about = "e.state_key = e.sender" if own else "e.state_key <> e.sender"
        rows = await self.db.execute(
            "admin_member_events_since",
            "SELECT e.room_nid, e.json FROM events e WHERE e.sender = ?"
            " AND e.event_type = 'm.room.member' AND e.origin_server_ts >= ?"
            " AND e.rejected_reason IS NULL AND " + about, (user_id, from_ts))
        return [(int(r[0]), str(r[1])) for r in rows]
