"""Several stream writers on one sequence: "persisted up to" is the minimum
of their frontiers (replication/tracker.py, docs/scale-out.md).

Two Databases on one PostgreSQL database stand for two processes (main and
an event writer); each has its own ``WriterStreamTracker``, and each
writer's frontier reaches the other directly where Redis would carry it.
PostgreSQL only: several writers need a sequence outside transactions
(SQLite's counter row serialises its writers, and several processes cannot
share one SQLite file's writer).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from homeserver.replication.tracker import WriterStreamTracker
from homeserver.storage.database import Database, Txn
from homeserver.storage.streams import current_stream_id, next_stream_id_txn
from tests.storage.conftest import Databases, prepare

WRITERS = ("main", "writer1")


def writer(databases: Databases, name: str) -> tuple[Database, WriterStreamTracker]:
    from twisted.internet import reactor

    db = databases.open()
    tracker = WriterStreamTracker(name, WRITERS, reactor, lambda: current_stream_id(db))
    db.stream_tracker = tracker
    return db, tracker


def connect(a: WriterStreamTracker, b: WriterStreamTracker) -> list[int]:
    """Each hears the other's frontier as it moves; what b said, in order."""
    said: list[int] = []

    def a_moved(upto: int) -> None:
        b.advance(upto, a.name)

    def b_moved(upto: int) -> None:
        said.append(upto)
        a.advance(upto, b.name)
    a.on_frontier = a_moved
    b.on_frontier = b_moved
    return said


async def write(db: Database) -> int:
    """One committed write; its position."""
    return int(await db.run_interaction("write", next_stream_id_txn))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("engine", ["postgres"])
async def test_a_write_in_flight_on_one_writer_holds_every_process_below_it(
        databases: Databases) -> None:
    await prepare(databases.open())
    main_db, main = writer(databases, "main")
    writer_db, writer1 = writer(databases, "writer1")
    start = await current_stream_id(main_db)
    main.reset(start)
    writer1.reset(start)
    connect(main, writer1)
    # writer1 takes a position and holds its transaction open
    taken = threading.Event()
    release = threading.Event()

    def slow_txn(txn: Txn) -> int:
        position = next_stream_id_txn(txn)
        taken.set()
        release.wait(30)
        return position

    slow = writer_db.run_interaction("slow", slow_txn)
    await threads.deferToThread(taken.wait, 30)
    # main writes after it, and commits first
    later = await write(main_db)
    assert main.local_frontier == later
    # neither process reads past the write still in flight on writer1
    in_flight = later - 1
    assert main.persisted_upto < later and writer1.persisted_upto < later
    assert main.persisted_upto <= in_flight
    release.set()
    assert await slow == in_flight
    # once it has committed, both read up to main's write
    assert main.persisted_upto == writer1.persisted_upto == later


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("engine", ["postgres"])
async def test_an_idle_writer_does_not_hold_the_others_back(databases: Databases) -> None:
    await prepare(databases.open())
    main_db, main = writer(databases, "main")
    writer_db, writer1 = writer(databases, "writer1")
    start = await current_stream_id(main_db)
    main.reset(start)
    writer1.reset(start)
    said_by_writer1 = connect(main, writer1)
    # only main writes; writer1 idles
    positions = [await write(main_db) for _ in range(5)]
    # writer1 moved its frontier along (nothing of its own in flight) and
    # said so: every process reads main's writes at once
    assert said_by_writer1 and said_by_writer1[-1] == positions[-1]
    assert main.persisted_upto == writer1.persisted_upto == positions[-1]
    # a position handed out later to writer1 lies above what it claimed
    mine = await write(writer_db)
    assert mine > positions[-1]
    assert main.persisted_upto == writer1.persisted_upto == mine


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("engine", ["postgres"])
async def test_a_silent_writer_holds_its_last_frontier(databases: Databases) -> None:
    await prepare(databases.open())
    main_db, main = writer(databases, "main")
    start = await current_stream_id(main_db)
    main.reset(start)
    # writer1's frontier as it last said it (it is down: it says nothing more)
    main.advance(start, "writer1")
    position = await write(main_db)
    assert main.local_frontier == position
    # a read from a token at main's write waits below what writer1 may
    # still have had in flight
    got: list[Any] = []
    waiting = defer.ensureDeferred(main.wait_for(position))
    waiting.addBoth(got.append)
    assert main.persisted_upto == start and not got
    # writer1 back (a new run, from the database's position): reads go on
    main.advance(await current_stream_id(main_db), "writer1")
    assert main.persisted_upto == position and got == [None]
