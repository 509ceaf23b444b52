"""An end-to-end encrypted conversation between two browsers.

Both run matrix-js-sdk's Rust crypto (WebAssembly, served by the homeserver
with the bundle); the server only ever holds ciphertext, which the test
checks by reading the room with Alice's own access token.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted

from tests.harness import TestServer
from tests.helpers import V3, q
from tests.webclient.conftest import DESKTOP, PHONE, call
from tests.webclient.pages import composer, messages, open_page, sign_up

SECRET = "the cake is in the second drawer"


async def encrypted_chat(browser: Any, base_url: str) -> dict[str, str]:
    from playwright.async_api import expect

    alice = await open_page(browser, base_url, DESKTOP)
    bob = await open_page(browser, base_url, PHONE)
    await sign_up(alice, "alice")
    await sign_up(bob, "bob")

    await alice.get_by_role("button", name="New room").click()
    await alice.get_by_label("Room name").fill("Secrets")
    await alice.get_by_label("End-to-end encrypted").check()
    await alice.get_by_role("button", name="Create", exact=True).click()
    await expect(alice.get_by_role("heading", name="Secrets")).to_be_visible()
    await expect(messages(alice)).to_contain_text("alice turned on end-to-end encryption")
    await alice.get_by_role("button", name="Invite", exact=True).click()
    await alice.get_by_label("User to invite").fill("bob")
    await alice.get_by_role("button", name="Send invite").click()
    await expect(alice.get_by_role("status")).to_have_text("Invited @bob:test.local.")

    await bob.get_by_role("button", name="Accept invite to Secrets").click()
    await expect(bob.get_by_label("End-to-end encrypted")).to_be_visible()
    await expect(messages(alice)).to_contain_text("bob joined")

    await composer(alice).fill(SECRET)
    await composer(alice).press("Enter")
    await expect(messages(bob).locator(".message").filter(has_text=SECRET)).to_be_visible()
    await composer(bob).fill("noted")
    await composer(bob).press("Enter")
    await expect(messages(alice).locator(".message").filter(has_text="noted")).to_be_visible()
    for page in (alice, bob):
        assert page.errors == [], page.errors
    session = json.loads(await alice.evaluate(
        "localStorage.getItem('homeserver-webclient.session')"))
    room_id = await alice.evaluate(
        "decodeURIComponent(location.hash.replace('#/room/', ''))")
    return {"token": session["accessToken"], "room_id": room_id}


@pytest_twisted.ensureDeferred
async def test_an_encrypted_room_between_two_browsers_keeps_the_server_blind(
        web_server: TestServer, browser: Any) -> None:
    seen = await call(encrypted_chat(browser, web_server.base_url))
    alice = web_server.client(seen["token"])
    resp = await alice.get(f"{V3}/rooms/{q(seen['room_id'])}/messages",
                           params={"dir": "b", "limit": "50"})
    assert resp.code == 200
    types = [e["type"] for e in resp.body["chunk"]]
    assert types.count("m.room.encrypted") == 2
    assert "m.room.message" not in types
    assert SECRET not in json.dumps(resp.body)
