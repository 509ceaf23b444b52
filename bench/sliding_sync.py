"""Scenario ``sliding_sync``: a user in many rooms opens Element X (MSC4186).

    python -m bench.sliding_sync --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

What Element X does when it starts: a simplified sliding sync request
(``/_matrix/client/unstable/org.matrix.simplified_msc3575/sync``) with one
list of the 20 most recent rooms, each with its newest event and the state
a room list shows (name, avatar, encryption, the senders' members), and the
extensions it always asks for (to-device, e2ee, account data, receipts,
typing); then incremental requests on the same connection as messages come.

Setup (not part of the figures, bounded by ``setup_budget_s``): user A
creates ``rooms`` rooms and posts one message in each, ``send_concurrency``
rooms at once.

Measured, one request at a time, never retried:

1. ``first`` first requests, each on a connection of its own (a new
   ``conn_id``, no ``pos``): client-side time p50/p95. Each answer must count
   every room and carry 20 rooms, each with its newest message.
2. ``incremental`` rounds on one connection: A sends a message to one of the
   rooms outside the window (so the list changes), and once the send has
   answered, the next request with the connection's ``pos`` and ``timeout=0``
   is timed: p50/p95. Each answer must carry that room with that message.

``complete`` means every check passed.
"""

from __future__ import annotations

import secrets
import sys
import time
from functools import partial
from typing import Any

from bench.client import MatrixClient, Session
from bench.fanout import latency_summary, scenario_main
from bench.send import gather_bounded, is_cancellation, set_up_within
from bench.server import Target
from bench.sync import SETUP_CONCURRENCY, register_users

NAME = "sliding_sync"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"rooms": 1000, "first": 10, "incremental": 20, "send_concurrency": 16,
             "setup_budget_s": 1200},
    "small": {"rooms": 100, "first": 5, "incremental": 10, "send_concurrency": 16,
              "setup_budget_s": 300},
    "tiny": {"rooms": 25, "first": 2, "incremental": 3, "send_concurrency": 4,
             "setup_budget_s": 120},
}
REQUEST_TIMEOUT_S = 300.0
SSS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
WINDOW = 20
# what Element X asks for in its room list
ROOM_LIST = {"ranges": [[0, WINDOW - 1]], "timeline_limit": 1,
             "required_state": [["m.room.name", ""], ["m.room.avatar", ""],
                                ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                                ["m.room.member", "$ME"], ["m.room.canonical_alias", ""],
                                ["m.room.join_rules", ""]]}
EXTENSIONS = {name: {"enabled": True}
              for name in ("to_device", "e2ee", "account_data", "receipts", "typing")}


def body_text(run_id: str, room: int, k: int) -> str:
    return f"sliding_sync {run_id} room {room} message {k}"


async def sliding(client: MatrixClient, user: Session, conn_id: str,
                  pos: str | None = None) -> dict[str, Any]:
    query = f"?timeout=0&pos={pos}" if pos is not None else "?timeout=0"
    result: dict[str, Any] = await client.request(
        "POST", SSS + query, {"conn_id": conn_id, "lists": {"all": ROOM_LIST},
                              "extensions": EXTENSIONS}, user.access_token)
    return result


def newest_bodies(room: dict[str, Any]) -> list[str]:
    return [(e.get("content") or {}).get("body", "") for e in room.get("timeline", [])
            if e.get("type") == "m.room.message"]


