"""Event writers: rooms' events written by a process of their own.

Four real processes on loopback (``deployment.py``): main, two sync readers
and one event writer (``stream_writers: {events: [writer1]}``), on the
machine's PostgreSQL and Redis. What a client sees:

- a message sent through any process (REST or WebSocket) is written by the
  room's writer and reaches clients long-polling or holding a WebSocket on
  every other process, in order, exactly once;
- a sync token from one process works on every other, the writer included;
- the writer killed (SIGKILL) in the middle of a batch of sends loses no
  send it answered: after it restarts every answered event is there, a
  retry with the same transaction ID returns the same event ID, and a
  client that long-polled throughout gets every message once;
- while the writer is down its rooms' sends fail (502) rather than being
  written by another process;
- a send answered by one process is in the /messages asked of another next;
- a user who only sends (through the writer) is online in main's presence;
- main, cut off from Redis, catches up with the writer's events from the
  database: its long-polling client gets each once, in order.

PostgreSQL only, as every multi-process test.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.replication.deployment import Deployment
from tests.replication.test_scale_out import (
    DEADLINE_S,
    V3,
    User,
    long_poll,
    messages_in,
    register,
    run_in_thread,
    websocket,
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = Deployment(tmp_path_factory.mktemp("writers"), readers=2, writers=1)
    try:
        dep.start()
        yield dep
    finally:
        dep.stop()


async def set_up_room(http: aiohttp.ClientSession, dep: Deployment,
                      name: str) -> tuple[User, User, str]:
    """alice registers through a reader and creates a room (with the alias
    #room_<name>) through main; bob joins it through the other reader (a
    membership write: the writer's)."""
    r1, r2 = dep.readers["sync1"].url, dep.readers["sync2"].url
    alice = await register(http, r1, f"alice_{name}")
    bob = await register(http, dep.main.url, f"bob_{name}")
    code, body = await alice.call(dep.main.url, "POST", f"{V3}/createRoom",
                                  {"preset": "public_chat", "room_alias_name": f"room_{name}"})
    assert code == 200, body
    room_id = str(body["room_id"])
    code, body = await bob.call(r2, "POST", f"{V3}/join/{urllib.parse.quote(room_id)}", {})
    assert code == 200, body
    return alice, bob, room_id


async def socket_send(user: User, base: str, room_id: str, text: str, request_id: str) -> str:
    """A message sent over a WebSocket held on ``base``."""
    query = urllib.parse.urlencode({"access_token": user.token})
    async with user.http.ws_connect(f"{base}/_matrix/client/unstable/stream?{query}",
                                    protocols=("m.json",)) as ws:
        await ws.send_json({"id": request_id, "method": "send", "params": {
            "room_id": room_id, "event_type": "m.room.message",
            "content": {"msgtype": "m.text", "body": text}}})
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame.get("id") == request_id:
                assert "result" in frame, frame
                return str(frame["result"]["event_id"])


def test_sends_through_any_process_reach_every_process_in_order_once(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2 = dep.readers["sync1"].url, dep.readers["sync2"].url
        main, writer = dep.main.url, dep.writers["writer1"].url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep, "order")
            since = (await bob.sync(r1))["next_batch"]
            sent = [f"message {i}" for i in range(24)]
            seen: dict[str, list[str]] = {"poll r2": [], "poll main": [], "poll writer": [],
                                          "socket r1": []}
            waiting = [
                long_poll(bob, r2, since, room_id, len(sent), seen["poll r2"]),
                long_poll(bob, main, since, room_id, len(sent), seen["poll main"]),
                long_poll(bob, writer, since, room_id, len(sent), seen["poll writer"]),
                websocket(bob, r1, since, room_id, len(sent), seen["socket r1"]),
            ]
            tasks = [asyncio.ensure_future(w) for w in waiting]
            await asyncio.sleep(0.5)  # all are waiting
            for i, text in enumerate(sent):
                kind = i % 6
                if kind == 4:  # over a WebSocket on a reader
                    await socket_send(alice, r2, room_id, text, f"ws{i}")
                elif kind == 5:  # over a WebSocket on main
                    await socket_send(alice, main, room_id, text, f"ws{i}")
                else:
                    await alice.send([main, r1, r2, writer][kind], room_id, text)
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
            for where, got in seen.items():
                assert got == sent, where
            # nothing more comes (no duplicates)
            tail = await bob.sync(r2, tasks[0].result(), timeout_ms=1000)
            assert messages_in(tail, room_id) == []
            # a state event and a redaction through main, a leave through a
            # reader: all written by the room's writer, seen everywhere
            quoted = urllib.parse.quote(room_id)
            code, body = await alice.call(main, "PUT", f"{V3}/rooms/{quoted}/state/m.room.topic/",
                                          {"topic": "writers"})
            assert code == 200, body
            code, body = await bob.call(r1, "POST", f"{V3}/rooms/{quoted}/leave", {})
            assert code == 200, body
            # back by the alias, through main: main resolves it, the writer joins
            alias = urllib.parse.quote(f"#room_order:{dep.server_name}")
            code, body = await bob.call(main, "POST", f"{V3}/join/{alias}", {})
            assert (code, body) == (200, {"room_id": room_id})
            for base in (r1, r2, main, writer):
                code, state = await alice.call(base, "GET",
                                               f"{V3}/rooms/{quoted}/state/m.room.topic/")
                for _ in range(100):  # the read follows replication
                    if code == 200 and state.get("topic") == "writers":
                        break
                    await asyncio.sleep(0.05)
                    code, state = await alice.call(
                        base, "GET", f"{V3}/rooms/{quoted}/state/m.room.topic/")
                assert (code, state) == (200, {"topic": "writers"}), base

    run_in_thread(scenario)


def test_a_token_from_one_process_works_on_every_other_writer_included(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2 = dep.readers["sync1"].url, dep.readers["sync2"].url
        main, writer = dep.main.url, dep.writers["writer1"].url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep, "tokens")
            token = (await bob.sync(r1))["next_batch"]
            hops = [(r1, writer), (writer, main), (main, r2), (r2, writer), (writer, r1)]
            for i, (here, there) in enumerate(hops):
                await alice.send(here, room_id, f"hop {i}")
                seen: list[str] = []
                token = await long_poll(bob, there, token, room_id, 1, seen)
                assert seen == [f"hop {i}"]
                again = await bob.sync(here, token, timeout_ms=0)
                assert messages_in(again, room_id) == []
                token = again["next_batch"]

    run_in_thread(scenario)


def test_a_killed_writer_loses_no_answered_send(deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2 = dep.readers["sync1"].url, dep.readers["sync2"].url
        main, writer = dep.main.url, dep.writers["writer1"].url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep, "crash")
            since = (await bob.sync(r2))["next_batch"]
            quoted = urllib.parse.quote(room_id)
            total = 48
            texts = {f"t{i}": f"batch {i}" for i in range(total)}
            answered: dict[str, str] = {}  # txn ID -> event ID
            polled: list[str] = []  # event IDs, as bob's long-poll got them

            async def poll(token: str) -> str:
                while len(polled) < total:
                    body = await bob.sync(r2, token, timeout_ms=10_000)
                    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
                    polled.extend(e["event_id"] for e in room.get("timeline", {})
                                  .get("events", []) if e["type"] == "m.room.message")
                    token = body["next_batch"]
                return token

            async def put(base: str, txn_id: str) -> tuple[int, Any]:
                try:
                    return await alice.call(
                        base, "PUT", f"{V3}/rooms/{quoted}/send/m.room.message/{txn_id}",
                        {"msgtype": "m.text", "body": texts.get(txn_id, txn_id)})
                except aiohttp.ClientError as e:  # the writer itself, killed
                    return 0, str(e)

            async def sender(base: str, txn_ids: list[str]) -> None:
                for txn_id in txn_ids:
                    code, body = await put(base, txn_id)
                    if code == 200:
                        answered[txn_id] = body["event_id"]

            poller = asyncio.ensure_future(poll(since))
            bases = [main, r1, r2, writer]
            senders = [asyncio.ensure_future(sender(base, list(texts)[k::4]))
                       for k, base in enumerate(bases)]
            for _ in range(int(DEADLINE_S * 100)):
                if len(answered) >= total // 4:
                    break
                await asyncio.sleep(0.01)
            process = dep.writers["writer1"].proc
            assert process is not None
            process.kill()  # SIGKILL, sends in flight
            process.wait()
            await asyncio.gather(*senders)
            missing = [t for t in texts if t not in answered]
            assert missing, "every send was answered before the kill"
            # while it is down, no other process writes its rooms
            code, body = await put(main, "down")
            assert (code, body.get("errcode")) == (502, "M_UNKNOWN"), body
            carol = await register(http, main, "carol_crash")
            alias = urllib.parse.quote(f"#room_crash:{dep.server_name}")
            code, body = await carol.call(main, "POST", f"{V3}/join/{alias}", {})
            assert (code, body.get("errcode")) == (502, "M_UNKNOWN"), body
            dep.writers["writer1"].start()
            # the retries, through any process: an answered send is the same
            # event, an unanswered one is made now (once)
            for i, txn_id in enumerate(texts):
                code, body = await put(bases[i % 3], txn_id)
                assert code == 200, body
                if txn_id in answered:
                    assert body["event_id"] == answered[txn_id], txn_id
                answered[txn_id] = body["event_id"]
            for event_id in answered.values():
                code, body = await alice.call(
                    main, "GET", f"{V3}/rooms/{quoted}/event/{urllib.parse.quote(event_id)}")
                assert code == 200, body
            await asyncio.wait_for(poller, DEADLINE_S)
            assert sorted(polled) == sorted(answered.values())  # each once
            tail = await bob.sync(r2, poller.result(), timeout_ms=500)
            assert messages_in(tail, room_id) == []
            # the timeline as /messages has it: each message once
            code, body = await bob.call(
                r1, "GET", f"{V3}/rooms/{quoted}/messages?dir=b&limit=200&filter="
                + urllib.parse.quote(json.dumps({"types": ["m.room.message"]})))
            assert code == 200, body
            bodies = [e["content"]["body"] for e in body["chunk"]]
            assert sorted(bodies) == sorted(texts.values())
        assert "caught up from the database" in dep.readers["sync2"].log_text()

    run_in_thread(scenario)



def test_a_user_who_only_sends_is_online_on_main(deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, main = dep.readers["sync1"].url, dep.main.url
        async with aiohttp.ClientSession() as http:
            alice, _, room_id = await set_up_room(http, dep, "presence")
            carol = await register(http, r1, "carol_presence")
            code, body = await carol.call(
                r1, "POST", f"{V3}/rooms/{urllib.parse.quote(room_id)}/join", {})
            assert code == 200, body
            path = f"{V3}/presence/{urllib.parse.quote(carol.user_id)}/status"
            code, before = await alice.call(main, "GET", path)
            assert (code, before["presence"]) == (200, "offline")
            # carol never syncs; her message is made by the writer, and
            # presence, held by main, hears that she is active
            await carol.send(r1, room_id, "hello")
            for _ in range(100):
                code, now = await alice.call(main, "GET", path)
                if now.get("presence") == "online":
                    break
                await asyncio.sleep(0.05)
            assert (code, now["presence"]) == (200, "online"), now

    run_in_thread(scenario)


def test_a_sender_reads_its_own_message_next_on_any_process(deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        bases = [dep.readers["sync1"].url, dep.readers["sync2"].url, dep.main.url,
                 dep.writers["writer1"].url]
        async with aiohttp.ClientSession() as http:
            alice, _, room_id = await set_up_room(http, dep, "own")
            quoted = urllib.parse.quote(room_id)
            for i in range(12):
                # sent through one process, read back at once through the next
                await alice.send(bases[i % 4], room_id, f"mine {i}")
                code, body = await alice.call(
                    bases[(i + 1) % 4], "GET", f"{V3}/rooms/{quoted}/messages?dir=b&limit=1"
                    "&filter=" + urllib.parse.quote(json.dumps({"types": ["m.room.message"]})))
                assert code == 200, body
                assert [e["content"]["body"] for e in body["chunk"]] == [f"mine {i}"]

    run_in_thread(scenario)


def test_main_that_lost_redis_catches_up_with_the_writer_s_events(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        main, writer = dep.main.url, dep.writers["writer1"].url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep, "mainlost")
            since = (await bob.sync(main))["next_batch"]
            sent = [f"while main is cut off {i}" for i in range(30)]
            polled: list[str] = []
            poller = asyncio.ensure_future(
                long_poll(bob, main, since, room_id, len(sent), polled))
            await asyncio.sleep(0.5)
            caught_up = dep.main.log_text().count("caught up from the database")
            # main's subscriptions (replication, and the workers' reports)
            assert dep.kill_subscription("main") >= 1
            for text in sent:  # written and published by the writer meanwhile
                await alice.send(writer, room_id, text)
            await asyncio.wait_for(poller, DEADLINE_S)
            tail = await bob.sync(main, poller.result(), timeout_ms=1000)
            assert messages_in(tail, room_id) == []
            assert polled == sent
            log = dep.main.log_text()
            assert "lost the Redis subscription" in log
            assert log.count("caught up from the database") > caught_up

    run_in_thread(scenario)
