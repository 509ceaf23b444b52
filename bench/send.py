"""Benchmark: sending messages - throughput and latency over the client-server API.

U users join R rooms (every user joins every room), then send M messages in
all, C at a time: message k is sent by user k mod U to room k mod R with a
transaction ID of its own, so no request is deduplicated away. Prints
messages per second and the p50/p95/p99 latency of the sends, and writes the
whole result as JSON with ``--json``.

    python -m bench.send --engine sqlite --users 10 --messages 2000 --concurrency 20
    python -m bench.send --engine postgres --rooms 20 --repeat 5 --json send-pg.json
    python -m bench.send --base-url http://127.0.0.1:8008 --shared-secret S \\
        [--server-pid PID] [--name synapse/postgres]

With ``--engine`` it starts our server (``bench/server.py``) on a fresh
database and stops it afterwards; with ``--base-url`` it loads a server
already running on this machine (ours, or Synapse) and needs that server's
``registration_shared_secret``; ``--server-pid`` adds its memory and CPU
figures. ``--repeat N`` makes N runs (with ``--engine``, each on a fresh
server and database) and adds their medians. Only loopback URLs are
accepted. Setup (registration, login, room creation, joins) is timed but not
part of the figures; after the run every room is read back with
``/messages`` to check that each message arrived once.

The run is bounded: counts are capped (``LIMITS``), the send phase stops
issuing messages after ``--max-seconds`` (the result is then marked
truncated), and ``--time-limit`` cancels the whole run. Exit status is 0 only
for a complete run without errors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet import reactor as _reactor

from bench.client import MatrixClient, MatrixRequestError, Session, check_loopback, run
from bench.server import (
    DEFAULT_PG_DSN,
    ENGINES,
    LocalServer,
    Target,
    cpu_seconds,
    interrupt_on_signals,
    peak_rss_kib,
    rss_kib,
    source_revision,
)

T = TypeVar("T")
reactor: Any = _reactor  # the installed reactor; its interfaces type poorly

# Upper bounds on what one run may ask for: a load tool, not a flood.
LIMITS = {"users": 1000, "messages": 200_000, "concurrency": 512, "rooms": 1000, "repeat": 10}
MAX_MEMBERSHIPS = 20_000  # every user joins every room
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Plan:
    users: int
    messages: int
    concurrency: int
    rooms: int
    max_seconds: float
    request_timeout_s: float


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil, at least the first
    return sorted_values[int(rank) - 1]


async def gather_bounded(calls: Sequence[Callable[[], Coroutine[Any, Any, T]]],
                         limit: int) -> list[T]:
    """Run the calls, at most ``limit`` at once; results in order."""
    semaphore = defer.DeferredSemaphore(limit)

    async def one(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        async with semaphore:
            return await call()

    results: list[T] = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(one(c)) for c in calls], consumeErrors=True)
    return results


# --- setup ----------------------------------------------------------------------------

async def register_and_login(client: MatrixClient, target: Target, plan: Plan, run_id: str,
                             timings: dict[str, float]) -> list[Session]:
    """Accounts through the shared-secret admin API, sessions through /login."""
    password = secrets.token_urlsafe(12)
    names = [f"bench{run_id}u{i}" for i in range(plan.users)]
    started = time.perf_counter()
    # few at once: password hashing is CPU-bound and the nonce table is shared
    await gather_bounded([
        partial(client.register_shared_secret, target.shared_secret, name, password,
                inhibit_login=True)
        for name in names], limit=4)
    timings["register_s"] = time.perf_counter() - started
    started = time.perf_counter()
    sessions = await gather_bounded(
        [partial(client.login, name, password) for name in names], limit=4)
    timings["login_s"] = time.perf_counter() - started
    return sessions


async def create_rooms(client: MatrixClient, sessions: list[Session], plan: Plan,
                       run_id: str, timings: dict[str, float]) -> list[str]:
    """Room r is created by user r mod U; every other user then joins it."""
    started = time.perf_counter()
    rooms = await gather_bounded([
        partial(client.create_room, sessions[r % len(sessions)], preset="public_chat",
                name=f"bench {run_id} {r}")
        for r in range(plan.rooms)], limit=plan.concurrency)
    timings["create_rooms_s"] = time.perf_counter() - started
    started = time.perf_counter()
    joins = [partial(client.join, s, room)
             for r, room in enumerate(rooms)
             for u, s in enumerate(sessions) if u != r % len(sessions)]
    await gather_bounded(joins, limit=plan.concurrency)
    timings["join_s"] = time.perf_counter() - started
    return rooms


# --- the measured phase ------------------------------------------------------------------

@dataclass
class SendOutcome:
    latencies_s: list[float]
    errors: Counter[str]
    first_errors: list[str]
    wall_s: float
    truncated: bool
    client_cpu_s: float
    server_cpu_s: float | None


def is_cancellation(e: Exception) -> bool:
    """Our own cancel (the time limit), however the HTTP client wrapped it."""
    if isinstance(e, defer.CancelledError):
        return True
    reasons = getattr(e, "reasons", None) or []  # ResponseNeverReceived and the like
    return any(r.check(defer.CancelledError) for r in reasons)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def send_messages(client: MatrixClient, sessions: list[Session], rooms: list[str],
                        plan: Plan, run_id: str, server_pid: int | None) -> SendOutcome:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    first_errors: list[str] = []
    truncated = False
    indexes = iter(range(plan.messages))  # shared by the workers: each k is sent once

    async def worker() -> None:
        nonlocal truncated
        for k in indexes:
            if time.perf_counter() > deadline:
                truncated = True
                return
            content = {"msgtype": "m.text", "body": f"bench {run_id} {k}"}
            sent = time.perf_counter()
            try:
                await client.send_message(sessions[k % len(sessions)], rooms[k % len(rooms)],
                                          f"{run_id}.{k}", content)
            except MatrixRequestError as e:
                errors[f"{e.status} {e.errcode or ''}".strip()] += 1
                if len(first_errors) < 5:
                    first_errors.append(str(e))
            except Exception as e:  # timeouts, refused connections: counted, not fatal
                if is_cancellation(e):
                    raise  # the time limit: stop, and not the server's error
                errors[type(e).__name__] += 1
                if len(first_errors) < 5:
                    first_errors.append(repr(e))
            else:
                latencies.append(time.perf_counter() - sent)

    server_cpu_before = cpu_seconds(server_pid) if server_pid else None
    client_cpu_before = _own_cpu_s()
    started = time.perf_counter()
    deadline = started + plan.max_seconds
    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(worker()) for _ in range(plan.concurrency)],
        consumeErrors=True)
    wall_s = time.perf_counter() - started
    server_cpu_after = cpu_seconds(server_pid) if server_pid else None
    server_cpu = (server_cpu_after - server_cpu_before
                  if server_cpu_before is not None and server_cpu_after is not None else None)
    return SendOutcome(latencies, errors, first_errors, wall_s, truncated,
                       _own_cpu_s() - client_cpu_before, server_cpu)


async def verify(client: MatrixClient, session: Session, rooms: list[str], run_id: str,
                 expected: int) -> dict[str, int]:
    """Read every room back with /messages; count this run's messages, and duplicates."""
    prefix = f"bench {run_id} "
    seen: Counter[str] = Counter()
    for room in rooms:
        token: str | None = None
        pages = 0
        # bounded: enough pages for every message plus the room's setup events
        while pages < expected // 100 + 20:
            page = await client.messages(session, room, from_token=token, limit=1000)
            pages += 1
            for event in page.get("chunk", []):
                body = event.get("content", {}).get("body")
                if event.get("type") == "m.room.message" and isinstance(body, str) \
                        and body.startswith(prefix):
                    seen[body] += 1
            token = page.get("end")
            if not page.get("chunk") or token is None:
                break
    return {"found": len(seen), "duplicates": sum(n - 1 for n in seen.values() if n > 1)}


