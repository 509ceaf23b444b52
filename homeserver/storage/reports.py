"""Content reports: what users report to the server's admins (migration 0019).

One table for the three kinds the client-server API has: an event in a
room (``kind = 'event'``; ``target_user_id`` is the event's sender, so an
admin can act on the person without loading the event), a whole room
(``'room'``) and a user (``'user'``). Reports are only appended here; the
admin API reads them with ``list_reports`` (newest first, paged by ID) and
deletes what it has dealt with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database

EVENT_REPORT = "event"
ROOM_REPORT = "room"
USER_REPORT = "user"


@dataclass(frozen=True)
class Report:
    id: int
    kind: str
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None
    reason: str | None
    score: int | None
    received_ts: int


_COLUMNS = ("id, kind, reporter, room_id, event_id, target_user_id, reason, score,"
            " received_ts")


def _report(r: tuple[Any, ...]) -> Report:
    return Report(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6],
                  int(r[7]) if r[7] is not None else None, int(r[8]))


class ReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_report(self, *, kind: str, reporter: str, received_ts: int,
                         room_id: str | None = None, event_id: str | None = None,
                         target_user_id: str | None = None, reason: str | None = None,
                         score: int | None = None) -> int:
        """Store a report; returns its ID."""
        rows = await self.db.execute(
            "add_report",
            "INSERT INTO reports (kind, reporter, room_id, event_id, target_user_id, reason,"
            " score, received_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (kind, reporter, room_id, event_id, target_user_id, reason, score, received_ts))
        return int(rows[0][0])

    async def list_reports(self, *, limit: int = 100, before_id: int | None = None,
                           kind: str | None = None,
                           room_id: str | None = None) -> list[Report]:
        """Reports newest first; ``before_id`` pages on from the last ID seen."""
        sql = f"SELECT {_COLUMNS} FROM reports WHERE id < ?"
        params: list[object] = [before_id if before_id is not None else 2**62]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if room_id is not None:
            sql += " AND room_id = ?"
            params.append(room_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        rows = await self.db.execute("list_reports", sql, params)
        return [_report(r) for r in rows]

    async def list_event_reports(self, *, start: int, limit: int, backwards: bool,
                                 user_id: str | None = None, room_id: str | None = None,
                                 ) -> tuple[list[Report], int]:
        """The admin API's page of event reports (by ID, newest first when
        ``backwards``) and how many match; ``user_id`` matches the reporter
        as a substring, ``room_id`` exactly."""
        where = " WHERE kind = 'event'"
        params: list[object] = []
        if user_id:
            escaped = user_id.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            where += " AND reporter LIKE ? ESCAPE '!'"
            params.append(f"%{escaped}%")
        if room_id:
            where += " AND room_id = ?"
            params.append(room_id)
        order = " ORDER BY id DESC" if backwards else " ORDER BY id ASC"
        total = await self.db.execute("count_event_reports",
                                      "SELECT COUNT(*) FROM reports" + where, params)
        rows = await self.db.execute(
            "list_event_reports", f"SELECT {_COLUMNS} FROM reports" + where + order
            + " LIMIT ? OFFSET ?", [*params, limit, start])
        return [_report(r) for r in rows], int(total[0][0])

    async def get_report(self, report_id: int) -> Report | None:
        rows = await self.db.execute("get_report",
                                     f"SELECT {_COLUMNS} FROM reports WHERE id = ?",
                                     (report_id,))
        return _report(rows[0]) if rows else None

    async def delete_report(self, report_id: int) -> bool:
        """Forget a report an admin has dealt with; False if there was none."""
        rows = await self.db.execute(
            "delete_report", "DELETE FROM reports WHERE id = ? RETURNING id", (report_id,))
        return bool(rows)
