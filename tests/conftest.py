"""Fixtures: every API test runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted

from tests.harness import TestServer, start_server, stop_server


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def server(engine: str, tmp_path: Any) -> AsyncIterator[TestServer]:
    """A homeserver with open registration, on a loopback port."""
    srv = await start_server(engine, str(tmp_path))
    yield srv
    await stop_server(srv)


@pytest_twisted.async_yield_fixture
async def make_server(engine: str, tmp_path: Any) -> AsyncIterator[Any]:
    """A factory of servers with config overrides.

    ``srv = await make_server(enable_registration=False)``
    """
    started: list[TestServer] = []
    count = [0]

    async def factory(clock: Any = None, **overrides: Any) -> TestServer:
        count[0] += 1
        path = tmp_path / f"hs{count[0]}"
        path.mkdir()
        srv = await start_server(engine, str(path), clock=clock, **overrides)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        await stop_server(srv)
