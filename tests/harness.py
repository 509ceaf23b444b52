"""The test harness: a real homeserver on a loopback port, and a small HTTP client.

Each server gets its own database: a fresh SQLite file, or a fresh PostgreSQL
database created for the test and dropped after it. PostgreSQL is found at
$HS_TEST_POSTGRES (a libpq connection string) or 127.0.0.1:5432 as postgres.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import treq

from homeserver.config import Config, build_config
from homeserver.server import HomeServer

SERVER_NAME = "test.local"


def terminate(proc: "subprocess.Popen[Any] | None") -> None:
    """Stop a server process started by a test: SIGTERM (a clean shutdown),
    SIGKILL if it has not ended 30 s later."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def postgres_dsn() -> str:
    return os.environ.get("HS_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres")


def _admin_connection() -> Any:
    dsn = postgres_dsn()
    conn = psycopg2.connect(dsn + " dbname=postgres")
    conn.autocommit = True
    return conn


def _database_args(name: str) -> dict[str, Any]:
    args: dict[str, Any] = dict(psycopg2.extensions.parse_dsn(postgres_dsn()))
    args["database"] = name
    if "port" in args:
        args["port"] = int(args["port"])
    args.pop("dbname", None)
    args["cp_min"] = 1
    args["cp_max"] = 5
    return args


def create_postgres_database(migrated: bool = False) -> dict[str, Any]:
    """A new database, empty or (``migrated``) at the current schema; returns
    the config's database.args for it."""
    name = "hs_test_" + uuid.uuid4().hex[:16]
    template = _migrated_template() if migrated else "template0"
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE "{template}"'
                        " LC_COLLATE 'C' LC_CTYPE 'C'")
    finally:
        conn.close()
    return _database_args(name)


_TEMPLATE: list[str] = []


def _migrated_template() -> str:
    """A database at the current schema, made once per test run (and dropped
    at exit): a server test's database is a copy of it, which spares each
    test the migrations (about a second each on PostgreSQL). The server
    still runs its migration check on it, as on any database."""
    if not _TEMPLATE:
        from homeserver.storage.database import Database
        from homeserver.storage.migrations import prepare_database_blocking

        args = create_postgres_database()
        db = Database("postgres", args)
        try:
            prepare_database_blocking(db)
        finally:
            db.close()
        _TEMPLATE.append(str(args["database"]))
        atexit.register(drop_postgres_database, str(args["database"]))
    return _TEMPLATE[0]


def drop_postgres_database(name: str) -> None:
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def make_config(engine: str, tmp_dir: str, **overrides: Any) -> Config:
    if engine == "sqlite":
        database = {"name": "sqlite3", "args": {"database": os.path.join(tmp_dir, "hs.db")}}
    else:
        database = {"name": "psycopg2", "args": create_postgres_database(migrated=True)}
    data: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "public_baseurl": "http://127.0.0.1/",
        "listeners": [{"port": 0, "bind_addresses": ["127.0.0.1"]}],
        "database": database,
        "bcrypt_rounds": 4,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "registration_shared_secret": "test-shared-secret",
        # Tests that check rate limiting lower these again.
        "rc_message": {"per_second": 1000, "burst_count": 1000},
        "rc_registration": {"per_second": 1000, "burst_count": 1000},
        "rc_login": {"address": {"per_second": 1000, "burst_count": 1000},
                     "account": {"per_second": 1000, "burst_count": 1000},
                     "failed_attempts": {"per_second": 1000, "burst_count": 1000}},
    }
    data.update(overrides)
    return build_config(data, tmp_dir)


@dataclass
class Response:
    code: int
    body: Any
    headers: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class Client:
    """A small Matrix client over real HTTP (treq)."""

    def __init__(self, base_url: str, access_token: str | None = None,
                 agent: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        # an Agent of its own (https with a test CA); None: treq's default
        self.agent = agent
        self.user_id: str | None = None
        self.device_id: str | None = None

    async def request(self, method: str, path: str, body: Any = None, *,
                      raw: bytes | None = None, token: Any = "default",
                      headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None) -> Response:
        hdrs: dict[bytes, list[bytes]] = {}
        if token == "default":
            token = self.access_token
        if token is not None:
            hdrs[b"Authorization"] = [f"Bearer {token}".encode()]
        data = raw
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        if data is not None:
            hdrs[b"Content-Type"] = [b"application/json"]
        for k, v in (headers or {}).items():
            hdrs[k.encode()] = [v.encode()]
        from twisted.internet import reactor

        url = self.base_url + path
        extra: dict[str, Any] = {"agent": self.agent} if self.agent is not None \
            else {"reactor": reactor}
        resp = await treq.request(method, url, data=data, headers=hdrs,  # type: ignore[arg-type]
                                  params=params, **extra)
        content = await resp.content()
        parsed: Any = None
        if content:
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = content
        headers_out = {k.decode().lower(): [v.decode() for v in vs]
                       for k, vs in resp.headers.getAllRawHeaders()}
        return Response(resp.code, parsed, headers_out)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PUT", path, body, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("DELETE", path, body, **kw)


class TestServer:
    """A running homeserver and the ways a test talks to it."""

    __test__ = False  # not a test class

    def __init__(self, hs: HomeServer, engine: str) -> None:
        self.hs = hs
        self.engine = engine
        port = hs.ports[0].getHost().port
        self.base_url = f"http://127.0.0.1:{port}"

    def client(self, access_token: str | None = None) -> Client:
        return Client(self.base_url, access_token)

    async def register(self, localpart: str, password: str = "correct horse battery",
                       *, admin: bool = False, device_id: str | None = None) -> Client:
        """A user created through the server's own code and a client logged in as it."""
        user_id = await self.hs.sessions.create_user(localpart, password, admin=admin)
        session = await self.hs.sessions.create_login_session(user_id, device_id)
        client = self.client(session.access_token)
        client.user_id = user_id
        client.device_id = session.device_id
        return client


async def start_server(engine: str, tmp_dir: str, clock: Any = None,
                       **overrides: Any) -> TestServer:
    from twisted.internet import reactor

    config = make_config(engine, tmp_dir, **overrides)
    hs = HomeServer(config, reactor, clock=clock)
    await hs.setup()
    hs.listen()
    return TestServer(hs, engine)


async def stop_server(server: TestServer) -> None:
    await server.hs.stop()
    if server.engine == "postgres":
        drop_postgres_database(server.hs.config.database.args["database"])
