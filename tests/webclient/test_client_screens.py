"""The web client's screens one at a time, in Chromium against a real server.

The other side of each conversation is a plain HTTP client (the harness),
so each test watches one browser: signing in and out, history, hostile
HTML, counts in the room list, joining by address, losing the network.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest_twisted

from tests.harness import Client, TestServer
from tests.helpers import V3, create_public_room, create_room, join, q, send, send_text
from tests.webclient.conftest import DESKTOP, PHONE, call
from tests.webclient.pages import (
    PASSWORD,
    composer,
    messages,
    open_page,
    open_room,
    sign_in,
)

SESSION_KEY = "homeserver-webclient.session"


async def room_texts(client: Client, room_id: str) -> list[str]:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/messages",
                            params={"dir": "b", "limit": "200"})
    assert resp.code == 200, resp.body
    return [e["content"].get("body") for e in reversed(resp.body["chunk"])
            if e["type"] == "m.room.message"]


# -- signing in and out ---------------------------------------------------------

async def sign_in_story(browser: Any, server: TestServer) -> str:
    from playwright.async_api import expect

    page = await open_page(browser, server.base_url, PHONE)
    await page.get_by_label("User name").fill("carol")
    await page.get_by_label("Password", exact=True).fill("not her password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")

    await sign_in(page, "carol")
    # a reload keeps the session
    await page.reload()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    session = json.loads(await page.evaluate(f"localStorage.getItem('{SESSION_KEY}')"))

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.evaluate(f"localStorage.getItem('{SESSION_KEY}')") is None
    assert page.errors == []
    return str(session["accessToken"])


@pytest_twisted.ensureDeferred
async def test_sign_in_survives_a_reload_and_sign_out_ends_the_session(
        web_server: TestServer, browser: Any) -> None:
    await web_server.register("carol", PASSWORD)
    token = await call(sign_in_story(browser, web_server))
    # signing out logged the device out on the server too
    whoami = await web_server.client(token).get(f"{V3}/account/whoami")
    assert whoami.code == 401


# -- history --------------------------------------------------------------------

async def scroll_back_story(browser: Any, base_url: str) -> list[str]:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    await sign_in(page, "carol")
    await open_room(page, "History")
    log = messages(page)
    await expect(log).to_contain_text("message 80")
    assert "message 1\n" not in await log.inner_text() + "\n"
    start = page.get_by_text("This is the start of History")
    for _ in range(40):
        if await start.is_visible():
            break
        await page.locator(".timeline").evaluate("el => { el.scrollTop = 0 }")
        await page.wait_for_timeout(250)
    await expect(start).to_be_visible()
    assert page.errors == []
    return list(await log.locator(".message .body").all_inner_texts())


@pytest_twisted.ensureDeferred
async def test_scrolling_up_loads_the_history_back_to_the_start(
        web_server: TestServer, browser: Any) -> None:
    carol = await web_server.register("carol", PASSWORD)
    room_id = await create_room(carol, name="History")
    for i in range(1, 81):
        await send_text(carol, room_id, f"message {i}")
    shown = await call(scroll_back_story(browser, web_server.base_url))
    assert shown == [f"message {i}" for i in range(1, 81)]


# -- hostile HTML ---------------------------------------------------------------

HOSTILE = (
    "<script>window.__pwned = 'script'</script>"
    "<img src=x onerror=\"window.__pwned = 'img'\">"
    "<a href=\"javascript:window.__pwned = 'link'\">click me</a> "
    "<b onmouseover=\"window.__pwned = 'hover'\">bold words</b>"
    "<iframe src=\"javascript:window.parent.__pwned = 'frame'\"></iframe>"
    "<svg><script>window.__pwned = 'svg'</script></svg>"
    "<a href=\"https://example.org/\">a fine link</a>"
)


async def hostile_story(browser: Any, base_url: str) -> dict[str, Any]:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await sign_in(page, "carol")
    await open_room(page, "Hostile")
    message = messages(page).locator(".message").filter(has_text="bold words")
    await expect(message).to_be_visible()
    await message.get_by_text("bold words").hover()
    await message.get_by_text("click me").click()
    fine = message.get_by_role("link", name="a fine link")
    await expect(fine).to_have_attribute("rel", "noopener noreferrer nofollow")
    await page.wait_for_timeout(300)
    return {
        "pwned": await page.evaluate("window.__pwned ?? null"),
        "dialogs": dialogs,
        "elements": await message.locator("script, img, iframe, svg, [onerror], "
                                          "[onmouseover]").count(),
        "js_links": await message.locator("a[href^='javascript']").count(),
        "errors": page.errors,
    }


@pytest_twisted.ensureDeferred
async def test_hostile_html_in_a_message_renders_inert(
        web_server: TestServer, browser: Any) -> None:
    carol = await web_server.register("carol", PASSWORD)
    mallory = await web_server.register("mallory")
    room_id = await create_public_room(carol, name="Hostile")
    await join(mallory, room_id)
    resp = await send(mallory, room_id, {"msgtype": "m.text", "body": "bold words",
                                         "format": "org.matrix.custom.html",
                                         "formatted_body": HOSTILE}, "hostile")
    assert resp.code == 200
    seen = await call(hostile_story(browser, web_server.base_url))
    assert seen == {"pwned": None, "dialogs": [], "elements": 0, "js_links": 0, "errors": []}


# -- the room list: joining by address, unread and mention counts ------------------

async def join_by_address(browser: Any, base_url: str) -> Any:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, PHONE)
    await sign_in(page, "carol")
    await page.get_by_role("button", name="Join room").click()
    await page.get_by_label("Room address or ID").fill("#lobby:test.local")
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(page.get_by_role("heading", name="Lobby")).to_be_visible()
    await expect(messages(page)).to_contain_text("carol joined")
    # on a phone, the list and the room take turns
    await page.get_by_role("button", name="Back to rooms").click()
    await expect(page.get_by_role("button", name="Lobby", exact=True)).to_be_visible()
    return page


async def counts_then_read(page: Any) -> None:
    from playwright.async_api import expect

    await expect(page.get_by_role("button", name="Lobby (2 unread, 1 mention)")).to_be_visible()
    await open_room(page, "Lobby")
    await expect(messages(page)).to_contain_text("carol: have a look")
    await page.get_by_role("button", name="Back to rooms").click()
    # opening the room sent a read receipt: the counts are gone
    await expect(page.get_by_role("button", name="Lobby", exact=True)).to_be_visible()
    assert page.errors == []


@pytest_twisted.ensureDeferred
async def test_join_by_address_then_unread_and_mention_counts_until_read(
        web_server: TestServer, browser: Any) -> None:
    await web_server.register("carol", PASSWORD)
    dave = await web_server.register("dave")
    room_id = await create_public_room(dave, name="Lobby", room_alias_name="lobby")
    page = await call(join_by_address(browser, web_server.base_url))
    await send_text(dave, room_id, "just chatting")
    resp = await send(dave, room_id, {"msgtype": "m.text", "body": "carol: have a look",
                                      "m.mentions": {"user_ids": ["@carol:test.local"]}},
                      "mention")
    assert resp.code == 200
    await call(counts_then_read(page))


# -- losing the network -----------------------------------------------------------

async def go_offline_and_write(browser: Any, base_url: str) -> tuple[Any, Any]:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    await sign_in(page, "carol")
    await open_room(page, "Outage")
    await expect(messages(page)).to_contain_text("before the outage")
    await page.context.set_offline(True)
    await expect(page.get_by_role("status").filter(has_text="Connection lost")).to_be_visible()
    await composer(page).fill("written offline")
    await composer(page).press("Enter")
    mine = messages(page).locator(".message.mine").filter(has_text="written offline")
    # shown at once, and said to be waiting
    await expect(mine).to_be_visible()
    await expect(mine).to_contain_text("Not sent yet: offline; will resend.")
    return page, mine


async def come_back(page: Any, mine: Any) -> None:
    from playwright.async_api import expect

    await page.context.set_offline(False)
    await expect(messages(page)).to_contain_text("during the outage", timeout=30_000)
    await expect(page.get_by_text("Connection lost")).to_have_count(0, timeout=30_000)
    # resent by itself, under its transaction ID
    await expect(mine).to_have_attribute("data-status", "sent", timeout=30_000)
    await expect(messages(page).locator(".message").filter(has_text="during the outage"))\
        .to_have_count(1)
    assert page.errors == []


@pytest_twisted.ensureDeferred
async def test_offline_and_back_loses_and_repeats_nothing(
        web_server: TestServer, browser: Any) -> None:
    carol = await web_server.register("carol", PASSWORD)
    dave = await web_server.register("dave")
    room_id = await create_public_room(carol, name="Outage")
    await join(dave, room_id)
    await send_text(dave, room_id, "before the outage")
    page, mine = await call(go_offline_and_write(browser, web_server.base_url))
    await send_text(dave, room_id, "during the outage")
    await call(come_back(page, mine))
    assert await room_texts(dave, room_id) == [
        "before the outage", "during the outage", "written offline"]


# -- the WebSocket transport dropping -------------------------------------------------

async def open_outage_room(browser: Any, base_url: str) -> Any:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    await sign_in(page, "carol")
    await open_room(page, "Sockets")
    await expect(messages(page)).to_contain_text("over the socket")
    await expect(page.locator(".chat")).to_have_attribute("data-transport", "websocket")
    assert page.sync_polls == []
    return page


async def after_the_drop(page: Any) -> None:
    from playwright.async_api import expect

    # by a new socket or by plain /sync, from the last token: nothing lost,
    # nothing twice
    await expect(messages(page)).to_contain_text("after the drop")
    await expect(messages(page).locator(".message")).to_have_count(2)
    assert page.errors == []


@pytest_twisted.ensureDeferred
async def test_a_dropped_websocket_loses_and_repeats_nothing(
        web_server: TestServer, browser: Any) -> None:
    carol = await web_server.register("carol", PASSWORD)
    dave = await web_server.register("dave")
    room_id = await create_public_room(carol, name="Sockets")
    await join(dave, room_id)
    await send_text(dave, room_id, "over the socket")
    page = await call(open_outage_room(browser, web_server.base_url))
    web_server.hs.websocket.close_all()
    await send_text(dave, room_id, "after the drop")
    await call(after_the_drop(page))


# -- search -------------------------------------------------------------------------

async def search_story(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, PHONE)
    await sign_in(page, "carol")
    await page.get_by_role("button", name="Search").click()
    box = page.get_by_role("searchbox", name="Search messages")
    await box.fill("teapot")
    await box.press("Enter")
    results = page.get_by_role("list", name="Search results").get_by_role("button")
    await expect(results).to_have_count(2)
    garden = results.filter(has_text="Garden")
    await expect(garden).to_have_text(re.compile(r"^Garden\s*dave: a teapot among the roses$"))
    await expect(results.filter(has_text="Kitchen")).to_have_text(
        re.compile(r"^Kitchen\s*carol: the teapot is blue$"))
    await garden.click()
    await expect(page.get_by_role("heading", name="Garden")).to_be_visible()
    assert page.errors == []


@pytest_twisted.ensureDeferred
async def test_search_finds_messages_across_rooms_and_opens_the_room(
        web_server: TestServer, browser: Any) -> None:
    carol = await web_server.register("carol", PASSWORD)
    dave = await web_server.register("dave")
    kitchen = await create_public_room(carol, name="Kitchen")
    garden = await create_public_room(carol, name="Garden")
    await join(dave, garden)
    await send_text(carol, kitchen, "the teapot is blue")
    await send_text(dave, garden, "a teapot among the roses")
    await send_text(dave, garden, "nothing to see")
    await call(search_story(browser, web_server.base_url))
