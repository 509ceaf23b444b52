"""Room settings, threads, spaces and read markers in the web client.

Users are made through the server's own code; each test drives one or two
browsers and checks what the people see, and, where the client's action is
the point, what the server stored.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest_twisted
from PIL import Image

from tests.harness import Client, TestServer
from tests.helpers import V3, create_room, join, q, send_text
from tests.webclient.conftest import DESKTOP, PHONE, call
from tests.webclient.pages import (
    PASSWORD,
    composer,
    messages,
    open_page,
    open_room,
    screenshot,
    serious_accessibility_problems,
    sign_in,
)


def png() -> bytes:
    """A small image, for avatars."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


PNG = png()


def message(page: Any, text: str) -> Any:
    """The main timeline's message whose own text is ``text``."""
    body = page.locator(".body", has_text=re.compile("^" + re.escape(text) + "$"))
    return messages(page).locator(".message").filter(has=body)


async def accept_dialogs(page: Any) -> None:
    async def accept(dialog: Any) -> None:
        await dialog.accept()
    page.on("dialog", accept)


async def state(client: Client, room_id: str, event_type: str, key: str = "") -> Any:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/state/{event_type}/{q(key)}")
    return resp.body if resp.code == 200 else None


# -- room settings ------------------------------------------------------------------

