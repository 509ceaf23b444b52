"""Request IDs in the logs, and errors reported to Sentry by the real sentry-sdk
(to an ingestion endpoint on loopback that keeps what it receives)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from homeserver.logcompat import install_record_factory
from tests.harness import TestServer

REPO = Path(__file__).resolve().parent.parent


@pytest_twisted.ensureDeferred
async def test_each_request_has_its_id_in_the_access_log(server: TestServer,
                                                         caplog: Any) -> None:
    install_record_factory()
    caplog.set_level(logging.INFO, logger="homeserver.access")
    client = server.client()
    await client.get("/_matrix/client/versions")
    await client.get("/_matrix/client/versions")
    ids = [getattr(r, "request", None) for r in caplog.records
           if r.name == "homeserver.access" and "/_matrix/client/versions" in r.getMessage()]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(i is not None and i.startswith("GET-") for i in ids)


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]
        return bytes(brotli.decompress(body))
    return body


@pytest.fixture
def ingestion() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A Sentry ingestion endpoint: the envelopes' items, as JSON."""
    items: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            lines = _decode(body, self.headers.get("Content-Encoding")).split(b"\n")
            for line in lines[1:]:
                try:
                    items.append(json.loads(line))
                except ValueError:
                    pass
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://publickey@127.0.0.1:{httpd.server_address[1]}/1", items
    finally:
        httpd.shutdown()


SCRIPT = """
import logging, sys
import sentry_sdk
from homeserver.config import build_config
from homeserver.logcompat import current_request, install_record_factory
from homeserver.sentry import setup_sentry
install_record_factory()
logging.basicConfig(level=logging.INFO)
config = build_config({"server_name": "chat.example.org",
                       "database": {"name": "sqlite3", "args": {"database": "x.db"}},
                       "sentry": {"dsn": sys.argv[1], "environment": "staging"}})
assert setup_sentry(config)
current_request.set("PUT-7")
try:
    {}["missing"]
except KeyError:
    logging.getLogger("homeserver.http.resource").error("request PUT /x failed", exc_info=True)
logging.getLogger("homeserver.http.resource").info("an ordinary line")
sentry_sdk.flush(timeout=10)
"""


def test_errors_reach_sentry_with_server_name_and_request(
        tmp_path: Path, ingestion: tuple[str, list[dict[str, Any]]]) -> None:
    dsn, items = ingestion
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, dsn], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    events = [i for i in items if "exception" in i or "logentry" in i]
    assert len(events) == 1, items
    [event] = events
    assert event["environment"] == "staging"
    assert event["tags"]["matrix_server_name"] == "chat.example.org"
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    assert "request PUT /x failed" in json.dumps(event.get("logentry") or event)
    assert "PUT-7" in json.dumps(event)


def test_a_dsn_without_sentry_sdk_installed_is_one_config_error(tmp_path: Path) -> None:
    # an interpreter that cannot import sentry_sdk: a module of that name that fails
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sentry_sdk.py").write_text("raise ImportError('not installed')\n")
    config = tmp_path / "hs.yaml"
    config.write_text(json.dumps({
        "server_name": "example.org", "database": {"name": "sqlite3",
                                                   "args": {"database": "hs.db"}},
        "sentry": {"dsn": "http://key@127.0.0.1:9/1"}}))
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, "-m", "homeserver.cli", "run", "--config",
                           str(config)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "homeserver: config error: sentry.dsn is set but sentry-sdk is not installed "
        "(pip install 'homeserver[sentry]')")
