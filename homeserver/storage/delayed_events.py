"""Delayed events (MSC4140): the ``delayed_events`` table.

A row is an event a user asked to be sent at ``send_ts``. It goes when the
event is sent (``rooms/delayed_events.py`` sends first, then deletes: a
crash between the two sends it again on restart, which the send's
transaction ID makes a no-op), when cancelled, or when another user's state
event replaces the state it would have set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class DelayedEvent:
    delay_id: str
    user_id: str
    device_id: str | None
    room_id: str
    event_type: str
    state_key: str | None
    content: dict[str, Any]
    delay_ms: int
    send_ts: int

    def client_format(self) -> dict[str, Any]:
        """As GET /delayed_events lists it."""
        out: dict[str, Any] = {"delay_id": self.delay_id, "room_id": self.room_id,
                               "type": self.event_type, "delay": self.delay_ms,
                               "running_since": self.send_ts - self.delay_ms,
                               "content": self.content}
        if self.state_key is not None:
            out["state_key"] = self.state_key
        return out


class TooManyDelayedEvents(Exception):
    """The user has as many delayed events scheduled as allowed."""


_COLUMNS = ("delay_id, user_id, device_id, room_id, event_type, state_key, content,"
            " delay_ms, send_ts")


def _row(row: tuple[Any, ...]) -> DelayedEvent:
    return DelayedEvent(str(row[0]), str(row[1]), row[2], str(row[3]), str(row[4]), row[5],
                        json.loads(row[6]), int(row[7]), int(row[8]))


class DelayedEventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, event: DelayedEvent, limit: int, txn_key: str | None) -> str:
        """Store ``event``; ``TooManyDelayedEvents`` if its user already has
        ``limit`` scheduled (checked in the same transaction). Its delay_id,
        or that of the event stored earlier under the same ``txn_key``."""
        return str(await self.db.run_interaction("add_delayed_event", self._add_txn, event,
                                                 limit, txn_key))

    @staticmethod
    def _add_txn(txn: Txn, event: DelayedEvent, limit: int, txn_key: str | None) -> str:
        if txn_key is not None:
            earlier = txn.select_one("SELECT delay_id FROM delayed_events WHERE txn_key = ?",
                                     (txn_key,))
            if earlier is not None:
                return str(earlier[0])
        row = txn.select_one("SELECT COUNT(*) FROM delayed_events WHERE user_id = ?",
                             (event.user_id,))
        if row is not None and int(row[0]) >= limit:
            raise TooManyDelayedEvents()
        txn.execute(f"INSERT INTO delayed_events ({_COLUMNS}, txn_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (event.delay_id, event.user_id, event.device_id, event.room_id,
                     event.event_type, event.state_key, json.dumps(event.content),
                     event.delay_ms, event.send_ts, txn_key))
        return event.delay_id

    async def get(self, delay_id: str) -> DelayedEvent | None:
        rows = await self.db.execute(
            "get_delayed_event", f"SELECT {_COLUMNS} FROM delayed_events WHERE delay_id = ?",
            (delay_id,))
        return _row(rows[0]) if rows else None

    async def for_user(self, user_id: str) -> list[DelayedEvent]:
        rows = await self.db.execute(
            "get_delayed_events_for_user",
            f"SELECT {_COLUMNS} FROM delayed_events WHERE user_id = ?"
            " ORDER BY send_ts, delay_id", (user_id,))
        return [_row(r) for r in rows]

    async def delete(self, delay_id: str) -> bool:
        """Whether there was such a delayed event."""
        return bool(await self.db.run_interaction("delete_delayed_event", self._delete_txn,
                                                  delay_id))

    @staticmethod
    def _delete_txn(txn: Txn, delay_id: str) -> int:
        txn.execute("DELETE FROM delayed_events WHERE delay_id = ?", (delay_id,))
        return txn.rowcount

    async def restart(self, delay_id: str, now_ms: int) -> int | None:
        """Send ``delay`` from now instead: the new send time, or None."""
        return await self.db.run_interaction("restart_delayed_event", self._restart_txn,
                                             delay_id, now_ms)

    @staticmethod
    def _restart_txn(txn: Txn, delay_id: str, now_ms: int) -> int | None:
        txn.execute("UPDATE delayed_events SET send_ts = ? + delay_ms WHERE delay_id = ?",
                    (now_ms, delay_id))
        if txn.rowcount == 0:
            return None
        row = txn.select_one("SELECT send_ts FROM delayed_events WHERE delay_id = ?",
                             (delay_id,))
        return int(row[0]) if row is not None else None

    async def get_due(self, now_ms: int, limit: int) -> list[DelayedEvent]:
        rows = await self.db.execute(
            "get_due_delayed_events",
            f"SELECT {_COLUMNS} FROM delayed_events WHERE send_ts <= ?"
            " ORDER BY send_ts, delay_id LIMIT ?", (now_ms, limit))
        return [_row(r) for r in rows]

    async def get_next_send_ts(self) -> int | None:
        rows = await self.db.execute("get_next_delayed_send_ts",
                                     "SELECT MIN(send_ts) FROM delayed_events", ())
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def cancel_state(self, room_id: str, event_type: str, state_key: str,
                           not_user_id: str) -> int:
        """Drop the delayed state events of users other than ``not_user_id``
        that would set this state (another user set it since)."""
        return int(await self.db.run_interaction(
            "cancel_delayed_state_events", self._cancel_state_txn, room_id, event_type,
            state_key, not_user_id))

    @staticmethod
    def _cancel_state_txn(txn: Txn, room_id: str, event_type: str, state_key: str,
                          not_user_id: str) -> int:
        txn.execute("DELETE FROM delayed_events WHERE room_id = ? AND event_type = ?"
                    " AND state_key = ? AND user_id <> ?",
                    (room_id, event_type, state_key, not_user_id))
        return txn.rowcount
