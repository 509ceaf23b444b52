"""The Database: transactions, retries and placeholders, on both engines."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errors
import pytest
import pytest_twisted
from twisted.internet import defer

from homeserver.storage.database import Database, Txn
from tests.harness import postgres_dsn
from tests.storage.conftest import Databases


async def make_counters(db: Database, *names: str) -> None:
    def txn_fn(txn: Txn) -> None:
        txn.execute("CREATE TABLE counters (name TEXT NOT NULL PRIMARY KEY, "
                    "value INTEGER NOT NULL)")
        txn.execute_many("INSERT INTO counters (name, value) VALUES (?, 0)",
                         [(n,) for n in names])

    await db.run_interaction("make_counters", txn_fn)


async def counter(db: Database, name: str) -> int:
    rows = await db.execute("counter", "SELECT value FROM counters WHERE name = ?", (name,))
    return int(rows[0][0])


def increment_txn(txn: Txn, name: str) -> int:
    """Read-modify-write: loses updates unless the Database serialises or retries."""
    value = txn.select_value("SELECT value FROM counters WHERE name = ?", (name,))
    txn.execute("UPDATE counters SET value = ? WHERE name = ?", (value + 1, name))
    return int(value) + 1


class Boom(Exception):
    pass


@pytest_twisted.ensureDeferred
async def test_a_failing_transaction_stores_nothing(db: Database) -> None:
    await make_counters(db, "a", "b")

    def half_done_txn(txn: Txn) -> None:
        txn.execute("UPDATE counters SET value = 10 WHERE name = 'a'")
        txn.execute("INSERT INTO counters (name, value) VALUES ('c', 1)")
        raise Boom("the second half failed")

    with pytest.raises(Boom):
        await db.run_interaction("half_done", half_done_txn)
    assert await db.execute("all", "SELECT name, value FROM counters ORDER BY name") == [
        ("a", 0), ("b", 0)]


@pytest_twisted.ensureDeferred
async def test_a_constraint_violation_rolls_back_the_whole_transaction(db: Database) -> None:
    await make_counters(db, "a")

    def duplicate_txn(txn: Txn) -> None:
        txn.execute("UPDATE counters SET value = 5 WHERE name = 'a'")
        txn.execute("INSERT INTO counters (name, value) VALUES ('a', 1)")

    with pytest.raises(Exception) as info:
        await db.run_interaction("duplicate", duplicate_txn)
    assert "unique" in str(info.value).lower()
    assert await counter(db, "a") == 0
    # and the connection is fit for the next transaction
    assert await db.run_interaction("next", increment_txn, "a") == 1


@pytest_twisted.ensureDeferred
async def test_many_concurrent_increments_add_up(databases: Databases) -> None:
    db = databases.open(cp_min=4, cp_max=4)
    await make_counters(db, "hits")
    n = 60
    results = await defer.gatherResults(
        [db.run_interaction("increment", increment_txn, "hits") for _ in range(n)],
        consumeErrors=True)
    assert await counter(db, "hits") == n
    # every transaction saw a distinct value: none of them was lost
    assert sorted(results) == list(range(1, n + 1))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("engine", ["postgres"])
async def test_a_serialization_failure_is_retried(db: Database) -> None:
    await make_counters(db, "x")
    attempts: list[int] = []

    def conflicting_txn(txn: Txn) -> int:
        attempts.append(1)
        value = int(txn.select_value("SELECT value FROM counters WHERE name = 'x'"))
        if len(attempts) == 1:
            # Someone else commits a change to the row we have just read...
            other = psycopg2.connect(postgres_dsn() + f" dbname={db.args['database']}")
            try:
                other.autocommit = True
                with other.cursor() as cur:
                    cur.execute("UPDATE counters SET value = value + 100 WHERE name = 'x'")
            finally:
                other.close()
        # ...so under REPEATABLE READ our update of it cannot be serialised.
        txn.execute("UPDATE counters SET value = ? WHERE name = 'x'", (value + 1,))
        return value + 1

    result = await db.run_interaction("conflicting", conflicting_txn)
    assert len(attempts) == 2
    assert result == 101
    assert await counter(db, "x") == 101


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("engine", ["postgres"])
async def test_a_dropped_connection_is_replaced(databases: Databases) -> None:
    db = databases.open(cp_min=1, cp_max=1)
    await make_counters(db, "x")
    [(pid,)] = await db.execute("backend", "SELECT pg_backend_pid()")
    admin = psycopg2.connect(postgres_dsn() + " dbname=postgres")
    try:
        admin.autocommit = True
        with admin.cursor() as cur:  # what a PostgreSQL restart does to us
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        admin.close()
    assert await db.run_interaction("after", increment_txn, "x") == 1
    [(new_pid,)] = await db.execute("backend", "SELECT pg_backend_pid()")
    assert new_pid != pid


@pytest_twisted.ensureDeferred
async def test_placeholders_and_percent_signs_mean_the_same_on_both_engines(
        db: Database) -> None:
    await db.execute("create", "CREATE TABLE names (name TEXT NOT NULL)")

    def fill_txn(txn: Txn) -> None:
        txn.execute_many("INSERT INTO names (name) VALUES (?)",
                         [("50% off",), ("alice",), ("al%ce",), ("100%",)])

    await db.run_interaction("fill", fill_txn)
    rows: list[Any] = await db.execute(
        "like", "SELECT name FROM names WHERE name LIKE '%\\%%' ESCAPE '\\' ORDER BY name")
    assert rows == [("100%",), ("50% off",), ("al%ce",)]
    rows = await db.execute("bound", "SELECT name FROM names WHERE name LIKE ? AND name <> ? "
                            "ORDER BY name", ("al%", "alice"))
    assert rows == [("al%ce",)]
    assert await db.execute("none", "SELECT name FROM names WHERE name = ?", ("bob",)) == []


@pytest_twisted.ensureDeferred
async def test_text_round_trips_unchanged(db: Database) -> None:
    await db.execute("create", "CREATE TABLE notes (body TEXT NOT NULL)")
    text = "caf\u00e9 \u2603 \U0001f600 'quoted' \"double\" ? %s \\ \x01"
    await db.execute("insert", "INSERT INTO notes (body) VALUES (?)", (text,))
    assert await db.execute("select", "SELECT body FROM notes") == [(text,)]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("engine", ["postgres"])
async def test_a_query_that_times_out_is_not_repeated(db: Database) -> None:
    attempts: list[int] = []

    def slow_txn(txn: Txn) -> None:
        attempts.append(1)
        txn.execute("SET LOCAL statement_timeout = 50")
        txn.execute("SELECT pg_sleep(2)")

    with pytest.raises(psycopg2.errors.QueryCanceled):
        await db.run_interaction("slow", slow_txn)
    assert len(attempts) == 1
    # the connection is still good
    assert await db.execute("after", "SELECT 1") == [(1,)]
