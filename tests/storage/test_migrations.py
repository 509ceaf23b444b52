"""Schema migrations, as an operator starting (and upgrading) a server meets them."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from homeserver.storage.database import Database, DatabaseError, Txn
from homeserver.storage.migrations import latest_version, load_migrations
from tests.storage.conftest import Databases, prepare


def versions_txn(txn: Txn) -> list[tuple[int, str]]:
    return [(int(v), str(n)) for v, n in
            txn.select_all("SELECT version, name FROM schema_version ORDER BY version")]


@pytest_twisted.ensureDeferred
async def test_migrations_apply_in_order_and_record_schema_version(db: Database) -> None:
    migrations = load_migrations(db.engine)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))

    assert await prepare(db) == latest_version(db.engine)

    recorded = await db.run_interaction("versions", versions_txn)
    assert recorded == [(m.version, m.name) for m in migrations]
    # the schema is there to use
    await db.execute("insert", "INSERT INTO users (user_id, creation_ts) VALUES (?, ?)",
                     ("@alice:test", 1))
    assert await db.execute("select", "SELECT user_id FROM users") == [("@alice:test",)]


@pytest_twisted.ensureDeferred
async def test_preparing_again_changes_nothing(databases: Databases) -> None:
    first = databases.open()
    version = await prepare(first)
    await first.execute("insert", "INSERT INTO users (user_id, creation_ts) VALUES (?, ?)",
                        ("@alice:test", 1))
    before = await first.run_interaction("versions", versions_txn)

    # a restart: a new Database on the same storage
    second = databases.open()
    assert await prepare(second) == version
    assert await second.run_interaction("versions", versions_txn) == before
    assert await second.execute("select", "SELECT user_id FROM users") == [("@alice:test",)]


@pytest_twisted.ensureDeferred
async def test_a_database_from_a_newer_server_is_refused(db: Database) -> None:
    newest = await prepare(db)
    await db.execute("from the future",
                     "INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
                     (newest + 5, "from_the_future", 0))

    with pytest.raises(DatabaseError) as info:
        await prepare(db)
    message = str(info.value)
    assert str(newest + 5) in message
    assert f"({newest})" in message
    assert "\n" not in message


@pytest_twisted.ensureDeferred
async def test_servers_starting_together_migrate_once(databases: Databases) -> None:
    dbs = [databases.open() for _ in range(3)]
    results = await defer.gatherResults([defer.ensureDeferred(prepare(d)) for d in dbs],
                                        consumeErrors=True)
    newest = latest_version(databases.engine)
    assert results == [newest] * 3
    recorded = await dbs[0].run_interaction("versions", versions_txn)
    assert [v for v, _ in recorded] == list(range(1, newest + 1))
