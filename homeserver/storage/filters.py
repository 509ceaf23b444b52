"""Sync filters uploaded by users, numbered per user from 0.

A filter is stored as canonical JSON (sorted keys, no spaces, ASCII only), so
uploading the same filter twice finds the first copy and returns its id, as
Synapse does; clients that upload their filter at every start-up then do not
grow the table.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database, Txn

# Two uploads by one user at the same moment can pick the same next id; the
# loser tries again with a fresh snapshot.
_MAX_ATTEMPTS = 5


def _canonical(filter_json: dict[str, Any]) -> str:
    return json.dumps(filter_json, sort_keys=True, separators=(",", ":"))


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def add_filter_txn(txn: Txn, user_id: str, filter_text: str) -> int | None:
        """The id of this filter for this user, stored if new; None on an id race."""
        existing = txn.select_value(
            "SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?",
            (user_id, filter_text))
        if existing is not None:
            return int(existing)
        max_id = txn.select_value("SELECT MAX(filter_id) FROM user_filters WHERE user_id = ?",
                                  (user_id,))
        filter_id = 0 if max_id is None else int(max_id) + 1
        txn.execute("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)"
                    " ON CONFLICT (user_id, filter_id) DO NOTHING",
                    (user_id, filter_id, filter_text))
        return filter_id if txn.rowcount == 1 else None

    async def add_filter(self, user_id: str, filter_json: dict[str, Any]) -> int:
        """Store a (validated) filter; returns its per-user id."""
        text = _canonical(filter_json)
        for _ in range(_MAX_ATTEMPTS):
            filter_id = await self.db.run_interaction("add_filter", self.add_filter_txn,
                                                      user_id, text)
            if filter_id is not None:
                return filter_id
        raise RuntimeError(f"could not allocate a filter id for {user_id}")

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        rows = await self.db.execute(
            "get_filter",
            "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
            (user_id, filter_id))
        if not rows:
            return None
        filter_json: dict[str, Any] = json.loads(rows[0][0])
        return filter_json

    async def count_filters(self, user_id: str) -> int:
        rows = await self.db.execute("count_filters",
                                     "SELECT COUNT(*) FROM user_filters WHERE user_id = ?",
                                     (user_id,))
        return int(rows[0][0])