async def set_up(client: MatrixClient, target: Target, params: dict[str, Any], run_id: str,
                 setup: dict[str, Any]) -> tuple[Session, list[str]]:
    started = time.perf_counter()
    user = (await register_users(client, target, [f"sss{run_id}a"],
                                 secrets.token_urlsafe(12)))[0]
    rooms_n: int = params["rooms"]
    filled = 0

    async def make(r: int) -> str:
        nonlocal filled
        room_id = await client.create_room(user, preset="private_chat", name=f"Room {r}")
        await client.send_message(user, room_id, f"{run_id}.{r}.0",
                                  {"msgtype": "m.text", "body": body_text(run_id, r, 0)})
        filled += 1
        if filled % max(1, rooms_n // 10) == 0:
            print(f"  rooms: {filled}/{rooms_n} ({time.perf_counter() - started:.1f}s)",
                  flush=True)
        return room_id

    rooms = await gather_bounded([partial(make, r) for r in range(rooms_n)],
                                 limit=params["send_concurrency"])
    setup["rooms_s"] = round(time.perf_counter() - started, 2)
    return user, rooms


async def measure(client: MatrixClient, user: Session, rooms: list[str],
                  params: dict[str, Any], run_id: str) -> dict[str, Any]:
    first_times: list[float] = []
    problems: list[str] = []
    for i in range(params["first"]):
        started = time.perf_counter()
        body = await sliding(client, user, f"first-{run_id}-{i}")
        first_times.append(time.perf_counter() - started)
        count = ((body.get("lists") or {}).get("all") or {}).get("count")
        got = body.get("rooms") or {}
        if count != len(rooms):
            problems.append(f"first {i}: count {count}, not {len(rooms)}")
        if len(got) != min(WINDOW, len(rooms)):
            problems.append(f"first {i}: {len(got)} rooms, not {WINDOW}")
        if any(not newest_bodies(room) for room in got.values()):
            problems.append(f"first {i}: a room without its newest message")
    # one connection, one message at a time into a room outside the window
    conn = f"incremental-{run_id}"
    pos = (await sliding(client, user, conn))["pos"]
    incremental_times: list[float] = []
    for k in range(params["incremental"]):
        r = k % max(1, len(rooms) - WINDOW)
        text = body_text(run_id, r, k + 1)
        await client.send_message(user, rooms[r], f"{run_id}.{r}.inc{k}",
                                  {"msgtype": "m.text", "body": text})
        started = time.perf_counter()
        body = await sliding(client, user, conn, pos)
        incremental_times.append(time.perf_counter() - started)
        pos = body["pos"]
        room = (body.get("rooms") or {}).get(rooms[r])
        if room is None or text not in newest_bodies(room):
            problems.append(f"incremental {k}: room {r} or its message missing")
    return {"first_ms": latency_summary(first_times),
            "incremental_ms": latency_summary(incremental_times),
            "problems": problems[:10], "problem_count": len(problems)}


def figures(result: dict[str, Any], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    shape = f"{params['rooms']} rooms, window of {WINDOW}"
    first, inc = result["measured"]["first_ms"], result["measured"]["incremental_ms"]
    return {
        "sliding_sync_first_p50_ms": {"value": first["p50"], "unit": "ms", "better": "lower",
                                      "label": f"sliding sync first response, {shape}, p50"},
        "sliding_sync_first_p95_ms": {"value": first["p95"], "unit": "ms", "better": "lower",
                                      "label": f"sliding sync first response, {shape}, p95"},
        "sliding_sync_incremental_p50_ms": {
            "value": inc["p50"], "unit": "ms", "better": "lower",
            "label": f"sliding sync after one new message, {shape}, p50"},
        "sliding_sync_incremental_p95_ms": {
            "value": inc["p95"], "unit": "ms", "better": "lower",
            "label": f"sliding sync after one new message, {shape}, p95"},
    }


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """Set up A's rooms, then time first and incremental requests; see the module doc."""
    run_id = secrets.token_hex(3)
    result: dict[str, Any] = {"scenario": NAME, "params": params, "figures": {},
                              "complete": False, "setup": {}}
    client = MatrixClient(target.base_url, connections=max(SETUP_CONCURRENCY,
                                                           params["send_concurrency"]),
                          timeout_s=REQUEST_TIMEOUT_S)
    try:
        user, rooms = await set_up_within(
            params["setup_budget_s"],
            lambda: set_up(client, target, params, run_id, result["setup"]))
        result["measured"] = await measure(client, user, rooms, params, run_id)
        result["figures"] = figures(result, params)
        result["complete"] = result["measured"]["problem_count"] == 0
        m = result["measured"]
        print(f"  first ms p50 {m['first_ms']['p50']} p95 {m['first_ms']['p95']}; "
              f"incremental ms p50 {m['incremental_ms']['p50']} p95 "
              f"{m['incremental_ms']['p95']}; problems {m['problem_count']} {m['problems'][:2]}",
              flush=True)
    except Exception as e:
        if is_cancellation(e):
            raise
        result["error"] = repr(e)
    finally:
        await client.close()
    return result


def main(argv: list[str] | None = None) -> int:
    return scenario_main(NAME, SIZES, run_scenario, argv)


if __name__ == "__main__":
    sys.exit(main())
