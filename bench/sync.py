"""Benchmark: /sync - fan-out delivery latency, memory per waiting client, and
the cost of an incremental sync as a user's room count grows.

    python -m bench.sync --engine sqlite|postgres [--server ours|synapse]
        [--receivers 50,200,500] [--transport sync|websocket|sync,websocket]
        [--rooms-small 10] [--rooms-large 1000] [--json PATH]

Three measurements on one server (started here, on a fresh database, and
stopped - SIGTERM, database dropped - whatever happens):

1. **Delivery** (phase ``delivery``). For each N in ``--receivers``, N users
   in one room each make an initial ``/sync`` and then wait: with
   ``--transport sync`` a loop of long-polls (``timeout=30000``, their own
   ``since``, one persistent HTTP connection each); with ``websocket`` one
   socket each on ``/_matrix/client/unstable/stream`` (subprotocol
   ``m.json``; every sync delta is a text frame). A warm-up message is sent
   and awaited at every receiver, then a sender posts ``--messages`` messages,
   each at least ``--interval-ms`` after the previous one and only once the
   previous one has reached everybody (at most ``--delivery-timeout`` later):
   every message is a wake-up of its own. The latency of a (message,
   receiver) pair is the time the receiver had parsed a response holding the
   message (matched by its unique body) minus the time the send request was
   issued; p50/p99 are nearest rank over all pairs. Any pair not seen by the
   end is counted as undelivered.
2. **Memory per connected user**. Within the same stage, the server's RSS
   with the room set up and nobody connected (``rss_idle``) and with all N
   receivers connected and waiting after the warm-up (``rss_connected``):
   ``(rss_connected - rss_idle) / N`` KiB.
3. **Incremental sync cost** (phase ``rooms``). A user in ``--rooms-small``
   rooms and one in ``--rooms-large`` rooms (they created them). (a) Another
   user posts in a room neither is in, then the user syncs (``timeout=0``)
   from its last ``next_batch``: nothing new for it. (b) The other user posts
   in one of the user's rooms, then the user syncs: one new message. Each
   ``--syncs`` times; median/p90 of the client-side time and the server's
   CPU per sync. The point: neither should grow with the room count.

Users are registered through the shared-secret admin API with a session
each (no second password check through /login), several at once. Receivers
filter presence out of their responses and ask for up to 50 timeline events.
The load generator runs on the same machine and its CPU time is recorded: at
500 receivers it parses 500 responses per message, and that is in the
latencies. ``--time-limit`` cancels the whole run; partial results are still
written with ``--json``. Exit status 0 only when every message reached every
receiver.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater

from bench.client import MatrixClient, Session, run
from bench.send import (
    TimeLimitExceeded,
    _own_cpu_s,
    gather_bounded,
    percentile,
    with_time_limit,
)
from bench.server import (
    DEFAULT_PG_DSN,
    ENGINES,
    LocalServer,
    ProcessServer,
    Target,
    cpu_seconds,
    finish_run,
    interrupt_on_signals,
    peak_rss_kib,
    rss_kib,
    source_revision,
)

T = TypeVar("T")
reactor: Any = _reactor  # the installed reactor; its interfaces type poorly

SCHEMA_VERSION = 1
STREAM_PATH = "/_matrix/client/unstable/stream"
SUBPROTOCOL = "m.json"
LONG_POLL_MS = 30_000
TRANSPORTS = ("sync", "websocket")
PHASES = ("delivery", "rooms")
# Presence would wake everybody as each receiver comes online: not what we measure.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "room": {"timeline": {"limit": 50}},
}
# What matrix-js-sdk (Element Web) sends as its /sync filter: SyncApi's
# default filter asks for unread_thread_notifications; Element's
# lazyLoadMembers adds room.state.lazy_load_members; the timeline limit is
# the client's initialSyncLimit (the SDK's default is 8; 20 here, so that a
# receiver a few messages behind under load is not cut short). Presence is
# not filtered out.
ELEMENT_FILTER: dict[str, Any] = {
    "room": {"state": {"lazy_load_members": True},
             "timeline": {"limit": 20, "unread_thread_notifications": True}},
}
# ``--client-filter``: the filter receivers sync with
CLIENT_FILTERS: dict[str, dict[str, Any]] = {"plain": SYNC_FILTER, "element": ELEMENT_FILTER}
LIMITS = {"receivers": 1000, "messages": 500, "rooms": 2000, "syncs": 1000}
SETUP_CONCURRENCY = 8  # registrations hash a password each: CPU-bound on the server
HANDSHAKE_TIMEOUT_S = 60.0  # a WebSocket's opening handshake


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def summary_ms(values_s: list[float]) -> dict[str, float | int | None]:
    values = sorted(v * 1000 for v in values_s)
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {"n": len(values), "p50": round(percentile(values, 50), 2),
            "p90": round(percentile(values, 90), 2), "p99": round(percentile(values, 99), 2),
            "max": round(values[-1], 2), "mean": round(statistics.fmean(values), 2)}


def timeline_bodies(body: dict[str, Any]) -> list[str]:
    """The ``content.body`` of every timeline event in a sync body's joined rooms."""
    found = []
    for room in (body.get("rooms") or {}).get("join", {}).values():
        for event in (room.get("timeline") or {}).get("events", []):
            text = (event.get("content") or {}).get("body")
            if isinstance(text, str):
                found.append(text)
    return found


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


