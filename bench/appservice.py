"""Scenario ``appservice``: events pushed to an application service.

    python -m bench.appservice --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

One application service is registered with the server (the same
registration file for ours and for Synapse: ``server_options``), its URL a
receiver in this process (Twisted web, loopback) that answers every
``PUT /_matrix/app/v1/transactions/{txnId}`` at once and notes when each
event arrived. Setup (not timed): ``senders`` users, ``rooms`` public rooms,
and one ghost of the service's namespace, registered with
``m.login.application_service`` and joined to every room with the as_token,
so every event of those rooms interests the service.

Then ``messages`` messages are sent, spread round-robin over the rooms (each
room's from its creator), ``in_flight`` at once (send-scenario style).
Figures: events delivered per second (messages over the time from the first send to the last
delivery) and the lag of each message from the moment its send was issued to
the moment its transaction reached the service, p50 and p99; and the push
alone, from the moment the send was answered (the event persisted) to its
arrival, p50 and p99. With ``in_flight`` sends always outstanding, the first
lag holds the send's own latency, which is ``in_flight`` over the send rate. ``complete``:
every message arrived exactly once (a repeated transaction ID is ignored, as
a service does).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from typing import Any
from urllib.parse import quote

import yaml
from twisted.internet import defer, reactor, task
from twisted.web.resource import Resource
from twisted.web.server import Site

from bench.client import CLIENT_V3, MatrixClient, Session
from bench.fanout import latency_summary, scenario_main
from bench.send import gather_bounded, is_cancellation
from bench.server import Target, free_port
from bench.sync import SETUP_CONCURRENCY, register_users

NAME = "appservice"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"rooms": 100, "senders": 10, "messages": 2000, "in_flight": 20,
             "paced_messages": 400, "paced_rate": 20},
    "small": {"rooms": 20, "senders": 5, "messages": 400, "in_flight": 10,
              "paced_messages": 100, "paced_rate": 20},
    "tiny": {"rooms": 3, "senders": 2, "messages": 30, "in_flight": 4,
             "paced_messages": 20, "paced_rate": 10},
}
REQUEST_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 120.0
AS_TOKEN = "bench-as-" + secrets.token_hex(8)
HS_TOKEN = "bench-hs-" + secrets.token_hex(8)
GHOST_PREFIX = "asbench_"

# the receiver's port, chosen when the server's options are made (the
# registration file names it before the server starts)
_PORT: list[int] = []


def server_options(kind: str) -> dict[str, Any]:
    """The registration file, for ours and Synapse alike (Synapse's format)."""
    port = free_port()
    _PORT[:] = [port]
    directory = tempfile.mkdtemp(prefix="bench-appservice-")
    path = os.path.join(directory, "registration.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({
            "id": "bench", "url": f"http://127.0.0.1:{port}", "as_token": AS_TOKEN,
            "hs_token": HS_TOKEN, "sender_localpart": "asbenchbot", "rate_limited": False,
            "namespaces": {"users": [{"exclusive": True, "regex": f"@{GHOST_PREFIX}.*"}],
                           "aliases": [], "rooms": []},
        }, f)
    return {"extra_config": {"app_service_config_files": [path]}}


