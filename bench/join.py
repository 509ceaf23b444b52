"""Scenario ``join``: users joining one growing room, one after another.

    python -m bench.join --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

A creator makes one ``public_chat`` room and ``users`` accounts are
registered (setup, not timed). Then the users join it **one at a time**:
each ``POST /rooms/{roomId}/join`` is answered before the next is issued, so
join k lands in a room of k members (the creator and the k - 1 before it) and
nothing else competes with it. A join is a state change whose cost may grow
with the room (auth against the current state, the new state snapshot, the
membership lists every member's sync reads), which is what this shows: the
latency of every join, p50/p95/p99 over all, the p50 of the last tenth (the
joins into the biggest room), the p50 of each tenth in turn (how it grows),
and the wall time of the whole sequence.

Joins are sent once, never retried (rate limits are lifted on both servers);
a failed join is counted. At the end ``GET /rooms/{roomId}/joined_members``
must list the creator and every user: ``complete`` means the run finished
and it does.
"""

from __future__ import annotations

import math
import secrets
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from bench.client import CLIENT_V3, MatrixClient
from bench.fanout import latency_summary, scenario_main
from bench.send import is_cancellation, percentile
from bench.server import Target
from bench.sync import SETUP_CONCURRENCY, register_users

NAME = "join"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"users": 300},
    "small": {"users": 50},
    "tiny": {"users": 4},
}
REQUEST_TIMEOUT_S = 60.0


def p50_ms(values_s: list[float]) -> float | None:
    return round(percentile(sorted(values_s), 50) * 1000, 2) if values_s else None


def by_tenth(latencies: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """The joins in ten consecutive slices (fewer with fewer joins): member counts and p50."""
    n = len(latencies)
    slices = min(10, n)
    result = []
    for i in range(slices):
        part = latencies[i * n // slices:(i + 1) * n // slices]
        result.append({"members_from": part[0][0], "members_to": part[-1][0], "joins": len(part),
                       "p50_ms": p50_ms([t for _, t in part])})
    return result


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """Register, then join the users one by one and time each join; see the module doc."""
    run_id = secrets.token_hex(3)
    users_n: int = params["users"]
    result: dict[str, Any] = {"scenario": NAME, "params": params, "figures": {},
                              "complete": False, "setup": {}}
    client = MatrixClient(target.base_url, connections=SETUP_CONCURRENCY * 2,
                          timeout_s=REQUEST_TIMEOUT_S)
    try:
        started = time.perf_counter()
        names = [f"join{run_id}c"] + [f"join{run_id}u{i}" for i in range(users_n)]
        sessions = await register_users(client, target, names, secrets.token_urlsafe(12))
        creator, users = sessions[0], sessions[1:]
        room_id = await client.create_room(creator, preset="public_chat")
        result["setup"] = {"register_s": round(time.perf_counter() - started, 2),
                           "users": len(users)}
        print(f"  registered {len(users)} users and created the room "
              f"in {result['setup']['register_s']}s", flush=True)

        path = f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/join"
        latencies: list[tuple[int, float]] = []  # (members before the join, seconds)
        errors: Counter[str] = Counter()
        first_errors: list[str] = []
        members = 1
        phase_started = time.perf_counter()
        for i, user in enumerate(users):
            started = time.perf_counter()
            try:
                await client.request("POST", path, {}, user.access_token)
            except Exception as e:
                if is_cancellation(e):
                    raise
                errors[type(e).__name__] += 1
                if len(first_errors) < 5:
                    first_errors.append(repr(e))
                continue
            latencies.append((members, time.perf_counter() - started))
            members += 1
            if (i + 1) % max(1, users_n // 10) == 0:
                print(f"  {i + 1}/{users_n} joined, last {latencies[-1][1] * 1000:.1f} ms",
                      flush=True)
        wall_s = time.perf_counter() - phase_started

        joined = await client.request("GET", f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}"
                                      "/joined_members", token=creator.access_token)
        joined_ids = set((joined or {}).get("joined") or {})
        expected_ids = {creator.user_id} | {u.user_id for u in users}
        last = latencies[-math.ceil(len(latencies) / 10):] if latencies else []
        result.update({
            "joins": len(latencies),
            "join_ms": latency_summary([t for _, t in latencies]),
            "last10pct": {"joins": len(last), "members_from": last[0][0] if last else None,
                          "p50_ms": p50_ms([t for _, t in last])},
            "by_tenth": by_tenth(latencies),
            "wall_s": round(wall_s, 2),
            "errors": dict(errors),
            "first_errors": first_errors,
            "joined_members": len(joined_ids),
            "joined_members_expected": users_n + 1,
            "missing_members": len(expected_ids - joined_ids),
        })
        summary = result["join_ms"]
        label = f"join into a room of 1-{users_n} members"
        result["figures"] = {
            "join_p50_ms": {"value": summary["p50"], "unit": "ms", "better": "lower",
                            "label": f"{label}, p50"},
            "join_p95_ms": {"value": summary["p95"], "unit": "ms", "better": "lower",
                            "label": f"{label}, p95"},
            "join_p99_ms": {"value": summary["p99"], "unit": "ms", "better": "lower",
                            "label": f"{label}, p99"},
            "join_last10pct_p50_ms": {
                "value": result["last10pct"]["p50_ms"], "unit": "ms", "better": "lower",
                "label": f"join, last 10% (room of {users_n - math.ceil(users_n / 10) + 1}"
                         f"-{users_n} members), p50"},
        }
        result["checks_passed"] = (not errors and joined_ids == expected_ids)
        result["complete"] = result["checks_passed"]
        print(f"  join ms p50 {summary['p50']} p95 {summary['p95']} p99 {summary['p99']}, "
              f"last 10% p50 {result['last10pct']['p50_ms']}; {wall_s:.1f}s in all; "
              f"joined members {len(joined_ids)}/{users_n + 1}; errors {dict(errors) or 0}",
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