async def within(d: defer.Deferred[Any], seconds: float) -> bool:
    """Wait for ``d`` at most ``seconds`` (it is not cancelled); True if it fired."""
    if d.called:
        return True
    waiter: defer.Deferred[bool] = defer.Deferred()

    def settle(fired: bool) -> None:
        if not waiter.called:
            waiter.callback(fired)

    def passthrough(result: Any) -> Any:
        settle(True)
        return result

    d.addBoth(passthrough)
    timer = reactor.callLater(seconds, settle, False)
    fired = await waiter
    if timer.active():
        timer.cancel()
    return fired


# --- setup ----------------------------------------------------------------------------

async def register_users(client: MatrixClient, target: Target, names: list[str],
                         password: str) -> list[Session]:
    """Accounts and a session each, through the shared-secret admin API, a few at once."""
    sessions = await gather_bounded([
        partial(client.register_shared_secret, target.shared_secret, name, password)
        for name in names], limit=SETUP_CONCURRENCY)
    return [s for s in sessions if s is not None]


# --- delivery ---------------------------------------------------------------------------

@dataclass
class Tracker:
    """Which receiver saw which message when."""

    receivers: int
    by_body: dict[str, int] = field(default_factory=dict)
    sent_at: dict[int, float] = field(default_factory=dict)
    seen: dict[int, dict[int, float]] = field(default_factory=dict)
    everybody: dict[int, defer.Deferred[None]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def expect(self, k: int, text: str) -> None:
        self.by_body[text] = k
        self.seen[k] = {}
        self.everybody[k] = defer.Deferred()

    def observe(self, receiver: int, body: dict[str, Any], now: float) -> None:
        self.observe_texts(receiver, timeline_bodies(body), now)

    def observe_texts(self, receiver: int, texts: list[str], now: float) -> None:
        """``observe`` for the message bodies already picked out of a response."""
        for text in texts:
            k = self.by_body.get(text)
            if k is None:
                continue
            seen = self.seen[k]
            if receiver not in seen:
                seen[receiver] = now
                if len(seen) == self.receivers:
                    self.everybody[k].callback(None)

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(detail)


class HttpReceivers:
    """N long-poll loops, one persistent connection each."""

    def __init__(self, base_url: str, sessions: list[Session], tracker: Tracker,
                 sync_filter: dict[str, Any] | None = None) -> None:
        self.sync_filter = SYNC_FILTER if sync_filter is None else sync_filter
        self.client = MatrixClient(base_url, connections=len(sessions) + 4,
                                   timeout_s=LONG_POLL_MS / 1000 + 30)
        self.sessions = sessions
        self.tracker = tracker
        self.stopping = False
        self.pending: dict[int, defer.Deferred[dict[str, Any]]] = {}
        self.loops: list[defer.Deferred[None]] = []

    def start(self, since: list[str]) -> None:
        self.loops = [defer.Deferred.fromCoroutine(self._loop(i, since[i]))
                      for i in range(len(self.sessions))]

    async def ready(self) -> None:
        # a long poll has no answer to wait for: give every request time to arrive
        await sleep(1.0 + 0.004 * len(self.sessions))

    async def _loop(self, i: int, since: str) -> None:
        session = self.sessions[i]
        while not self.stopping:
            d = defer.Deferred.fromCoroutine(self.client.sync(
                session, since=since, timeout_ms=LONG_POLL_MS, filter_json=self.sync_filter))
            self.pending[i] = d
            try:
                body = await d
            except Exception as e:
                if self.stopping:
                    return
                self.tracker.error(type(e).__name__, f"receiver {i}: {e!r}")
                await sleep(0.5)
                continue
            finally:
                self.pending.pop(i, None)
            self.tracker.observe(i, body, time.perf_counter())
            since = body.get("next_batch", since)

    async def stop(self) -> None:
        self.stopping = True
        for d in list(self.pending.values()):
            d.cancel()
        await defer.DeferredList(self.loops, consumeErrors=True)
        await self.client.close()


class WebSocketReceivers:
    """N sockets on the stream endpoint; ``ready`` once each has had its first frame."""

    def __init__(self, base_url: str, sessions: list[Session], tracker: Tracker,
                 sync_filter: dict[str, Any] | None = None) -> None:
        self.sync_filter = SYNC_FILTER if sync_filter is None else sync_filter
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.base_ws = f"ws://{self.host}:{self.port}{STREAM_PATH}"
        self.sessions = sessions
        self.tracker = tracker
        self.stopping = False
        self.protocols: list[Any] = []
        self.first_frames: list[defer.Deferred[None]] = []
        self.closed: list[defer.Deferred[None]] = []

    def start(self, since: list[str]) -> None:
        from autobahn.twisted.websocket import (
            WebSocketClientFactory,
            WebSocketClientProtocol,
            connectWS,
        )

        owner = self

        class Receiver(WebSocketClientProtocol):  # type: ignore[misc]
            index = -1

            def onOpen(self) -> None:  # noqa: N802
                owner.protocols.append(self)

            def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
                now = time.perf_counter()
                try:
                    body = json.loads(payload)
                except ValueError:
                    owner.tracker.error("bad frame", repr(payload[:100]))
                    return
                if not isinstance(body, dict) or "next_batch" not in body:
                    return  # an answer to a request; we send none
                owner.tracker.observe(self.index, body, now)
                first = owner.first_frames[self.index]
                if not first.called:
                    first.callback(None)

            def onClose(self, wasClean: bool, code: int | None,  # noqa: N802, N803
                        reason: str | None) -> None:
                if not owner.stopping:
                    owner.tracker.error(f"closed {code}", f"receiver {self.index}: "
                                        f"{code} {reason}")
                    first = owner.first_frames[self.index]
                    if not first.called:
                        first.callback(None)
                done = owner.closed[self.index]
                if not done.called:
                    done.callback(None)

        filter_q = quote(json.dumps(self.sync_filter, separators=(",", ":")), safe="")
        for i, session in enumerate(self.sessions):
            self.first_frames.append(defer.Deferred())
            self.closed.append(defer.Deferred())
            url = (f"{self.base_ws}?access_token={quote(session.access_token, safe='')}"
                   f"&since={quote(since[i], safe='')}&filter={filter_q}")
            factory = WebSocketClientFactory(url, protocols=[SUBPROTOCOL])
            # autobahn's client gives up on an opening handshake after 5 s: with
            # 1,000 sockets opening at once that measures the queue, not a fault
            factory.setProtocolOptions(openHandshakeTimeout=HANDSHAKE_TIMEOUT_S)
            factory.protocol = type("Receiver", (Receiver,), {"index": i})  # type: ignore[assignment]
            connectWS(factory, timeout=30)

    async def ready(self) -> None:
        await within(defer.DeferredList(self.first_frames), 60.0)

    async def stop(self) -> None:
        self.stopping = True
        for proto in self.protocols:
            proto.sendClose(1000)
        await within(defer.DeferredList(self.closed), 10.0)
        for proto in self.protocols:  # whoever did not close cleanly in time
            if proto.transport is not None:
                proto.transport.abortConnection()


@dataclass
class Room:
    room_id: str
    members: int  # receivers joined so far


async def delivery_stage(client: MatrixClient, target: Target, transport: str,
                         sender: Session, receivers: list[Session], room: Room,
                         ns: argparse.Namespace, run_id: str) -> dict[str, Any]:
    n = len(receivers)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if room.members < n:
        await gather_bounded([partial(client.join, s, room.room_id)
                              for s in receivers[room.members:]], limit=SETUP_CONCURRENCY)
        room.members = n
    timings["join_s"] = time.perf_counter() - started
    started = time.perf_counter()
    initial = await gather_bounded([
        partial(client.sync, s, timeout_ms=0, filter_json=SYNC_FILTER) for s in receivers],
        limit=SETUP_CONCURRENCY)
    since = [body["next_batch"] for body in initial]
    timings["initial_sync_s"] = time.perf_counter() - started
    await sleep(2.0)
    rss_idle = rss_kib(target.pid) if target.pid else None

    tracker = Tracker(n)
    group: HttpReceivers | WebSocketReceivers
    if transport == "sync":
        group = HttpReceivers(target.base_url, receivers, tracker)
    else:
        group = WebSocketReceivers(target.base_url, receivers, tracker)
    send_latencies: list[float] = []
    send_errors: Counter[str] = Counter()
    client_cpu_before = _own_cpu_s()
    server_cpu_before = cpu_seconds(target.pid) if target.pid else None
    started = time.perf_counter()
    group.start(since)
    try:
        await group.ready()
        timings["connect_s"] = time.perf_counter() - started

        async def send(k: int, text: str) -> None:
            tracker.expect(k, text)
            sent = time.perf_counter()
            tracker.sent_at[k] = sent
            try:
                await client.send_message(sender, room.room_id, f"{run_id}.{n}.{transport}.{k}",
                                          {"msgtype": "m.text", "body": text})
            except Exception as e:
                send_errors[type(e).__name__] += 1
                tracker.error("send " + type(e).__name__, repr(e))
            else:
                send_latencies.append(time.perf_counter() - sent)

        # warm-up: every receiver is connected and back to waiting afterwards
        await send(0, f"bench {run_id} {transport} {n} warm-up")
        warmed = await within(tracker.everybody[0], ns.delivery_timeout * 2)
        warm_up_s = time.perf_counter() - tracker.sent_at[0]
        await sleep(1.0)
        rss_connected = rss_kib(target.pid) if target.pid else None

        phase_started = time.perf_counter()
        for k in range(1, ns.messages + 1):
            earliest = tracker.sent_at[k - 1] + ns.interval_ms / 1000
            await within(tracker.everybody[k - 1], ns.delivery_timeout)
            wait = earliest - time.perf_counter()
            if wait > 0:
                await sleep(wait)
            await send(k, f"bench {run_id} {transport} {n} {k}")
        await within(tracker.everybody[ns.messages], ns.delivery_timeout)
        phase_s = time.perf_counter() - phase_started
    finally:
        await group.stop()
    server_cpu_after = cpu_seconds(target.pid) if target.pid else None
    client_cpu = _own_cpu_s() - client_cpu_before

    latencies = []
    last_of_message = []
    undelivered = 0
    for k in range(1, ns.messages + 1):
        seen = tracker.seen.get(k, {})
        undelivered += n - len(seen)
        pairs = [t - tracker.sent_at[k] for t in seen.values()]
        latencies.extend(pairs)
        if len(seen) == n:
            last_of_message.append(max(pairs))
    per_user = (round((rss_connected - rss_idle) / n, 1)
                if rss_connected is not None and rss_idle is not None else None)
    result = {
        "receivers": n,
        "transport": transport,
        "messages": ns.messages,
        "pairs": n * ns.messages,
        "undelivered": undelivered,
        "latency_ms": summary_ms(latencies),
        "everyone_reached_ms": summary_ms(last_of_message),
        "send_ms": summary_ms(send_latencies),
        "send_errors": dict(send_errors),
        "receiver_errors": dict(tracker.errors),
        "first_errors": tracker.first_errors,
        "warm_up": {"everybody": warmed, "s": round(warm_up_s, 2)},
        "phase_s": round(phase_s, 2),
        "rss_idle_kib": rss_idle,
        "rss_connected_kib": rss_connected,
        "rss_per_user_kib": per_user,
        "server_cpu_s": (round(server_cpu_after - server_cpu_before, 2)
                         if server_cpu_before is not None and server_cpu_after is not None
                         else None),
        "client_cpu_s": round(client_cpu, 2),
        # server CPU over everything the stage's receivers were woken for
        # (warm-up included): about what one woken receiver costs
        "server_cpu_ms_per_wakeup": (
            round((server_cpu_after - server_cpu_before) * 1000 / (n * (ns.messages + 1)), 2)
            if server_cpu_before is not None and server_cpu_after is not None else None),
        "setup": {k: round(v, 2) for k, v in timings.items()},
    }
    lat = result["latency_ms"]
    print(f"  {transport} x{n}: latency ms p50 {lat['p50']} p99 {lat['p99']} "
          f"max {lat['max']}; everyone reached p50 {result['everyone_reached_ms']['p50']}; "
          f"undelivered {undelivered}; RSS {rss_idle} -> {rss_connected} KiB "
          f"({per_user} KiB/user); errors {dict(tracker.errors) or 0}", flush=True)
    return result


# --- incremental sync cost -------------------------------------------------------------

async def rooms_stage(client: MatrixClient, target: Target, user: Session, other: Session,
                      other_room: str, count: int, syncs: int, run_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    rooms = await gather_bounded([
        partial(client.create_room, user, preset="public_chat") for _ in range(count)],
        limit=SETUP_CONCURRENCY)
    create_s = time.perf_counter() - started
    await client.join(other, rooms[0])
    started = time.perf_counter()
    body = await client.sync(user, timeout_ms=0, filter_json=SYNC_FILTER)
    initial_s = time.perf_counter() - started
    joined = len((body.get("rooms") or {}).get("join", {}))
    since: str = body["next_batch"]

    async def measure(case: str, room_id: str) -> dict[str, Any]:
        nonlocal since
        wall: list[float] = []
        cpu = 0.0
        wrong = 0
        for i in range(syncs):
            text = f"bench {run_id} {count} {case} {i}"
            await client.send_message(other, room_id, f"{run_id}.{count}.{case}.{i}",
                                      {"msgtype": "m.text", "body": text})
            cpu_before = cpu_seconds(target.pid) if target.pid else None
            t0 = time.perf_counter()
            body = await client.sync(user, since=since, timeout_ms=0, filter_json=SYNC_FILTER)
            wall.append(time.perf_counter() - t0)
            if cpu_before is not None and target.pid:
                cpu += (cpu_seconds(target.pid) or 0.0) - cpu_before
            since = body["next_batch"]
            bodies = timeline_bodies(body)
            if bodies != ([text] if case == "one_new" else []):
                wrong += 1
        return {**summary_ms(wall),
                "server_cpu_ms_per_sync": round(cpu * 1000 / syncs, 2) if target.pid else None,
                "unexpected_responses": wrong}

    nothing = await measure("nothing_new", other_room)
    one = await measure("one_new", rooms[0])
    result = {"rooms": count, "joined_in_initial_sync": joined,
              "create_rooms_s": round(create_s, 2), "initial_sync_ms": _ms(initial_s),
              "nothing_new_ms": nothing, "one_new_ms": one}
    print(f"  {count} rooms: incremental sync ms p50 nothing new {nothing['p50']} "
          f"(server CPU {nothing['server_cpu_ms_per_sync']}), one new {one['p50']} "
          f"(server CPU {one['server_cpu_ms_per_sync']}); initial sync {_ms(initial_s)} ms; "
          f"created in {create_s:.1f}s", flush=True)
    return result


# --- the run -------------------------------------------------------------------------------

async def run_benchmark(target: Target, ns: argparse.Namespace,
                        results: dict[str, Any]) -> None:
    """Fills ``results`` as it goes, so a run cut short still reports what it measured."""
    run_id = secrets.token_hex(3)
    receivers_max = max(ns.receivers) if "delivery" in ns.phases else 0
    client = MatrixClient(target.base_url, connections=SETUP_CONCURRENCY * 2, timeout_s=300)
    try:
        started = time.perf_counter()
        names = [f"sync{run_id}s", f"sync{run_id}a", f"sync{run_id}b"] + [
            f"sync{run_id}r{i}" for i in range(receivers_max)]
        sessions = await register_users(client, target, names, secrets.token_urlsafe(12))
        results["setup"] = {"register_s": round(time.perf_counter() - started, 2),
                            "users": len(sessions)}
        print(f"  registered {len(sessions)} users in {results['setup']['register_s']}s",
              flush=True)
        sender, small_user, large_user, receivers = (sessions[0], sessions[1], sessions[2],
                                                     sessions[3:])
        other_room = await client.create_room(sender, preset="public_chat")
        if "delivery" in ns.phases:
            delivery: dict[str, Any] = results.setdefault("delivery", {})
            room = Room(await client.create_room(sender, preset="public_chat"), 0)
            for transport in ns.transport:
                if transport == "websocket" and ns.server == "synapse":
                    delivery["websocket"] = "skipped: Synapse has no WebSocket transport"
                    continue
                stages = delivery.setdefault(transport, {})
                for n in ns.receivers:
                    stages[str(n)] = await delivery_stage(
                        client, target, transport, sender, receivers[:n], room, ns, run_id)
        if "rooms" in ns.phases:
            rooms: dict[str, Any] = results.setdefault("rooms", {})
            for count, user in ((ns.rooms_small, small_user), (ns.rooms_large, large_user)):
                rooms[str(count)] = await rooms_stage(client, target, user, sender, other_room,
                                                      count, ns.syncs, run_id)
            small, large = rooms[str(ns.rooms_small)], rooms[str(ns.rooms_large)]
            rooms["large_over_small_p50"] = {
                case: (round(large[case]["p50"] / small[case]["p50"], 2)
                       if small[case]["p50"] else None)
                for case in ("nothing_new_ms", "one_new_ms")}
    finally:
        await client.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync",
        description="/sync delivery latency, memory per connected user, incremental sync cost")
    parser.add_argument("--engine", choices=ENGINES, required=True)
    parser.add_argument("--server", choices=("ours", "synapse"), default="ours")
    parser.add_argument("--receivers", default="50,200,500",
                        help="comma-separated receiver counts, one stage each")
    parser.add_argument("--transport", default="sync",
                        help="sync, websocket, or both comma-separated (same server)")
    parser.add_argument("--messages", type=int, default=30, help="measured messages per stage")
    parser.add_argument("--interval-ms", type=float, default=200,
                        help="least time between two sends")
    parser.add_argument("--delivery-timeout", type=float, default=15,
                        help="how long a message may take to reach everybody (s)")
    parser.add_argument("--rooms-small", type=int, default=10)
    parser.add_argument("--rooms-large", type=int, default=1000)
    parser.add_argument("--syncs", type=int, default=50, help="timed syncs per case")
    parser.add_argument("--phases", default="delivery,rooms",
                        help="which of delivery, rooms to run")
    parser.add_argument("--time-limit", type=float, default=1800,
                        help="cancel everything after this long (s); partial results kept")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN)
    parser.add_argument("--synapse-python", default=None,
                        help="Synapse's interpreter (default /tmp/synapse-venv/bin/python)")
    parser.add_argument("--keep", action="store_true", help="keep the server's directory")
    ns = parser.parse_args(argv)
    try:
        ns.receivers = sorted({int(x) for x in ns.receivers.split(",") if x.strip()})
    except ValueError:
        parser.error("--receivers is a comma-separated list of numbers")
    ns.transport = [t.strip() for t in ns.transport.split(",") if t.strip()]
    ns.phases = [p.strip() for p in ns.phases.split(",") if p.strip()]
    if not ns.receivers or not all(1 <= n <= LIMITS["receivers"] for n in ns.receivers):
        parser.error(f"--receivers: each between 1 and {LIMITS['receivers']}")
    if not ns.transport or any(t not in TRANSPORTS for t in ns.transport):
        parser.error(f"--transport: any of {', '.join(TRANSPORTS)}")
    if not ns.phases or any(p not in PHASES for p in ns.phases):
        parser.error(f"--phases: any of {', '.join(PHASES)}")
    if ns.server == "synapse" and ns.engine != "postgres":
        parser.error("Synapse runs on postgres here")
    for key, value in (("messages", ns.messages), ("rooms", ns.rooms_small),
                       ("rooms", ns.rooms_large), ("syncs", ns.syncs)):
        if not 1 <= value <= LIMITS[key]:
            parser.error(f"--{key}-like values must be between 1 and {LIMITS[key]}")
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    revision = source_revision()
    server: ProcessServer
    if ns.server == "synapse":
        from bench.synapse_server import DEFAULT_SYNAPSE_PYTHON, SynapseServer
        server = SynapseServer(pg_dsn=ns.pg_dsn, keep=ns.keep,
                               python=ns.synapse_python or DEFAULT_SYNAPSE_PYTHON)
        name = "synapse/postgres"
    else:
        server = LocalServer(ns.engine, pg_dsn=ns.pg_dsn, keep=ns.keep)
        name = f"homeserver/{ns.engine}"
    results: dict[str, Any] = {
        "benchmark": "sync",
        "schema": SCHEMA_VERSION,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "target": {"name": name, "engine": ns.engine,
                   "revision": revision if ns.server == "ours" else None,
                   "bench_revision": revision},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "loadavg_1m_before": os.getloadavg()[0]},
        "params": {"receivers": ns.receivers, "transport": ns.transport,
                   "messages": ns.messages, "interval_ms": ns.interval_ms,
                   "rooms_small": ns.rooms_small, "rooms_large": ns.rooms_large,
                   "syncs": ns.syncs, "phases": ns.phases, "filter": SYNC_FILTER},
        "complete": False,
    }
    print(f"{name} ({revision}): receivers {ns.receivers} over {', '.join(ns.transport)}; "
          f"rooms {ns.rooms_small} vs {ns.rooms_large}", flush=True)
    status = 1
    interrupt_on_signals()
    try:
        target = server.start()
        version = getattr(server, "version", None)
        results["server"] = {"pid": target.pid, "idle_rss_kib": server_idle(server),
                             "startup_s": round(getattr(server, "startup_s", 0) or 0, 2),
                             "version": version,
                             "postgres": getattr(server, "database_settings", None) or None}
        run(lambda: with_time_limit(ns.time_limit,
                                    lambda: run_benchmark(target, ns, results)))
        if target.pid:
            results["server"]["peak_rss_kib"] = peak_rss_kib(target.pid)
        results["complete"] = True
        status = 0 if all_delivered(results) else 1
    except TimeLimitExceeded:
        results["error"] = f"stopped at the time limit ({ns.time_limit:.0f}s)"
        print(f"bench.sync: {results['error']}", file=sys.stderr)
    except KeyboardInterrupt:
        results["error"] = "interrupted"
        print("bench.sync: interrupted", file=sys.stderr)
    except Exception as e:
        results["error"] = repr(e)
        print(f"bench.sync: failed: {e!r}", file=sys.stderr)
        if server.proc is not None:
            print(server_log_tail(server), file=sys.stderr)
    finally:
        finish_run(server, results, ns.json, ns.keep)
    return status


def server_idle(server: ProcessServer) -> int | None:
    value: int | None = getattr(server, "idle_rss_kib", None)
    return value


def server_log_tail(server: ProcessServer) -> str:
    tail: Callable[[], str] | None = getattr(server, "log_tail", None)
    return tail() if tail else ""


def all_delivered(results: dict[str, Any]) -> bool:
    for stages in (results.get("delivery") or {}).values():
        if isinstance(stages, dict):
            for stage in stages.values():
                if stage["undelivered"] or stage["send_errors"]:
                    return False
    return True


if __name__ == "__main__":
    sys.exit(main())

