"""User-interactive auth sessions: which request they guard, for whom, what is done.

A session row keeps the operation it was opened for (method, URI, a description
for the user), the request parameters (``clientdict``; never passwords), the
stages completed so far and server-side data (a password hash to apply, the
registration token claimed). The three are JSON objects in TEXT columns. The
rules live in ``homeserver.accounts.uia``; this store only reads and writes rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class UiAuthSession:
    session_id: str
    creation_ts: int
    method: str
    uri: str
    description: str
    clientdict: dict[str, Any]
    # the user a logged-in session acts for; None for registration
    user_id: str | None
    # stage type -> its result (the user ID for m.login.password, the token, True)
    completed: dict[str, Any]
    serverdict: dict[str, Any]


_COLUMNS = ("session_id, creation_ts, method, uri, description, clientdict, user_id,"
            " completed, serverdict")


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _from_row(row: tuple[Any, ...]) -> UiAuthSession:
    return UiAuthSession(row[0], int(row[1]), row[2], row[3], row[4], json.loads(row[5]),
                         row[6], json.loads(row[7]), json.loads(row[8]))


class UiAuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def create_session_txn(txn: Txn, session: UiAuthSession) -> None:
        txn.execute(
            f"INSERT INTO ui_auth_sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session.session_id, session.creation_ts, session.method, session.uri,
             session.description, _dumps(session.clientdict), session.user_id,
             _dumps(session.completed), _dumps(session.serverdict)))

    @staticmethod
    def get_session_txn(txn: Txn, session_id: str) -> UiAuthSession | None:
        row = txn.select_one(f"SELECT {_COLUMNS} FROM ui_auth_sessions WHERE session_id = ?",
                             (session_id,))
        return _from_row(row) if row is not None else None

    async def get_session(self, session_id: str) -> UiAuthSession | None:
        return await self.db.run_interaction("get_ui_auth_session", self.get_session_txn,
                                             session_id)

    @staticmethod
    def update_session_txn(txn: Txn, session_id: str, clientdict: dict[str, Any],
                           completed: dict[str, Any], serverdict: dict[str, Any]) -> None:
        txn.execute("UPDATE ui_auth_sessions SET clientdict = ?, completed = ?, serverdict = ?"
                    " WHERE session_id = ?",
                    (_dumps(clientdict), _dumps(completed), _dumps(serverdict), session_id))

    @staticmethod
    def delete_session_txn(txn: Txn, session_id: str) -> None:
        txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", (session_id,))

    @staticmethod
    def delete_sessions_created_before_txn(txn: Txn, cutoff_ts: int) -> list[UiAuthSession]:
        """Delete sessions older than ``cutoff_ts``; returns them (to release what they held)."""
        rows = txn.select_all(
            f"SELECT {_COLUMNS} FROM ui_auth_sessions WHERE creation_ts < ?", (cutoff_ts,))
        if rows:
            txn.execute("DELETE FROM ui_auth_sessions WHERE creation_ts < ?", (cutoff_ts,))
        return [_from_row(r) for r in rows]
