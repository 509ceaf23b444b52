"""The moves a person makes in the web client, as Playwright (asyncio) steps.

Run them from a Twisted test with ``conftest.call``. They find things the
way a person (or a screen reader) does: by role, label and visible text.
"""

from __future__ import annotations

import os
from typing import Any

PASSWORD = "a long enough password"
TIMEOUT = 15_000  # ms; generous for a loaded 2-core machine


def _expect_timeout() -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT)


_expect_timeout()


async def open_page(browser: Any, base_url: str, viewport: dict[str, int]) -> Any:
    """A fresh browser profile on the client's front page; uncaught page
    errors are kept in ``page.errors``."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    # incremental /sync requests over HTTP (none while the WebSocket serves them)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url)
            if "/_matrix/client/v3/sync?" in r.url and "since=" in r.url else None)
    page.sync_polls = polls
    await page.goto(base_url + "/")
    return page


async def sign_up(page: Any, name: str) -> None:
    from playwright.async_api import expect

    await page.get_by_role("button", name="No account? Create one").click()
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Confirm password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def sign_in(page: Any, name: str, password: str = PASSWORD) -> None:
    from playwright.async_api import expect

    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def messages(page: Any) -> Any:
    """The open room's timeline."""
    return page.get_by_role("log", name="Messages")


def composer(page: Any) -> Any:
    return page.get_by_role("textbox", name="Message")


async def open_room(page: Any, name: str) -> None:
    import re

    from playwright.async_api import expect

    await page.get_by_role("button", name=re.compile("^" + re.escape(name) + r"( \(|$)")).click()
    await expect(page.get_by_role("heading", name=name)).to_be_visible()


# where the tests leave screenshots of the main screens (README's come from
# `HS_WEBCLIENT_SCREENSHOTS=docs/screenshots`); unset: none are taken
SCREENSHOTS = os.environ.get("HS_WEBCLIENT_SCREENSHOTS")


async def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        await page.screenshot(path=os.path.join(SCREENSHOTS, name + ".png"))


AXE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "webclient", "node_modules", "axe-core", "axe.min.js")


async def serious_accessibility_problems(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now
    (axe-core is a dev dependency of webclient/, installed by `make webclient`)."""
    with open(AXE, encoding="utf-8") as f:
        await page.evaluate(f.read())
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(n["target"]) for n in v["nodes"][:3])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]
