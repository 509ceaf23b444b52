"""Two people chat through the web client in real browsers, against a real server.

Alice is on a phone-sized page, Bob on a desktop one; each signs up through
the client's form, Alice creates a room and invites Bob, Bob accepts, and
what one does the other sees: typing, messages, read receipts. The steps
are plain Playwright (asyncio) coroutines, run from the Twisted test with
``call``; server and browser share one event loop.
"""

from __future__ import annotations

import re
from typing import Any

import pytest_twisted

from tests.harness import TestServer
from tests.webclient.conftest import DESKTOP, PHONE, call
from tests.webclient.pages import (
    composer,
    messages,
    open_page,
    screenshot,
    serious_accessibility_problems,
    sign_up,
)


async def chat(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    alice = await open_page(browser, base_url, PHONE)
    bob = await open_page(browser, base_url, DESKTOP)
    assert await serious_accessibility_problems(alice) == []
    await screenshot(alice, "phone-sign-in")
    await sign_up(alice, "alice")
    await sign_up(bob, "bob")

    # Alice creates a room and invites Bob
    await alice.get_by_role("button", name="New room").click()
    await alice.get_by_label("Room name").fill("Tea")
    await alice.get_by_role("button", name="Create", exact=True).click()
    await expect(alice.get_by_role("heading", name="Tea")).to_be_visible()
    await alice.get_by_role("button", name="Invite", exact=True).click()
    await alice.get_by_label("User to invite").fill("bob")
    await alice.get_by_role("button", name="Send invite").click()
    await expect(alice.get_by_role("status")).to_have_text("Invited @bob:test.local.")

    # Bob sees the invite and accepts it
    await bob.get_by_role("button", name="Accept invite to Tea").click()
    await expect(bob.get_by_role("heading", name="Tea")).to_be_visible()
    await expect(messages(bob)).to_contain_text("bob joined")

    # Alice starts typing: Bob sees it before the message is sent
    box = composer(alice)
    await box.fill("hello bob")
    await expect(bob.locator(".typing")).to_have_text("alice is typing…")
    await box.press("Enter")
    await expect(box).to_have_value("")
    await expect(messages(alice)).to_contain_text("hello bob")
    await expect(messages(bob)).to_contain_text("hello bob")
    await expect(bob.locator(".typing")).to_have_text("")

    # Bob has the room open, so his receipt reaches Alice's message
    mine = messages(alice).locator(".message.mine").filter(has_text="hello bob")
    await expect(mine).to_have_attribute("data-status", "sent")
    await expect(mine).to_contain_text("Seen by bob")

    # and the other way round
    await composer(bob).fill("hi alice")
    await bob.get_by_role("button", name="Send").click()
    await expect(messages(alice)).to_contain_text("hi alice")
    # the room on a phone, and list and room side by side on a desktop
    assert await serious_accessibility_problems(alice) == []
    assert await serious_accessibility_problems(bob) == []
    await screenshot(alice, "phone-room")
    await screenshot(bob, "desktop-room")

    # Alice, on her phone, goes back to the list: the room is there, newest first
    await alice.get_by_role("button", name="Back to rooms").click()
    await expect(alice.get_by_role("button", name=re.compile("^Tea"))).to_be_visible()
    await screenshot(alice, "phone-rooms")

    for page in (alice, bob):
        assert page.errors == [], page.errors
        # every delta came over the WebSocket: not one incremental /sync poll
        assert page.sync_polls == []
        assert await page.locator(".chat").get_attribute("data-transport") == "websocket"


@pytest_twisted.ensureDeferred
async def test_two_people_sign_up_meet_in_a_room_and_chat(
        web_server: TestServer, browser: Any) -> None:
    await call(chat(browser, web_server.base_url))
    # one socket per browser, held open by the server
    assert len(web_server.hs.websocket.connections) == 2
