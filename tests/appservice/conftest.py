"""A homeserver with one application service registered (its registration
file written as an operator would), and that service, a real HTTP server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
import yaml

from tests.appservice.fake_as import FakeAppService
from tests.harness import SERVER_NAME, TestServer, start_server, stop_server

AS_TOKEN = "as-secret"
HS_TOKEN = "hs-secret"


def registration(url: str | None, **overrides: Any) -> dict[str, Any]:
    reg: dict[str, Any] = {
        "id": "bridge",
        "url": url,
        "as_token": AS_TOKEN,
        "hs_token": HS_TOKEN,
        "sender_localpart": "bridgebot",
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"@bridge_.*:{SERVER_NAME}"}],
            "aliases": [{"exclusive": True, "regex": f"#bridge_.*:{SERVER_NAME}"}],
            "rooms": [],
        },
        "rate_limited": False,
        "protocols": ["irc"],
    }
    reg.update(overrides)
    return reg


def write_registration(tmp_path: Any, reg: dict[str, Any], name: str = "bridge.yaml") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(reg, f)
    return path


@pytest_twisted.async_yield_fixture
async def appservice() -> AsyncIterator[FakeAppService]:
    app = FakeAppService(HS_TOKEN)
    await app.start()
    yield app
    await app.stop()


@pytest_twisted.async_yield_fixture
async def server(engine: str, tmp_path: Any,
                 appservice: FakeAppService) -> AsyncIterator[TestServer]:
    path = write_registration(tmp_path, registration(appservice.url))
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[path])
    # failures in tests come back in a tenth of a second, not a second
    srv.hs.appservice_scheduler.initial_backoff_s = 0.1
    yield srv
    await stop_server(srv)
