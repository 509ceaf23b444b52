"""Scenario ``federation``: what a TARGET server does with another server's traffic.

    python -m bench.federation [--servers ours,synapse] [--size full|small|tiny]
        [--engine postgres|sqlite] [--json PATH] ...   (bench.compare's options)

The TARGET (ours or Synapse, a subprocess started by ``bench.compare`` with a
TLS federation listener: ``server_options``) is loaded by an ORIGIN that is
always our server, run **in this process** (``tests/federation/harness.py``'s
``start_federated_server``, on SQLite, in a temporary directory). Both are
named ``localhost:P``, present certificates for ``localhost`` from one
throwaway CA (``tests/federation/ca.py``) and trust it; every request between
them is real TLS with X-Matrix signatures checked against keys each fetched
from the other. The origin shares the 2 cores with the target and does the
same work for either target, so it dilutes a ratio rather than tilting it.

1. **Remote joins** (first, so that the RSS after them owes nothing to the
   message phase). The origin hosts ``joins`` rooms (``public_chat``) of
   ``members`` local members each (accounts made with the origin's own code,
   joined through its membership handler, batched by its room writer: setup,
   not timed). A different TARGET user then joins each room, one after
   another, with ``POST /_matrix/client/v3/join/{roomId}?server_name=<origin>``:
   a real remote join every time (make_join, send_join with the whole state
   and auth chain of a room of ``members`` members, their verification and
   persistence on the target), never a local join into a room the target is
   already in. Figures: the median join latency, and the TARGET's RSS after
   the last join. Synapse asks for a partial-state ("faster") join
   (``omit_members=true``); our origin always answers with the full state, so
   both targets do the same full join.
2. **Inbound /send throughput**, twice, each time into a fresh room of the
   origin that a TARGET user joins. The origin builds ``messages`` plain
   ``m.room.message`` PDUs from its room creator, chained one after another
   (each one's ``prev_events`` the previous one, depth + 1; auth events
   create, power levels and the sender's membership), hashed, signed and
   stored on the origin as its own events (so it can answer the target's
   ``/get_missing_events`` as a real server would; its federation sender is
   stopped, so they reach the target only through the bench's
   transactions), all before the clock starts. They go to the TARGET as
   ``PUT /_matrix/federation/v1/send/{txnId}`` transactions of ``txn_pdus``
   PDUs, **one in flight** (a sending server sends one transaction at a time
   to a destination). Our server answers a transaction once its PDUs are
   persisted; Synapse answers once they are in its inbound staging table and
   persists them afterwards, one at a time. So "done" is when a PDU is
   **visible** through the TARGET's client API (``GET
   /rooms/{roomId}/event/{eventId}`` by the joined user, polled every 5 % of
   the time waited so far, 5-100 ms: a poll costs a slow target CPU too).

   - *paced*: the next transaction goes once the previous one's last PDU is
     visible. PDUs/s = messages over the whole time; per transaction, the
     time from sending it to its last PDU visible, p50/p99. This is the
     target's own throughput, whoever answers first.
   - *burst*: the next transaction goes as soon as the previous one is
     answered, as a sending server does. PDUs/s until the last PDU is
     visible, and how many of the messages the target's timeline then lacks
     (``/messages`` paged back by the joined user). Synapse keeps at most
     100 staged PDUs per room and prunes the rest, then asks for the last
     event's missing prev_events (10 at most) and otherwise accepts the gap:
     its "last visible" comes early and its timeline has holes. Ours keeps
     every one (the smoke test checks it).

   ``complete`` needs every paced message exactly once and no PDU error.
"""

from __future__ import annotations

import atexit
import functools
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from twisted.internet import defer
from twisted.internet.task import deferLater

from bench.client import CLIENT_V3, MatrixClient, MatrixRequestError, Session, reactor
from bench.fanout import latency_summary
from bench.send import is_cancellation, percentile
from bench.server import FederationTLS, Target, rss_kib
from bench.sync import register_users

NAME = "federation"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"messages": 2000, "txn_pdus": 50, "members": 1000, "joins": 3},
    "small": {"messages": 500, "txn_pdus": 50, "members": 200, "joins": 3},
    # 10 PDUs a transaction: five transactions, so the per-transaction figures exist
    "tiny": {"messages": 50, "txn_pdus": 10, "members": 20, "joins": 2},
}
REQUEST_TIMEOUT_S = 120.0
VISIBLE_TIMEOUT_S = 300.0  # the last PDU must show up on the target within this
# Polling for visibility costs the target a request each time (a millisecond or two
# of Synapse's CPU): after a first look, wait 5 % of the time waited so far, between
# these bounds, so the polls cost a slow target little and overstate by ~5 % at most.
POLL_MIN_S = 0.005
POLL_MAX_S = 0.1
MEMBER_BATCH = 50  # local joins on the origin handed to its room writer at once
SEND_PATH = "/_matrix/federation/v1/send/"