# --- the run -------------------------------------------------------------------------------

async def run_benchmark(target: Target, plan: Plan) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    client = MatrixClient(target.base_url, connections=plan.concurrency,
                          timeout_s=plan.request_timeout_s)
    timings: dict[str, float] = {}
    try:
        sessions = await register_and_login(client, target, plan, run_id, timings)
        rooms = await create_rooms(client, sessions, plan, run_id, timings)
        outcome = await send_messages(client, sessions, rooms, plan, run_id, target.pid)
        checked = await verify(client, sessions[0], rooms, run_id, plan.messages)
    finally:
        await client.close()
    latencies_ms = sorted(x * 1000 for x in outcome.latencies_s)
    ok = len(latencies_ms)
    server: dict[str, Any] = {}
    if target.pid is not None:
        server = {
            "rss_after_kib": rss_kib(target.pid),
            "peak_rss_kib": peak_rss_kib(target.pid),
            "cpu_s_during_send": (round(outcome.server_cpu_s, 2)
                                  if outcome.server_cpu_s is not None else None),
            "cpu_ms_per_message": (round(outcome.server_cpu_s * 1000 / ok, 3)
                                   if outcome.server_cpu_s is not None and ok else None),
        }
    return {
        "setup": {k: round(v, 3) for k, v in timings.items()},
        "send": {
            "ok": ok,
            "errors": dict(outcome.errors),
            "first_errors": outcome.first_errors,
            "truncated": outcome.truncated,
            "wall_s": round(outcome.wall_s, 3),
            "messages_per_s": round(ok / outcome.wall_s, 1) if outcome.wall_s else None,
            "latency_ms": {
                "p50": round(percentile(latencies_ms, 50), 2),
                "p95": round(percentile(latencies_ms, 95), 2),
                "p99": round(percentile(latencies_ms, 99), 2),
                "mean": round(sum(latencies_ms) / ok, 2) if ok else None,
                "max": round(latencies_ms[-1], 2) if ok else None,
            },
            "client_cpu_s": round(outcome.client_cpu_s, 3),
        },
        "server": server,
        "verify": {"expected": ok, **checked},
    }


