"""One Database interface over SQLite (sqlite3, WAL) and PostgreSQL (psycopg2).

Stores write SQL with ``?`` placeholders; on PostgreSQL they are rewritten to
``%s`` (and a literal ``%`` to ``%%``), so a ``?`` may not appear in SQL text
except as a placeholder: bind such values instead.

Every call runs a function inside one transaction on a thread of the
database's own thread pool (``run_interaction``): it commits when the function
returns and rolls back when it raises. Serialization failures and deadlocks
(PostgreSQL) and "database is locked" (SQLite) roll back and retry the whole
function, so a ``_txn`` function must not have side effects outside the
database.

SQLite gets a pool of one thread: SQLite serialises writers anyway, and one
connection avoids "database is locked" between our own threads. WAL mode lets
another process (``homeserver register-user``) read and write beside the server.
``synchronous=FULL``: each commit syncs the WAL before we answer, so an
acknowledged message survives an OS crash or power cut too (NORMAL survives
only a crash of our process). The database file and its -wal/-shm are
readable by their owner only (0600): they hold password hashes, access
tokens and everyone's messages.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from homeserver.storage.hub import Committed, WriteHub

logger = logging.getLogger(__name__)

R = TypeVar("R")

MAX_ATTEMPTS = 8


class DatabaseError(Exception):
    """A database problem the server cannot recover from at start."""


class Txn:
    """A cursor wrapper: ``?`` placeholders on both engines, rows as tuples."""

    def __init__(self, engine: str, conn: Any, stream_tracker: Any = None) -> None:
        self.engine = engine
        self._conn = conn
        self._cursor = conn.cursor()
        # global stream positions this transaction took (storage/streams.py)
        self.stream_tracker = stream_tracker
        self.stream_ids: list[int] = []
        # What the write hub hears once this transaction has committed
        # (storage/hub.py; never if it rolls back): how storage tells the
        # rest of the server about a write without importing it.
        # (event, stream position) of the timeline events this transaction persisted:
        self.new_events: list[tuple[Any, int]] = []
        # stream position -> who a write there may concern, as storage/streams.py
        # scopes say (positions without one: anybody)
        self.scopes: dict[int, list[tuple[str | None, str | None]]] = {}
        self.device_list_changes: list[tuple[str, int]] = []
        self.tokens_changed = False
        # (position, room, user, receipt type, thread, event ID, data) of each receipt
        self.receipts: list[tuple[int, str, str, str, str, str, dict[str, Any]]] = []

    def note_device_list_change(self, user_id: str, stream_pos: int) -> None:
        """``user_id``'s device list changed at ``stream_pos`` (WriteHub.on_device_list_changed)."""
        self.device_list_changes.append((user_id, stream_pos))

    def note_receipt(self, position: int, room_id: str, user_id: str, receipt_type: str,
                     thread_id: str, event_id: str, data: dict[str, Any]) -> None:
        """A receipt was written at ``position`` (the sync fast path serves it)."""
        self.receipts.append((position, room_id, user_id, receipt_type, thread_id, event_id,
                              data))

    def note_tokens_changed(self) -> None:
        """Some access token was deleted or changed (WriteHub.on_tokens_changed)."""
        self.tokens_changed = True

    def committed(self) -> Committed | None:
        """The record of what this transaction wrote, None if nothing to tell."""
        if not (self.stream_ids or self.tokens_changed):
            return None
        return Committed(tuple(self.stream_ids), tuple(self.new_events),
                         {pos: tuple(scopes) for pos, scopes in self.scopes.items()},
                         tuple(self.device_list_changes), self.tokens_changed,
                         tuple(self.receipts))

    def add_scope(self, position: int, room_id: str | None, user_id: str | None) -> None:
        """Say who the write at ``position`` concerns (storage/streams.py)."""
        self.scopes.setdefault(position, []).append((room_id, user_id))

    def _sql(self, sql: str) -> str:
        if self.engine == "postgres":
            # psycopg2 formats with %: a literal % (LIKE 'a%') must be doubled.
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> "Txn":
        self._cursor.execute(self._sql(sql), tuple(params))
        return self

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        params = [tuple(r) for r in rows]
        if not params:
            return
        if self.engine == "postgres":
            # psycopg2's executemany is one round trip per row; execute_batch
            # sends them 100 to a round trip (rowcount is then meaningless)
            from psycopg2.extras import execute_batch
            execute_batch(self._cursor, self._sql(sql), params, page_size=100)
        else:
            self._cursor.executemany(self._sql(sql), params)

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def select_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.execute(sql, params).fetchone()

    def select_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.execute(sql, params).fetchall()

    def select_value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.select_one(sql, params)
        return row[0] if row is not None else None

    def execute_script(self, script: str) -> None:
        """Run several ``;``-separated statements (schema migrations)."""
        for statement in split_sql(script):
            self._cursor.execute(statement)

    def close(self) -> None:
        try:
            self._cursor.close()
        except Exception:  # pragma: no cover - closing a broken cursor
            pass


