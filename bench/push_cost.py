"""Benchmark (ours only): server CPU per message sent into a room of many local members.

Every message into a room is evaluated against the push rules of each of its
local members (docs/e2e-and-push.md), in the send's transaction. This measures
what that costs: N users (default 1,000) join one room, then one user sends M
messages one at a time (each its own batch and transaction); the same is done
in a room of two members. Prints, for each room, the server's CPU seconds per
message (``/proc/<pid>/stat``, all threads: HTTP, the event, the database
driver, push evaluation) and the send latency p50, and the difference between
the two rooms: the cost of the members.

    python -m bench.push_cost --engine postgres [--members 1000] [--messages 200]
        [--json bench/results/push-cost-<date>.json]

It starts our server (``bench/server.py``) on a fresh database and stops it
afterwards. The machine is shared with the load generator (this process):
the server's CPU is measured on its own process only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import statistics
import time
from functools import partial
from typing import Any

from bench.client import MatrixClient, Session, run
from bench.send import gather_bounded
from bench.server import DEFAULT_PG_DSN, ENGINES, LocalServer, Target, cpu_seconds, source_revision

LIMITS = {"members": 2000, "messages": 2000}


async def _room_of(client: MatrixClient, sessions: list[Session], run_id: str,
                   members: int) -> str:
    room = await client.create_room(sessions[0], preset="public_chat", name=f"push {run_id}")
    await gather_bounded([partial(client.join, s, room) for s in sessions[1:members]],
                         limit=20)
    return room


async def _send_all(client: MatrixClient, target: Target, sender: Session, room: str,
                    messages: int, run_id: str) -> dict[str, Any]:
    """M messages one after the other: server CPU per message, latency p50."""
    latencies: list[float] = []
    cpu_before = cpu_seconds(target.pid) if target.pid else None
    started = time.perf_counter()
    for i in range(messages):
        sent = time.perf_counter()
        await client.send_message(sender, room, f"{run_id}-{room[-6:]}-{i}",
                                  {"msgtype": "m.text", "body": f"message {i} of the run"})
        latencies.append(time.perf_counter() - sent)
    wall = time.perf_counter() - started
    cpu_after = cpu_seconds(target.pid) if target.pid else None
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {"messages": messages, "wall_s": round(wall, 3),
            "server_cpu_s": None if cpu is None else round(cpu, 3),
            "server_cpu_ms_per_message": None if cpu is None else round(1000 * cpu / messages, 3),
            "latency_p50_ms": round(1000 * statistics.median(latencies), 2)}


async def measure(target: Target, members: int, messages: int) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    client = MatrixClient(target.base_url, connections=20, timeout_s=60)
    try:
        password = secrets.token_urlsafe(12)
        started = time.perf_counter()
        sessions = await gather_bounded([
            partial(client.register_shared_secret, target.shared_secret, f"push{run_id}u{i}",
                    password) for i in range(members)], limit=4)
        sessions_ok = [s for s in sessions if s is not None]
        big = await _room_of(client, sessions_ok, run_id, members)
        small = await _room_of(client, sessions_ok, run_id, 2)
        setup_s = time.perf_counter() - started
        # the first sends warm the caches (rulesets, display names)
        await _send_all(client, target, sessions_ok[0], big, 5, run_id + "w")
        await _send_all(client, target, sessions_ok[0], small, 5, run_id + "w")
        rooms = {
            f"{members} members": await _send_all(client, target, sessions_ok[0], big,
                                                  messages, run_id),
            "2 members": await _send_all(client, target, sessions_ok[0], small, messages,
                                         run_id),
        }
    finally:
        await client.close()
    big_cpu = rooms[f"{members} members"]["server_cpu_ms_per_message"]
    small_cpu = rooms["2 members"]["server_cpu_ms_per_message"]
    return {"setup_s": round(setup_s, 1), "rooms": rooms,
            "members_cpu_ms_per_message": None if big_cpu is None or small_cpu is None
            else round(big_cpu - small_cpu, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.push_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=ENGINES, default="postgres")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--json", metavar="PATH")
    ns = parser.parse_args(argv)
    for key in LIMITS:
        if not 2 <= getattr(ns, key) <= LIMITS[key]:
            parser.error(f"--{key} must be between 2 and {LIMITS[key]}")
    load_before = os.getloadavg()
    with LocalServer(ns.engine, pg_dsn=ns.pg_dsn) as server:
        target = server.start()
        measured = run(lambda: measure(target, ns.members, ns.messages))
    result = {"scenario": "push_cost", "date": datetime.datetime.now(datetime.UTC).isoformat(),
              "engine": ns.engine, "revision": source_revision(),
              "python": platform.python_version(),
              "members": ns.members, "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], **measured}
    print(json.dumps(result, indent=2))
    if ns.json:
        with open(ns.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
