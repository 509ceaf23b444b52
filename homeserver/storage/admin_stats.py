"""The admin API's statistics: each user's local media usage, and the rooms
taking the most room in the database (by the size of their events' JSON, an
estimate on both engines; Synapse asks PostgreSQL's planner and refuses on
SQLite)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.admin_users import like_pattern
from homeserver.storage.database import Database, Txn

MEDIA_STATS_ORDER = {"user_id": "m.user_id", "displayname": "p.displayname",
                     "media_length": "media_length", "media_count": "media_count"}


@dataclass(frozen=True)
class MediaStatsQuery:
    start: int = 0
    limit: int = 100
    order_by: str = "user_id"
    backwards: bool = False
    from_ts: int | None = None
    until_ts: int | None = None
    search_term: str | None = None


class AdminStatsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def users_media(self, q: MediaStatsQuery) -> tuple[list[dict[str, Any]], int]:
        where = ["m.uploaded_ts IS NOT NULL"]
        params: list[Any] = []
        if q.from_ts is not None:
            where.append("m.created_ts >= ?")
            params.append(q.from_ts)
        if q.until_ts is not None:
            where.append("m.created_ts <= ?")
            params.append(q.until_ts)
        if q.search_term:
            where.append("(lower(m.user_id) LIKE ? ESCAPE '!'"
                         " OR lower(p.displayname) LIKE ? ESCAPE '!')")
            params += [like_pattern(q.search_term)] * 2
        base = (" FROM local_media m LEFT JOIN profiles p ON p.user_id = m.user_id"
                " WHERE " + " AND ".join(where))
        direction = "DESC" if q.backwards else "ASC"
        nulls = " NULLS LAST" if q.backwards else " NULLS FIRST"
        order = f" ORDER BY {MEDIA_STATS_ORDER[q.order_by]} {direction}{nulls}, m.user_id ASC"

        def txn_fn(txn: Txn) -> tuple[list[dict[str, Any]], int]:
            total = int(txn.select_value(
                "SELECT COUNT(*) FROM (SELECT m.user_id" + base + " GROUP BY m.user_id) t",
                params))
            rows = txn.select_all(
                "SELECT m.user_id, p.displayname, COUNT(*) AS media_count,"
                " COALESCE(SUM(m.media_length), 0) AS media_length" + base
                + " GROUP BY m.user_id, p.displayname" + order + " LIMIT ? OFFSET ?",
                [*params, q.limit, q.start])
            return [{"user_id": r[0], "displayname": r[1], "media_count": int(r[2]),
                     "media_length": int(r[3])} for r in rows], total
        return await self.db.run_interaction("admin_users_media_stats", txn_fn)

    async def largest_rooms(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = await self.db.execute(
            "admin_largest_rooms",
            "SELECT r.room_id, SUM(LENGTH(e.json)) AS size FROM events e"
            " JOIN rooms r ON r.room_nid = e.room_nid GROUP BY r.room_id"
            " ORDER BY size DESC, r.room_id LIMIT ?", (limit,))
        return [{"room_id": r[0], "estimated_size": int(r[1])} for r in rows]
