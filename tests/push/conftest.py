"""The push tests' servers may reach push gateways on loopback.

Pushers go through the outbound guard (``ip_range_blacklist``, which holds
loopback by default), and our test gateways listen on 127.0.0.1: these
fixtures shadow the root ones with ``ip_range_whitelist`` opening 127.0.0.0/8
(a test that wants the default passes ``ip_range_whitelist=[]``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted

from tests.harness import TestServer, start_server, stop_server

LOOPBACK_ALLOWED = {"ip_range_whitelist": ["127.0.0.0/8"]}


@pytest_twisted.async_yield_fixture
async def server(engine: str, tmp_path: Any) -> AsyncIterator[TestServer]:
    srv = await start_server(engine, str(tmp_path), **LOOPBACK_ALLOWED)
    yield srv
    await stop_server(srv)


@pytest_twisted.async_yield_fixture
async def make_server(engine: str, tmp_path: Any) -> AsyncIterator[Any]:
    started: list[TestServer] = []
    count = [0]

    async def factory(clock: Any = None, **overrides: Any) -> TestServer:
        count[0] += 1
        path = tmp_path / f"hs{count[0]}"
        path.mkdir()
        srv = await start_server(engine, str(path), clock=clock,
                                 **{**LOOPBACK_ALLOWED, **overrides})
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        await stop_server(srv)
