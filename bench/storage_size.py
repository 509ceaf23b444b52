"""Bytes on disk per state event and per message: this server against Synapse.

For each server, both on a fresh PostgreSQL database, and through the
client-server API only (``bench.client``):

1. register the room's creator and ``--members`` users with shared-secret
   admin registration, wait, and measure the database (the baseline);
2. the state phase: create a public room (version 12), have every member
   join, then make ``--state-changes`` state changes, in turn a topic, a
   name and a member's display name (a new ``m.room.member`` event of its
   own); wait ``--settle`` seconds, measure;
3. the message phase: ``--messages`` ``m.room.message`` events from the
   members in turn; wait, measure.

A measurement runs ``VACUUM ANALYZE`` (``--vacuum-full``: ``VACUUM FULL``,
which packs every table) and then takes ``pg_total_relation_size`` (heap,
indexes, TOAST, free-space and visibility maps) of every table. Tables are
sorted into *state* (state snapshots or groups, current state,
memberships), *events* (the events and their JSON, the DAG, extremities,
transaction IDs, the room), *extras* (Synapse's full-text search, push
actions and sliding-sync caches: features this server lacks, reported
apart) and tables that are not room data (accounts, devices, tokens,
profiles, Synapse's user directory and stream bookkeeping), which are left
out; a non-empty table of none of these lists is printed as unclassified and
left out too. Room data is state plus events.

Reported: the room-data bytes at the end; per state event, the growth of the
state phase over the baseline divided by the room's state events (the
creation events, the joins and the changes), all room tables and state
tables alone; per message, the growth of the message phase divided by the
messages. Sends go one at a time (``--concurrency``), so the DAG stays a line
on both servers.

    python -m bench.storage_size [--members 200] [--state-changes 500] \
        [--messages 5000] [--servers homeserver,synapse] [--vacuum-full] \
        [--tables] [--json FILE]

Takes about ten minutes with the defaults on two cores (Synapse's message
phase is most of it). Loopback only: both servers are started here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from twisted.internet import defer
from twisted.internet.task import deferLater

from bench.client import CLIENT_V3, MatrixClient, Session, reactor, run
from bench.server import DEFAULT_PG_DSN, LocalServer, Target, source_revision
from bench.synapse_server import DEFAULT_SYNAPSE_PYTHON, SynapseServer

SERVERS = ("homeserver", "synapse")
ROOM_VERSION = "12"
PASSWORD = "bench-storage-password"

# table -> "state" | "events" | "extras"; tables in *_NOT_ROOM_DATA are left out. Room
# data is state and events; extras (Synapse's search, push and sliding-sync tables,
# features this server lacks) are reported apart.
HOMESERVER_TABLES = {
    "state_keys": "state",
    "state_snapshots": "state",
    "state_snapshot_blocks": "state",
    "state_blocks": "state",
    "state_block_entries": "state",
    "current_state": "state",
    "room_memberships": "state",
    "rooms": "events",
    "events": "events",
    "event_edges": "events",
    "event_auth_edges": "events",
    # the auth-chain index (chain cover), as Synapse's event_auth_chains
    "event_auth_chains": "events",
    "event_auth_chain_links": "events",
    "event_auth_chain_ids": "events",
    "forward_extremities": "events",
    "event_txn_ids": "events",
    "event_redactions": "events",
    "room_aliases": "events",
    "room_directory": "events",
}
HOMESERVER_NOT_ROOM_DATA = {
    "users", "devices", "access_tokens", "refresh_tokens", "profiles", "account_data",
    "user_filters", "ui_auth_sessions", "registration_tokens", "registration_nonces",
    "stream_positions", "schema_version", "schema_versions", "applied_schema",
}
SYNAPSE_TABLES = {
    # the state at each event: groups, their deltas and their edges
    "state_groups": "state",
    "state_groups_state": "state",
    "state_group_edges": "state",
    "event_to_state_groups": "state",
    "state_events": "state",
    "current_state_events": "state",
    "current_state_delta_stream": "state",
    "room_memberships": "state",
    "local_current_membership": "state",
    "room_stats_state": "state",
    "room_stats_current": "state",
    "room_stats_earliest_token": "state",
    "rooms": "events",
    "events": "events",
    "event_json": "events",
    "event_edges": "events",
    "event_auth": "events",
    "event_auth_chains": "events",
    "event_auth_chain_links": "events",
    "event_auth_chain_to_calculate": "events",
    "event_forward_extremities": "events",
    "event_backward_extremities": "events",
    "stream_ordering_to_exterm": "events",
    "event_relations": "events",
    "event_txn_id_device": "events",
    "event_txn_id_device_id": "events",
    "event_labels": "events",
    "event_expiry": "events",
    "event_failed_pull_attempts": "events",
    "redactions": "events",
    "room_depth": "events",
    "partial_state_rooms": "events",
    "room_account_data": "events",
    "receipts_linearized": "events",
    "receipts_graph": "events",
    "room_tags": "events",
    # features we do not have yet: full-text search, notification counts
    # (push actions per recipient and message), sliding sync's caches
    "event_search": "extras",
    "event_push_actions": "extras",
    "event_push_actions_staging": "extras",
    "event_push_summary": "extras",
    "event_push_summary_last_receipt_stream_id": "extras",
    "event_push_summary_stream_ordering": "extras",
    "sliding_sync_joined_rooms": "extras",
    "sliding_sync_membership_snapshots": "extras",
}
SYNAPSE_NOT_ROOM_DATA = {
    "users", "user_ips", "devices", "access_tokens", "refresh_tokens", "profiles",
    "user_directory", "user_directory_search", "user_directory_stream_pos",
    "users_in_public_rooms", "users_who_share_private_rooms", "user_stats_current",
    "user_daily_visits", "monthly_active_users", "presence_stream", "device_lists_stream",
    "device_lists_changes_in_room", "device_lists_remote_cache", "e2e_device_keys_json",
    "schema_version", "schema_compat_version", "applied_schema_deltas",
    "applied_module_schemas", "background_updates", "stream_positions",
    "event_push_summary_stream_ordering_lock", "instance_map", "worker_read_write_locks",
    "worker_read_write_locks_mode", "worker_locks", "local_media_repository",
    "server_keys_json", "server_signature_keys", "e2e_cross_signing_keys", "user_signature_stream",
    "scheduled_tasks", "timeline_gaps", "erased_users", "ratelimit_override",
    "sliding_sync_connections", "sessions", "ui_auth_sessions", "open_id_tokens",
    "registration_tokens", "user_threepids", "blocked_rooms", "stats_incremental_position",
    "account_data", "room_account_data_stream", "user_filters", "pushers",
    "push_rules", "push_rules_stream", "push_rules_enable", "delayed_events",
    "un_partial_stated_room_stream", "un_partial_stated_event_stream",
    "user_external_ids", "appservice_stream_position", "federation_stream_position",
    "event_push_summary_last_receipt", "event_push_summary_last_receipt_stream_id_lock",
    "cache_invalidation_stream_by_instance", "delayed_events_stream_pos",
    "device_lists_changes_converted_stream_position",
    "device_lists_changes_in_room_max_pruned_stream_id", "room_forgetter_stream_pos",
    # a background update's scratch tables, there for a while after startup
    "_temp_populate_user_directory_position", "_temp_populate_user_directory_users",
}


# --- measuring a database ----------------------------------------------------------------

@dataclass
class Measurement:
    """Bytes and rows of every table, and the room's event counts.

    Empty tables count too (an index of no rows still has its 8 KiB
    metapage), so a difference of two measurements is the data's growth
    only.
    """

    tables: dict[str, tuple[int, int]]  # table -> (bytes, rows)
    state_events: int
    events: int
    state_types: dict[str, int] = field(default_factory=dict)  # event type -> count

    def bytes_of(self, categories: dict[str, str], category: str | None) -> int:
        """The bytes of the tables of a category (room data, state and events, when None)."""
        wanted = ("state", "events") if category is None else (category,)
        return sum(size for table, (size, _) in self.tables.items()
                   if categories.get(table) in wanted)


def measure(dsn: str, server: str, vacuum_full: bool = False) -> Measurement:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True  # VACUUM cannot run in a transaction
        with conn.cursor() as cur:
            # FULL rewrites every table packed: the data's own size, without the
            # dead rows' space that updates left (and autovacuum's timing decides)
            cur.execute("VACUUM FULL ANALYZE" if vacuum_full else "VACUUM ANALYZE")
            cur.execute("SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'")
            sizes = dict(cur.fetchall())
            tables: dict[str, tuple[int, int]] = {}
            for table, size in sorted(sizes.items()):
                cur.execute(f'SELECT count(*) FROM "{table}"')
                tables[table] = (int(size), int(cur.fetchone()[0]))
            # the state events, by type (Synapse: also those in state_events)
            cur.execute("SELECT type, count(*) FROM events WHERE state_key IS NOT NULL "
                        "GROUP BY type" if server == "synapse" else
                        "SELECT event_type, count(*) FROM events "
                        "WHERE state_key IS NOT NULL GROUP BY event_type")
            state_types = {t: int(n) for t, n in cur.fetchall()}
            cur.execute("SELECT count(*) FROM events")
            events = cur.fetchone()[0]
    finally:
        conn.close()
    return Measurement(tables, sum(state_types.values()), int(events), state_types)


# --- the workload -----------------------------------------------------------------------

async def bounded(concurrency: int, calls: Iterable[Callable[[], Awaitable[Any]]]) -> None:
    """Run the calls, at most ``concurrency`` at once; the first failure propagates."""
    semaphore = defer.DeferredSemaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        await semaphore.acquire()
        try:
            await call()
        finally:
            semaphore.release()

    await defer.gatherResults([defer.ensureDeferred(one(c)) for c in calls],
                              consumeErrors=True)


async def put_state(client: MatrixClient, session: Session, room_id: str, event_type: str,
                    state_key: str, content: dict[str, Any]) -> str:
    path = (f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/state/"
            f"{quote(event_type, safe='')}/{quote(state_key, safe='')}")
    result = await client.request("PUT", path, content, session.access_token)
    event_id: str = result["event_id"]
    return event_id


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


@dataclass
class Run:
    server: str
    version: str | None
    members: int
    state_changes: int
    messages: int
    baseline: Measurement | None = None
    after_state: Measurement | None = None
    after_messages: Measurement | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def categories(self) -> dict[str, str]:
        return SYNAPSE_TABLES if self.server == "synapse" else HOMESERVER_TABLES

    @property
    def not_room_data(self) -> set[str]:
        return SYNAPSE_NOT_ROOM_DATA if self.server == "synapse" else HOMESERVER_NOT_ROOM_DATA

    def figures(self) -> dict[str, Any]:
        assert self.baseline and self.after_state and self.after_messages
        cat = self.categories
        base, mid, end = self.baseline, self.after_state, self.after_messages
        state_events = mid.state_events
        state_total = mid.bytes_of(cat, None) - base.bytes_of(cat, None)
        state_only = mid.bytes_of(cat, "state") - base.bytes_of(cat, "state")
        messages_total = end.bytes_of(cat, None) - mid.bytes_of(cat, None)
        messages_state = end.bytes_of(cat, "state") - mid.bytes_of(cat, "state")
        messages_extras = end.bytes_of(cat, "extras") - mid.bytes_of(cat, "extras")
        return {
            "server": self.server,
            "version": self.version,
            "state_events": state_events,
            "messages": end.events - mid.events,
            "room_bytes": end.bytes_of(cat, None),
            "state_table_bytes": end.bytes_of(cat, "state"),
            "bytes_per_state_event": state_total / state_events,
            "state_table_bytes_per_state_event": state_only / state_events,
            "bytes_per_message": messages_total / max(1, self.messages),
            "state_table_bytes_per_message": messages_state / max(1, self.messages),
            "extras_bytes": end.bytes_of(cat, "extras"),
            "extras_bytes_per_message": messages_extras / max(1, self.messages),
            "state_types": mid.state_types,
        }

    def unclassified(self) -> list[str]:
        assert self.after_messages is not None
        return sorted(t for t, (_, rows) in self.after_messages.tables.items()
                      if rows and t not in self.categories and t not in self.not_room_data)


async def populate(target: Target, run_: Run, dsn: str, *, concurrency: int,
                   settle_s: float, vacuum_full: bool = False) -> None:
    client = MatrixClient(target.base_url, connections=max(4, concurrency))
    try:
        started = time.monotonic()
        names = ["creator"] + [f"member{i:05d}" for i in range(run_.members)]
        sessions: dict[str, Session] = {}

        async def register(name: str) -> None:
            session = await client.register_shared_secret(target.shared_secret, name, PASSWORD)
            assert session is not None
            sessions[name] = session

        await bounded(4, [lambda n=n: register(n) for n in names])  # type: ignore[misc]
        creator = sessions["creator"]
        members = [sessions[n] for n in names[1:]]
        run_.seconds["register"] = time.monotonic() - started
        await sleep(settle_s)
        run_.baseline = measure(dsn, run_.server, vacuum_full)

        started = time.monotonic()
        room_id = await client.create_room(creator, preset="public_chat",
                                           room_version=ROOM_VERSION, name="storage bench")
        await bounded(concurrency, [lambda s=s: client.join(s, room_id)  # type: ignore[misc]
                                    for s in members])

        def change(i: int) -> Callable[[], Awaitable[Any]]:
            kind = i % 3
            if kind == 0:
                return lambda: put_state(client, creator, room_id, "m.room.topic", "",
                                         {"topic": f"topic {i}"})
            if kind == 1:
                return lambda: put_state(client, creator, room_id, "m.room.name", "",
                                         {"name": f"name {i}"})
            member = members[(i // 3) % len(members)] if members else creator
            return lambda: put_state(client, member, room_id, "m.room.member", member.user_id,
                                     {"membership": "join", "displayname": f"member v{i}"})

        await bounded(concurrency, [change(i) for i in range(run_.state_changes)])
        run_.seconds["state"] = time.monotonic() - started
        await sleep(settle_s)
        run_.after_state = measure(dsn, run_.server, vacuum_full)

        started = time.monotonic()
        senders = members or [creator]

        def message(i: int) -> Callable[[], Awaitable[Any]]:
            sender = senders[i % len(senders)]
            return lambda: client.send_message(
                sender, room_id, f"m{i}",
                {"msgtype": "m.text", "body": f"message {i} of the storage benchmark"})

        await bounded(concurrency, [message(i) for i in range(run_.messages)])
        run_.seconds["messages"] = time.monotonic() - started
        await sleep(settle_s)
        run_.after_messages = measure(dsn, run_.server, vacuum_full)
    finally:
        await client.close()


# servers started and not yet stopped, for main() to stop if the reactor is interrupted
_running: list[LocalServer | SynapseServer] = []


async def measure_server(server: str, ns: argparse.Namespace) -> Run:
    if server == "synapse":
        process: LocalServer | SynapseServer = SynapseServer(pg_dsn=ns.pg_dsn,
                                                             python=ns.synapse_python)
    else:
        process = LocalServer("postgres", pg_dsn=ns.pg_dsn)
    _running.append(process)
    try:
        target = process.start()
        if isinstance(process, SynapseServer):
            dsn, version = process.dsn, process.version
        else:
            import psycopg2.extensions
            dsn = psycopg2.extensions.make_dsn(ns.pg_dsn, dbname=process.database)
            version = source_revision()
        assert dsn is not None
        run_ = Run(server, version, ns.members, ns.state_changes, ns.messages)
        print(f"{server}: {target.base_url}, database {process.database}", file=sys.stderr,
              flush=True)
        await populate(target, run_, dsn, concurrency=ns.concurrency, settle_s=ns.settle,
                       vacuum_full=ns.vacuum_full)
        return run_
    finally:
        _running.remove(process)
        process.stop()


# --- output -------------------------------------------------------------------------------

def kib(n: float) -> str:
    return f"{n / 1024:,.0f} KiB"


def print_tables(run_: Run) -> None:
    assert run_.baseline and run_.after_state and run_.after_messages
    print(f"\n{run_.server}: non-empty tables (bytes after state / after messages, rows)")
    for table, (size, rows) in sorted(run_.after_messages.tables.items(),
                                      key=lambda kv: -kv[1][0]):
        if not rows:
            continue
        mid = run_.after_state.tables.get(table, (0, 0))[0]
        category = run_.categories.get(table) or (
            "-" if table in run_.not_room_data else "UNCLASSIFIED")
        print(f"  {table:45} {category:12} {mid:>12,} {size:>12,} {rows:>9,}")


def print_report(runs: list[Run]) -> None:
    figures = [r.figures() for r in runs]
    print("\n| | " + " | ".join(f"{f['server']} {f['version'] or ''}".strip()
                                for f in figures) + " |")
    print("|---|" + "---:|" * len(figures))
    rows = [
        ("state events in the room", lambda f: f"{f['state_events']:,}"),
        ("messages", lambda f: f"{f['messages']:,}"),
        ("room data on disk at the end", lambda f: kib(f["room_bytes"])),
        ("of which state tables", lambda f: kib(f["state_table_bytes"])),
        ("bytes per state event (all room tables)",
         lambda f: f"{f['bytes_per_state_event']:,.0f}"),
        ("bytes per state event (state tables)",
         lambda f: f"{f['state_table_bytes_per_state_event']:,.0f}"),
        ("bytes per message (all room tables)", lambda f: f"{f['bytes_per_message']:,.0f}"),
        ("bytes per message (state tables)",
         lambda f: f"{f['state_table_bytes_per_message']:,.0f}"),
        ("not counted: search, push, sliding sync", lambda f: kib(f["extras_bytes"])),
        ("the same, per message", lambda f: f"{f['extras_bytes_per_message']:,.0f}"),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(f) for f in figures) + " |")
    if len(figures) == 2:
        ours, theirs = figures
        def ratio(key: str) -> str:
            return f"{theirs[key] / ours[key]:.2f}x" if ours[key] else "-"

        print(f"\nSynapse / ours: room data {ratio('room_bytes')}, "
              f"per state event {ratio('bytes_per_state_event')} "
              f"(state tables {ratio('state_table_bytes_per_state_event')}), "
              f"per message {ratio('bytes_per_message')}")
    for r, f in zip(runs, figures, strict=True):
        print(f"{r.server}: " + ", ".join(f"{k} {v:.0f}s" for k, v in r.seconds.items())
              + "; state events: " + ", ".join(f"{t} {n}" for t, n in
                                               sorted(f["state_types"].items())))
        if r.unclassified():
            print(f"{r.server}: unclassified non-empty tables (left out): "
                  + ", ".join(r.unclassified()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_size",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--state-changes", type=int, default=500)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated, of: " + ", ".join(SERVERS))
    parser.add_argument("--concurrency", type=int, default=1,
                        help="requests in flight while joining and sending")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait before each measurement")
    parser.add_argument("--vacuum-full", action="store_true",
                        help="measure after VACUUM FULL (packed tables), not VACUUM")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN)
    parser.add_argument("--synapse-python", default=DEFAULT_SYNAPSE_PYTHON)
    parser.add_argument("--tables", action="store_true", help="list every non-empty table")
    parser.add_argument("--json", help="also write the figures and table sizes to this file")
    ns = parser.parse_args(argv)
    servers = [s for s in ns.servers.split(",") if s]
    if not servers or any(s not in SERVERS for s in servers):
        parser.error(f"--servers takes some of {', '.join(SERVERS)}")
    for name in ("members", "state_changes", "messages"):
        if not 0 <= getattr(ns, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 100000")
    if ns.members < 1 or not 1 <= ns.concurrency <= 64:
        parser.error("--members must be at least 1, --concurrency between 1 and 64")

    async def all_servers() -> list[Run]:
        return [await measure_server(s, ns) for s in servers]

    try:
        runs = run(all_servers)  # SIGINT/SIGTERM stop the reactor: KeyboardInterrupt
    finally:
        for process in _running:
            process.stop()
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"Python {platform.python_version()}, --members {ns.members} "
          f"--state-changes {ns.state_changes} --messages {ns.messages}"
          + (" --vacuum-full" if ns.vacuum_full else ""))
    if ns.tables:
        for r in runs:
            print_tables(r)
    print_report(runs)
    if ns.json:
        with open(ns.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(ns), "runs": [
                {**r.figures(), "seconds": r.seconds,
                 "measurements": {k: asdict(getattr(r, k)) for k in
                                  ("baseline", "after_state", "after_messages")}}
                for r in runs]}, f, indent=1)


if __name__ == "__main__":
    main()
