"""A real Synapse, started by the test suite, to federate with.

``start_synapse(tmp_dir, ca, engine)`` writes a homeserver.yaml for a
Synapse whose server name is ``localhost:P`` (P a free loopback port), starts
``python -m synapse.app.homeserver`` as a child process with that config, and
returns once its client API answers over TLS. The one listener on
127.0.0.1:P serves the client and federation APIs with a certificate from the
test CA, so the port in the server name is where peers connect (no
well-known, no SRV) and the certificate for ``localhost`` is what they check.
Every config key and the reason it is set is in docs/synapse-interop.md.

The Synapse interpreter is ``$HS_SYNAPSE_PYTHON`` (``make test`` installs
matrix-synapse from PyPI into ``.synapse-venv`` and sets it), else
``.synapse-venv/bin/python`` if it exists, else /tmp/synapse-venv/bin/python.
A missing Synapse is an error, not a skip: the interop tests are the proof
that we speak Matrix to the reference implementation.

The process is a plain ``subprocess.Popen`` polled from the reactor: Twisted's
``spawnProcess`` needs the SIGCHLD handler, which the reactor under
pytest-twisted does not install. Synapse logs at INFO to ``synapse.log`` in
``tmp_dir`` (its stdout/stderr to ``synapse.stdout.log``); a failure to start
raises with the tail of both.

Fixtures for the interop modules (a test module imports the ``*_fixture``
functions; tests ask for them by their names):
``interop_ca`` and ``synapse`` are module-scoped, since one Synapse serves
every test of a module (each test uses fresh user names, see ``unique``);
``ours`` is one of our federating servers (tests/federation/harness.py) per
test, on the parametrised ``engine``, trusting the same CA.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import pytest_twisted
import yaml
from signedjson.key import generate_signing_key, write_signing_keys
from twisted.internet import ssl
from twisted.internet.task import deferLater
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IAgent

from tests.federation.ca import TestCA, make_test_ca
from tests.harness import (
    Client,
    TestServer,
    create_postgres_database,
    drop_postgres_database,
)

DEFAULT_SYNAPSE_PYTHON = "/tmp/synapse-venv/bin/python"
SHARED_SECRET = "synapse-interop-shared-secret"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

# Every rate limit Synapse has, lifted: interop tests send bursts (joins,
# invites, messages, presence) that a real user would not, and a 429 would
# make them flaky rather than wrong.
_UNLIMITED = {"per_second": 10000, "burst_count": 10000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED,
                 "failed_attempts": _UNLIMITED},
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED,
                   "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    # Inbound federation: Synapse delays requests past sleep_limit per
    # window and rejects past reject_limit; a test server sends bursts.
    "rc_federation": {"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 1,
                      "reject_limit": 10000, "concurrent": 100},
    "federation_rr_transactions_per_room_per_second": 10000,
}


class SynapseNotAvailable(RuntimeError):
    """The Synapse interpreter is missing or cannot import synapse."""


def synapse_python() -> str:
    """The interpreter that has matrix-synapse installed; fails loudly if none."""
    # absolute: Synapse runs with its temporary directory as the working directory
    repo_venv = os.path.join(os.path.dirname(__file__), "..", "..", ".synapse-venv", "bin",
                             "python")
    python = os.environ.get("HS_SYNAPSE_PYTHON") or (
        repo_venv if os.path.exists(repo_venv) else DEFAULT_SYNAPSE_PYTHON)
    python = os.path.abspath(python)
    if not os.path.exists(python):
        raise SynapseNotAvailable(
            f"no Synapse interpreter at {python}: install matrix-synapse into a venv "
            "(python -m venv .synapse-venv && .synapse-venv/bin/pip install matrix-synapse) "
            "and set HS_SYNAPSE_PYTHON=.synapse-venv/bin/python")
    check = subprocess.run([python, "-c", "import synapse; print(synapse.__version__)"],
                           capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        raise SynapseNotAvailable(
            f"{python} cannot import synapse (is matrix-synapse installed in it?):\n"
            + check.stderr[-2000:])
    return python


def free_port() -> int:
    """A loopback port nobody listens on now (Synapse binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tls_agent(ca_cert_path: str) -> IAgent:
    """An HTTP agent that trusts the test CA (and only it) for https URLs."""
    from twisted.internet import reactor

    with open(ca_cert_path, "rb") as f:
        trust = ssl.Certificate.loadPEM(f.read())
    # Non-persistent: no idle connection outlives a test.
    pool = HTTPConnectionPool(reactor, persistent=False)
    # cast: zope's @implementer is invisible to mypy
    return cast(IAgent, Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust),
                              pool=pool))