# --- the CA and certificate every server of this process federates with ---------------

@functools.cache
def _ca() -> Any:
    """A throwaway CA (removed at exit) and one certificate for ``localhost`` from it."""
    from tests.federation.ca import make_test_ca

    directory = tempfile.mkdtemp(prefix="bench-federation-ca-")
    atexit.register(shutil.rmtree, directory, True)
    return make_test_ca(directory)


@functools.cache
def federation_tls() -> FederationTLS:
    ca = _ca()
    cert, key = ca.issue("bench-target")
    return FederationTLS(cert, key, ca.ca_cert_path)


def server_options(kind: str) -> dict[str, Any]:
    """How ``bench.compare`` must start the TARGET: with a TLS federation listener."""
    return {"federation": federation_tls()}


# --- the origin ------------------------------------------------------------------------

# Origins running now. An interrupted run (^C, SIGTERM) leaves the reactor without
# disposing of them, and their database thread pool would keep the process from
# exiting: ``close_leftovers`` (called by bench.compare at the end) stops it.
_LIVE_ORIGINS: list[tuple[Any, str]] = []  # (origin, its directory)


def close_leftovers() -> None:
    """Stop the database threads of any origin a stopped reactor left behind."""
    while _LIVE_ORIGINS:
        origin, directory = _LIVE_ORIGINS.pop()
        origin.hs.db.close()
        shutil.rmtree(directory, ignore_errors=True)


async def start_origin(directory: str) -> Any:
    """Our server in this process, federating with the run's CA (a tests harness server)."""
    from tests.federation.harness import start_federated_server

    unlimited = {"per_second": 1_000_000.0, "burst_count": 1_000_000.0}
    return await start_federated_server(
        "sqlite", directory, _ca(), rc_message=unlimited,
        federation={"client_timeout": f"{int(REQUEST_TIMEOUT_S)}s"})


async def origin_user(origin: Any, localpart: str, *, login: bool = False) -> Session | None:
    """An account on the origin, made by its own code; a session with ``login``."""
    user_id = await origin.hs.sessions.create_user(localpart, None)
    if not login:
        return None
    session = await origin.hs.sessions.create_login_session(user_id)
    return Session(user_id, session.access_token, session.device_id)


async def origin_room(origin: Any, origin_client: MatrixClient, creator: Session,
                      members: list[str]) -> str:
    """A public room on the origin, created by ``creator``, ``members`` joined to it."""
    room_id = await origin_client.create_room(creator, preset="public_chat")
    membership = origin.hs.membership
    for start in range(0, len(members), MEMBER_BATCH):
        batch = members[start:start + MEMBER_BATCH]
        await defer.gatherResults([
            defer.ensureDeferred(membership.update_membership(user, room_id, user, "join"))
            for user in batch], consumeErrors=True)
    return room_id


