"""A server killed mid-load keeps every message it acknowledged, once, in order.

The server runs as its own process (``homeserver run`` on a config from
``homeserver init``), on SQLite and on a fresh PostgreSQL database. Several
clients send messages with transaction IDs as fast as the server answers;
once enough sends are acknowledged the process gets SIGKILL, with requests
still in flight. After a restart on the same config:

- every acknowledged message (200 with an event ID) is in the room's history
  exactly once, and each sender's messages are in the order they were
  acknowledged;
- retrying a transaction ID whose send was acknowledged answers the same
  event ID and adds nothing;
- retrying one whose send was in flight at the kill answers the event stored
  for it before the kill, if any, or stores it now: either way it is in the
  history exactly once.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import create_postgres_database, drop_postgres_database, terminate

REPO = Path(__file__).resolve().parent.parent
V3 = "/_matrix/client/v3"
SENDERS = 4
# the kill comes once this many sends are acknowledged, or after LOAD_SECONDS
ACKNOWLEDGED_BEFORE_KILL = 150
LOAD_SECONDS = 5.0
REQUEST_TIMEOUT = 30.0


class ServerProcess:
    """``homeserver run`` on a config file; its log goes to a file (a pipe
    nobody reads would fill up and stall the server)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "homeserver.cli", "run", "--config", str(self.config)],
                cwd=self.config.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[offset:]
            with open(self.log, "rb") as f:
                f.seek(offset)
                found = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", f.read())
            if found:
                self.port = int(found.group(1))
                return
            time.sleep(0.05)
        raise AssertionError("the server never said where it listens")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown code runs
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        terminate(self.proc)


class Client:
    """A blocking Matrix client on one keep-alive connection (one per thread)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        self.token = token

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def close(self) -> None:
        self.conn.close()


def send_path(room_id: str, txn_id: str) -> str:
    return f"{V3}/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/{txn_id}"


def message(txn_id: str) -> dict[str, str]:
    return {"msgtype": "m.text", "body": txn_id}


@dataclass
class Sender:
    """One client sending numbered messages until the server goes away."""

    name: str
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (txn, event) in order
    unanswered: list[str] = field(default_factory=list)  # in flight when the server died
    refused: list[tuple[str, int, Any]] = field(default_factory=list)

    def run(self, port: int, token: str, room_id: str, stop: threading.Event) -> None:
        client = Client(port, token)
        n = 0
        try:
            while not stop.is_set():
                txn_id = f"{self.name}-{n}"
                n += 1
                try:
                    code, body = client.request("PUT", send_path(room_id, txn_id),
                                                message(txn_id))
                except (OSError, http.client.HTTPException):
                    self.unanswered.append(txn_id)
                    return
                if code == 200:
                    self.acknowledged.append((txn_id, body["event_id"]))
                else:
                    self.refused.append((txn_id, code, body))
                    return
        finally:
            client.close()


def room_history(client: Client, room_id: str) -> list[dict[str, Any]]:
    """Every event of the room, oldest first, through /messages."""
    events: list[dict[str, Any]] = []
    since: str | None = None
    while True:
        query = {"dir": "f", "limit": "500"}
        if since:
            query["from"] = since
        code, body = client.request(
            "GET", f"{V3}/rooms/{urllib.parse.quote(room_id)}/messages?"
            + urllib.parse.urlencode(query))
        assert code == 200, body
        events.extend(body["chunk"])
        if not body["chunk"] or "end" not in body:
            return events
        since = body["end"]


def write_config(tmp_path: Path, engine: str) -> tuple[Path, str | None]:
    """A config from ``homeserver init``, on ``engine``, with the message rate
    limit lifted (the test loads the server on purpose); also the PostgreSQL
    database's name, to drop after."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    init = subprocess.run([sys.executable, "-m", "homeserver.cli", "init", "--server-name",
                           "localhost", "--config", "hs.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    config_path = tmp_path / "hs.yaml"
    config = yaml.safe_load(config_path.read_text())
    for listener in config["listeners"]:
        listener["port"] = 0
    unlimited = {"per_second": 100000, "burst_count": 100000}
    config.update(rc_message=unlimited, rc_registration=unlimited, bcrypt_rounds=4)
    database = None
    if engine == "postgres":
        args = create_postgres_database()
        database = str(args["database"])
        config["database"] = {"name": "psycopg2", "args": args}
    config_path.write_text(yaml.safe_dump(config))
    return config_path, database