class Receiver(Resource):
    """The service: notes each event's arrival, answers {} at once."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}
        self.repeats = 0
        self.transactions = 0
        self._txn_ids: set[str] = set()

    def render_PUT(self, request: Any) -> bytes:  # noqa: N802 - Twisted's name
        now = time.perf_counter()
        request.setHeader(b"Content-Type", b"application/json")
        if request.getHeader(b"Authorization") != f"Bearer {HS_TOKEN}".encode():
            request.setResponseCode(403)
            return b'{"errcode": "M_FORBIDDEN"}'
        txn_id = request.path.decode().rsplit("/", 1)[-1]
        if txn_id in self._txn_ids:
            return b"{}"
        self._txn_ids.add(txn_id)
        self.transactions += 1
        for event in json.loads(request.content.read()).get("events", []):
            event_id = event.get("event_id")
            if event_id in self.arrivals:
                self.repeats += 1
            else:
                self.arrivals[event_id] = now
        return b"{}"

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - queries: nobody else exists
        request.setResponseCode(404)
        return b'{"errcode": "M_NOT_FOUND"}'


async def _wait_for(check: Any, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if check():
            return True
        await task.deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]
    return check()


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """Set up the rooms and the ghost, send, and time each event's way to the service."""
    run_id = secrets.token_hex(3)
    result: dict[str, Any] = {"scenario": NAME, "params": params, "figures": {},
                              "complete": False, "setup": {}}
    if not _PORT:
        raise RuntimeError("server_options was not called: the registration names no port")
    receiver = Receiver()
    port = reactor.listenTCP(_PORT[0], Site(receiver),  # type: ignore[attr-defined]
                             interface="127.0.0.1")
    client = MatrixClient(target.base_url, connections=SETUP_CONCURRENCY * 2,
                          timeout_s=REQUEST_TIMEOUT_S)
    try:
        started = time.perf_counter()
        senders = await register_users(
            client, target, [f"asb{run_id}s{i}" for i in range(params["senders"])],
            secrets.token_urlsafe(12))
        made = await client.request("POST", f"{CLIENT_V3}/register", {
            "type": "m.login.application_service", "username": f"{GHOST_PREFIX}{run_id}",
            "inhibit_login": True}, AS_TOKEN)
        ghost = made["user_id"]
        rooms = await gather_bounded([
            (lambda s=senders[i % len(senders)]: client.create_room(s, preset="public_chat"))
            for i in range(params["rooms"])], limit=SETUP_CONCURRENCY)

        async def ghost_joins(room_id: str) -> None:
            await client.request("POST", f"{CLIENT_V3}/join/{quote(room_id, safe='')}"
                                 f"?user_id={quote(ghost, safe='')}", {}, AS_TOKEN)

        await gather_bounded([(lambda r=r: ghost_joins(r)) for r in rooms],
                             limit=SETUP_CONCURRENCY)
        # the setup's own events (the ghost's joins) reach the service first
        await _wait_for(lambda: receiver.transactions > 0, 30)
        await task.deferLater(reactor, 1.0, lambda: None)  # type: ignore[arg-type]
        result["setup"] = {"s": round(time.perf_counter() - started, 2), "rooms": len(rooms),
                           "senders": len(senders)}
        print(f"  {len(senders)} senders, {len(rooms)} rooms with the ghost, "
              f"in {result['setup']['s']}s", flush=True)

        messages: int = params["messages"]
        issued: dict[str, float] = {}
        answered: dict[str, float] = {}
        event_ids: list[str] = []

        async def send_one(i: int, prefix: str = "", ids: list[str] = event_ids) -> None:
            # each room's messages come from its creator (a member)
            session: Session = senders[(i % len(rooms)) % len(senders)]
            room_id = rooms[i % len(rooms)]
            t0 = time.perf_counter()
            event_id = await client.send_message(session, room_id, f"asb{run_id}{prefix}-{i}",
                                                 {"msgtype": "m.text", "body": f"message {i}"})
            issued[event_id] = t0
            answered[event_id] = time.perf_counter()
            ids.append(event_id)

        phase_start = time.perf_counter()
        await gather_bounded([(lambda i=i: send_one(i)) for i in range(messages)],
                             limit=params["in_flight"])
        sent_s = time.perf_counter() - phase_start
        await _wait_for(lambda: all(e in receiver.arrivals for e in event_ids), DRAIN_TIMEOUT_S)
        arrived = [e for e in event_ids if e in receiver.arrivals]
        last = max((receiver.arrivals[e] for e in arrived), default=phase_start)
        wall_s = last - phase_start
        lags = [receiver.arrivals[e] - issued[e] for e in arrived]
        summary = latency_summary(lags)
        # the part of the lag after the send was answered (the push itself)
        after_answer = latency_summary([max(0.0, receiver.arrivals[e] - answered[e])
                                        for e in arrived])
        send_ms = latency_summary([answered[e] - issued[e] for e in event_ids])
        rate = round(len(arrived) / wall_s, 1) if wall_s > 0 else None
        result.update({"sent": len(event_ids), "delivered": len(arrived),
                       "repeats": receiver.repeats, "transactions": receiver.transactions,
                       "send_s": round(sent_s, 2), "wall_s": round(wall_s, 2),
                       "lag_ms": summary, "after_answer_ms": after_answer,
                       "send_ms": send_ms})
        label = f"{messages} messages over {len(rooms)} rooms to one service"
        result["figures"] = {
            "delivered_per_s": {"value": rate, "unit": "events/s", "better": "higher",
                                "label": f"{label}: delivered per second"},
            "lag_p50_ms": {"value": summary["p50"], "unit": "ms", "better": "lower",
                           "label": f"{label}: send to receipt, p50"},
            "lag_p99_ms": {"value": summary["p99"], "unit": "ms", "better": "lower",
                           "label": f"{label}: send to receipt, p99"},
            # the push alone: from the send's answer (the event is persisted)
            # to the service
            "push_p50_ms": {"value": after_answer["p50"], "unit": "ms", "better": "lower",
                            "label": f"{label}: send answered to receipt, p50"},
            "push_p99_ms": {"value": after_answer["p99"], "unit": "ms", "better": "lower",
                            "label": f"{label}: send answered to receipt, p99"},
        }
        print(f"  delivered {len(arrived)}/{messages} in {wall_s:.2f}s ({rate}/s) in "
              f"{receiver.transactions} transactions; lag ms p50 {summary['p50']} "
              f"p99 {summary['p99']} (send answered p50 {send_ms['p50']} p99 {send_ms['p99']}, "
              f"after the answer p50 {after_answer['p50']} p99 {after_answer['p99']}); "
              f"repeats {receiver.repeats}", flush=True)
        complete = len(arrived) == messages
        # open loop: one message every 1/rate s whatever the answers, so the
        # lag is the push's at a rate both servers sustain, not a queue's
        paced: int = params.get("paced_messages", 0)
        rate_paced: float = params.get("paced_rate", 0)
        if paced and rate_paced:
            paced_ids: list[str] = []
            start = time.perf_counter()
            calls = []
            for i in range(paced):
                delay = start + i / rate_paced - time.perf_counter()
                if delay > 0:
                    await task.deferLater(reactor, delay, lambda: None)  # type: ignore[arg-type]
                calls.append(defer.ensureDeferred(send_one(i, "p", paced_ids)))
            await defer.gatherResults(calls, consumeErrors=True)
            await _wait_for(lambda: all(e in receiver.arrivals for e in paced_ids),
                            DRAIN_TIMEOUT_S)
            got = [e for e in paced_ids if e in receiver.arrivals]
            paced_lag = latency_summary([receiver.arrivals[e] - issued[e] for e in got])
            paced_send = latency_summary([answered[e] - issued[e] for e in paced_ids])
            result.update({"paced_sent": len(paced_ids), "paced_delivered": len(got),
                           "paced_lag_ms": paced_lag, "paced_send_ms": paced_send})
            paced_label = (f"{paced} messages at {rate_paced:g}/s over {len(rooms)} rooms "
                           "to one service")
            result["figures"].update({
                "paced_lag_p50_ms": {"value": paced_lag["p50"], "unit": "ms",
                                     "better": "lower",
                                     "label": f"{paced_label}: send to receipt, p50"},
                "paced_lag_p99_ms": {"value": paced_lag["p99"], "unit": "ms",
                                     "better": "lower",
                                     "label": f"{paced_label}: send to receipt, p99"},
            })
            complete = complete and len(got) == paced
            print(f"  paced: delivered {len(got)}/{paced} at {rate_paced:g}/s; lag ms p50 "
                  f"{paced_lag['p50']} p99 {paced_lag['p99']} (send answered p50 "
                  f"{paced_send['p50']} p99 {paced_send['p99']})", flush=True)
        result["complete"] = complete and receiver.repeats == 0
    except Exception as e:
        if is_cancellation(e):
            raise
        result["error"] = repr(e)
    finally:
        await client.close()
        await defer.maybeDeferred(port.stopListening)
    return result


def main(argv: list[str] | None = None) -> int:
    return scenario_main(NAME, SIZES, run_scenario, argv, server_options)


if __name__ == "__main__":
    sys.exit(main())
