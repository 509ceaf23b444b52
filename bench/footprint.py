"""Scenario ``footprint``: the server's memory idle, and per connected syncing user.

    python -m bench.footprint --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

On a freshly started server (the scenario contract gives each scenario its
own, idle for 2 s after it first answered):

1. ``idle_rss_mib``: the server's VmRSS as the scenario starts, before any
   request of ours.
2. ``users`` accounts are registered (and a sender), all join one room the
   sender created, each makes an initial ``/sync`` (``timeout=0``); after
   2 s of quiet, ``rss_with_users``.
3. All of them connect long-polling ``/sync`` (``bench.sync.HttpReceivers``),
   one message is sent and must reach everybody (a bounded wait), so every
   receiver has had a wake-up and is back waiting; after 1 s,
   ``rss_connected``. ``rss_per_syncing_user_kib`` is
   ``(rss_connected - rss_with_users) / users``: what a waiting client
   (its request, its connection, its place in the notifier, whatever a
   wake-up left cached) costs the server.

Only the ``/sync`` transport is measured, also on our server, which has a
WebSocket too: CPython (pymalloc and the C allocator) keeps freed memory for
reuse rather than returning it, so a second transport measured on the same
process after the first disconnected reads about 0 per user. A fair
WebSocket figure needs a server of its own; ``bench.sync`` documents the same
effect. Long-poll is also what both servers serve, so the figure compares.

RSS moves by a few hundred KiB of allocator noise, so the per-user figure
means something at hundreds of users (the full size), not at the tiny one.
"""

from __future__ import annotations

import secrets
import sys
import time
from functools import partial
from typing import Any

from bench.client import MatrixClient
from bench.fanout import SETUP_CONCURRENCY, raise_fd_limit, scenario_main
from bench.send import gather_bounded, is_cancellation
from bench.server import Target, rss_kib
from bench.sync import SYNC_FILTER, HttpReceivers, Tracker, register_users, sleep, within

NAME = "footprint"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"users": 300, "warm_up_s": 60},
    "small": {"users": 50, "warm_up_s": 30},
    "tiny": {"users": 3, "warm_up_s": 10},
}
QUIET_S = 2.0  # after the initial syncs, before reading RSS with the users set up
SETTLE_S = 1.0  # after the warm-up reached everybody, before reading RSS connected


def _mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib is not None else None


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """Idle RSS, then RSS per waiting long-poll client; see the module doc.

    ``ours`` changes nothing: only ``/sync`` is measured, on either server.
    """
    pid = target.pid
    idle = rss_kib(pid) if pid else None
    users: int = params["users"]
    raise_fd_limit()
    run_id = secrets.token_hex(3)
    result: dict[str, Any] = {"scenario": NAME, "params": params, "complete": False,
                              "transport": "sync", "idle_rss_kib": idle}
    client = MatrixClient(target.base_url, connections=SETUP_CONCURRENCY * 2, timeout_s=300)
    try:
        started = time.perf_counter()
        names = [f"foot{run_id}s"] + [f"foot{run_id}u{i}" for i in range(users)]
        sessions = await register_users(client, target, names, secrets.token_urlsafe(12))
        sender, receivers = sessions[0], sessions[1:]
        timings = {"register_s": time.perf_counter() - started}
        room_id = await client.create_room(sender, preset="public_chat")
        started = time.perf_counter()
        await gather_bounded([partial(client.join, s, room_id) for s in receivers],
                             limit=SETUP_CONCURRENCY)
        timings["join_s"] = time.perf_counter() - started
        started = time.perf_counter()
        initial = await gather_bounded([
            partial(client.sync, s, timeout_ms=0, filter_json=SYNC_FILTER) for s in receivers],
            limit=SETUP_CONCURRENCY)
        since = [body["next_batch"] for body in initial]
        timings["initial_sync_s"] = time.perf_counter() - started
        await sleep(QUIET_S)
        with_users = rss_kib(pid) if pid else None

        tracker = Tracker(len(receivers))
        group = HttpReceivers(target.base_url, receivers, tracker)
        started = time.perf_counter()
        group.start(since)
        try:
            await group.ready()
            tracker.expect(0, f"footprint {run_id} warm-up")
            tracker.sent_at[0] = time.perf_counter()
            await client.send_message(sender, room_id, f"{run_id}.warm-up",
                                      {"msgtype": "m.text", "body": f"footprint {run_id} warm-up"})
            warmed = await within(tracker.everybody[0], params.get("warm_up_s", 60))
            timings["connect_and_warm_up_s"] = time.perf_counter() - started
            await sleep(SETTLE_S)
            connected = rss_kib(pid) if pid else None
        finally:
            await group.stop()
        per_user = (round((connected - with_users) / users, 1)
                    if connected is not None and with_users is not None else None)
        result.update({
            "users": len(receivers),
            "rss_with_users_kib": with_users,
            "rss_connected_kib": connected,
            "rss_per_syncing_user_kib": per_user,
            "warm_up": {"everybody": warmed,
                        "reached": len(tracker.seen[0]), "of": len(receivers)},
            "receiver_errors": dict(tracker.errors),
            "first_receiver_errors": tracker.first_errors,
            "setup": {k: round(v, 2) for k, v in timings.items()},
        })
        # a memory figure with someone not waiting would under-count
        result["complete"] = bool(warmed and pid and per_user is not None)
        print(f"  footprint: idle {_mib(idle)} MiB; {users} users {_mib(with_users)} MiB; "
              f"connected {_mib(connected)} MiB; {per_user} KiB/user; "
              f"warm-up reached {len(tracker.seen[0])}/{len(receivers)}", flush=True)
    except Exception as e:
        if is_cancellation(e):
            raise
        result["error"] = repr(e)
    finally:
        await client.close()
    result["figures"] = {
        "idle_rss_mib": {"value": _mib(idle), "unit": "MiB", "better": "lower",
                         "label": "footprint: idle RSS after start"},
        "rss_per_syncing_user_kib": {
            "value": result.get("rss_per_syncing_user_kib"), "unit": "KiB", "better": "lower",
            "label": "footprint: RSS per connected /sync long-poll user"},
        "rss_with_users_mib": {
            "value": _mib(result.get("rss_with_users_kib")), "unit": "MiB", "better": "lower",
            "label": f"footprint: RSS with {users} users joined and synced (info)"},
    }
    return result


def main(argv: list[str] | None = None) -> int:
    return scenario_main(NAME, SIZES, run_scenario, argv)


if __name__ == "__main__":
    sys.exit(main())
