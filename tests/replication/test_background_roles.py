"""Processes of their own for the federation sender and the pushers
(docs/scale-out.md, replication/roles.py): real processes on loopback, the
machine's PostgreSQL and Redis, a remote server's /send endpoint (HTTPS,
certificate from the test CA, as tests/federation/test_sender.py's peer) and
a push gateway (plain HTTP) served by the test.

A remote user is joined to a room as tests/federation/test_sender.py does it
(no remote server to join from): the membership row, written with SQL.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg2
from aiohttp import web

from tests.federation.ca import TestCA, make_test_ca
from tests.replication.deployment import Deployment, free_port
from tests.replication.test_scale_out import V3, User, register, run_in_thread

DEADLINE_S = 60.0


class Peer:
    """A remote server's /send: records the transactions it answered 200;
    in ``hang`` mode it answers none (as a slow peer)."""

    def __init__(self, ca: TestCA) -> None:
        self.port = free_port()
        self.name = f"localhost:{self.port}"
        cert, key = ca.issue(f"peer-{self.port}")
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(cert, key)
        self.mode = "ok"
        self.txns: list[dict[str, Any]] = []
        self.attempts = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/federation/v1/send/{txn}", self.send)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        self.txns.append(body)
        return web.json_response({"pdus": {}})

    def bodies(self) -> list[str]:
        """The bodies of the messages in every answered transaction, in order."""
        return [str(p["content"].get("body")) for t in self.txns for p in t["pdus"]
                if p.get("type") == "m.room.message"]


class Gateway:
    """A push gateway (/_matrix/push/v1/notify) recording each notification."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/_matrix/push/v1/notify"
        self.notifications: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/_matrix/push/v1/notify", self.notify)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def notify(self, request: web.Request) -> web.Response:
        self.notifications.append((await request.json())["notification"])
        return web.json_response({"rejected": []})

    def event_ids(self) -> list[str]:
        return [str(n["event_id"]) for n in self.notifications if "event_id" in n]


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.05)


def join_remote_user(dep: Deployment, room_id: str, user_id: str) -> None:
    """A remote user's join, as tests/federation/test_sender.py writes it."""
    args = {k: v for k, v in dep.database.items() if k not in ("cp_min", "cp_max")}
    conn = psycopg2.connect(**args)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO room_memberships (user_id, room_nid, membership, event_nid,"
                " stream_ordering) SELECT %s, r.room_nid, 'join', e.event_nid,"
                " e.stream_ordering FROM rooms r JOIN events e ON e.room_nid = r.room_nid"
                " WHERE r.room_id = %s AND e.event_type = 'm.room.create'", (user_id, room_id))
    finally:
        conn.close()


async def new_room(user: User, base: str) -> str:
    code, body = await user.call(base, "POST", f"{V3}/createRoom", {"preset": "public_chat"})
    assert code == 200, body
    return str(body["room_id"])


def test_the_federation_sender_process_sends_main_s_messages_once_across_a_kill(
        tmp_path: Path) -> None:
    ca = make_test_ca(str(tmp_path / "ca"))
    peer = Peer(ca)
    (tmp_path / "dep").mkdir()
    dep = Deployment(tmp_path / "dep", readers=0, roles={"fed1": "federation_sender"}, extra={
        "send_federation": False, "federation_sender_instances": ["fed1"],
        "federation_custom_ca_list": [ca.ca_cert_path],
        "ip_range_whitelist": ["127.0.0.0/8"],
        "federation": {"client_timeout": "20s"}})

    async def scenario() -> None:
        await peer.start()
        async with aiohttp.ClientSession() as http:
            main = dep.main.url
            alice = await register(http, main, "alice")
            room_id = await new_room(alice, main)
            join_remote_user(dep, room_id, f"@bob:{peer.name}")
            await alice.send(main, room_id, "one")
            await eventually(lambda: "one" in peer.bodies(), "the first message")
            # the peer hangs: a transaction is in flight when the sender dies
            peer.mode = "hang"
            attempts = peer.attempts
            await alice.send(main, room_id, "two")
            await alice.send(main, room_id, "three")
            await eventually(lambda: peer.attempts > attempts, "a transaction in flight")
            dep.roles["fed1"].kill()
            peer.mode = "ok"
            attempts = peer.attempts
            await alice.send(main, room_id, "four")
            # main does not send it (nor what the dead sender had in flight)
            await asyncio.sleep(3)
            assert peer.attempts == attempts
            assert peer.bodies() == ["one"]
            dep.roles["fed1"].start()
            await eventually(lambda: len(peer.bodies()) >= 4, "everything after the restart")
            await asyncio.sleep(1)
            # each exactly once, in order
            assert peer.bodies() == ["one", "two", "three", "four"]
        await peer.stop()

    try:
        dep.start()
        run_in_thread(scenario)
    finally:
        dep.stop()


