"""A bare Database per test, on SQLite and on PostgreSQL, without a HomeServer.

The reactor is imported inside functions: pytest-twisted installs the asyncio
reactor after conftest modules are imported.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_twisted
from twisted.internet import threads

from homeserver.storage.database import Database
from homeserver.storage.migrations import prepare_database_blocking
from homeserver.storage.state import StateStore
from tests.harness import create_postgres_database, drop_postgres_database


class Databases:
    """Opens databases for one test (all pointing at the same storage) and closes them."""

    def __init__(self, engine: str, tmp_dir: str) -> None:
        self.engine = engine
        if engine == "sqlite":
            self.args: dict[str, Any] = {"database": os.path.join(tmp_dir, "test.db")}
        else:
            self.args = create_postgres_database()
        self._open: list[Database] = []

    def open(self, **arg_overrides: Any) -> Database:
        from twisted.internet import reactor

        db = Database(self.engine, {**self.args, **arg_overrides}, reactor)
        db.start()
        self._open.append(db)
        return db

    async def close(self) -> None:
        for db in self._open:
            await threads.deferToThread(db.close)
        if self.engine == "postgres":
            drop_postgres_database(self.args["database"])


async def in_pool(db: Database, func: Callable[..., Any], *args: Any) -> Any:
    """Run blocking ``func(*args)`` on the database's own threads, as the server does."""
    from twisted.internet import reactor

    return await threads.deferToThreadPool(reactor, db._pool, func, *args)


async def prepare(db: Database) -> int:
    return int(await in_pool(db, prepare_database_blocking, db))


@pytest_twisted.async_yield_fixture
async def databases(engine: str, tmp_path: Any) -> AsyncIterator[Databases]:
    dbs = Databases(engine, str(tmp_path))
    yield dbs
    await dbs.close()


@pytest_twisted.async_yield_fixture
async def db(databases: Databases) -> AsyncIterator[Database]:
    """An empty database (no schema yet)."""
    yield databases.open()


async def key_nids(db: Database, n: int) -> list[int]:
    """NIDs of ``n`` member state keys, created as needed."""
    def txn_fn(txn: Any) -> list[int]:
        pairs = [("m.room.member", f"@user{i}:test.local") for i in range(n)]
        nids = StateStore.get_or_create_state_key_nids_txn(txn, pairs)
        return [nids[p] for p in pairs]

    return list(await db.run_interaction("keys", txn_fn))


def reference_snapshot_txn(txn: Any, room_nid: int, snapshot_nid: int) -> None:
    """Make an event point at ``snapshot_nid``, as persisting one does: what
    keeps a snapshot from garbage collection (snapshots have no ref count)."""
    n = int(txn.select_value("SELECT COUNT(*) FROM events")) + 1
    txn.execute(
        "INSERT INTO events (event_id, room_nid, depth, event_type, sender,"
        " origin_server_ts, json, snapshot_nid) VALUES (?, ?, 0, 'test.ref', '@t:test', 0,"
        " '{}', ?)", (f"$ref{n}-{snapshot_nid}", room_nid, snapshot_nid))


async def release_snapshot(db: Database, snapshot_nid: int) -> None:
    """Drop the test events pointing at ``snapshot_nid`` (as a purge would)."""
    await db.run_interaction(
        "release_snapshot", lambda txn: txn.execute(
            "DELETE FROM events WHERE event_type = 'test.ref' AND snapshot_nid = ?",
            (snapshot_nid,)))