@pytest.mark.parametrize("rooms", [1, SENDERS])
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_acknowledged_messages_survive_sigkill_once_and_in_order(tmp_path: Path,
                                                                 engine: str, rooms: int) -> None:
    """One room (its batches), or a room per sender (their batches written
    together, several rooms to a transaction)."""
    config, database = write_config(tmp_path, engine)
    server = ServerProcess(config, tmp_path / "server.log")
    try:
        server.start()
        setup = Client(server.port)
        code, body = setup.request("POST", f"{V3}/register", {
            "username": "sender", "password": "a long enough password",
            "auth": {"type": "m.login.dummy"}})
        assert code == 200, body
        token = body["access_token"]
        setup.token = token
        room_ids = []
        for r in range(rooms):
            code, body = setup.request("POST", f"{V3}/createRoom", {"name": f"under load {r}"})
            assert code == 200, body
            room_ids.append(body["room_id"])
        setup.close()

        senders = [Sender(f"s{i}") for i in range(SENDERS)]
        room_of = {s.name: room_ids[i % rooms] for i, s in enumerate(senders)}
        stop = threading.Event()
        threads = [threading.Thread(target=s.run,
                                    args=(server.port, token, room_of[s.name], stop))
                   for s in senders]
        for t in threads:
            t.start()
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline and \
                sum(len(s.acknowledged) for s in senders) < ACKNOWLEDGED_BEFORE_KILL:
            time.sleep(0.01)
        server.kill()  # while every sender has a request in flight
        stop.set()
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT + 5)
        assert all(not s.refused for s in senders), [s.refused for s in senders]
        acknowledged = sum(len(s.acknowledged) for s in senders)
        assert acknowledged >= 20, "the load barely ran before the kill"

        server.start()
        client = Client(server.port, token)
        before = [e for room_id in room_ids for e in room_history(client, room_id)]
        messages = [e for e in before if e["type"] == "m.room.message"]
        counts = Counter(e["content"]["body"] for e in messages)
        event_of = {e["content"]["body"]: e["event_id"] for e in messages}

        for sender in senders:
            # every acknowledged message is there once, under the event ID the
            # sender was given, in the order the sender was answered
            for txn_id, event_id in sender.acknowledged:
                assert counts[txn_id] == 1, (txn_id, counts[txn_id])
                assert event_of[txn_id] == event_id
            stored_order = [e["content"]["body"] for e in messages
                            if e["content"]["body"].startswith(sender.name + "-")]
            acked = [txn_id for txn_id, _ in sender.acknowledged]
            assert stored_order[:len(acked)] == acked
            # only a send in flight at the kill may have been stored unacknowledged
            assert stored_order[len(acked):] in ([], sender.unanswered)

        for sender in senders:
            room_id = room_of[sender.name]
            for txn_id, event_id in sender.acknowledged:
                code, body = client.request("PUT", send_path(room_id, txn_id), message(txn_id))
                assert (code, body.get("event_id")) == (200, event_id), (txn_id, body)
            for txn_id in sender.unanswered:
                code, body = client.request("PUT", send_path(room_id, txn_id), message(txn_id))
                assert code == 200, body
                if txn_id in event_of:  # stored before the kill: the retry finds it
                    assert body["event_id"] == event_of[txn_id]

        after = [e for room_id in room_ids for e in room_history(client, room_id)
                 if e["type"] == "m.room.message"]
        after_counts = Counter(e["content"]["body"] for e in after)
        for sender in senders:
            for txn_id in [t for t, _ in sender.acknowledged] + sender.unanswered:
                assert after_counts[txn_id] == 1, (txn_id, after_counts[txn_id])
        # the retries added exactly the unacknowledged sends that were not stored
        missing = sum(1 for s in senders for t in s.unanswered if t not in event_of)
        assert len(after) == len(messages) + missing
        client.close()
        print(f"\n{engine}: {acknowledged} acknowledged before SIGKILL, "
              f"{sum(len(s.unanswered) for s in senders)} in flight, "
              f"{sum(1 for s in senders for t in s.unanswered if t in event_of)} of those stored")
    finally:
        server.stop()
        if database:
            drop_postgres_database(database)
