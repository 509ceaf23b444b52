"""The media admin API's reads and writes over ``local_media`` and
``remote_media`` (migrations 0016 and 0036): a user's media listed and
ordered, the media a room's events name, quarantine and protection, the
rows to delete by age and size, access times.

Ordering is by a column from a fixed table, then by media ID so pages are
stable; every value the admin gives is a bound parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders

# order_by value -> column (Synapse's MediaSortOrder)
MEDIA_ORDER_COLUMNS = {
    "media_id": "media_id",
    "upload_name": "upload_name",
    "created_ts": "created_ts",
    "last_access_ts": "last_access_ts",
    "media_length": "media_length",
    "media_type": "media_type",
    "quarantined_by": "quarantined_by",
    "safe_from_quarantine": "safe_from_quarantine",
}

# an mxc URI in an event: server name and media ID (both validated again
# before any use)
MXC_RE = re.compile(r"mxc://([^/]{1,255})/([A-Za-z0-9_\-]{1,255})\Z")


@dataclass(frozen=True)
class AdminMediaRow:
    media_id: str
    media_type: str | None
    media_length: int | None
    upload_name: str | None
    created_ts: int
    last_access_ts: int | None
    quarantined_by: str | None
    safe_from_quarantine: bool
    user_id: str | None = None
    authenticated: bool = False

    def to_admin(self) -> dict[str, Any]:
        # Synapse's answer also has sha256 (we keep no hashes) and url_cache
        return {"media_id": self.media_id, "media_type": self.media_type,
                "media_length": self.media_length, "upload_name": self.upload_name,
                "created_ts": self.created_ts, "last_access_ts": self.last_access_ts,
                "quarantined_by": self.quarantined_by,
                "safe_from_quarantine": self.safe_from_quarantine, "user_id": self.user_id,
                "authenticated": self.authenticated, "sha256": None, "url_cache": None}


_ROW_COLUMNS = ("media_id, media_type, media_length, upload_name, created_ts, last_access_ts,"
                " quarantined_by, safe_from_quarantine, user_id, authenticated")


def _row(r: tuple[Any, ...]) -> AdminMediaRow:
    return AdminMediaRow(str(r[0]), r[1], None if r[2] is None else int(r[2]), r[3],
                         int(r[4]), None if r[5] is None else int(r[5]), r[6], bool(r[7]),
                         r[8], bool(r[9]))


def mxcs_in_content(content: Any) -> list[str]:
    """The mxc URIs an event's content names as ``url`` or ``info.thumbnail_url``
    (what Synapse counts as a room's media)."""
    if not isinstance(content, dict):
        return []
    info = content.get("info")
    found = [content.get("url"), info.get("thumbnail_url") if isinstance(info, dict) else None]
    return [u for u in found if isinstance(u, str) and MXC_RE.match(u)]


class AdminMediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- a user's media --

    async def user_media(self, user_id: str, start: int, limit: int | None, order_by: str,
                         backwards: bool) -> tuple[list[AdminMediaRow], int]:
        column = MEDIA_ORDER_COLUMNS[order_by]
        direction = "DESC" if backwards else "ASC"
        # NULLs sort as the smallest on both engines
        nulls = " NULLS FIRST" if not backwards else " NULLS LAST"

        def txn_fn(txn: Txn) -> tuple[list[AdminMediaRow], int]:
            total = int(txn.select_value(
                "SELECT COUNT(*) FROM local_media WHERE user_id = ? AND uploaded_ts IS NOT NULL",
                (user_id,)))
            sql = (f"SELECT {_ROW_COLUMNS} FROM local_media WHERE user_id = ?"
                   " AND uploaded_ts IS NOT NULL"
                   f" ORDER BY {column} {direction}{nulls}, media_id ASC")
            params: list[Any] = [user_id]
            if limit is not None:
                sql += " LIMIT ? OFFSET ?"
                params += [limit, start]
            return [_row(r) for r in txn.select_all(sql, params)], total
        return await self.db.run_interaction("admin_user_media", txn_fn)

    async def local_media_ids_of_user(self, user_id: str) -> list[str]:
        rows = await self.db.execute(
            "admin_user_media_ids",
            "SELECT media_id FROM local_media WHERE user_id = ? AND uploaded_ts IS NOT NULL",
            (user_id,))
        return [str(r[0]) for r in rows]

    # -- a room's media --

    async def room_media(self, room_nid: int) -> list[str]:
        """Every mxc URI a (non-outlier) event of the room names, newest first."""
        def txn_fn(txn: Txn) -> list[str]:
            rows = txn.select_all(
                "SELECT json FROM events WHERE room_nid = ? AND outlier = 0"
                " AND json LIKE '%mxc://%' ORDER BY stream_ordering DESC", (room_nid,))
            out: list[str] = []
            for (raw,) in rows:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                out.extend(mxcs_in_content(event.get("content")))
            return list(dict.fromkeys(out))
        return await self.db.run_interaction("admin_room_media", txn_fn)

    # -- quarantine and protection --

    async def set_quarantine(self, local_ids: list[str], remote: list[tuple[str, str]],
                             quarantined_by: str | None, local_origin: str = "",
                             now_ms: int = 0) -> int:
        """Quarantine (``quarantined_by`` set) or release (None) media; how many
        rows changed. Protected local media is never quarantined. Each change
        is recorded in ``media_quarantine_changes`` (local media under
        ``local_origin``), in the same transaction."""
        on = quarantined_by is not None

        def txn_fn(txn: Txn) -> int:
            changed: list[tuple[str, str]] = []
            for part in chunks(local_ids):
                where = f" WHERE media_id IN ({placeholders(len(part))})"
                if on:
                    where += " AND safe_from_quarantine = 0 AND quarantined_by IS NULL"
                else:
                    where += " AND quarantined_by IS NOT NULL"
                changed += [(local_origin, str(r[0])) for r in txn.select_all(
                    "SELECT media_id FROM local_media" + where, part)]
                txn.execute("UPDATE local_media SET quarantined_by = ?" + where,
                            [quarantined_by, *part])
            for origin, media_id in remote:
                sql = ("UPDATE remote_media SET quarantined_by = ?"
                       " WHERE origin = ? AND media_id = ?")
                sql += " AND quarantined_by IS NULL" if on else " AND quarantined_by IS NOT NULL"
                txn.execute(sql, (quarantined_by, origin, media_id))
                if txn.rowcount:
                    changed.append((origin, media_id))
            txn.execute_many(
                "INSERT INTO media_quarantine_changes (origin, media_id, quarantined, ts)"
                " VALUES (?, ?, ?, ?)", [(o, m, int(on), now_ms) for o, m in changed])
            return len(changed)
        return await self.db.run_interaction("admin_set_quarantine", txn_fn)

    async def quarantine_changes(self, after: int, limit: int) -> list[tuple[int, str, str, bool]]:
        """(change ID, origin, media ID, quarantined) of the changes after
        ``after``, oldest first."""
        rows = await self.db.execute(
            "admin_quarantine_changes",
            "SELECT change_id, origin, media_id, quarantined FROM media_quarantine_changes"
            " WHERE change_id > ? ORDER BY change_id LIMIT ?", (after, limit))
        return [(int(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows]

    async def set_protected(self, media_id: str, protected: bool) -> bool:
        """False when there is no such local media."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE local_media SET safe_from_quarantine = ? WHERE media_id = ?",
                        (int(protected), media_id))
            return txn.rowcount == 1
        return await self.db.run_interaction("admin_set_protected", txn_fn)

    # -- deletion --

    async def local_media_to_delete(self, before_ts: int, size_gt: int,
                                    keep: set[str], keep_quarantined: bool = False) -> list[str]:
        """Local media last used (or, never used, uploaded) before ``before_ts``,
        larger than ``size_gt``, not protected, not in ``keep`` (and not
        quarantined, with ``keep_quarantined``)."""
        quarantined = " AND quarantined_by IS NULL" if keep_quarantined else ""
        rows = await self.db.execute(
            "admin_media_to_delete",
            "SELECT media_id FROM local_media WHERE uploaded_ts IS NOT NULL"
            " AND COALESCE(last_access_ts, created_ts) < ? AND media_length > ?"
            " AND safe_from_quarantine = 0" + quarantined + " ORDER BY created_ts, media_id",
            (before_ts, size_gt))
        return [str(r[0]) for r in rows if str(r[0]) not in keep]

    async def avatar_mxcs(self) -> set[str]:
        """Every mxc URI in use as a user's or a room's avatar (kept by a
        deletion by age with ``keep_profiles``)."""
        def txn_fn(txn: Txn) -> set[str]:
            found = {str(r[0]) for r in txn.select_all(
                "SELECT avatar_url FROM profiles WHERE avatar_url LIKE 'mxc://%'")}
            for (raw,) in txn.select_all(
                    "SELECT e.json FROM current_state c JOIN events e"
                    " ON e.event_nid = c.event_nid WHERE e.event_type IN"
                    " ('m.room.avatar', 'm.room.member') AND e.json LIKE '%mxc://%'"):
                try:
                    content = json.loads(raw).get("content")
                except ValueError:
                    continue
                if isinstance(content, dict):
                    url = content.get("url") or content.get("avatar_url")
                    if isinstance(url, str):
                        found.add(url)
            return found
        return await self.db.run_interaction("admin_avatar_mxcs", txn_fn)

    async def delete_local_media(self, media_ids: list[str]) -> None:
        def txn_fn(txn: Txn) -> None:
            for part in chunks(media_ids):
                marks = placeholders(len(part))
                txn.execute(f"DELETE FROM media_thumbnails WHERE origin = ''"
                            f" AND media_id IN ({marks})", part)
                txn.execute(f"DELETE FROM local_media WHERE media_id IN ({marks})", part)
        await self.db.run_interaction("admin_delete_local_media", txn_fn)

    async def remote_media_to_purge(self, before_ts: int) -> list[tuple[str, str, str]]:
        """(origin, media_id, file_id) of cached remote media last used before
        ``before_ts``; quarantined media stays (the record keeps it blocked)."""
        rows = await self.db.execute(
            "admin_remote_to_purge",
            "SELECT origin, media_id, file_id FROM remote_media"
            " WHERE COALESCE(last_access_ts, created_ts) < ? AND quarantined_by IS NULL",
            (before_ts,))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def delete_remote_media(self, origin: str, media_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM media_thumbnails WHERE origin = ? AND media_id = ?",
                        (origin, media_id))
            txn.execute("DELETE FROM remote_media WHERE origin = ? AND media_id = ?",
                        (origin, media_id))
        await self.db.run_interaction("admin_delete_remote_media", txn_fn)

    async def media_info(self, origin: str | None, media_id: str) -> dict[str, Any] | None:
        """Synapse's ``media_info`` of local (``origin`` None) or cached remote media."""
        if origin is None:
            rows = await self.db.execute(
                "admin_media_info",
                f"SELECT {_ROW_COLUMNS} FROM local_media"
                " WHERE media_id = ? AND uploaded_ts IS NOT NULL", (media_id,))
            if not rows:
                return None
            info = _row(rows[0]).to_admin()
            info.update({"media_origin": None, "filesystem_id": None})
            return info
        rows = await self.db.execute(
            "admin_media_info",
            "SELECT media_id, media_type, media_length, upload_name, created_ts,"
            " last_access_ts, quarantined_by, 0, NULL, authenticated, file_id"
            " FROM remote_media WHERE origin = ? AND media_id = ?", (origin, media_id))
        if not rows:
            return None
        r = rows[0]
        info = _row(r).to_admin()
        info.update({"media_origin": origin, "filesystem_id": r[10],
                     "safe_from_quarantine": None})
        return info
