"""The Synapse side of an import: its homeserver.yaml and its database, read only.

``SynapseSource.open(path)`` reads the keys the import needs from Synapse's
config (``server_name``, ``database``, ``signing_key_path``,
``media_store_path``, ``password_config.pepper``) and connects to the
database its ``database`` section names (``sqlite3`` or ``psycopg2``, as
Synapse spells them). The SQLite file is opened read-only (``mode=ro``), a
PostgreSQL session is set ``default_transaction_read_only``: the import can
never change the Synapse server it reads.

Queries are written once with ``?`` placeholders, as in our own storage
layer. The PostgreSQL connection reads in one REPEATABLE READ snapshot per
stage (``snapshot()``), so rows added while the import runs (a Synapse left
running by mistake) cannot make one stage's rows disagree with each other.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml


class SourceError(Exception):
    """The Synapse config or database cannot be used; the message says why."""


@dataclass(frozen=True)
class SynapseConfig:
    server_name: str
    config_dir: str
    database_engine: str  # "sqlite" | "postgres"
    database_args: dict[str, Any]
    signing_key_path: str
    media_store_path: str
    pepper: str
    # MSC3866: new accounts wait for an admin's approval before they log in
    requires_approval: bool = False
    pid_file: str | None = None
    # (host, port) of each listener, where a running Synapse answers
    listeners: tuple[tuple[str, int], ...] = ()


def _abs(config_dir: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(config_dir, path)


def read_synapse_config(path: str) -> SynapseConfig:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SourceError(f"{path}: not YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("server_name"), str):
        raise SourceError(f"{path}: not a Synapse homeserver.yaml (no server_name)")
    config_dir = os.path.dirname(os.path.abspath(path))
    server_name = data["server_name"]
    database = data.get("database") or {"name": "sqlite3",
                                        "args": {"database": "homeserver.db"}}
    if not isinstance(database, dict):
        raise SourceError(f"{path}: database: expected a mapping")
    name = database.get("name")
    args = dict(database.get("args") or {})
    if name == "sqlite3":
        engine = "sqlite"
        db_path = args.get("database")
        if not isinstance(db_path, str):
            raise SourceError(f"{path}: database.args.database: expected the SQLite file")
        args = {"database": _abs(config_dir, db_path)}
    elif name in ("psycopg2", "psycopg"):
        engine = "postgres"
        for key in ("cp_min", "cp_max", "cp_reconnect", "keepalives", "keepalives_idle",
                    "keepalives_interval", "keepalives_count"):
            args.pop(key, None)
    else:
        raise SourceError(f"{path}: database.name: {name!r} is neither sqlite3 nor psycopg2")
    pepper = (data.get("password_config") or {}).get("pepper") or ""
    msc3866 = ((data.get("experimental_features") or {}).get("msc3866") or {})
    requires_approval = bool(msc3866.get("enabled")) and \
        bool(msc3866.get("require_approval_for_new_accounts"))
    return SynapseConfig(
        server_name=server_name,
        config_dir=config_dir,
        database_engine=engine,
        database_args=args,
        signing_key_path=_abs(config_dir, data.get("signing_key_path")
                              or f"{server_name}.signing.key"),
        media_store_path=_abs(config_dir, data.get("media_store_path") or "media_store"),
        pepper=str(pepper),
        requires_approval=requires_approval,
        pid_file=_abs(config_dir, data["pid_file"]) if data.get("pid_file") else None,
        listeners=tuple(_listeners(data.get("listeners"))),
    )


def _listeners(listeners: Any) -> list[tuple[str, int]]:
    out = []
    for listener in listeners if isinstance(listeners, list) else []:
        if not isinstance(listener, dict) or not isinstance(listener.get("port"), int):
            continue
        addresses = listener.get("bind_addresses") or ["127.0.0.1"]
        host = next((a for a in addresses if isinstance(a, str)), "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        out.append((host, int(listener["port"])))
    return out


def listening(config: SynapseConfig) -> tuple[str, int] | None:
    """A listener of Synapse's config where something accepts connections
    (Synapse still running, most likely); None if none does."""
    for host, port in config.listeners:
        try:
            with socket.create_connection((host, port), timeout=1):
                return host, port
        except OSError:
            continue
    return None


def running_pid(config: SynapseConfig) -> int | None:
    """The PID of a Synapse that runs with this config, by its ``pid_file``
    (which Synapse removes when it stops); None if none runs."""
    if not config.pid_file:
        return None
    try:
        with open(config.pid_file, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        return pid
    return pid


class SynapseSource:
    """A read-only connection to Synapse's database."""

    def __init__(self, config: SynapseConfig) -> None:
        self.config = config
        self.engine = config.database_engine
        if self.engine == "sqlite":
            db_path = config.database_args["database"]
            if not os.path.exists(db_path):
                raise SourceError(f"Synapse's database {db_path} does not exist")
            self.conn: Any = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        else:
            import psycopg2

            kwargs = dict(config.database_args)
            if "database" in kwargs:
                kwargs["dbname"] = kwargs.pop("database")
            try:
                self.conn = psycopg2.connect(**kwargs)
            except psycopg2.Error as e:
                raise SourceError(f"cannot connect to Synapse's database: "
                                  f"{str(e).strip().splitlines()[0]}") from None
            self.conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        if not self.has_table("event_json") or not self.has_table("users"):
            raise SourceError("the database named in the Synapse config holds no Synapse"
                              " schema (no users or event_json table)")

    def close(self) -> None:
        self.conn.close()

    def end_snapshot(self) -> None:
        """Close the read transaction, so the next query starts a new snapshot."""
        self.conn.rollback()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.engine == "postgres" else sql

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def iter_rows(self, sql: str, params: tuple[Any, ...] = (),
                  batch: int = 1000) -> Iterator[tuple[Any, ...]]:
        """Rows of a large result, fetched ``batch`` at a time."""
        if self.engine == "postgres":
            cur = self.conn.cursor(name="import_cursor")
            cur.itersize = batch
        else:
            cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), params)
            while True:
                chunk = cur.fetchmany(batch)
                if not chunk:
                    return
                yield from chunk
        finally:
            cur.close()

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def has_table(self, table: str) -> bool:
        if self.engine == "sqlite":
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = ("SELECT 1 FROM information_schema.tables WHERE table_schema ="
                   " current_schema() AND table_name = ?")
        found = self.rows(sql, (table,))
        if self.engine == "postgres":
            self.conn.rollback()
        return bool(found)

    def has_column(self, table: str, column: str) -> bool:
        if self.engine == "sqlite":
            return any(r[1] == column for r in self.rows(f"PRAGMA table_info({table})"))
        found = self.rows("SELECT 1 FROM information_schema.columns WHERE table_schema ="
                          " current_schema() AND table_name = ? AND column_name = ?",
                          (table, column))
        return bool(found)

    def count(self, table: str) -> int:
        if not self.has_table(table):
            return 0
        # table names come from the importer's own constant list, never input
        return int(self.value(f"SELECT COUNT(*) FROM {table}"))

    # -- state groups ------------------------------------------------------

    def state_group_ids(self, group: int) -> dict[tuple[str, str], str]:
        """The whole state of Synapse state group ``group``: its chain of
        deltas (``state_group_edges``) walked back to a full group, the
        nearest delta winning."""
        chain = [group]
        seen = {group}
        while True:
            prev = self.value("SELECT prev_state_group FROM state_group_edges"
                              " WHERE state_group = ?", (chain[-1],))
            if prev is None or int(prev) in seen:
                break
            chain.append(int(prev))
            seen.add(int(prev))
        state: dict[tuple[str, str], str] = {}
        for g in reversed(chain):
            for type_, state_key, event_id in self.rows(
                    "SELECT type, state_key, event_id FROM state_groups_state"
                    " WHERE state_group = ?", (g,)):
                state[(str(type_), str(state_key))] = str(event_id)
        return state