async def chained_messages(origin: Any, room_id: str, sender: str, n: int,
                           run_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``n`` signed message PDUs after the room's forward extremities, each on the last.

    Built as ``tests/federation/test_inbound.py``'s ``forge_message`` does,
    but chained, and persisted on the origin as its own events: a target that
    misses some asks the origin for them (Synapse drops staged PDUs past 100
    per room, then fetches them back with /get_missing_events), as it would
    ask a real server. The origin's federation sender is stopped first, so
    these reach the target only through the bench's own transactions.
    """
    from homeserver.events.builder import build_event
    from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

    hs = origin.hs
    await hs.federation_sender.stop()
    room = await hs.stores.rooms.get_room(room_id)
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    extremities = await hs.stores.rooms.get_forward_extremities(room.room_nid)
    state = await hs.stores.rooms.get_current_state_ids(room.room_nid)
    auth = [state[("m.room.power_levels", "")], state[("m.room.member", sender)]]
    if not rv.room_id_from_create_event:
        auth.append(state[("m.room.create", "")])
    prev = [x.event_id for x in extremities]
    depth = max(x.depth for x in extremities)
    pdus: list[dict[str, Any]] = []
    event_ids: list[str] = []
    now = hs.now_ms()
    for k in range(n):
        body = f"fed {run_id} {k}"
        depth += 1
        pdu, event = build_event(
            room_version=rv, room_id=room_id, sender=sender, event_type="m.room.message",
            content={"msgtype": "m.text", "body": body}, prev_event_ids=prev,
            auth_event_ids=auth, depth=depth, origin=hs.hostname, origin_server_ts=now + k,
            signing_key=hs.signing_key)
        await hs.stores.events.persist_event(event, room_nid=room.room_nid,
                                             now_ms=hs.now_ms())
        pdus.append(pdu)
        event_ids.append(event.event_id)
        prev = [event.event_id]
    return pdus, event_ids


# --- the target, through its client API ------------------------------------------------

async def remote_join(client: MatrixClient, user: Session, room_id: str, via: str) -> None:
    await client.request("POST", f"{CLIENT_V3}/join/{quote(room_id, safe='')}"
                         f"?server_name={quote(via, safe='')}", {}, user.access_token)


async def wait_visible(client: MatrixClient, user: Session, room_id: str, event_id: str,
                       timeout_s: float) -> None:
    """Poll until ``event_id`` is readable in the room on the target (404 until then);
    polls back off (``POLL_MIN_S``..``POLL_MAX_S``) so they stay a small load."""
    path = (f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/event/"
            f"{quote(event_id, safe='')}")
    started = time.perf_counter()
    while True:
        try:
            await client.request("GET", path, token=user.access_token)
            return
        except MatrixRequestError as e:
            waited = time.perf_counter() - started
            if e.status != 404 or waited > timeout_s:
                raise
        await deferLater(reactor, min(POLL_MAX_S, max(POLL_MIN_S, waited / 20)), lambda: None)


async def timeline_bodies(client: MatrixClient, user: Session, room_id: str) -> list[str]:
    """Every message body in the room as the user pages back through it."""
    bodies: list[str] = []
    token: str | None = None
    while True:
        query = "?dir=b&limit=500" + (f"&from={quote(token, safe='')}" if token else "")
        page = await client.request("GET", f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}"
                                    f"/messages{query}", token=user.access_token)
        for event in page.get("chunk") or []:
            if event.get("type") == "m.room.message":
                bodies.append(str((event.get("content") or {}).get("body")))
        token = page.get("end")
        if not page.get("chunk") or not token:
            return bodies


# --- the two phases --------------------------------------------------------------------

async def join_phase(origin: Any, origin_client: MatrixClient, creator: Session,
                     client: MatrixClient, target: Target, joiners: list[Session],
                     params: dict[str, Any], run_id: str) -> dict[str, Any]:
    members_n: int = params["members"]
    started = time.perf_counter()
    members = [creator.user_id]
    for i in range(members_n - 1):
        await origin_user(origin, f"fedm{run_id}{i}")
        members.append(f"@fedm{run_id}{i}:{origin.hs.hostname}")
    rooms = [await origin_room(origin, origin_client, creator, members[1:])
             for _ in joiners]
    setup_s = time.perf_counter() - started
    print(f"  origin: {len(rooms)} rooms of {members_n} members in {setup_s:.1f}s", flush=True)

    rss_before = rss_kib(target.pid) if target.pid else None
    latencies: list[float] = []
    rss_after: list[int | None] = []
    errors: list[str] = []
    for user, room_id in zip(joiners, rooms, strict=True):
        t0 = time.perf_counter()
        try:
            await remote_join(client, user, room_id, origin.hs.hostname)
        except Exception as e:
            if is_cancellation(e):
                raise
            errors.append(repr(e))
            continue
        latencies.append(time.perf_counter() - t0)
        rss_after.append(rss_kib(target.pid) if target.pid else None)
        print(f"  remote join into {members_n} members: {latencies[-1] * 1000:.0f} ms, "
              f"target RSS {(rss_after[-1] or 0) / 1024:.0f} MiB", flush=True)
    # the target's own view of each room it joined: every origin member and the joiner
    member_counts: list[int | None] = []
    for user, room_id in zip(joiners, rooms, strict=True):
        try:
            joined = await client.request(
                "GET", f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/joined_members",
                token=user.access_token)
            member_counts.append(len(joined.get("joined") or {}))
        except MatrixRequestError as e:
            errors.append(repr(e))
            member_counts.append(None)
    return {
        "setup_s": round(setup_s, 2),
        "members": members_n,
        "join_ms": [round(t * 1000, 1) for t in latencies],
        "join_p50_ms": (round(percentile(sorted(latencies), 50) * 1000, 1)
                        if latencies else None),
        "target_rss_before_kib": rss_before,
        "target_rss_after_kib": rss_after,
        "joined_members_seen": member_counts,
        "errors": errors,
        "ok": not errors and len(latencies) == len(joiners)
        and all(c == members_n + 1 for c in member_counts),
    }


async def send_phase(origin: Any, origin_client: MatrixClient, creator: Session,
                     client: MatrixClient, target: Target, joiner: Session,
                     params: dict[str, Any], run_id: str, *, paced: bool) -> dict[str, Any]:
    """One chain of ``messages`` PDUs pushed in transactions into a fresh room.

    ``paced``: the next transaction goes once the previous one's last PDU is
    visible on the target (its throughput, whoever answers first); else as
    soon as the previous one is answered, as a sending server does (a burst).
    """
    n: int = params["messages"]
    per_txn: int = params["txn_pdus"]
    tag = f"{run_id}{'p' if paced else 'b'}"
    room_id = await origin_room(origin, origin_client, creator, [])
    await remote_join(client, joiner, room_id, origin.hs.hostname)
    started = time.perf_counter()
    pdus, event_ids = await chained_messages(origin, room_id, creator.user_id, n, tag)
    build_s = time.perf_counter() - started
    print(f"  built, signed and stored (on the origin) {n} PDUs in {build_s:.1f}s", flush=True)

    fed = origin.hs.federation_client
    destination = target.server_name
    txn_latencies: list[float] = []
    pdu_errors: Counter[str] = Counter()
    first_errors: list[str] = []
    cpu_before = _cpu(target)
    phase_started = time.perf_counter()
    for k, start in enumerate(range(0, n, per_txn)):
        body = {"origin": origin.hs.hostname, "origin_server_ts": origin.hs.now_ms(),
                "pdus": pdus[start:start + per_txn]}
        t0 = time.perf_counter()
        answer = await fed.put_json(destination, f"{SEND_PATH}bench{tag}t{k}", body,
                                    timeout_ms=int(REQUEST_TIMEOUT_S * 1000))
        if paced:
            last_of_txn = event_ids[min(start + per_txn, n) - 1]
            await wait_visible(client, joiner, room_id, last_of_txn, VISIBLE_TIMEOUT_S)
        txn_latencies.append(time.perf_counter() - t0)
        for result in (answer.get("pdus") or {}).values():
            if result.get("error"):
                pdu_errors[str(result["error"])[:80]] += 1
                if len(first_errors) < 5:
                    first_errors.append(str(result["error"]))
    answered_s = time.perf_counter() - phase_started
    await wait_visible(client, joiner, room_id, event_ids[-1], VISIBLE_TIMEOUT_S)
    visible_s = time.perf_counter() - phase_started
    cpu_after = _cpu(target)
    print(f"  {'paced' if paced else 'burst'}: {n} PDUs answered in {answered_s:.2f}s, "
          f"last visible after {visible_s:.2f}s ({n / visible_s:.0f} PDUs/s)", flush=True)

    bodies = await timeline_bodies(client, joiner, room_id)
    expected = {f"fed {tag} {k}" for k in range(n)}
    seen = Counter(b for b in bodies if b in expected)
    missing = len(expected - set(seen))
    duplicates = sum(c - 1 for c in seen.values())
    if missing or duplicates:
        print(f"  {'paced' if paced else 'burst'}: the target's timeline misses {missing} "
              f"and repeats {duplicates} of the {n} messages", flush=True)
    return {
        "paced": paced,
        "messages": n,
        "txn_pdus": per_txn,
        "transactions": len(txn_latencies),
        "build_s": round(build_s, 2),
        "answered_s": round(answered_s, 3),
        "visible_s": round(visible_s, 3),
        "pdus_per_s": round(n / visible_s, 1),
        "pdus_per_s_answered": round(n / answered_s, 1),
        # paced: answered and its last PDU visible; burst: answered
        "txn_ms": latency_summary(txn_latencies),
        "target_cpu_ms_per_pdu": (round((cpu_after - cpu_before) * 1000 / n, 3)
                                  if cpu_before is not None and cpu_after is not None
                                  else None),
        "pdu_errors": dict(pdu_errors),
        "first_errors": first_errors,
        "found": len(seen),
        "missing": missing,
        "duplicates": duplicates,
        "ok": not pdu_errors and duplicates == 0 and (missing == 0 or not paced),
    }


def _cpu(target: Target) -> float | None:
    from bench.server import cpu_seconds

    return cpu_seconds(target.pid) if target.pid else None


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """Remote joins, then inbound /send throughput, against ``target``; see the module doc."""
    run_id = secrets.token_hex(3)
    result: dict[str, Any] = {"scenario": NAME, "params": params, "figures": {},
                              "complete": False}
    if not target.server_name:
        result["error"] = ("the target does not federate: start it with "
                           "bench.federation.server_options (bench.compare does)")
        return result
    directory = tempfile.mkdtemp(prefix="bench-federation-origin-")
    origin: Any = None
    origin_client: MatrixClient | None = None
    client = MatrixClient(target.base_url, connections=8, timeout_s=REQUEST_TIMEOUT_S)
    try:
        origin = await start_origin(directory)
        _LIVE_ORIGINS.append((origin, directory))
        origin_client = MatrixClient(origin.base_url, connections=8,
                                     timeout_s=REQUEST_TIMEOUT_S)
        result["origin"] = {"server_name": origin.hs.hostname, "engine": "sqlite",
                            "in_process": True}
        creator = await origin_user(origin, f"fedc{run_id}", login=True)
        assert creator is not None
        names = [f"fedj{run_id}{i}" for i in range(params["joins"] + 2)]
        joiners = await register_users(client, target, names, secrets.token_urlsafe(12))

        joins_n = params["joins"]
        result["join"] = await join_phase(origin, origin_client, creator, client, target,
                                          joiners[:joins_n], params, run_id)
        result["send"] = await send_phase(origin, origin_client, creator, client, target,
                                          joiners[joins_n], params, run_id, paced=True)
        result["burst"] = await send_phase(origin, origin_client, creator, client, target,
                                           joiners[joins_n + 1], params, run_id, paced=False)

        join, send, burst = result["join"], result["send"], result["burst"]
        members = params["members"]
        rss_after = [r for r in join["target_rss_after_kib"] if r is not None]
        chain = (f"{send['messages']} chained PDUs in transactions of {send['txn_pdus']}, "
                 "1 in flight")
        result["figures"] = {
            "fed_send_pdus_per_s": {
                "value": send["pdus_per_s"], "unit": "PDU/s", "better": "higher",
                "label": f"inbound /send, {chain}, the next once the last is visible: PDUs/s"},
            "fed_send_txn_p50_ms": {
                "value": send["txn_ms"]["p50"], "unit": "ms", "better": "lower",
                "label": "inbound /send, paced: transaction answered and visible, p50"},
            "fed_send_txn_p99_ms": {
                "value": send["txn_ms"]["p99"], "unit": "ms", "better": "lower",
                "label": "inbound /send, paced: transaction answered and visible, p99"},
            "fed_burst_pdus_per_s": {
                "value": burst["pdus_per_s"], "unit": "PDU/s", "better": "higher",
                "label": f"inbound /send, {chain}, the next once answered: PDUs/s until "
                         "the last is visible"},
            "fed_burst_missing": {
                "value": burst["missing"], "unit": "PDUs", "better": "lower",
                "label": "inbound /send, the next once answered: messages missing from the "
                         "target's timeline"},
            "fed_join_p50_ms": {
                "value": join["join_p50_ms"], "unit": "ms", "better": "lower",
                "label": f"remote join into a room of {members} members, median of "
                         f"{params['joins']}"},
            "fed_join_rss_mib": {
                "value": round(rss_after[-1] / 1024, 1) if rss_after else None,
                "unit": "MiB", "better": "lower",
                "label": f"target RSS after {params['joins']} remote joins"},
        }
        result["complete"] = bool(join["ok"] and send["ok"] and burst["ok"])
        if not result["complete"]:
            result["error"] = "; ".join(
                [*join["errors"][:3], *send["first_errors"][:3], *burst["first_errors"][:3]]
                + ([f"missing {send['missing']} duplicates {send['duplicates']}"]
                   if send["missing"] or send["duplicates"] else [])
                + ([f"joined members seen {join['joined_members_seen']}"]
                   if not join["errors"] and not join["ok"] else [])) or "checks failed"
    except Exception as e:
        if is_cancellation(e):
            raise
        result["error"] = repr(e)
    finally:
        await client.close()
        if origin_client is not None:
            await origin_client.close()
        if origin is not None:
            from tests.federation.harness import dispose

            await dispose(origin)
            _LIVE_ORIGINS.remove((origin, directory))
        shutil.rmtree(directory, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """``bench.compare`` with ``--scenarios federation`` (the target needs its TLS listener)."""
    from bench.compare import main as compare_main

    args = list(sys.argv[1:] if argv is None else argv)
    return compare_main(["--scenarios", NAME, *args])


if __name__ == "__main__":
    sys.exit(main())