class TLSClient(Client):
    """tests.harness.Client over https, trusting the test CA."""

    def __init__(self, base_url: str, agent: IAgent, access_token: str | None = None) -> None:
        super().__init__(base_url, access_token, agent)


def _tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no {path})"


class SynapseServer:
    """A running Synapse child process and the ways a test talks to it."""

    def __init__(self, tmp_dir: str, port: int, process: subprocess.Popen[bytes],
                 agent: IAgent, pg_database: str | None) -> None:
        self.tmp_dir = tmp_dir
        self.port = port
        self.server_name = f"localhost:{port}"
        self.base_url = f"https://127.0.0.1:{port}"
        self.process = process
        self.agent = agent
        self.pg_database = pg_database
        self.log_path = os.path.join(tmp_dir, "synapse.log")
        self.stdout_path = os.path.join(tmp_dir, "synapse.stdout.log")

    def client(self, access_token: str | None = None) -> TLSClient:
        return TLSClient(self.base_url, self.agent, access_token)

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def log_tail(self, lines: int = 60) -> str:
        return (f"--- {self.log_path} ---\n{_tail(self.log_path, lines)}"
                f"--- {self.stdout_path} ---\n{_tail(self.stdout_path, 20)}")

    def log_text(self) -> str:
        """Synapse's whole log so far (tests look for a request in it)."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def register(self, localpart: str, password: str = "correct horse battery",
                       *, admin: bool = False) -> TLSClient:
        """A user made through Synapse's shared-secret admin API, and its client."""
        client = self.client()
        nonce_resp = await client.get("/_synapse/admin/v1/register", token=None)
        if nonce_resp.code != 200:
            raise AssertionError(f"Synapse register nonce: {nonce_resp.code} {nonce_resp.body}")
        nonce = nonce_resp.body["nonce"]
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        resp = await client.post("/_synapse/admin/v1/register", {
            "nonce": nonce, "username": localpart, "password": password,
            "admin": admin, "mac": mac.hexdigest(),
        }, token=None)
        if resp.code != 200:
            raise AssertionError(f"Synapse register {localpart}: {resp.code} {resp.body}")
        client.access_token = resp.body["access_token"]
        client.user_id = resp.body["user_id"]
        client.device_id = resp.body.get("device_id")
        return client

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; then drop the database."""
        from twisted.internet import reactor

        if self.process.poll() is None:
            self.process.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.process.poll() is None and time.monotonic() < deadline:
                await deferLater(reactor, 0.05, lambda: None)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if self.pg_database is not None:
            drop_postgres_database(self.pg_database)
            self.pg_database = None


def _log_config(log_path: str) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"precise": {
            "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                      "%(request)s - %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                              "filename": log_path, "encoding": "utf8"}},
        # Periodic housekeeping at INFO (a line per query, per background
        # update, per cache sweep) is noise that hides the federation lines.
        "loggers": {name: {"level": "WARNING"} for name in (
            "synapse.storage.SQL", "synapse.storage.background_updates",
            "synapse.storage.databases.main.event_push_actions", "synapse.util.caches")},
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def synapse_config(tmp_dir: str, port: int, ca: TestCA,
                   database: dict[str, Any]) -> dict[str, Any]:
    """The homeserver.yaml of a test Synapse (the why of each key: docs/synapse-interop.md)."""
    cert_path, key_path = ca.issue(f"synapse-{port}")
    config: dict[str, Any] = {
        "server_name": f"localhost:{port}",
        "pid_file": os.path.join(tmp_dir, "homeserver.pid"),
        "public_baseurl": f"https://localhost:{port}/",
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": True,
            "x_forwarded": False,
            "resources": [{"names": ["client", "federation"], "compress": False}],
        }],
        "tls_certificate_path": cert_path,
        "tls_private_key_path": key_path,
        "federation_verify_certificates": True,
        "federation_custom_ca_list": [ca.ca_cert_path],
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "signing_key_path": os.path.join(tmp_dir, "signing.key"),
        "database": database,
        "log_config": os.path.join(tmp_dir, "log_config.yaml"),
        "media_store_path": os.path.join(tmp_dir, "media_store"),
        "report_stats": False,
        "enable_metrics": False,
        "url_preview_enabled": False,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "registration_shared_secret": SHARED_SECRET,
        "macaroon_secret_key": "synapse-interop-macaroon-secret",
        "form_secret": "synapse-interop-form-secret",
        "bcrypt_rounds": 4,
        "presence": {"enabled": True},
        "allow_public_rooms_over_federation": True,
        "allow_profile_lookup_over_federation": True,
        "require_auth_for_profile_requests": False,
        "limit_profile_requests_to_users_who_share_rooms": False,
    }
    config.update(RATE_LIMITS)
    return config


async def start_synapse(tmp_dir: str, ca: TestCA, engine: str = "sqlite",
                        overrides: dict[str, Any] | None = None) -> SynapseServer:
    """A Synapse on a free loopback port, federating over TLS from ``ca``.

    ``engine`` is "sqlite" (a file in ``tmp_dir``) or "postgres" (a fresh
    database, dropped by ``stop()``); ``overrides``: config keys set on top.
    """
    from twisted.internet import reactor

    python = synapse_python()
    os.makedirs(tmp_dir, exist_ok=True)
    port = free_port()

    pg_database: str | None = None
    if engine == "sqlite":
        database: dict[str, Any] = {"name": "sqlite3",
                                    "args": {"database": os.path.join(tmp_dir, "synapse.db")}}
    elif engine == "postgres":
        args = create_postgres_database()
        pg_database = args["database"]
        database = {"name": "psycopg2", "args": args}
    else:
        raise ValueError(f"unknown engine {engine!r}")

    config = synapse_config(tmp_dir, port, ca, database)
    config.update(overrides or {})
    with open(config["signing_key_path"], "w") as f:
        write_signing_keys(f, [generate_signing_key("a_" + os.urandom(3).hex())])
    with open(config["log_config"], "w") as f:
        yaml.safe_dump(_log_config(os.path.join(tmp_dir, "synapse.log")), f)
    config_path = os.path.join(tmp_dir, "homeserver.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f)

    stdout_path = os.path.join(tmp_dir, "synapse.stdout.log")
    with open(stdout_path, "wb") as out:
        process = subprocess.Popen(
            [python, "-m", "synapse.app.homeserver", "--config-path", config_path],
            cwd=tmp_dir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the test terminal is not also
            # delivered to Synapse, which stop() ends in order.
            start_new_session=True)
    synapse = SynapseServer(tmp_dir, port, process, tls_agent(ca.ca_cert_path), pg_database)

    client = synapse.client()
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = ""
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Synapse exited with {process.returncode} while starting\n"
                                   + synapse.log_tail())
            try:
                resp = await client.get("/_matrix/client/versions", token=None)
                if resp.code == 200:
                    return synapse
                last_error = f"HTTP {resp.code}"
            except Exception as e:  # not listening yet (or TLS not up yet)
                last_error = repr(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"Synapse did not answer /versions within "
                                   f"{START_TIMEOUT_S:.0f} s (last: {last_error})\n"
                                   + synapse.log_tail())
            await deferLater(reactor, 0.2, lambda: None)
    except BaseException:
        await synapse.stop()
        raise


_counter = [0]


def unique(localpart: str) -> str:
    """A localpart no other test of this run used (the module's Synapse is shared)."""
    _counter[0] += 1
    return f"{localpart}{_counter[0]}_{os.urandom(2).hex()}"


@pytest.fixture(scope="module", name="interop_ca")
def interop_ca_fixture(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """The CA that Synapse and our servers both present certificates from and trust."""
    return make_test_ca(str(tmp_path_factory.mktemp("interop-ca")))


@pytest_twisted.async_yield_fixture(scope="module", name="synapse")
async def synapse_fixture(interop_ca: TestCA,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SynapseServer]:
    """One Synapse (on SQLite) for the whole module."""
    srv = await start_synapse(str(tmp_path_factory.mktemp("synapse")), interop_ca, "sqlite")
    yield srv
    await srv.stop()


@pytest_twisted.async_yield_fixture(name="ours")
async def ours_fixture(engine: str, tmp_path: Any, interop_ca: TestCA) -> AsyncIterator[TestServer]:
    """One of our federating servers (``ours.hs.hostname`` is ``localhost:P``)."""
    from tests.federation.harness import dispose, start_federated_server

    srv = await start_federated_server(engine, str(tmp_path / "ours"), interop_ca)
    yield srv
    await dispose(srv)
