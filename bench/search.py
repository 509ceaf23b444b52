"""Scenario ``search``: POST /search latency over a large message history.

    python -m bench.search --engine sqlite|postgres [--messages 1000000] [--rooms 10]
        [--requests 30] [--pg-dsn DSN] [--json PATH]

1. Start our server (``bench.server.LocalServer``), register one user over
   the API, create ``--rooms`` rooms and send one real message to each (the
   rooms get real state: creation events, membership, a snapshot).
2. Load ``--messages`` messages straight into the database, in bulk (a
   million sends through the API would take hours): rows of ``events`` after
   the user's join, spread over the rooms, sharing each room's current state
   snapshot, with their ``event_search`` rows (PostgreSQL: ``to_tsvector``
   in SQL and the GIN index rebuilt after the load; SQLite: the FTS5 table
   filled in the same pass). The global stream is moved past them. Bodies
   are 8-14 words drawn from a Zipf-weighted vocabulary of made-up words,
   plus four marker words at fixed frequencies: ``weather`` in 10.5% of the
   messages, ``harbour`` in 1% (half of them with ``weather``),
   ``marmalade`` in 0.1% and ``zephyrine`` in ten messages (whatever the
   size).
3. Time ``--requests`` POST /search requests for each query kind and order
   (rank, recent), one at a time over one persistent connection, each asking
   for the next page (``next_batch``) of the one before and starting over
   when the matches run out, so the event cache does not serve every
   request. Reported per kind: p50, p99 and max latency, the ``count``
   the server gave and the results per page.

The whole load takes a few minutes at a million messages on two cores (most
of it the text index). Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import yaml
from twisted.internet import threads

from bench.client import CLIENT_V3, MatrixClient, Session, run
from bench.server import DEFAULT_PG_DSN, LocalServer, Target, source_revision

QUERIES = {
    "rare (10 hits)": "zephyrine",
    "0.1%": "marmalade",
    "1%": "harbour",
    "10%": "weather",
    "two words (AND)": "harbour weather",
    "phrase": '"harbour weather"',
    "no match": "quixotically",
}
ORDERS = ("rank", "recent")
PAGE_LIMIT = 10


# -- the synthetic history -------------------------------------------------------


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """``size`` distinct made-up words (two to four syllables)."""
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
              "st", "tr", "pl", "gr", "sh"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(onsets) + rng.choice(vowels)
                          for _ in range(rng.randint(2, 4))))
    return sorted(words)


def bodies(n: int, seed: int = 1) -> Iterator[str]:
    """``n`` message bodies with the marker words at their frequencies."""
    rng = random.Random(seed)
    words = vocabulary(20_000, rng)
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    rare_every = max(1, n // 10)
    for i in range(n):
        chosen = rng.choices(words, cum_weights=cumulative, k=rng.randint(8, 14))
        if i % 10 == 0 or i % 200 == 7:
            chosen.insert(rng.randrange(len(chosen)), "weather")
        if i % 100 == 7:
            chosen.insert(rng.randrange(len(chosen)), "harbour")
        if i % 1000 == 13:
            chosen.insert(rng.randrange(len(chosen)), "marmalade")
        if i % rare_every == 17 % rare_every:
            chosen.insert(rng.randrange(len(chosen)), "zephyrine")
        yield " ".join(chosen)


def event_rows(n: int, rooms: list[tuple[int, str, int]], sender: str, first_stream: int,
               first_depth: int) -> Iterator[tuple[Any, ...]]:
    """(event_id, room_nid, stream, depth, sender, ts, json, snapshot, body) per message."""
    base_ts = int(time.time() * 1000) - n
    for i, body in enumerate(bodies(n)):
        room_nid, room_id, snapshot = rooms[i % len(rooms)]
        ts = base_ts + i
        pdu = {"type": "m.room.message", "room_id": room_id, "sender": sender,
               "content": {"msgtype": "m.text", "body": body}, "origin_server_ts": ts,
               "depth": first_depth + i, "prev_events": [], "auth_events": [],
               "hashes": {"sha256": "bench"}, "signatures": {}}
        yield (f"$bench{i:010d}", room_nid, first_stream + i, first_depth + i, sender, ts,
               json.dumps(pdu, separators=(",", ":")), snapshot, body)


def _rooms_and_positions(cur: Any) -> tuple[list[tuple[int, str, int]], int, int]:
    cur.execute("SELECT room_nid, room_id, current_snapshot_nid FROM rooms ORDER BY room_nid")
    rooms = [(int(r[0]), str(r[1]), int(r[2])) for r in cur.fetchall()]
    cur.execute("SELECT MAX(stream_ordering), MAX(depth) FROM events")
    stream, depth = cur.fetchone()
    return rooms, int(stream) + 1000, int(depth) + 1


def load_postgres(dsn: str, n: int, sender: str) -> dict[str, float]:
    import psycopg2

    timings: dict[str, float] = {}
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            rooms, stream, depth = _rooms_and_positions(cur)
            started = time.monotonic()
            chunk = 100_000
            rows = event_rows(n, rooms, sender, stream, depth)
            while True:
                buf = io.StringIO()
                count = 0
                for row in rows:
                    event_id, room_nid, pos, dep, snd, ts, text, snapshot, _ = row
                    esc = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                    buf.write(f"{event_id}\t{room_nid}\t{pos}\t{dep}\tm.room.message\t{snd}\t"
                              f"{ts}\t{esc}\t0\t{snapshot}\n")
                    count += 1
                    if count == chunk:
                        break
                if count == 0:
                    break
                buf.seek(0)
                cur.copy_expert("COPY events (event_id, room_nid, stream_ordering, depth,"
                                " event_type, sender, origin_server_ts, json, outlier,"
                                " snapshot_nid) FROM STDIN", buf)
                if count < chunk:
                    break
            timings["events_s"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            cur.execute("DROP INDEX event_search_fts")
            cur.execute(
                "INSERT INTO event_search (event_nid, room_nid, stream_ordering, sender, key,"
                " vector) SELECT event_nid, room_nid, stream_ordering, sender, 'content.body',"
                " to_tsvector('english', json::jsonb -> 'content' ->> 'body') FROM events"
                " WHERE stream_ordering >= %s", (stream,))
            timings["tsvector_s"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            cur.execute("CREATE INDEX event_search_fts ON event_search USING GIN (vector)")
            timings["gin_index_s"] = round(time.monotonic() - started, 1)
            cur.execute("SELECT setval('global_stream_seq', %s)", (stream + n + 1000,))
        conn.autocommit = True
        with conn.cursor() as cur:
            started = time.monotonic()
            cur.execute("VACUUM ANALYZE events")
            cur.execute("VACUUM ANALYZE event_search")
            timings["analyze_s"] = round(time.monotonic() - started, 1)
            cur.execute("SELECT pg_total_relation_size('event_search')")
            timings["event_search_mib"] = round(cur.fetchone()[0] / 2**20, 1)
    finally:
        conn.close()
    return timings


def load_sqlite(path: str, n: int, sender: str) -> dict[str, float]:
    timings: dict[str, float] = {}
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        cur = conn.cursor()
        rooms, stream, depth = _rooms_and_positions(cur)
        started = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        rows = event_rows(n, rooms, sender, stream, depth)
        while True:
            batch = [row for _, row in zip(range(50_000), rows, strict=False)]
            if not batch:
                break
            cur.executemany(
                "INSERT INTO events (event_id, room_nid, stream_ordering, depth, event_type,"
                " sender, origin_server_ts, json, outlier, snapshot_nid)"
                " VALUES (?, ?, ?, ?, 'm.room.message', ?, ?, ?, 0, ?)",
                [r[:8] for r in batch])
            cur.execute("INSERT INTO event_search (event_nid, room_nid, stream_ordering,"
                        " sender, key) SELECT event_nid, room_nid, stream_ordering, sender,"
                        " 'content.body' FROM events WHERE stream_ordering BETWEEN ? AND ?",
                        (batch[0][2], batch[-1][2]))
            cur.executemany(
                "INSERT INTO event_search_fts (rowid, value)"
                " SELECT event_nid, ? FROM events WHERE event_id = ?",
                [(r[8], r[0]) for r in batch])
        conn.execute("UPDATE stream_positions SET position = ? WHERE stream_name = 'global'",
                     (stream + n + 1000,))
        conn.execute("COMMIT")
        timings["load_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        conn.execute("ANALYZE")
        conn.execute("INSERT INTO event_search_fts (event_search_fts) VALUES ('optimize')")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        timings["analyze_optimize_s"] = round(time.monotonic() - started, 1)
        timings["database_mib"] = round(os.path.getsize(path) / 2**20, 1)
    finally:
        conn.close()
    return timings


# -- the measurement -------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def time_queries(client: MatrixClient, session: Session, requests: int
                       ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, term in QUERIES.items():
        for order in ORDERS:
            latencies: list[float] = []
            counts: set[int] = set()
            sizes: list[int] = []
            token: str | None = None
            for _ in range(requests):
                body = {"search_categories": {"room_events": {
                    "search_term": term, "order_by": order,
                    "filter": {"limit": PAGE_LIMIT}}}}
                path = f"{CLIENT_V3}/search"
                if token is not None:
                    path += f"?next_batch={token}"
                started = time.perf_counter()
                result = await client.request("POST", path, body, session.access_token)
                latencies.append(time.perf_counter() - started)
                events = result["search_categories"]["room_events"]
                counts.add(int(events.get("count", -1)))
                sizes.append(len(events["results"]))
                token = events.get("next_batch")
            lat = sorted(latencies)
            out[f"{kind} / {order}"] = {
                "term": term, "order_by": order, "requests": requests,
                "p50_ms": round(percentile(lat, 50) * 1000, 2),
                "p99_ms": round(percentile(lat, 99) * 1000, 2),
                "max_ms": round(lat[-1] * 1000, 2),
                "count": sorted(counts), "results_per_page_max": max(sizes),
            }
    return out


def database_path(server: LocalServer) -> str:
    assert server.data_dir is not None
    with open(os.path.join(server.data_dir, "homeserver.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    path = str(config["database"]["args"]["database"])
    return path if os.path.isabs(path) else os.path.join(server.data_dir, path)


async def scenario(server: LocalServer, target: Target, ns: argparse.Namespace
                   ) -> dict[str, Any]:
    client = MatrixClient(target.base_url, connections=2, timeout_s=300)
    try:
        session = await client.register_shared_secret(target.shared_secret, "searcher",
                                                       "bench-password")
        assert session is not None
        for i in range(ns.rooms):
            room_id = await client.create_room(session, name=f"room {i}")
            await client.send_message(session, room_id, f"t{i}",
                                      {"msgtype": "m.text", "body": f"hello room {i}"})
        started = time.monotonic()
        if server.engine == "postgres":
            import psycopg2.extensions

            assert server.database is not None
            dsn = psycopg2.extensions.make_dsn(ns.pg_dsn, dbname=server.database)
            load = await threads.deferToThread(load_postgres, dsn, ns.messages,
                                               session.user_id)
        else:
            load = await threads.deferToThread(load_sqlite, database_path(server),
                                               ns.messages, session.user_id)
        load["total_s"] = round(time.monotonic() - started, 1)
        queries = await time_queries(client, session, ns.requests)
        return {"load": load, "queries": queries}
    finally:
        await client.close()


def print_results(result: dict[str, Any]) -> None:
    print(f"search over {result['messages']:,} messages, {result['engine']}; load "
          f"{result['load']}")
    print(f"{'query / order':32} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}  count")
    for name, q in result["queries"].items():
        print(f"{name:32} {q['p50_ms']:>9} {q['p99_ms']:>9} {q['max_ms']:>9}  {q['count']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("sqlite", "postgres"), default="postgres")
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--rooms", type=int, default=10)
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--pg-dsn", default=DEFAULT_PG_DSN)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--keep-database", action="store_true",
                   help="leave the PostgreSQL database behind (to study query plans)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    server = LocalServer(ns.engine, pg_dsn=ns.pg_dsn, idle_settle_s=0.5)
    try:
        target = server.start()
        measured = run(lambda: scenario(server, target, ns))
    finally:
        if ns.keep_database and server.database is not None:
            print(f"kept database {server.database}")
            server.database = None
        server.stop()
    result = {
        "scenario": "search", "engine": ns.engine, "messages": ns.messages,
        "rooms": ns.rooms, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg": os.getloadavg()},
        "commit": source_revision(), "complete": True, **measured,
    }
    print_results(result)
    if ns.json:
        with open(ns.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
