"""A room of 1,000 messages in the web client: it opens at the newest
message, and however far back one scrolls the page holds a bounded window of
messages (the timeline is virtualised), with a jump back to the latest."""

from __future__ import annotations

import time
from typing import Any

import pytest_twisted

from tests.harness import TestServer
from tests.helpers import create_room, send_text
from tests.webclient.conftest import DESKTOP, call
from tests.webclient.pages import PASSWORD, messages, open_page, open_room, sign_in

HISTORY = 1000
# the client's window (webclient/src/RoomView.tsx: WINDOW_MAX) and then some
# for day separators and notices
MOST_ROWS = 100


async def long_room_story(browser: Any, base_url: str) -> dict[str, float]:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    await sign_in(page, "carol")
    started = time.monotonic()
    await open_room(page, "Archive")
    await expect(messages(page).get_by_text(f"message {HISTORY}", exact=True)).to_be_visible()
    first_paint = time.monotonic() - started

    timeline = page.locator(".timeline")
    rows = messages(page).locator(".events > li")
    # scroll up until well over the window's worth is loaded
    for _ in range(120):
        loaded = int(await timeline.get_attribute("data-loaded") or 0)
        if loaded >= 400:
            break
        await timeline.evaluate("el => { el.scrollTop = 0 }")
        await page.wait_for_timeout(100)
        assert await rows.count() <= MOST_ROWS
    assert int(await timeline.get_attribute("data-loaded") or 0) >= 400
    # far back now: the newest messages have left the page
    assert await rows.count() <= MOST_ROWS
    await expect(messages(page).get_by_text(f"message {HISTORY}", exact=True)).to_have_count(0)
    shown = [int(t.split()[1]) for t in
             await messages(page).locator(".message .body").all_inner_texts()]
    assert shown == list(range(shown[0], shown[0] + len(shown))), "a gap in the window"
    assert shown[0] <= HISTORY - 350

    # scrolling down brings newer ones back, in order
    await timeline.evaluate("el => { el.scrollTop = el.scrollHeight }")
    await page.wait_for_timeout(300)
    later = [int(t.split()[1]) for t in
             await messages(page).locator(".message .body").all_inner_texts()]
    assert later[-1] > shown[-1]
    assert later == list(range(later[0], later[0] + len(later)))

    await page.get_by_role("button", name="Jump to latest").click()
    await expect(messages(page).get_by_text(f"message {HISTORY}", exact=True)).to_be_in_viewport()
    assert await rows.count() <= MOST_ROWS
    assert page.errors == [], page.errors
    return {"first_paint": first_paint}


@pytest_twisted.ensureDeferred
async def test_a_room_of_a_thousand_messages_keeps_a_bounded_window(
        web_server: TestServer, browser: Any) -> None:
    carol = await web_server.register("carol", PASSWORD)
    room_id = await create_room(carol, name="Archive")
    for i in range(1, HISTORY + 1):
        await send_text(carol, room_id, f"message {i}")
    figures = await call(long_room_story(browser, web_server.base_url))
    # generous: a loaded 2-core machine; bench/webclient.py measures it properly
    assert figures["first_paint"] < 10, figures