def split_sql(script: str) -> list[str]:
    """Split a migration script on semicolons at line ends, dropping comments."""
    lines = [re.sub(r"--.*$", "", line) for line in script.splitlines()]
    text = "\n".join(lines)
    return [s.strip() for s in text.split(";") if s.strip()]


def _make_sqlite_files_private(path: str) -> None:
    """Create the database file 0600 if it is new (SQLite would make it 0644,
    and gives its -wal and -shm the database file's mode), and take group and
    other access off the files an older version created."""
    if path == ":memory:" or path.startswith("file:"):
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass
        except PermissionError:  # another user's file: say so, do not stop
            logger.warning("could not make %s private (mode 0600)", name)


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (persistent, so usually already done).

    Switching needs a moment of exclusive access, and SQLite answers "locked"
    at once, without waiting for the busy timeout, while another connection
    (another process starting up) holds the file: so wait and retry here.
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Database:
    """A pool of connections to one database, used through transactions."""

    def __init__(self, engine: str, args: dict[str, Any], reactor: Any = None) -> None:
        if engine not in ("sqlite", "postgres"):
            raise DatabaseError(f"unknown database engine {engine!r}")
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.engine = engine
        self.args = dict(args)
        self._reactor = reactor
        size = 1 if engine == "sqlite" else max(1, int(args.get("cp_max", 10)))
        self._pool = ThreadPool(minthreads=1 if engine == "sqlite" else int(args.get("cp_min", 1)),
                                maxthreads=size, name=f"db-{engine}")
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._started = False
        # the StreamTracker of the global stream (storage/streams.py), set by
        # the HomeServer; None in one-off tools
        self.stream_tracker: Any = None
        # who hears about committed writes (storage/hub.py); the HomeServer
        # subscribes its services, one-off tools leave it empty
        self.hub = WriteHub()
        # (transaction name, seconds) after each transaction, on its thread:
        # the metrics' transaction-time histogram
        self.txn_observer: Callable[[str, float], None] | None = None

    # -- lifecycle --

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self._started = True

    def close(self) -> None:
        """Stop the thread pool and close every connection (blocking)."""
        if self._started:
            self._pool.stop()
            self._started = False
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:  # pragma: no cover
                    pass
            self._connections.clear()

    def connect(self) -> Any:
        """Open a new raw connection with the session settings we rely on."""
        if self.engine == "sqlite":
            _make_sqlite_files_private(self.args["database"])
            conn = sqlite3.connect(self.args["database"], timeout=30, check_same_thread=False,
                                   isolation_level=None)
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        import psycopg2
        import psycopg2.extensions

        kwargs = {k: v for k, v in self.args.items() if k not in ("cp_min", "cp_max")}
        if "database" in kwargs and "dbname" not in kwargs:
            kwargs["dbname"] = kwargs.pop("database")
        kwargs.pop("database", None)
        conn = psycopg2.connect(**kwargs)
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ)
        return conn

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            try:
                conn.close()
            except Exception:  # pragma: no cover
                pass

    # -- transactions --

    def _is_retryable(self, e: BaseException) -> bool:
        if self.engine == "sqlite":
            return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
        import psycopg2.errors

        return isinstance(e, (psycopg2.errors.SerializationFailure,
                              psycopg2.errors.DeadlockDetected))

    def _is_connection_lost(self, e: BaseException, conn: Any) -> bool:
        if self.engine == "sqlite":
            return False
        import psycopg2

        # An OperationalError on a live connection (a statement timeout, a
        # lock timeout) is the query's fault: retrying would repeat it.
        return isinstance(e, psycopg2.InterfaceError) or (
            isinstance(e, psycopg2.OperationalError) and not self._is_retryable(e)
            and bool(conn.closed))

    def run_txn_blocking(self, desc: str, func: Callable[..., R], *args: Any,
                         **kwargs: Any) -> R:
        """Run ``func(txn, *args)`` in a transaction on the calling thread."""
        for attempt in range(MAX_ATTEMPTS):
            conn = self._connection()
            txn = Txn(self.engine, conn, self.stream_tracker)
            started = time.monotonic()
            try:
                if self.engine == "sqlite":
                    conn.execute("BEGIN IMMEDIATE")
                result = func(txn, *args, **kwargs)
                conn.commit()
                if self.txn_observer is not None:
                    self.txn_observer(desc, time.monotonic() - started)
                self._tell_hub(txn)
                return result
            except BaseException as e:
                try:
                    conn.rollback()
                except Exception:
                    self._drop_connection()
                if self._is_connection_lost(e, conn):
                    self._drop_connection()
                    if attempt + 1 < MAX_ATTEMPTS:
                        logger.warning("[%s] database connection lost; reconnecting", desc)
                        time.sleep(0.05 * (attempt + 1))
                        continue
                if self._is_retryable(e) and attempt + 1 < MAX_ATTEMPTS:
                    logger.info("[%s] transaction conflict (%s); retrying", desc,
                                type(e).__name__)
                    time.sleep(random.uniform(0, 0.01 * 2**attempt))
                    continue
                raise
            finally:
                txn.close()
                if txn.stream_ids:
                    # committed or rolled back: either way no longer in flight
                    self._reactor.callFromThread(self._finished, txn.stream_ids)
        raise AssertionError("unreachable")  # pragma: no cover

    def _tell_hub(self, txn: Txn) -> None:
        """Once per committed transaction: its record to the hub's
        subscribers here, then its named hooks on the reactor (queued before
        the stream tracker hears the transaction ended, as before)."""
        committed = txn.committed()
        if committed is None:
            return
        if committed.positions:
            self.hub.committed_txn(committed)
        if self.hub.has_named(committed):
            self._reactor.callFromThread(self.hub.after_commit, committed)

    def _finished(self, positions: list[int]) -> None:
        """On the reactor: ``positions`` are no longer in flight."""
        upto = self.stream_tracker.finished(positions)
        if upto is not None:
            self.hub.persisted(upto)

    def run_interaction(self, desc: str, func: Callable[..., R], *args: Any,
                        **kwargs: Any) -> "defer.Deferred[R]":
        """Run ``func(txn, *args, **kwargs)`` in one transaction, off the reactor."""
        self.start()
        return threads.deferToThreadPool(self._reactor, self._pool, self.run_txn_blocking,
                                         desc, func, *args, **kwargs)

    async def execute(self, desc: str, sql: str,
                      params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; returns its rows (empty for statements without)."""
        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            txn.execute(sql, params)
            return txn.fetchall() if txn._cursor.description is not None else []

        return await self.run_interaction(desc, txn_fn)
