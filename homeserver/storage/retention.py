"""The reads and writes of message and media retention: each room's
``m.room.retention`` content and when each purge job last ran (migration
0038). Design: ``rooms/retention.py`` and ``admin/retention_jobs.py``."""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database, Txn

_POLICY_SQL = (
    "SELECT e.json FROM rooms r"
    " JOIN current_state cs ON cs.room_nid = r.room_nid"
    " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
    " JOIN events e ON e.event_nid = cs.event_nid"
    " WHERE r.room_id = ? AND sk.event_type = 'm.room.retention' AND sk.state_key = ''")

_ALL_POLICIES_SQL = (
    "SELECT r.room_id, r.room_nid, e.json FROM rooms r"
    " LEFT JOIN state_keys sk ON sk.event_type = 'm.room.retention' AND sk.state_key = ''"
    " LEFT JOIN current_state cs ON cs.room_nid = r.room_nid"
    " AND cs.state_key_nid = sk.state_key_nid"
    " LEFT JOIN events e ON e.event_nid = cs.event_nid"
    " ORDER BY r.room_nid")


def _content(raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw).get("content")
    except (ValueError, AttributeError):
        return None


class RetentionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def current_policy_content(self, room_id: str) -> Any:
        """The content of the room's current ``m.room.retention`` (None: none)."""
        rows = await self.db.execute("retention_policy", _POLICY_SQL, (room_id,))
        return _content(rows[0][0]) if rows else None

    async def all_policy_contents(self) -> list[tuple[str, int, Any]]:
        """(room ID, room NID, retention content or None) of every room."""
        rows = await self.db.execute("retention_all_policies", _ALL_POLICIES_SQL)
        return [(str(r[0]), int(r[1]), _content(r[2])) for r in rows]

    async def last_runs(self) -> dict[str, int]:
        rows = await self.db.execute("retention_job_runs",
                                     "SELECT job, last_run_ts FROM retention_job_runs")
        return {str(r[0]): int(r[1]) for r in rows}

    async def set_last_run(self, job: str, ts: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM retention_job_runs WHERE job = ?", (job,))
            txn.execute("INSERT INTO retention_job_runs (job, last_run_ts) VALUES (?, ?)",
                        (job, ts))
        await self.db.run_interaction("set_retention_job_run", txn_fn)
