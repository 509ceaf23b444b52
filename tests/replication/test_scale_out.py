"""Several processes on one PostgreSQL, coordinated through Redis.

A main process and two sync readers run as real processes
(``deployment.py``). What a client sees:

- a message sent through any process reaches a client long-polling /sync
  on one reader and a client holding a WebSocket on the other, in order,
  exactly once;
- a sync token from one process works on every other;
- a reader that loses its Redis subscription catches up from the database:
  its long-polling client still gets every message once, in order;
- writes sent to a reader (register, createRoom, join, send, and the
  WebSocket's requests) are made by the main process;
- typing, held by the main process, reaches syncs on the readers.

PostgreSQL only: several processes cannot share a SQLite file's writer.
Single-process mode without Redis is what the rest of the suite runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.replication.deployment import Deployment

V3 = "/_matrix/client/v3"
DEADLINE_S = 60.0
TIMELINE_FILTER = json.dumps({"room": {"timeline": {"limit": 100}}})


def run_in_thread(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an asyncio scenario on a loop of its own (the test session's
    reactor runs an event loop in this thread already)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path, readers=2)
    try:
        dep.start()
        yield dep
    finally:
        dep.stop()


class User:
    def __init__(self, http: aiohttp.ClientSession, user_id: str, token: str) -> None:
        self.http = http
        self.user_id = user_id
        self.token = token
        self.txn = 0

    async def call(self, base: str, method: str, path: str,
                   body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
                method, base + path, json=body,
                headers={"Authorization": f"Bearer {self.token}"}) as resp:
            return resp.status, await resp.json(content_type=None)

    async def send(self, base: str, room_id: str, text: str) -> str:
        self.txn += 1
        code, body = await self.call(
            base, "PUT", f"{V3}/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/"
            f"t{self.txn}", {"msgtype": "m.text", "body": text})
        assert code == 200, body
        return str(body["event_id"])

    async def sync(self, base: str, since: str | None = None,
                   timeout_ms: int = 0) -> dict[str, Any]:
        # a timeline long enough for every test's messages: a gap of more
        # than the default 10 would be a limited timeline (to paginate)
        query = {"timeout": str(timeout_ms), "filter": TIMELINE_FILTER}
        if since is not None:
            query["since"] = since
        code, body = await self.call(base, "GET", f"{V3}/sync?" + urllib.parse.urlencode(query))
        assert code == 200, body
        return dict(body)


async def register(http: aiohttp.ClientSession, base: str, name: str) -> User:
    async with http.post(base + f"{V3}/register", json={
            "username": name, "password": "a long enough password",
            "auth": {"type": "m.login.dummy"}}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return User(http, body["user_id"], body["access_token"])


def messages_in(body: dict[str, Any], room_id: str) -> list[str]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e["content"]["body"] for e in room.get("timeline", {}).get("events", [])
            if e["type"] == "m.room.message"]


async def set_up_room(http: aiohttp.ClientSession, dep: Deployment) -> tuple[User, User, str]:
    """alice registers through a reader, bob through main; alice creates a
    room through the other reader and bob joins it through main: every write
    to a reader is forwarded."""
    r1, r2 = dep.readers["sync1"].url, dep.readers["sync2"].url
    alice = await register(http, r1, "alice")
    bob = await register(http, dep.main.url, "bob")
    code, body = await alice.call(r2, "POST", f"{V3}/createRoom", {"preset": "public_chat"})
    assert code == 200, body
    room_id = str(body["room_id"])
    code, body = await bob.call(dep.main.url, "POST",
                                f"{V3}/join/{urllib.parse.quote(room_id)}", {})
    assert code == 200, body
    return alice, bob, room_id


async def long_poll(user: User, base: str, since: str, room_id: str, want: int,
                    seen: list[str]) -> str:
    """Long-poll ``base`` from ``since`` until ``want`` messages arrived."""
    while len(seen) < want:
        body = await user.sync(base, since, timeout_ms=10_000)
        seen.extend(messages_in(body, room_id))
        since = body["next_batch"]
    return since


async def typists(user: User, base: str, since: str, room_id: str) -> list[str]:
    """Who types in the room, as a sync from ``since`` on ``base`` says."""
    while True:
        body = await user.sync(base, since, timeout_ms=10_000)
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        for event in room.get("ephemeral", {}).get("events", []):
            if event["type"] == "m.typing":
                return list(event["content"]["user_ids"])
        since = body["next_batch"]


async def websocket(user: User, base: str, since: str, room_id: str, want: int,
                    seen: list[str]) -> None:
    query = urllib.parse.urlencode({"access_token": user.token, "since": since,
                                    "filter": TIMELINE_FILTER})
    async with user.http.ws_connect(f"{base}/_matrix/client/unstable/stream?{query}",
                                    protocols=("m.json",)) as ws:
        while len(seen) < want:
            frame = await ws.receive()
            assert frame.type == aiohttp.WSMsgType.TEXT, frame
            delta = json.loads(frame.data)
            if "id" not in delta:
                seen.extend(messages_in(delta, room_id))


def test_messages_reach_long_poll_and_websocket_on_readers_in_order_once(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2 = dep.readers["sync1"].url, dep.readers["sync2"].url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep)
            since = (await bob.sync(r1))["next_batch"]
            sent = [f"message {i}" for i in range(30)]
            polled: list[str] = []
            pushed: list[str] = []
            poller = asyncio.ensure_future(
                long_poll(bob, r1, since, room_id, len(sent), polled))
            socket = asyncio.ensure_future(
                websocket(bob, r2, since, room_id, len(sent), pushed))
            await asyncio.sleep(0.5)  # both are waiting
            # most through main, some through each reader (forwarded)
            for i, text in enumerate(sent):
                await alice.send([dep.main.url, dep.main.url, r1, r2][i % 4], room_id, text)
            await asyncio.wait_for(asyncio.gather(poller, socket), DEADLINE_S)
            # a little longer: nothing more may come (no duplicates)
            tail = await bob.sync(r1, poller.result(), timeout_ms=1000)
            assert messages_in(tail, room_id) == []
            assert polled == sent
            assert pushed == sent

    run_in_thread(scenario)


def test_a_token_from_one_process_works_on_every_other(deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2, main = dep.readers["sync1"].url, dep.readers["sync2"].url, dep.main.url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep)
            token = (await bob.sync(r1))["next_batch"]
            for i, (here, there) in enumerate([(r1, r2), (r2, main), (main, r1), (r1, r2)]):
                await alice.send(main, room_id, f"hop {i}")
                # the token the process just handed out, at once on the next
                seen: list[str] = []
                token = await long_poll(bob, there, token, room_id, 1, seen)
                assert seen == [f"hop {i}"]
                again = await bob.sync(here, token, timeout_ms=0)
                assert messages_in(again, room_id) == []
                token = again["next_batch"]
            # a token from the future is refused everywhere, as before
            position = int(token[1:].split("_")[0]) + 1_000_000
            for base in (main, r1, r2):
                code, body = await bob.call(base, "GET", f"{V3}/sync?since=s{position}_0_x"
                                            "&timeout=0")
                assert (code, body["errcode"]) == (400, "M_INVALID_PARAM")
            # a logout through one reader ends the token on every process at once
            # (the readers' token caches hear of it over Redis)
            for base in (r1, r2):
                assert (await bob.call(base, "GET", f"{V3}/account/whoami"))[0] == 200
            code, _ = await bob.call(r2, "POST", f"{V3}/logout", {})
            assert code == 200
            for base in (r1, r2, main):
                for _ in range(50):
                    code, body = await bob.call(base, "GET", f"{V3}/account/whoami")
                    if code == 401:
                        break
                    await asyncio.sleep(0.05)
                assert (code, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")

    run_in_thread(scenario)


def test_a_reader_that_lost_redis_catches_up_from_the_database(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, main = dep.readers["sync1"].url, dep.main.url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep)
            since = (await bob.sync(r1))["next_batch"]
            sent = [f"during the outage {i}" for i in range(40)]
            polled: list[str] = []
            poller = asyncio.ensure_future(
                long_poll(bob, r1, since, room_id, len(sent), polled))
            await asyncio.sleep(0.5)
            assert dep.kill_subscription("sync1") == 1
            for text in sent:  # published while sync1 is not subscribed
                await alice.send(main, room_id, text)
            try:
                await asyncio.wait_for(poller, DEADLINE_S)
            except TimeoutError:
                raise AssertionError(f"only {polled} arrived") from None
            tail = await bob.sync(r1, poller.result(), timeout_ms=1000)
            assert messages_in(tail, room_id) == []
            assert polled == sent
        log = dep.readers["sync1"].log_text()
        assert "lost the Redis subscription" in log
        # once at start, once after the reconnection
        assert log.count("caught up from the database") >= 2

    run_in_thread(scenario)


def test_clients_of_a_killed_reader_carry_on_elsewhere_with_their_last_token(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2, main = dep.readers["sync1"].url, dep.readers["sync2"].url, dep.main.url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep)
            sent = [f"message {i}" for i in range(20)]
            polled: list[str] = []
            bases = [r1, r2]

            async def poll_with_failover(since: str) -> None:
                # a client whose reader dies mid-request retries on another
                # with the last next_batch it got (as behind a load balancer)
                while len(polled) < len(sent):
                    try:
                        body = await bob.sync(bases[0], since, timeout_ms=10_000)
                    except aiohttp.ClientError:
                        bases.pop(0)
                        continue
                    polled.extend(messages_in(body, room_id))
                    since = body["next_batch"]

            poller = asyncio.ensure_future(poll_with_failover((await bob.sync(r1))["next_batch"]))
            for text in sent[:10]:
                await alice.send(main, room_id, text)
            while len(polled) < 10:
                await asyncio.sleep(0.05)
            assert dep.readers["sync1"].proc is not None
            dep.readers["sync1"].proc.kill()  # SIGKILL, mid long-poll
            for text in sent[10:]:
                await alice.send(main, room_id, text)
            await asyncio.wait_for(poller, DEADLINE_S)
            assert bases == [r2]
            assert polled == sent

    run_in_thread(scenario)


def test_websocket_requests_on_a_reader_are_made_by_the_main_process(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2, main = dep.readers["sync1"].url, dep.readers["sync2"].url, dep.main.url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep)
            since = (await alice.sync(r1))["next_batch"]
            query = urllib.parse.urlencode({"access_token": bob.token})
            async with http.ws_connect(f"{r2}/_matrix/client/unstable/stream?{query}",
                                       protocols=("m.json",)) as ws:

                async def ask(request: dict[str, Any]) -> dict[str, Any]:
                    await ws.send_json(request)
                    while True:  # sync deltas may come first
                        frame = json.loads((await ws.receive()).data)
                        if frame.get("id") == request["id"]:
                            return dict(frame)

                sent = await ask({"id": "w1", "method": "send", "params": {
                    "room_id": room_id, "event_type": "m.room.message",
                    "content": {"msgtype": "m.text", "body": "over the socket"}}})
                event_id = sent["result"]["event_id"]
                # a retry with the same id is the same event (main's transaction IDs)
                again = await ask({"id": "w1", "method": "send", "params": {
                    "room_id": room_id, "event_type": "m.room.message",
                    "content": {"msgtype": "m.text", "body": "over the socket"}}})
                assert again["result"] == {"event_id": event_id}
                # main's errors come back as the socket's errors
                refused = await ask({"id": "w2", "method": "send", "params": {
                    "room_id": "!nowhere:" + dep.server_name, "event_type": "m.room.message",
                    "content": {"body": "x"}}})
                assert refused["error"]["errcode"] == "M_FORBIDDEN"
                bad = await ask({"id": "w3", "method": "typing", "params": {
                    "room_id": room_id, "typing": "yes"}})
                assert bad["error"]["errcode"] == "M_BAD_JSON"
                typing = await ask({"id": "w4", "method": "typing", "params": {
                    "room_id": room_id, "typing": True, "timeout": 30000}})
                assert typing == {"id": "w4", "result": {}}
                receipt = await ask({"id": "w5", "method": "receipt", "params": {
                    "room_id": room_id, "receipt_type": "m.read", "event_id": event_id}})
                assert receipt == {"id": "w5", "result": {}}
            seen: list[str] = []
            await long_poll(alice, r1, since, room_id, 1, seen)
            assert seen == ["over the socket"]
            # main holds typing; the readers mirror it
            for base in (main, r1):
                assert await typists(alice, base, since, room_id) == [bob.user_id]

    run_in_thread(scenario)


def test_a_user_syncing_on_a_reader_is_online_on_every_process(
        deployment: Deployment) -> None:
    async def scenario() -> None:
        dep = deployment
        r1, r2, main = dep.readers["sync1"].url, dep.readers["sync2"].url, dep.main.url
        async with aiohttp.ClientSession() as http:
            alice, bob, room_id = await set_up_room(http, dep)
            status_path = f"{V3}/presence/{urllib.parse.quote(bob.user_id)}/status"
            code, before = await alice.call(main, "GET", status_path)
            assert (code, before["presence"]) == (200, "offline")
            # bob only long-polls, on a reader; presence is main's
            since = (await alice.sync(r2))["next_batch"]
            await bob.sync(r1, None, timeout_ms=0)
            for base in (main, r2):  # main's answer, also through a reader
                for _ in range(100):  # the reader's report travels over Redis
                    code, now = await alice.call(base, "GET", status_path)
                    if now.get("presence") == "online":
                        break
                    await asyncio.sleep(0.1)
                assert (code, now["presence"]) == (200, "online"), now
            # and alice's sync on the other reader hears of it
            while True:
                body = await alice.sync(r2, since, timeout_ms=10_000)
                since = body["next_batch"]
                states = {e["sender"]: e["content"]["presence"]
                          for e in body.get("presence", {}).get("events", [])}
                if states.get(bob.user_id) == "online":
                    break

    run_in_thread(scenario)
