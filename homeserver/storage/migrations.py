"""Numbered schema migrations, applied at start.

Migrations live in ``storage/schema/`` as ``NNNN_name.sql`` files, written in
the SQL both engines share. A few tokens are rewritten per engine:

- ``$SERIAL_PK``: an auto-incrementing integer primary key
- ``$BLOB``: a binary column
- ``$BIGINT``: a 64-bit integer (``INTEGER`` on SQLite, which is 64-bit)

A file may instead come as ``NNNN_name.sqlite.sql`` and ``NNNN_name.postgres.sql``
when the engines differ too much. Each migration runs in its own transaction and
records its number in ``schema_version``; the server refuses to start against a
database whose version is newer than the newest migration it knows.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

from homeserver.storage.database import Database, DatabaseError, Txn

logger = logging.getLogger(__name__)

_TOKENS = {
    "sqlite": {"$SERIAL_PK": "INTEGER PRIMARY KEY AUTOINCREMENT", "$BLOB": "BLOB",
               "$BIGINT": "INTEGER"},
    "postgres": {"$SERIAL_PK": "BIGSERIAL PRIMARY KEY", "$BLOB": "BYTEA", "$BIGINT": "BIGINT"},
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(engine: str) -> list[Migration]:
    """Every migration for ``engine``, in order."""
    found: dict[int, Migration] = {}
    files = resources.files("homeserver.storage").joinpath("schema")
    for entry in sorted(files.iterdir(), key=lambda e: e.name):
        m = re.fullmatch(r"(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql", entry.name)
        if m is None:
            continue
        version, name, only = int(m.group(1)), m.group(2), m.group(3)
        if only is not None and only != engine:
            continue
        if version in found:
            raise DatabaseError(f"two migrations numbered {version}")
        sql = entry.read_text(encoding="utf-8")
        for token, replacement in _TOKENS[engine].items():
            sql = sql.replace(token, replacement)
        found[version] = Migration(version, name, sql)
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise DatabaseError(f"migrations are not numbered 1..n: {versions}")
    return [found[v] for v in versions]


def latest_version(engine: str) -> int:
    migrations = load_migrations(engine)
    return migrations[-1].version if migrations else 0


def _current_version_txn(txn: Txn) -> int:
    if txn.engine == "sqlite":
        exists = txn.select_one(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    else:
        exists = txn.select_one(
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = 'schema_version'")
    if exists is None:
        txn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, "
                    "name TEXT NOT NULL, applied_ts BIGINT NOT NULL)")
        return 0
    return int(txn.select_value("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


# The key of the PostgreSQL advisory lock that serialises migrations.
_MIGRATION_LOCK = 7470797


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    """Hold off other processes migrating the same database (PostgreSQL).

    A session lock on a connection of its own, taken before any migration
    transaction begins: a lock taken inside a REPEATABLE READ transaction would
    come after its snapshot, so a process that waited for it would still see
    the schema as it was before the other process migrated it. SQLite needs
    nothing: BEGIN IMMEDIATE already serialises writers, and reads the latest
    data.
    """
    if db.engine != "postgres":
        yield
        return
    conn = db.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        yield
    finally:
        conn.close()  # releases the lock


def prepare_database_blocking(db: Database) -> int:
    """Bring the schema up to date; returns the version it is at afterwards."""
    migrations = load_migrations(db.engine)
    newest = migrations[-1].version if migrations else 0
    with _migration_lock(db):
        current = db.run_txn_blocking("schema_version", _current_version_txn)
        if current > newest:
            raise DatabaseError(
                f"the database's schema version is {current}, newer than this server "
                f"understands ({newest}); run a newer homeserver")
        for migration in migrations:
            if migration.version <= current:
                continue
            logger.info("applying schema migration %04d_%s", migration.version,
                        migration.name)
            db.run_txn_blocking(f"migrate {migration.version}", _apply_txn, migration)
    return max(current, newest)


def _apply_txn(txn: Txn, migration: Migration) -> None:
    if _current_version_txn(txn) >= migration.version:
        return  # another process got there first
    txn.execute_script(migration.sql)
    txn.execute("INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time() * 1000)))


def schema_dir() -> str:
    return os.path.join(os.path.dirname(__file__), "schema")
