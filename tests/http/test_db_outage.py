"""The database out of reach: 503 with Retry-After while it is, 200 once it is back.

PostgreSQL is made unreachable for real: the server's connections are
terminated (what a PostgreSQL restart does) and new ones refused
(``ALLOW_CONNECTIONS false``), then connections are allowed again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import pytest
import pytest_twisted

from homeserver.http.resource import is_database_outage
from tests.harness import TestServer, _admin_connection

V3 = "/_matrix/client/v3"


@contextmanager
def database_unreachable(name: str) -> Iterator[None]:
    admin = _admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        yield
    finally:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


@pytest.mark.parametrize("engine", ["postgres"])
@pytest_twisted.ensureDeferred
async def test_requests_during_an_outage_are_503_and_work_again_after(
        server: TestServer) -> None:
    alice = await server.register("alice")
    room = await alice.post(f"{V3}/createRoom", {})
    assert room.code == 200, room.body
    send_path = f"{V3}/rooms/{room.body['room_id']}/send/m.room.message"
    name = server.hs.config.database.args["database"]

    with database_unreachable(name):
        for method, path, body in [
                ("PUT", f"{send_path}/t1", {"msgtype": "m.text", "body": "lost?"}),
                ("PUT", f"{V3}/profile/{alice.user_id}/displayname", {"displayname": "A"}),
                ("POST", f"{V3}/login", {"type": "m.login.password", "user": "alice",
                                         "password": "correct horse battery"}),
        ]:
            resp = await alice.request(method, path, body)
            assert resp.code == 503, (path, resp.code, resp.body)
            assert resp.body["errcode"] == "M_UNKNOWN"
            assert isinstance(resp.body["error"], str)
            retry_after = resp.header("Retry-After")
            assert retry_after is not None and int(retry_after) > 0

    # the same message, retried with its transaction ID, now goes through once
    sent = await alice.put(f"{send_path}/t1", {"msgtype": "m.text", "body": "lost?"})
    assert sent.code == 200, sent.body
    again = await alice.put(f"{send_path}/t1", {"msgtype": "m.text", "body": "lost?"})
    assert again.body["event_id"] == sent.body["event_id"]
    named = await alice.put(f"{V3}/profile/{alice.user_id}/displayname", {"displayname": "A"})
    assert named.code == 200, named.body
    profile = await server.client().get(f"{V3}/profile/{alice.user_id}")
    assert profile.body["displayname"] == "A"


@pytest.mark.parametrize("exc,outage", [
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("disk I/O error"), True),
    (sqlite3.OperationalError("unable to open database file"), True),
    (sqlite3.OperationalError("no such table: events"), False),
    (sqlite3.OperationalError('near "SELEC": syntax error'), False),
    (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
    (psycopg2.OperationalError("could not connect to server"), True),
    (psycopg2.InterfaceError("connection already closed"), True),
    (psycopg2.IntegrityError("duplicate key"), False),
    (ValueError("a bug"), False),
])
def test_only_an_unreachable_database_counts_as_an_outage(exc: Exception,
                                                          outage: bool) -> None:
    assert is_database_outage(exc) is outage


def test_an_outage_inside_parallel_lookups_is_still_an_outage() -> None:
    from twisted.internet.defer import FirstError
    from twisted.python.failure import Failure

    inner: Any = Failure(psycopg2.OperationalError("server closed the connection"))
    assert is_database_outage(FirstError(inner, 0))
