"""Scenario ``initial_sync``: a user in many rooms with history - initial ``/sync`` and
``/messages`` pagination.

    python -m bench.initial_sync --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

What a client does when it logs in on a new device: one initial sync over
every room it is in, then scrolling back through a room's history.

Setup (timed, not part of the figures; bounded by ``setup_budget_s``): the
measured user A and ``writers`` other users. A creates ``rooms`` rooms
(``public_chat``), every writer joins every room, and the writers post
``messages_per_room`` messages into each room, each with a body of its own.
The messages of one room are sent one after another (so "the latest message"
is well defined); up to ``send_concurrency`` rooms fill at once.

Measured, one request at a time, never retried:

1. ``syncs`` initial syncs of A (no ``since``, ``timeout=0``), each with an
   inline filter of its own (timeline limit ``10 + i``), so no response cache
   keyed on the request can answer any of them: every one is computed. The
   client-side time of each (request issued to JSON parsed) gives p50/p95/max;
   the size is that of the body re-serialised as compact JSON (the client does
   not keep the raw bytes; a server's whitespace is not counted). A response
   is *incomplete* if any of the rooms is missing from ``rooms.join`` or its
   timeline lacks the room's latest message.
2. ``/messages`` in ``paginate_rooms`` rooms: backwards from the end of the
   room (no ``from``), ``page_limit`` events a page, until every message of
   the room was seen or the room's start; the time of each page gives
   p50/p95. Each message must be seen exactly once (a message missing or
   seen twice means the tokens skipped or overlapped).

``complete`` means the run finished and every check passed: a figure from a
server that left rooms or messages out would not compare with one that did
the whole work.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections import Counter
from functools import partial
from typing import Any

from bench.client import MatrixClient, Session
from bench.fanout import latency_summary, scenario_main
from bench.send import gather_bounded, is_cancellation, set_up_within
from bench.server import Target
from bench.sync import SETUP_CONCURRENCY, register_users

NAME = "initial_sync"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"rooms": 50, "messages_per_room": 20, "syncs": 10, "paginate_rooms": 5,
             "page_limit": 50, "writers": 4, "send_concurrency": 16, "setup_budget_s": 900,
             "client_filter": "plain"},
    "small": {"rooms": 10, "messages_per_room": 10, "syncs": 5, "paginate_rooms": 3,
              "page_limit": 5, "writers": 4, "send_concurrency": 16, "setup_budget_s": 300,
             "client_filter": "plain"},
    "tiny": {"rooms": 2, "messages_per_room": 3, "syncs": 2, "paginate_rooms": 1,
             "page_limit": 2, "writers": 2, "send_concurrency": 4, "setup_budget_s": 60,
             "client_filter": "plain"},
}
REQUEST_TIMEOUT_S = 300.0  # an initial sync over many rooms may take seconds; never retried


def message_body(run_id: str, room: int, k: int) -> str:
    return f"initial_sync {run_id} room {room} message {k}"


def sync_filter(i: int, client_filter: str = "plain") -> dict[str, Any]:
    """Sync number ``i``'s filter: the same work, a request no cache has seen
    (``client_filter`` element: with what matrix-js-sdk adds, lazy-loaded
    members and per-thread unread counts)."""
    if client_filter == "element":
        return {"room": {"state": {"lazy_load_members": True},
                         "timeline": {"limit": 10 + i, "unread_thread_notifications": True}}}
    return {"room": {"timeline": {"limit": 10 + i}}}


async def set_up(client: MatrixClient, target: Target, params: dict[str, Any], run_id: str,
                 setup: dict[str, Any]) -> tuple[Session, list[str]]:
    """Users, rooms, joins and history; the measured user and its rooms in order."""
    rooms_n: int = params["rooms"]
    per_room: int = params["messages_per_room"]
    started = time.perf_counter()
    names = [f"isy{run_id}a"] + [f"isy{run_id}w{i}" for i in range(params["writers"])]
    sessions = await register_users(client, target, names, secrets.token_urlsafe(12))
    user, writers = sessions[0], sessions[1:]
    setup["register_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    rooms = await gather_bounded([partial(client.create_room, user, preset="public_chat")
                                  for _ in range(rooms_n)], limit=SETUP_CONCURRENCY)
    setup["create_rooms_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    await gather_bounded([partial(client.join, w, room) for room in rooms for w in writers],
                         limit=SETUP_CONCURRENCY)
    setup["join_s"] = round(time.perf_counter() - started, 2)
    print(f"  {rooms_n} rooms created, {len(writers)} writers joined "
          f"({setup['create_rooms_s'] + setup['join_s']:.1f}s)", flush=True)

    started = time.perf_counter()
    filled = 0

    async def fill(r: int) -> None:
        nonlocal filled
        for k in range(per_room):
            await client.send_message(writers[(r + k) % len(writers)], rooms[r],
                                      f"{run_id}.{r}.{k}",
                                      {"msgtype": "m.text", "body": message_body(run_id, r, k)})
        filled += 1
        if filled % max(1, rooms_n // 10) == 0 or filled == rooms_n:
            print(f"  history: {filled}/{rooms_n} rooms x {per_room} messages "
                  f"({time.perf_counter() - started:.1f}s)", flush=True)

    await gather_bounded([partial(fill, r) for r in range(rooms_n)],
                         limit=params["send_concurrency"])
    setup["send_s"] = round(time.perf_counter() - started, 2)
    return user, rooms


def check_sync(body: dict[str, Any], rooms: list[str], latest: dict[str, str]) -> list[str]:
    """What is wrong with an initial sync's answer: rooms missing, latest messages absent."""
    joined = (body.get("rooms") or {}).get("join") or {}
    problems = []
    for room_id in rooms:
        room = joined.get(room_id)
        if room is None:
            problems.append(f"{room_id} not in rooms.join")
            continue
        bodies = {(e.get("content") or {}).get("body")
                  for e in (room.get("timeline") or {}).get("events", [])}
        if latest[room_id] not in bodies:
            problems.append(f"{room_id}: latest message not in the timeline")
    return problems


