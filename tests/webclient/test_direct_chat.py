"""A direct chat started from the web client: invite, accept, talk, presence.

Both sides end with the room in their ``m.direct`` account data, the
spec's mark of a DM, which other clients read too.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.harness import TestServer
from tests.helpers import V3, q
from tests.webclient.conftest import DESKTOP, PHONE, call
from tests.webclient.pages import PASSWORD, composer, messages, open_page, sign_in


async def story(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    alice = await open_page(browser, base_url, DESKTOP)
    bob = await open_page(browser, base_url, PHONE)
    await sign_in(alice, "alice")
    await sign_in(bob, "bob")

    await alice.get_by_role("button", name="New chat").click()
    await alice.get_by_label("Chat with").fill("bob")
    await expect(alice.get_by_label("End-to-end encrypted")).to_be_checked()
    await alice.get_by_role("button", name="Start chat").click()
    await expect(alice.get_by_role("heading", name="bob")).to_be_visible()

    await expect(bob.get_by_text("Direct chat with @alice:test.local")).to_be_visible()
    await bob.get_by_role("button", name="Accept invite to alice").click()
    await expect(bob.get_by_role("heading", name="alice")).to_be_visible()

    await composer(alice).fill("hi bob, just us")
    await composer(alice).press("Enter")
    await expect(messages(bob)).to_contain_text("hi bob, just us")
    # Bob is syncing, so Alice's list shows him online
    await expect(alice.get_by_role("button", name="bob (online)")).to_be_visible()
    for page in (alice, bob):
        assert page.errors == [], page.errors


@pytest_twisted.ensureDeferred
async def test_a_direct_chat_is_marked_as_one_on_both_sides(
        web_server: TestServer, browser: Any) -> None:
    alice = await web_server.register("alice", PASSWORD)
    bob = await web_server.register("bob", PASSWORD)
    await call(story(browser, web_server.base_url))
    marks = {}
    for who, other in ((alice, "@bob:test.local"), (bob, "@alice:test.local")):
        resp = await who.get(f"{V3}/user/{q(who.user_id or '')}/account_data/m.direct")
        assert resp.code == 200, resp.body
        assert list(resp.body) == [other]
        marks[other] = resp.body[other]
    assert marks["@bob:test.local"] == marks["@alice:test.local"]
    assert len(marks["@bob:test.local"]) == 1