async def settings_story(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    alice = await open_page(browser, base_url, DESKTOP)
    bob = await open_page(browser, base_url, PHONE)
    await accept_dialogs(alice)
    for page, name in ((alice, "alice"), (bob, "bob")):
        await sign_in(page, name)
        await open_room(page, "Plans")

    await alice.get_by_role("button", name="Room settings").click()
    panel = alice.get_by_role("region", name="Room settings")
    await expect(panel.get_by_label("Room name")).to_have_value("Plans")
    members = panel.get_by_role("list", name="Members")
    # roles from the power levels: the creator is admin, the others members
    await expect(members.locator(".member").filter(has_text="@alice:test.local")).to_contain_text(
        "Admin")
    assert await serious_accessibility_problems(alice) == []
    await screenshot(alice, "desktop-room-settings")

    # name and topic: Bob sees them change
    await panel.get_by_label("Room name").fill("Big plans")
    await panel.get_by_label("Room topic").fill("What we do next")
    await panel.get_by_role("button", name="Save").click()
    await expect(bob.get_by_role("heading", name="Big plans")).to_be_visible()
    await expect(bob.locator(".room-header")).to_contain_text("What we do next")

    # an avatar: uploaded, then shown in both headers
    await panel.get_by_label("Change room avatar").set_input_files(
        {"name": "avatar.png", "mimeType": "image/png", "buffer": PNG})
    await expect(bob.get_by_role("img", name="Big plans avatar")).to_be_visible()

    # Bob becomes a moderator: his own list says so
    await panel.get_by_label("Role of bob").select_option("Moderator")
    await expect(panel.get_by_role("status")).to_have_text("bob is now moderator.")
    await bob.get_by_role("button", name="Room settings").click()
    bob_panel = bob.get_by_role("region", name="Room settings")
    await expect(bob_panel.get_by_role("list", name="Members").locator(".member").filter(
        has_text="@bob:test.local")).to_contain_text("Moderator")
    # a moderator may remove members, but not change roles (power levels
    # need an admin) nor act on the admin
    await expect(bob_panel.get_by_role("button", name="Remove carol")).to_be_visible()
    await expect(bob_panel.get_by_role("button", name="Remove alice")).to_have_count(0)
    await expect(bob_panel.get_by_label(re.compile("^Role of"))).to_have_count(0)
    assert await serious_accessibility_problems(bob) == []
    await screenshot(bob, "phone-room-settings")

    # kick Carol, ban Dave: both leave the list, the timeline says so
    await panel.get_by_role("button", name="Remove carol").click()
    await expect(members.locator(".member").filter(has_text="@carol:test.local")).to_have_count(0)
    await panel.get_by_role("button", name="Ban dave").click()
    await expect(panel.get_by_role("list", name="Banned")).to_contain_text("dave")
    await expect(members.locator(".member").filter(has_text="@dave:test.local")).to_have_count(0)
    await panel.get_by_role("button", name="Close").click()
    await expect(messages(alice)).to_contain_text("alice removed carol")
    await expect(messages(alice)).to_contain_text("alice banned dave")
    for page in (alice, bob):
        assert page.errors == [], page.errors


@pytest_twisted.ensureDeferred
async def test_room_settings_name_topic_avatar_roles_kick_and_ban(
        web_server: TestServer, browser: Any) -> None:
    alice = await web_server.register("alice", PASSWORD)
    others = {name: await web_server.register(name, PASSWORD) for name in ("bob", "carol", "dave")}
    room_id = await create_room(alice, name="Plans", preset="public_chat")
    for client in others.values():
        await join(client, room_id)
    await call(settings_story(browser, web_server.base_url))
    # what the server holds is what the screens showed
    assert (await state(alice, room_id, "m.room.name"))["name"] == "Big plans"
    assert (await state(alice, room_id, "m.room.topic"))["topic"] == "What we do next"
    assert (await state(alice, room_id, "m.room.avatar"))["url"].startswith("mxc://test.local/")
    assert (await state(alice, room_id, "m.room.power_levels"))["users"]["@bob:test.local"] == 50
    assert (await state(alice, room_id, "m.room.member", "@carol:test.local"))[
        "membership"] == "leave"
    assert (await state(alice, room_id, "m.room.member", "@dave:test.local"))[
        "membership"] == "ban"


# -- threads --------------------------------------------------------------------------

async def thread_story(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    alice = await open_page(browser, base_url, PHONE)
    bob = await open_page(browser, base_url, DESKTOP)
    for page, name in ((alice, "alice"), (bob, "bob")):
        await sign_in(page, name)
        await open_room(page, "Plans")
    await composer(alice).fill("lunch?")
    await composer(alice).press("Enter")
    await expect(message(bob, "lunch?")).to_be_visible()

    # Bob answers in a thread
    root = message(bob, "lunch?")
    await root.hover()
    await root.get_by_role("button", name="Reply in thread").click()
    thread = bob.get_by_role("region", name="Thread", exact=True)
    await expect(thread).to_contain_text("lunch?")
    await thread.get_by_label("Reply in thread").fill("pizza")
    await thread.get_by_label("Reply in thread").press("Enter")
    await expect(thread.get_by_role("list", name="Thread replies")).to_contain_text("pizza")

    # Alice sees a summary under her message, not the reply in the timeline
    summary = message(alice, "lunch?").locator(".thread-summary")
    await expect(summary).to_have_text("1 reply · bob: pizza")
    await expect(message(alice, "pizza")).to_have_count(0)
    await summary.click()
    theirs = alice.get_by_role("region", name="Thread", exact=True)
    await expect(theirs.get_by_role("list", name="Thread replies")).to_contain_text("pizza")
    assert await serious_accessibility_problems(alice) == []
    await screenshot(alice, "phone-thread")
    await theirs.get_by_label("Reply in thread").fill("yes please")
    await theirs.get_by_role("button", name="Send").click()
    await expect(thread.get_by_role("list", name="Thread replies")).to_contain_text("yes please")
    await expect(message(bob, "lunch?").locator(".thread-summary")).to_have_text(
        "2 replies · alice: yes please")
    await screenshot(bob, "desktop-thread")
    # the room's threads, listed: one, opening the same thread
    await bob.get_by_role("button", name="Threads", exact=True).click()
    listed = bob.get_by_role("list", name="Threads of this room")
    await expect(listed.get_by_role("button")).to_have_count(1)
    await expect(listed).to_contain_text("alice: lunch?")
    await expect(listed).to_contain_text("2 replies")
    await listed.get_by_role("button").click()
    await expect(bob.get_by_role("region", name="Thread", exact=True).get_by_role(
        "list", name="Thread replies")).to_contain_text("yes please")
    # the main timeline keeps going
    await theirs.get_by_role("button", name="Close thread").click()
    await composer(alice).fill("back to work")
    await composer(alice).press("Enter")
    await expect(message(bob, "back to work")).to_be_visible()
    await expect(messages(bob).locator(".message")).to_have_count(2)
    for page in (alice, bob):
        assert page.errors == [], page.errors


@pytest_twisted.ensureDeferred
async def test_a_thread_opens_in_a_panel_and_its_root_shows_a_summary(
        web_server: TestServer, browser: Any) -> None:
    alice = await web_server.register("alice", PASSWORD)
    bob = await web_server.register("bob", PASSWORD)
    room_id = await create_room(alice, name="Plans", preset="public_chat")
    await join(bob, room_id)
    await call(thread_story(browser, web_server.base_url))
    # the replies are m.thread relations of the root, as other clients expect
    chunk = (await alice.get(f"{V3}/rooms/{q(room_id)}/messages",
                             params={"dir": "b", "limit": "50"})).body["chunk"]
    root = next(e for e in chunk if e["content"].get("body") == "lunch?")
    replies = [e for e in chunk if e["content"].get("m.relates_to", {}).get("rel_type")
               == "m.thread"]
    assert sorted(e["content"]["body"] for e in replies) == ["pizza", "yes please"]
    assert {e["content"]["m.relates_to"]["event_id"] for e in replies} == {root["event_id"]}


# -- spaces -------------------------------------------------------------------------

async def spaces_story(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    await sign_in(page, "alice")
    rooms = page.get_by_role("navigation", name="Rooms")
    for name in ("Tea", "Work"):
        await expect(rooms.get_by_role("button", name=name, exact=True)).to_be_visible()

    await page.get_by_role("button", name="New space").click()
    await page.get_by_label("Space name").fill("Acme")
    await page.get_by_role("button", name="Create space").click()
    spaces = page.get_by_role("group", name="Spaces")
    await expect(spaces.get_by_role("button", name="Acme")).to_have_attribute(
        "aria-pressed", "true")
    await expect(rooms).to_contain_text("No rooms in Acme yet.")

    # add Work to it: only Work is listed in Acme
    await page.get_by_label("Room to add to Acme").select_option(label="Work")
    await page.get_by_role("button", name="Add to space").click()
    await expect(rooms.get_by_role("button", name="Work", exact=True)).to_be_visible()
    await expect(rooms.get_by_role("button", name="Tea", exact=True)).to_have_count(0)

    # a room made while in Acme joins it
    await page.get_by_role("button", name="New room").click()
    await page.get_by_label("Room name").fill("Standup")
    await page.get_by_role("button", name="Create", exact=True).click()
    await expect(page.get_by_role("heading", name="Standup")).to_be_visible()
    await expect(rooms.get_by_role("button", name="Standup", exact=True)).to_be_visible()
    assert await serious_accessibility_problems(page) == []
    await screenshot(page, "desktop-space")

    # all rooms again: the three rooms, never the space itself
    await spaces.get_by_role("button", name="All rooms").click()
    for name in ("Tea", "Work", "Standup"):
        await expect(rooms.get_by_role("button", name=name, exact=True)).to_be_visible()
    await expect(rooms.locator(".room-item", has_text="Acme")).to_have_count(0)
    assert page.errors == [], page.errors


@pytest_twisted.ensureDeferred
async def test_a_space_is_a_workspace_that_filters_the_room_list(
        web_server: TestServer, browser: Any) -> None:
    alice = await web_server.register("alice", PASSWORD)
    ids = {name: await create_room(alice, name=name) for name in ("Tea", "Work")}
    await call(spaces_story(browser, web_server.base_url))
    joined = (await alice.get(f"{V3}/joined_rooms")).body["joined_rooms"]
    spaces = [r for r in joined
              if (await state(alice, r, "m.room.create")).get("type") == "m.space"]
    assert len(spaces) == 1
    children = {r for r in joined if await state(alice, spaces[0], "m.space.child", r)}
    assert ids["Work"] in children and ids["Tea"] not in children
    assert len(children) == 2  # Work and Standup


async def space_directory_story(browser: Any, base_url: str) -> None:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, PHONE)
    await sign_in(page, "alice")
    await page.get_by_role("group", name="Spaces").get_by_role("button", name="Club").click()
    rooms = page.get_by_role("navigation", name="Rooms")
    await expect(rooms).to_contain_text("No rooms in Club yet.")
    offer = page.get_by_role("list", name="Rooms in Club to join")
    await expect(offer).to_contain_text("Garden")
    await expect(offer).to_contain_text("Where we grow things")
    assert await serious_accessibility_problems(page) == []
    await offer.get_by_role("button", name="Join Garden").click()
    await expect(page.get_by_role("heading", name="Garden")).to_be_visible()
    await expect(messages(page)).to_contain_text("alice joined")
    await page.get_by_role("button", name="Back to rooms").click()
    await expect(rooms.get_by_role("button", name="Garden", exact=True)).to_be_visible()
    await expect(offer).to_have_count(0)
    assert page.errors == [], page.errors


@pytest_twisted.ensureDeferred
async def test_a_space_offers_its_rooms_one_has_not_joined(
        web_server: TestServer, browser: Any) -> None:
    alice = await web_server.register("alice", PASSWORD)
    dave = await web_server.register("dave", PASSWORD)
    space = await create_room(dave, name="Club", preset="public_chat",
                              creation_content={"type": "m.space"})
    garden = await create_room(dave, name="Garden", topic="Where we grow things",
                               preset="public_chat")
    resp = await dave.put(f"{V3}/rooms/{q(space)}/state/m.space.child/{q(garden)}",
                          {"via": ["test.local"]})
    assert resp.code == 200, resp.body
    await join(alice, space)
    await call(space_directory_story(browser, web_server.base_url))
    joined = (await alice.get(f"{V3}/joined_rooms")).body["joined_rooms"]
    assert garden in joined


# -- read markers ---------------------------------------------------------------------

async def read_marker_first_visit(browser: Any, base_url: str) -> Any:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    await sign_in(page, "carol")
    await open_room(page, "Busy")
    await expect(message(page, "old 3")).to_be_visible()
    # leaving the room moves the read marker to what was read
    await open_room(page, "Quiet")
    return page


async def read_marker_second_visit(page: Any) -> None:
    from playwright.async_api import expect

    await open_room(page, "Busy")
    # the room opens at the newest message, offering a jump back to the
    # first unread one (further back than the screen)
    await expect(message(page, "news 25")).to_be_in_viewport()
    await expect(message(page, "news 1")).not_to_be_in_viewport()
    await page.get_by_role("button", name="Jump to first unread").click()
    line = messages(page).get_by_role("separator", name="New messages")
    await expect(line).to_be_in_viewport()
    # the line sits right above the first message Carol has not read
    await expect(messages(page).locator(".unread-line + li")).to_contain_text("news 1")
    await expect(line).to_have_count(1)
    await screenshot(page, "desktop-read-marker")

    # read now: the next visit has no line
    await open_room(page, "Quiet")
    await open_room(page, "Busy")
    await expect(message(page, "news 25")).to_be_visible()
    await expect(messages(page).get_by_role("separator", name="New messages")).to_have_count(0)
    await expect(page.get_by_role("button", name="Jump to first unread")).to_have_count(0)
    assert page.errors == [], page.errors


async def fully_read(client: Client, room_id: str) -> str | None:
    resp = await client.get(f"{V3}/user/{q(client.user_id)}/rooms/{q(room_id)}"
                            "/account_data/m.fully_read")
    return resp.body.get("event_id") if resp.code == 200 else None


@pytest_twisted.ensureDeferred
async def test_the_read_marker_shows_where_unread_messages_start(
        web_server: TestServer, browser: Any) -> None:
    from twisted.internet import reactor, task

    carol = await web_server.register("carol", PASSWORD)
    dave = await web_server.register("dave", PASSWORD)
    busy = await create_room(dave, name="Busy", preset="public_chat")
    quiet = await create_room(dave, name="Quiet", preset="public_chat")
    for room_id in (busy, quiet):
        await join(carol, room_id)
    last_read = ""
    for i in range(1, 4):
        last_read = await send_text(dave, busy, f"old {i}")

    async def marker_reaches(event_id: str) -> None:
        for _ in range(150):
            if await fully_read(carol, busy) == event_id:
                return
            await task.deferLater(reactor, 0.1, lambda: None)
        assert await fully_read(carol, busy) == event_id

    page = await call(read_marker_first_visit(browser, web_server.base_url))
    await marker_reaches(last_read)
    newest = ""
    for i in range(1, 26):
        newest = await send_text(dave, busy, f"news {i}")
    await call(read_marker_second_visit(page))
    await marker_reaches(newest)