class TimeLimitExceeded(Exception):
    pass


async def with_time_limit(limit_s: float, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``main``, cancelled if it runs longer than ``limit_s`` (TimeLimitExceeded)."""
    d: defer.Deferred[T] = defer.Deferred.fromCoroutine(main())
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        d.cancel()

    timer = reactor.callLater(limit_s, expire)
    try:
        result: T = await d
        return result
    except Exception:
        if expired:  # however the cancellation came back wrapped
            raise TimeLimitExceeded() from None
        raise
    finally:
        if timer.active():
            timer.cancel()


async def set_up_within(budget_s: float, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """A scenario's setup ``main``, failing the run (RuntimeError) past ``budget_s``."""
    try:
        return await with_time_limit(budget_s, main)
    except TimeLimitExceeded:
        raise RuntimeError(f"setup took longer than {budget_s}s") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.send",
        description="Message send throughput and latency over the client-server API")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--engine", choices=ENGINES,
                       help="start our server on this database for the run")
    where.add_argument("--base-url", help="a server already running on this machine")
    parser.add_argument("--shared-secret", help="its registration_shared_secret (--base-url)")
    parser.add_argument("--server-pid", type=int, help="its PID, for memory and CPU figures")
    parser.add_argument("--name", help="what to call the target in the results "
                        "(default homeserver/<engine>, or external)")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20, help="requests in flight")
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300,
                        help="stop sending after this long (result marked truncated)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs, each on a fresh server with --engine; figures and medians")
    parser.add_argument("--time-limit", type=float, default=900,
                        help="cancel everything (setup and repeats included) after this long")
    parser.add_argument("--request-timeout", type=float, default=30)
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN,
                        help="with --engine postgres: where to create the bench_<random> database")
    parser.add_argument("--keep", action="store_true",
                        help="keep the started server's directory (config, log, SQLite file)")
    ns = parser.parse_args(argv)
    if ns.base_url:
        if not ns.shared_secret:
            parser.error("--base-url needs --shared-secret")
        try:
            check_loopback(ns.base_url)
        except ValueError as e:
            parser.error(str(e))
    for key, cap in LIMITS.items():
        value = getattr(ns, key)
        if not 1 <= value <= cap:
            parser.error(f"--{key} must be between 1 and {cap}")
    if ns.users * ns.rooms > MAX_MEMBERSHIPS:
        parser.error(f"--users times --rooms may not exceed {MAX_MEMBERSHIPS} memberships")
    if ns.concurrency > ns.messages:
        parser.error("--concurrency may not exceed --messages")
    return ns


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f} MiB" if kib else "?"


