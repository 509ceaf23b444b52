"""Fixtures for federation tests: a factory of federating servers sharing one test CA.

``srv = await federation()`` starts a server named ``localhost:P`` (see
``tests/federation/harness.py``); the ``engine`` fixture (tests/conftest.py)
runs each test on SQLite and on PostgreSQL. Every server is stopped and its
database dropped after the test, including servers that were restarted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted

from tests.federation.ca import TestCA, make_test_ca
from tests.federation.harness import dispose, start_federated_server
from tests.harness import TestServer


@pytest.fixture
def test_ca(tmp_path: Any) -> TestCA:
    """The CA every server of this test trusts."""
    return make_test_ca(str(tmp_path / "ca"))


@pytest_twisted.async_yield_fixture
async def federation(engine: str, tmp_path: Any, test_ca: TestCA) -> AsyncIterator[Any]:
    """A factory of federating servers: ``srv = await federation(**config_overrides)``."""
    started: list[TestServer] = []
    count = [0]

    async def factory(clock: Any = None, **overrides: Any) -> TestServer:
        count[0] += 1
        srv = await start_federated_server(engine, str(tmp_path / f"hs{count[0]}"), test_ca,
                                           clock=clock, **overrides)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        try:
            await dispose(srv)
        except Exception:  # one failed teardown must not leak the other servers
            pass
