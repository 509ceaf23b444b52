"""Reactions, replies, edits and deletions between two browsers.

Alice and Bob (made through the server's own code) sign in on desktop pages
to a room they share; what one does to a message, the other sees.
"""

from __future__ import annotations

import re
from typing import Any

import pytest_twisted

from tests.harness import TestServer
from tests.helpers import create_room, join
from tests.webclient.conftest import DESKTOP, call
from tests.webclient.pages import PASSWORD, composer, messages, open_page, open_room, sign_in


def message(page: Any, text: str) -> Any:
    """The message whose own text is ``text`` (not one quoting it)."""
    body = page.locator(".body", has_text=re.compile("^" + re.escape(text) + "$"))
    return messages(page).locator(".message").filter(has=body)


async def act_on(page: Any, text: str, action: str) -> None:
    """Hover over the message (its actions show on hover) and pick one."""
    target = message(page, text)
    await target.hover()
    await target.get_by_role("button", name=action, exact=True).click()


async def story(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    alice = await open_page(browser, base_url, DESKTOP)
    bob = await open_page(browser, base_url, DESKTOP)

    async def accept(dialog: Any) -> None:
        await dialog.accept()
    alice.on("dialog", accept)
    for page, name in ((alice, "alice"), (bob, "bob")):
        await sign_in(page, name)
        await open_room(page, "Plans")

    await composer(alice).fill("plan A")
    await composer(alice).press("Enter")
    await expect(message(bob, "plan A")).to_be_visible()

    # Bob reacts: both see the count, only Bob's toggle is pressed
    await act_on(bob, "plan A", "React")
    await bob.get_by_role("button", name="React with 👍").click()
    theirs = message(alice, "plan A").get_by_role("group", name="Reactions")
    await expect(theirs.get_by_role("button", name="👍 1")).to_have_attribute(
        "aria-pressed", "false")
    mine = message(bob, "plan A").get_by_role("group", name="Reactions")
    await expect(mine.get_by_role("button", name="👍 1")).to_have_attribute(
        "aria-pressed", "true")

    # Bob replies to it
    await act_on(bob, "plan A", "Reply")
    await expect(bob.get_by_role("status").filter(has_text="Replying to alice")).to_be_visible()
    await composer(bob).fill("sounds good")
    await composer(bob).press("Enter")
    reply = message(alice, "sounds good")
    await expect(reply.locator(".reply-quote")).to_have_text("In reply to alice: plan A")

    # Alice edits her message: Bob sees the new text, marked, and no second message
    await act_on(alice, "plan A", "Edit")
    await expect(composer(alice)).to_have_value("plan A")
    await composer(alice).fill("plan B")
    await composer(alice).press("Enter")
    edited = message(bob, "plan B")
    await expect(edited).to_contain_text("(edited)")
    await expect(messages(bob).locator(".message .body").filter(has_text="plan A")).to_have_count(0)
    await expect(messages(bob).locator(".message")).to_have_count(2)
    # the reaction stays on the edited message
    await expect(edited.get_by_role("button", name="👍 1")).to_be_visible()

    # Bob takes his reaction back
    await edited.get_by_role("button", name="👍 1").click()
    await expect(message(alice, "plan B").get_by_role("group", name="Reactions")).to_have_count(0)

    # Alice deletes her message
    await act_on(alice, "plan B", "Delete")
    await expect(messages(bob).locator(".message").first).to_contain_text("Message deleted")
    for page in (alice, bob):
        assert page.errors == [], page.errors


@pytest_twisted.ensureDeferred
async def test_react_reply_edit_and_delete_show_on_the_other_screen(
        web_server: TestServer, browser: Any) -> None:
    alice = await web_server.register("alice", PASSWORD)
    bob = await web_server.register("bob", PASSWORD)
    room_id = await create_room(alice, name="Plans", preset="public_chat")
    await join(bob, room_id)
    await call(story(browser, web_server.base_url))