def json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


async def measure_syncs(client: MatrixClient, user: Session, rooms: list[str],
                        latest: dict[str, str], syncs: int,
                        client_filter: str = "plain") -> dict[str, Any]:
    times: list[float] = []
    sizes: list[int] = []
    incomplete = 0
    first_problems: list[str] = []
    for i in range(syncs):
        started = time.perf_counter()
        body = await client.sync(user, timeout_ms=0, filter_json=sync_filter(i, client_filter))
        times.append(time.perf_counter() - started)
        sizes.append(len(json_bytes(body)))
        problems = check_sync(body, rooms, latest)
        if problems:
            incomplete += 1
            first_problems.extend(problems[:5 - len(first_problems)])
    return {"time_ms": latency_summary(times), "response_bytes": {
                "min": min(sizes), "max": max(sizes), "mean": round(sum(sizes) / len(sizes))},
            "incomplete_responses": incomplete, "first_problems": first_problems}


async def measure_pagination(client: MatrixClient, user: Session, rooms: list[str],
                             params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Page back through each room from its end; every message must turn up exactly once."""
    per_room: int = params["messages_per_room"]
    page_limit: int = params["page_limit"]
    page_times: list[float] = []
    per_room_result: list[dict[str, Any]] = []
    for r, room_id in enumerate(rooms[:params["paginate_rooms"]]):
        expected = {message_body(run_id, r, k) for k in range(per_room)}
        seen: Counter[str] = Counter()
        token: str | None = None
        pages = 0
        # bounded: every message plus the room's setup events, with room to spare
        while pages < (per_room + 20) // page_limit + 10:
            started = time.perf_counter()
            page = await client.messages(user, room_id, from_token=token, limit=page_limit)
            page_times.append(time.perf_counter() - started)
            pages += 1
            for event in page.get("chunk", []):
                text = (event.get("content") or {}).get("body")
                if event.get("type") == "m.room.message" and text in expected:
                    seen[text] += 1
            token = page.get("end")
            if len(seen) == per_room or not page.get("chunk") or token is None:
                break
        per_room_result.append({
            "room": r, "pages": pages, "found": len(seen),
            "missing": per_room - len(seen),
            "duplicates": sum(n - 1 for n in seen.values())})
    return {
        "page_ms": latency_summary(page_times),
        "rooms": per_room_result,
        "messages_expected": per_room * len(per_room_result),
        "messages_found": sum(r["found"] for r in per_room_result),
        "missing": sum(r["missing"] for r in per_room_result),
        "duplicates": sum(r["duplicates"] for r in per_room_result),
    }


def figures(result: dict[str, Any], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    shape = f"{params['rooms']} rooms x {params['messages_per_room']} messages"
    client_filter = params.get("client_filter", "plain")
    suffix = "" if client_filter == "plain" else f"_{client_filter}"
    if suffix:
        shape += f", {client_filter} filter"
    sync_ms = result["syncs"]["time_ms"]
    page_ms = result["pagination"]["page_ms"]
    pages = f"/messages, pages of {params['page_limit']}"
    return {
        f"initial_sync_p50_ms{suffix}": {"value": sync_ms["p50"], "unit": "ms", "better": "lower",
                                "label": f"initial sync, {shape}, p50"},
        f"initial_sync_p95_ms{suffix}": {"value": sync_ms["p95"], "unit": "ms", "better": "lower",
                                "label": f"initial sync, {shape}, p95"},
        "messages_page_p50_ms": {"value": page_ms["p50"], "unit": "ms", "better": "lower",
                                 "label": f"{pages}, p50"},
        "messages_page_p95_ms": {"value": page_ms["p95"], "unit": "ms", "better": "lower",
                                 "label": f"{pages}, p95"},
    }


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """Set up A's rooms and history, then time initial syncs and pagination; see the module doc."""
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
        latest = {room_id: message_body(run_id, r, params["messages_per_room"] - 1)
                  for r, room_id in enumerate(rooms)}
        result["syncs"] = await measure_syncs(client, user, rooms, latest, params["syncs"],
                                              params.get("client_filter", "plain"))
        result["pagination"] = await measure_pagination(client, user, rooms, params, run_id)
        result["figures"] = figures(result, params)
        syncs, pages = result["syncs"], result["pagination"]
        result["checks_passed"] = (syncs["incomplete_responses"] == 0
                                   and pages["missing"] == 0 and pages["duplicates"] == 0)
        result["complete"] = result["checks_passed"]
        print(f"  initial sync ms p50 {syncs['time_ms']['p50']} p95 {syncs['time_ms']['p95']} "
              f"max {syncs['time_ms']['max']}, {syncs['response_bytes']['mean']} bytes, "
              f"incomplete {syncs['incomplete_responses']}; /messages page ms p50 "
              f"{pages['page_ms']['p50']} p95 {pages['page_ms']['p95']}, "
              f"{pages['messages_found']}/{pages['messages_expected']} found, "
              f"{pages['duplicates']} duplicates", flush=True)
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
