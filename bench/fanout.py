"""Scenario ``fanout``: delivery latency to N waiting members at a fixed send rate.

    python -m bench.fanout --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

One room (``public_chat``, created by a sender). For each N in
``receivers``, ascending, the first N receivers are joined to it (the same
room grows), make an initial ``/sync`` (``timeout=0``), then wait for news:
over ``sync`` a loop of long-polls, one persistent connection each; over
``websocket`` (ours only) one socket each on the stream endpoint
(``bench.lightpoll.LightReceivers`` and ``bench.sync.WebSocketReceivers``). A warm-up
message must reach everybody first (a bounded wait). Then the sender posts
``messages`` messages at a fixed ``rate``, **open loop**: message k is issued
at start + k/rate whether or not the earlier sends have been answered or
delivered, so a slow server cannot slow the sender down and hide its own
slowness (``bench.sync``'s delivery phase, by contrast, waits for each
message to reach everybody: it measures one wake-up at a time, this one a
steady load). After the last send, stragglers get up to ``drain_s``.

The latency of a (message, receiver) pair is the time the receiver had
parsed a response holding the message's unique body minus the time its send
was issued. Per stage: p50/p95/p99/max over the delivered pairs, the
fraction of pairs delivered (below 1 means the server fell behind the rate
for longer than the drain: a result, not a failure of the run), the send's
own latency, errors, and the CPU time of the server and of this load
generator over the measured phase. Each transport runs its stages in turn
on the same server and room; the second transport finds every member
already joined.

The load generator is one Python process on the same machine: at 1,000
long-poll receivers it parses a response and issues a request per receiver
per message, and its CPU time (``client_cpu_s``) is recorded so a reader
can tell when it, not the server, was the bottleneck. ``issue_lag_ms`` says
how late the sends left against their schedule for the same reason.

Receivers ask for up to 50 timeline events per response (``SYNC_FILTER``):
a receiver more than 50 messages behind gets a ``limited`` timeline and
never sees the oldest, which counts as undelivered. At the full size (50
messages a stage, the warm-up already seen) that cannot happen. With
``client_filter`` ``element`` (``bench/compare --client-filter element``)
they send what matrix-js-sdk / Element Web send instead
(``bench.sync.ELEMENT_FILTER``: lazy-loaded members, per-thread unread
counts, presence kept, 20 timeline events), and the figures' labels say so.

Open file descriptors: 1,000 long-polls are 1,000 sockets here and 1,000 in
the server. ``raise_fd_limit`` lifts this process's soft limit to the hard
one; a server started afterwards inherits it (ours does not raise its own),
so a caller that starts the server should call it first.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from twisted.internet import defer

from bench.client import MatrixClient, Session, run
from bench.lightpoll import SLIDING_SYNC_PATH, LightReceivers, SlidingReceivers, SpreadReceivers
from bench.send import (
    TimeLimitExceeded,
    _own_cpu_s,
    gather_bounded,
    is_cancellation,
    percentile,
    with_time_limit,
)
from bench.server import (
    DEFAULT_PG_DSN,
    ENGINES,
    LocalServer,
    Target,
    cpu_seconds,
    finish_run,
    interrupt_on_signals,
    source_revision,
)
from bench.sync import (
    CLIENT_FILTERS,
    Tracker,
    WebSocketReceivers,
    register_users,
    sleep,
    summary_ms,
    within,
)

NAME = "fanout"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"receivers": [100, 300, 1000], "rate": 5, "messages": 50, "drain_s": 30,
             "warm_up_s": 60, "transports": ["sync", "websocket"],
             "client_filter": "plain"},
    "small": {"receivers": [20, 50], "rate": 5, "messages": 20, "drain_s": 15,
              "warm_up_s": 30, "transports": ["sync", "websocket"],
             "client_filter": "plain"},
    "tiny": {"receivers": [2, 3], "rate": 20, "messages": 4, "drain_s": 10,
             "warm_up_s": 10, "transports": ["sync", "websocket"],
             "client_filter": "plain"},
}
TRANSPORT_LABELS = {"sync": "/sync", "websocket": "WebSocket", "sliding": "sliding sync"}
# transports Synapse speaks too
SHARED_TRANSPORTS = ("sync", "sliding")
# what a receiver over sliding sync asks for: its one room, as Element X's
# room list asks (the newest events of each room, its name and members);
# up to 50 events a response, as SYNC_FILTER
SLIDING_BODY: dict[str, Any] = {
    "lists": {"rooms": {"ranges": [[0, 0]], "timeline_limit": 50,
                        "required_state": [["m.room.name", ""],
                                           ["m.room.member", "$LAZY"]]}}}
SETUP_CONCURRENCY = 8  # joins and initial syncs in flight
SEND_TIMEOUT_S = 60.0  # a send not answered by then is an error (never retried)


def raise_fd_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit: 1,000 long-polls are 1,000+ sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def latency_summary(values_s: list[float]) -> dict[str, float | int | None]:
    """``bench.sync.summary_ms`` plus p95 (nearest rank), in ms."""
    values = sorted(v * 1000 for v in values_s)
    p95 = round(percentile(values, 95), 2) if values else None
    return {**summary_ms(values_s), "p95": p95}


def _total_cpu_s(pids: list[int]) -> float | None:
    """The CPU time of these processes together (None if one is unreadable)."""
    values = [cpu_seconds(pid) for pid in pids]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


async def fanout_stage(client: MatrixClient, send_client: MatrixClient, target: Target,
                       transport: str, sender: Session, receivers: list[Session],
                       room_id: str, params: dict[str, Any], run_id: str, *,
                       receiver_urls: list[str] | None = None,
                       server_pids: list[int] | None = None) -> dict[str, Any]:
    """One (transport, N): connect N receivers, warm up, send open loop, drain, measure.
    ``receiver_urls``: spread the long-polls over these servers in turn (several
    processes, ``bench.scale_out``); ``server_pids``: whose CPU time counts."""
    n = len(receivers)
    messages: int = params["messages"]
    rate: float = params["rate"]
    timings: dict[str, float] = {}
    sync_filter = CLIENT_FILTERS[params.get("client_filter", "plain")]
    started = time.perf_counter()
    conn_id = f"fanout-{run_id}-{n}"
    if transport == "sliding":
        sliding_body = {"conn_id": conn_id, **SLIDING_BODY}
        initial = await gather_bounded([
            partial(client.request, "POST", f"{SLIDING_SYNC_PATH}?timeout=0", sliding_body,
                    s.access_token) for s in receivers], limit=SETUP_CONCURRENCY)
        since = [body["pos"] for body in initial]
    else:
        initial = await gather_bounded([
            partial(client.sync, s, timeout_ms=0, filter_json=sync_filter) for s in receivers],
            limit=SETUP_CONCURRENCY)
        since = [body["next_batch"] for body in initial]
    timings["initial_sync_s"] = time.perf_counter() - started

    tracker = Tracker(n)
    group: LightReceivers | WebSocketReceivers
    if transport == "sliding":
        group = SlidingReceivers(target.base_url, receivers, tracker, sliding_body)
    elif transport == "sync" and receiver_urls:
        group = SpreadReceivers(receiver_urls, receivers, tracker, sync_filter)
    elif transport == "sync":
        group = LightReceivers(target.base_url, receivers, tracker, sync_filter)
    else:
        group = WebSocketReceivers(target.base_url, receivers, tracker, sync_filter)
    send_latencies: list[float] = []
    send_errors: Counter[str] = Counter()
    first_send_errors: list[str] = []
    warm_up_errors: list[str] = []

    async def send(k: int, text: str) -> None:
        tracker.expect(k, text)
        issued = time.perf_counter()
        tracker.sent_at[k] = issued
        try:
            await send_client.send_message(sender, room_id, f"{run_id}.{transport}.{n}.{k}",
                                           {"msgtype": "m.text", "body": text})
        except Exception as e:
            if is_cancellation(e):
                raise
            if k == 0:
                warm_up_errors.append(repr(e))
                return
            send_errors[type(e).__name__] += 1
            if len(first_send_errors) < 5:
                first_send_errors.append(repr(e))
        else:
            if k > 0:  # the warm-up is not part of the measured sends
                send_latencies.append(time.perf_counter() - issued)

    started = time.perf_counter()
    group.start(since)
    try:
        await group.ready()
        timings["connect_s"] = time.perf_counter() - started
        await send(0, f"fanout {run_id} {transport} {n} warm-up")
        warmed = await within(tracker.everybody[0], params.get("warm_up_s", 60))
        warm_up_s = time.perf_counter() - tracker.sent_at[0]
        await sleep(1.0)  # every long-poll back in place after the warm-up's answer

        pids = server_pids or ([target.pid] if target.pid else [])
        server_cpu_before = _total_cpu_s(pids)
        cpu_by_pid_before = [cpu_seconds(pid) for pid in pids]
        client_cpu_before = _own_cpu_s()
        phase_started = time.perf_counter()
        sends: list[defer.Deferred[None]] = []
        lags: list[float] = []
        for k in range(1, messages + 1):
            due = phase_started + (k - 1) / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await sleep(wait)
            lags.append(max(0.0, time.perf_counter() - due))
            sends.append(defer.Deferred.fromCoroutine(
                send(k, f"fanout {run_id} {transport} {n} {k}")))
        last_issued = time.perf_counter()
        everybody_all = defer.DeferredList([tracker.everybody[k]
                                            for k in range(1, messages + 1)])
        drained = await within(everybody_all, params["drain_s"])
        phase_s = time.perf_counter() - phase_started
        server_cpu_after = _total_cpu_s(pids)
        cpu_by_pid = [round(after - before, 2) if after is not None and before is not None
                      else None for before, after in zip(
                          cpu_by_pid_before, [cpu_seconds(pid) for pid in pids], strict=True)]
        client_cpu_s = _own_cpu_s() - client_cpu_before
        # what was seen by the end of the drain, frozen before stopping the receivers
        seen = {k: dict(tracker.seen[k]) for k in range(1, messages + 1)}
        # every send has answered or timed out by now, or soon will (SEND_TIMEOUT_S)
        await defer.DeferredList(sends, consumeErrors=True)
    finally:
        await group.stop()

    latencies: list[float] = []
    for k, by_receiver in seen.items():
        latencies.extend(t - tracker.sent_at[k] for t in by_receiver.values())
    delivered = len(latencies)
    server_cpu_s = (round(server_cpu_after - server_cpu_before, 2)
                    if server_cpu_before is not None and server_cpu_after is not None else None)
    result: dict[str, Any] = {
        "transport": transport,
        "receivers": n,
        "messages": messages,
        "rate_per_s": rate,
        "pairs": n * messages,
        "delivered_pairs": delivered,
        "delivered_fraction": round(delivered / (n * messages), 4),
        "all_delivered_within_drain": drained,
        "latency_ms": latency_summary(latencies),
        "send_ms": latency_summary(send_latencies),
        "send_errors": dict(send_errors),
        "first_send_errors": first_send_errors,
        "issue_lag_ms": {"p50": round(percentile(sorted(lags), 50) * 1000, 2),
                         "max": round(max(lags) * 1000, 2)},
        "send_window_s": round(last_issued - phase_started, 2),
        "receiver_errors": dict(tracker.errors),
        "first_receiver_errors": tracker.first_errors,
        "warm_up": {"everybody": warmed, "s": round(warm_up_s, 2), "errors": warm_up_errors},
        "phase_s": round(phase_s, 2),
        "server_cpu_s": server_cpu_s,
        # per server process, in the order of server_pids (main first)
        "server_cpu_s_by_process": cpu_by_pid,
        "client_cpu_s": round(client_cpu_s, 2),
        "setup": {k: round(v, 2) for k, v in timings.items()},
    }
    lat = result["latency_ms"]
    print(f"  fanout {transport} x{n}: latency ms p50 {lat['p50']} p95 {lat['p95']} "
          f"p99 {lat['p99']} max {lat['max']}; delivered {result['delivered_fraction']}; "
          f"send p50 {result['send_ms']['p50']} ms; server CPU {server_cpu_s}s, "
          f"ours {result['client_cpu_s']}s; errors {dict(tracker.errors) or 0}"
          f"{', send ' + str(dict(send_errors)) if send_errors else ''}", flush=True)
    return result


def stage_figures(stage: dict[str, Any], client_filter: str = "plain",
                  ) -> dict[str, dict[str, Any]]:
    transport, n = stage["transport"], stage["receivers"]
    label = f"fanout {TRANSPORT_LABELS[transport]} {n} receivers"
    key = f"{transport}_{n}"
    if client_filter != "plain":
        label += f", {client_filter} filter"
        key += f"_{client_filter}"
    lat = stage["latency_ms"]
    return {
        f"{key}_p50_ms": {"value": lat["p50"], "unit": "ms", "better": "lower",
                          "label": f"{label} p50"},
        f"{key}_p99_ms": {"value": lat["p99"], "unit": "ms", "better": "lower",
                          "label": f"{label} p99"},
        f"{key}_delivered": {"value": stage["delivered_fraction"], "unit": "fraction",
                             "better": "higher", "label": f"{label} delivered"},
    }


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """Every (transport, N) stage in turn on one room of ``target``; see the module doc."""
    fd_limit = raise_fd_limit()
    run_id = secrets.token_hex(3)
    receivers_n = sorted(params["receivers"])
    transports = [t for t in params["transports"] if t in SHARED_TRANSPORTS or ours]
    result: dict[str, Any] = {
        "scenario": NAME, "params": params, "figures": {}, "complete": False,
        "stages": {}, "skipped": [t for t in params["transports"] if t not in transports],
        "fd_limit": fd_limit,
    }
    client = MatrixClient(target.base_url, connections=SETUP_CONCURRENCY * 2, timeout_s=300)
    send_client = MatrixClient(target.base_url, connections=16, timeout_s=SEND_TIMEOUT_S)
    try:
        started = time.perf_counter()
        names = [f"fan{run_id}s"] + [f"fan{run_id}r{i}" for i in range(receivers_n[-1])]
        sessions = await register_users(client, target, names, secrets.token_urlsafe(12))
        result["setup"] = {"register_s": round(time.perf_counter() - started, 2),
                           "users": len(sessions)}
        sender, receivers = sessions[0], sessions[1:]
        room_id = await client.create_room(sender, preset="public_chat")
        members = 0
        for transport in transports:
            stages: dict[str, Any] = result["stages"].setdefault(transport, {})
            for n in receivers_n:
                if members < n:
                    started = time.perf_counter()
                    await gather_bounded([partial(client.join, s, room_id)
                                          for s in receivers[members:n]],
                                         limit=SETUP_CONCURRENCY)
                    result["setup"][f"join_to_{n}_s"] = round(time.perf_counter() - started, 2)
                    members = n
                stage = await fanout_stage(client, send_client, target, transport, sender,
                                           receivers[:n], room_id, params, run_id)
                stages[str(n)] = stage
                result["figures"].update(stage_figures(
                    stage, params.get("client_filter", "plain")))
        result["complete"] = True
    except Exception as e:
        if is_cancellation(e):
            raise
        result["error"] = repr(e)
    finally:
        await send_client.close()
        await client.close()
    result["all_delivered"] = all(
        stage["delivered_fraction"] == 1.0
        for stages in result["stages"].values() for stage in stages.values())
    return result


# --- standalone ------------------------------------------------------------------------

Scenario = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


def scenario_main(name: str, sizes: dict[str, dict[str, Any]], scenario: Scenario,
                  argv: list[str] | None,
                  server_options: Callable[[str], dict[str, Any]] | None = None) -> int:
    """``python -m bench.<name>``: our server on a fresh database, one scenario, JSON out.

    Exit status 0 when the scenario reports itself complete.
    """
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}",
                                     description=f"the {name} scenario against our server")
    parser.add_argument("--engine", choices=ENGINES, required=True)
    parser.add_argument("--size", choices=sorted(sizes), default="full")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN)
    parser.add_argument("--time-limit", type=float, default=1800,
                        help="cancel the scenario after this long (s)")
    parser.add_argument("--keep", action="store_true", help="keep the server's directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override one parameter of the size, e.g. receivers=[300]")
    ns = parser.parse_args(argv)
    revision = source_revision()
    params = dict(sizes[ns.size])
    for item in ns.set:
        key, _, value = item.partition("=")
        if key not in params:
            parser.error(f"--set: {key!r} is not a parameter of {name}")
        params[key] = json.loads(value)
    results: dict[str, Any] = {
        "benchmark": name,
        "size": ns.size,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "target": {"name": f"homeserver/{ns.engine}", "engine": ns.engine,
                   "revision": revision},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "loadavg_1m_before": os.getloadavg()[0]},
        "complete": False,
    }
    print(f"{name} on homeserver/{ns.engine} ({revision}), size {ns.size}: {params}",
          flush=True)
    server = LocalServer(ns.engine, pg_dsn=ns.pg_dsn, keep=ns.keep,
                         **(server_options("ours") if server_options is not None else {}))
    interrupt_on_signals()
    raise_fd_limit()  # before starting it: the server inherits the limit, and holds a socket
    # per waiting client too (it does not raise its own)
    try:
        target = server.start()
        results["server"] = {"pid": target.pid, "idle_rss_kib": server.idle_rss_kib}
        results.update(run(lambda: with_time_limit(
            ns.time_limit, lambda: scenario(target, params, ours=True))))
    except KeyboardInterrupt:
        results["error"] = "interrupted"
    except TimeLimitExceeded:
        results["error"] = f"stopped at the time limit ({ns.time_limit:.0f}s)"
    except Exception as e:
        results["error"] = repr(e)
        print(f"bench.{name}: failed: {e!r}", file=sys.stderr)
        if server.proc is not None:
            print(server.log_tail(), file=sys.stderr)
    finally:
        finish_run(server, results, ns.json, ns.keep)
    for key, figure in results.get("figures", {}).items():
        print(f"  {key}: {figure['value']} {figure['unit']}", flush=True)
    if results.get("error"):
        print(f"bench.{name}: {results['error']}", file=sys.stderr)
    return 0 if results["complete"] else 1


def main(argv: list[str] | None = None) -> int:
    return scenario_main(NAME, SIZES, run_scenario, argv)


if __name__ == "__main__":
    sys.exit(main())