def print_run(n: int, measured: dict[str, Any]) -> None:
    send, server = measured["send"], measured["server"]
    lat = send["latency_ms"]
    print(f"run {n}: {send['messages_per_s']} messages/s over {send['wall_s']}s; latency ms "
          f"p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}")
    if send["errors"] or send["truncated"]:
        print(f"  errors {send['errors']} truncated={send['truncated']} "
              f"first: {send['first_errors'][:2]}")
    if server:
        line = (f"  server RSS idle {_mib(server.get('idle_rss_kib'))}, after "
                f"{_mib(server['rss_after_kib'])}, peak {_mib(server['peak_rss_kib'])}")
        if server.get("cpu_ms_per_message") is not None:
            line += f"; server CPU {server['cpu_ms_per_message']:.2f} ms/message"
        print(line)
    print(f"  load generator CPU {send['client_cpu_s']}s; 1-min load before "
          f"{measured['loadavg_1m_before']:.2f}; setup {measured['setup']}")
    print(f"  verify: {measured['verify']}", flush=True)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each headline figure over the runs (None where a run lacks it)."""
    def median_of(get: Callable[[dict[str, Any]], Any]) -> float | None:
        values = [v for v in (get(r) for r in runs) if v is not None]
        return round(statistics.median(values), 2) if values else None

    def latency(pct: str) -> float | None:
        return median_of(lambda r: r["send"]["latency_ms"][pct])

    rates = [r["send"]["messages_per_s"] for r in runs]
    return {
        "runs": len(runs),
        "messages_per_s": median_of(lambda r: r["send"]["messages_per_s"]),
        "messages_per_s_min": min(rates),
        "messages_per_s_max": max(rates),
        "latency_ms": {pct: latency(pct) for pct in ("p50", "p95", "p99")},
        "server_cpu_ms_per_message": median_of(
            lambda r: r["server"].get("cpu_ms_per_message")),
        "idle_rss_kib": median_of(lambda r: r["server"].get("idle_rss_kib")),
        "peak_rss_kib": median_of(lambda r: r["server"].get("peak_rss_kib")),
    }


def is_complete(measured: dict[str, Any], plan: Plan) -> bool:
    return (not measured["send"]["errors"] and not measured["send"]["truncated"]
            and measured["verify"]["found"] == plan.messages
            and not measured["verify"]["duplicates"])


async def measure_all(ns: argparse.Namespace, plan: Plan,
                      active: list[LocalServer]) -> list[dict[str, Any]]:
    """``--repeat`` runs; with ``--engine`` each on a server of its own, stopped after it.

    A started server is kept in ``active`` until stopped, so that whoever
    catches an interrupt can stop it.
    """
    runs = []
    for n in range(1, ns.repeat + 1):
        # other work on the machine skews every figure: record how busy it was
        load_before = os.getloadavg()[0]
        server = None
        if ns.engine:
            server = LocalServer(ns.engine, pg_dsn=ns.pg_dsn, keep=ns.keep)
            active.append(server)
            target = server.start()  # blocks the reactor, which has nothing else to do
        else:
            target = Target(ns.name or "external", ns.base_url, ns.shared_secret, ns.server_pid)
        try:
            measured = await run_benchmark(target, plan)
        finally:
            if server is not None:
                exit_status = server.stop()
                active.remove(server)
                if ns.keep:
                    print(f"kept {server.data_dir}", file=sys.stderr)
        measured = {"base_url": target.base_url, "loadavg_1m_before": load_before, **measured}
        if server is not None:
            measured["server"].update({
                "idle_rss_kib": server.idle_rss_kib,
                "startup_s": round(server.startup_s or 0, 2),
                "exit_status": exit_status,
            })
            if server.database_settings:
                measured["server"]["postgres"] = server.database_settings
        print_run(n, measured)
        runs.append(measured)
    return runs


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    plan = Plan(ns.users, ns.messages, ns.concurrency, ns.rooms, ns.max_seconds,
                ns.request_timeout)
    name = ns.name or (f"homeserver/{ns.engine}" if ns.engine else "external")
    revision = source_revision() if ns.engine else None
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(f"{name} ({revision or 'external'}): {plan.users} users, {plan.rooms} room(s), "
          f"{plan.messages} messages, {plan.concurrency} in flight, {ns.repeat} run(s)",
          flush=True)
    active: list[LocalServer] = []
    interrupt_on_signals()  # the reactor takes them over while it runs
    try:
        runs = run(lambda: with_time_limit(ns.time_limit, lambda: measure_all(ns, plan, active)))
    except TimeLimitExceeded:
        print(f"bench.send: stopped at the time limit ({ns.time_limit:.0f}s); no figures",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.send: interrupted; no figures", file=sys.stderr)
        return 1
    finally:
        for server in active:
            server.stop()
    summary = medians(runs)
    if len(runs) > 1:
        lat = summary["latency_ms"]
        print(f"median of {len(runs)}: {summary['messages_per_s']} messages/s "
              f"({summary['messages_per_s_min']}-{summary['messages_per_s_max']}); latency ms "
              f"p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}; "
              f"idle RSS {_mib(summary['idle_rss_kib'])}")
    result = {
        "benchmark": "send",
        "schema": SCHEMA_VERSION,
        "started_at": started_at,
        "target": {"name": name, "engine": ns.engine, "revision": revision},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "params": {"users": plan.users, "messages": plan.messages,
                   "concurrency": plan.concurrency, "rooms": plan.rooms,
                   "repeat": ns.repeat, "max_seconds": plan.max_seconds},
        "median": summary,
        "runs": runs,
    }
    if ns.json:
        os.makedirs(os.path.dirname(os.path.abspath(ns.json)), exist_ok=True)
        with open(ns.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0 if all(is_complete(r, plan) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