def test_destinations_are_shared_out_over_two_federation_senders(tmp_path: Path) -> None:
    from homeserver.replication.writers import shard_owner
    ca = make_test_ca(str(tmp_path / "ca"))
    senders = ("fed1", "fed2")
    # one peer whose name falls to each sender
    peers: dict[str, Peer] = {}
    while len(peers) < 2:
        peer = Peer(ca)
        peers.setdefault(shard_owner(peer.name, senders), peer)
    (tmp_path / "dep").mkdir()
    dep = Deployment(tmp_path / "dep", readers=0,
                     roles={name: "federation_sender" for name in senders}, extra={
                         "send_federation": False, "federation_sender_instances": list(senders),
                         "federation_custom_ca_list": [ca.ca_cert_path],
                         "ip_range_whitelist": ["127.0.0.0/8"],
                         "federation": {"client_timeout": "20s"}})

    async def scenario() -> None:
        for peer in peers.values():
            await peer.start()
        one, two = peers["fed1"], peers["fed2"]
        async with aiohttp.ClientSession() as http:
            main = dep.main.url
            alice = await register(http, main, "alice")
            room_id = await new_room(alice, main)
            for peer in peers.values():
                join_remote_user(dep, room_id, f"@bob:{peer.name}")
            await alice.send(main, room_id, "a")
            await eventually(lambda: one.bodies() == ["a"] and two.bodies() == ["a"],
                             "the message at both servers")
            # fed2 down: its server waits, fed1's does not
            dep.roles["fed2"].kill()
            await alice.send(main, room_id, "b")
            await eventually(lambda: one.bodies() == ["a", "b"], "fed1's server")
            await asyncio.sleep(2)
            assert two.bodies() == ["a"]
            dep.roles["fed2"].start()
            await eventually(lambda: two.bodies() == ["a", "b"], "fed2's server after restart")
            await asyncio.sleep(1)
            assert one.bodies() == ["a", "b"] and two.bodies() == ["a", "b"]
        for peer in peers.values():
            await peer.stop()

    try:
        dep.start()
        run_in_thread(scenario)
    finally:
        dep.stop()


def test_the_pusher_process_pushes_a_message_written_on_an_event_writer(
        tmp_path: Path) -> None:
    gateway = Gateway()
    # every room is writer1's: the message is persisted (its push actions
    # written) there, sent through main, pushed by push1
    dep = Deployment(tmp_path, readers=0, writers=1, roles={"push1": "pusher"}, extra={
        "start_pushers": False, "pusher_instances": ["push1"],
        "ip_range_whitelist": ["127.0.0.0/8"]})

    async def scenario() -> None:
        await gateway.start()
        async with aiohttp.ClientSession() as http:
            main = dep.main.url
            alice = await register(http, main, "alice")
            bob = await register(http, main, "bob")
            code, body = await bob.call(main, "POST", f"{V3}/pushers/set", {
                "kind": "http", "app_id": "org.example.app", "pushkey": "phone",
                "app_display_name": "App", "device_display_name": "Phone", "lang": "en",
                "data": {"url": gateway.url}})
            assert code == 200, body
            room_id = await new_room(alice, main)
            code, body = await bob.call(main, "POST",
                                        f"{V3}/join/{urllib.parse.quote(room_id)}", {})
            assert code == 200, body
            first = await alice.send(main, room_id, "hello bob")
            await eventually(lambda: first in gateway.event_ids(), "the push")
            # a second pusher of bob's (main tells the pusher process)
            code, body = await bob.call(main, "POST", f"{V3}/pushers/set", {
                "kind": "http", "app_id": "org.example.other", "pushkey": "tablet",
                "app_display_name": "App", "device_display_name": "Tablet", "lang": "en",
                "data": {"url": gateway.url}})
            assert code == 200, body
            second = await alice.send(main, room_id, "hello again")
            await eventually(lambda: gateway.event_ids().count(second) == 2,
                             "the push to both pushers")
            await asyncio.sleep(1)
            # neither main nor the writer pushed: one notification per pusher
            assert sorted(gateway.event_ids()) == sorted([first, second, second])
            pushkeys = [d["pushkey"] for n in gateway.notifications
                        if n.get("event_id") == second for d in n["devices"]]
            assert sorted(pushkeys) == ["phone", "tablet"]
        await gateway.stop()

    try:
        dep.start()
        run_in_thread(scenario)
    finally:
        dep.stop()


def test_media_uploaded_through_the_media_worker_downloads_through_main_and_back(
        tmp_path: Path) -> None:
    dep = Deployment(tmp_path, readers=0, roles={"media1": "media_repository"},
                     extra={"media_instance_running_background_jobs": "media1"})

    async def upload(user: User, base: str, data: bytes) -> str:
        async with user.http.post(f"{base}/_matrix/media/v3/upload?filename=a.txt", data=data,
                                  headers={"Authorization": f"Bearer {user.token}",
                                           "Content-Type": "text/plain"}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return str(body["content_uri"])

    async def download(user: User, base: str, uri: str) -> bytes:
        server, media_id = uri.removeprefix("mxc://").split("/")
        async with user.http.get(f"{base}/_matrix/client/v1/media/download/{server}/{media_id}",
                                 headers={"Authorization": f"Bearer {user.token}"}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.read()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            main, media = dep.main.url, dep.roles["media1"].url
            alice = await register(http, main, "alice")
            first = await upload(alice, media, b"uploaded to the media worker")
            assert await download(alice, main, first) == b"uploaded to the media worker"
            second = await upload(alice, main, b"uploaded to main")
            assert await download(alice, media, second) == b"uploaded to main"
            # each process served the upload it was sent: the media worker
            # did not hand its own to main
            assert dep.main.log_text().count("POST /_matrix/media/v3/upload") == 1
            assert dep.roles["media1"].log_text().count("POST /_matrix/media/v3/upload") == 1

    try:
        dep.start()
        run_in_thread(scenario)
    finally:
        dep.stop()
