"""The tables of user moderation (migrations 0037, 0038): the shadow-ban
and suspension flags on ``users``, per-user rate-limit overrides, each user's server notices room;
and the read of a user's events to redact."""

from __future__ import annotations

from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import placeholders


class UserModerationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def shadow_banned_users(self) -> set[str]:
        rows = await self.db.execute("shadow_banned_users",
                                     "SELECT user_id FROM users WHERE shadow_banned = 1")
        return {str(r[0]) for r in rows}

    async def set_shadow_banned(self, user_id: str, banned: bool) -> None:
        await self.db.execute("set_shadow_banned",
                              "UPDATE users SET shadow_banned = ? WHERE user_id = ?",
                              (int(banned), user_id))

    async def suspended_users(self) -> set[str]:
        rows = await self.db.execute("suspended_users",
                                     "SELECT user_id FROM users WHERE suspended = 1")
        return {str(r[0]) for r in rows}

    async def set_suspended(self, user_id: str, suspended: bool) -> None:
        await self.db.execute("set_suspended",
                              "UPDATE users SET suspended = ? WHERE user_id = ?",
                              (int(suspended), user_id))

    async def ratelimit_overrides(self) -> dict[str, tuple[int, int]]:
        rows = await self.db.execute(
            "ratelimit_overrides",
            "SELECT user_id, messages_per_second, burst_count FROM ratelimit_override")
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

    async def set_ratelimit_override(self, user_id: str, per_second: int, burst: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM ratelimit_override WHERE user_id = ?", (user_id,))
            txn.execute("INSERT INTO ratelimit_override (user_id, messages_per_second,"
                        " burst_count) VALUES (?, ?, ?)", (user_id, per_second, burst))
        await self.db.run_interaction("set_ratelimit_override", txn_fn)

    async def delete_ratelimit_override(self, user_id: str) -> None:
        await self.db.execute("delete_ratelimit_override",
                              "DELETE FROM ratelimit_override WHERE user_id = ?", (user_id,))

    async def notice_room(self, user_id: str) -> str | None:
        rows = await self.db.execute(
            "server_notice_room", "SELECT room_id FROM server_notice_rooms WHERE user_id = ?",
            (user_id,))
        return str(rows[0][0]) if rows else None

    async def set_notice_room(self, user_id: str, room_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM server_notice_rooms WHERE user_id = ?", (user_id,))
            txn.execute("INSERT INTO server_notice_rooms (user_id, room_id) VALUES (?, ?)",
                        (user_id, room_id))
        await self.db.run_interaction("set_server_notice_room", txn_fn)

    async def events_to_redact(self, room_nid: int, sender: str, types: tuple[str, ...],
                               after_ts: int | None, before_ts: int | None,
                               limit: int) -> list[str]:
        """The sender's events of ``types`` in the room not yet redacted,
        newest first."""
        sql = ("SELECT e.event_id FROM events e WHERE e.room_nid = ? AND e.sender = ?"
               " AND e.outlier = 0 AND e.rejected_reason IS NULL"
               f" AND e.event_type IN ({placeholders(len(types))})"
               " AND NOT EXISTS (SELECT 1 FROM event_redactions r"
               " WHERE r.redacts = e.event_id)")
        params: list[Any] = [room_nid, sender, *types]
        if after_ts is not None:
            sql += " AND e.origin_server_ts >= ?"
            params.append(after_ts)
        if before_ts is not None:
            sql += " AND e.origin_server_ts <= ?"
            params.append(before_ts)
        sql += " ORDER BY e.stream_ordering DESC LIMIT ?"
        params.append(limit)
        rows = await self.db.execute("user_events_to_redact", sql, params)
        return [str(r[0]) for r in rows]
