"""Fixtures for the web client tests: the built bundle served by a real
homeserver, and Debian's Chromium driven by Playwright.

Neither is skipped when missing: a machine that runs the suite must have
Chromium (``apt-get install chromium``) and the built client
(``make webclient``), and the failure says so.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from tests.harness import TestServer

T = TypeVar("T")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "webclient", "dist")
CHROMIUM = os.environ.get("HS_CHROMIUM", "/usr/bin/chromium")

# no calls home: a machine without outside access refuses them, many at a time
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-gpu"]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


async def call(coro: Coroutine[Any, Any, T]) -> T:
    """Await a Playwright coroutine from a Twisted test (one asyncio loop)."""
    return await Deferred.fromFuture(asyncio.ensure_future(coro))


def _require_prerequisites() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium not found at {CHROMIUM}: the web client tests drive Debian's "
                    "Chromium; install it with `apt-get install chromium` (or point "
                    "HS_CHROMIUM at a Chromium binary)", pytrace=False)
    if not os.path.isfile(os.path.join(BUNDLE, "index.html")):
        pytest.fail(f"the web client is not built ({BUNDLE} has no index.html): run "
                    "`make webclient` (Node.js 20.19+)", pytrace=False)


@pytest_twisted.async_yield_fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium, closed after the test."""
    _require_prerequisites()
    from playwright.async_api import async_playwright

    pw = await call(async_playwright().start())
    try:
        chromium = await call(pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            await call(chromium.close())
    finally:
        await call(pw.stop())


@pytest_twisted.async_yield_fixture
async def web_server(make_server: Any) -> AsyncIterator[TestServer]:
    """A homeserver serving the built web client at /."""
    _require_prerequisites()
    yield await make_server(web_client={"enabled": True, "path": BUNDLE})
