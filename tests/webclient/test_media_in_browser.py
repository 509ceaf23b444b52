"""Sending an image and a file from the web client; the other side sees a
thumbnail (never the full image) and a download button.

The media are served only on the authenticated endpoints (the server's
default), so the client must fetch them with its token.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest_twisted
from PIL import Image

from tests.harness import TestServer
from tests.helpers import create_room, join
from tests.webclient.conftest import DESKTOP, PHONE, call
from tests.webclient.pages import PASSWORD, messages, open_page, open_room, sign_in


def make_photo(path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (200, 80, 40)).save(buf, "PNG")
    path.write_bytes(buf.getvalue())


async def story(browser: Any, base_url: str, photo: Path, notes: Path) -> dict[str, Any]:
    from playwright.async_api import expect

    alice = await open_page(browser, base_url, DESKTOP)
    bob = await open_page(browser, base_url, PHONE)
    for page, name in ((alice, "alice"), (bob, "bob")):
        await sign_in(page, name)
        await open_room(page, "Photos")

    await alice.get_by_label("File to send").set_input_files([str(photo), str(notes)])
    image = messages(bob).get_by_role("img", name="photo.png")
    await expect(image).to_be_visible()
    await bob.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].every(i => i.complete"
        " && i.naturalWidth > 0)")
    download = messages(bob).get_by_role("button", name="Download notes.txt (11 B)")
    await expect(download).to_be_visible()
    async with bob.expect_download() as info:
        await download.click()
    saved = await (await info.value).path()
    # the sender's uploads are done: no progress left on screen
    await expect(alice.locator(".upload")).to_have_count(0)
    for page in (alice, bob):
        assert page.errors == [], page.errors
    return {
        "natural": await image.evaluate("i => [i.naturalWidth, i.naturalHeight]"),
        "src": await image.get_attribute("src"),
        "downloaded": Path(saved).read_bytes(),
    }


@pytest_twisted.ensureDeferred
async def test_an_image_and_a_file_sent_from_one_browser_show_in_the_other(
        web_server: TestServer, browser: Any, tmp_path: Path) -> None:
    alice = await web_server.register("alice", PASSWORD)
    bob = await web_server.register("bob", PASSWORD)
    room_id = await create_room(alice, name="Photos", preset="public_chat")
    await join(bob, room_id)
    photo = tmp_path / "photo.png"
    make_photo(photo)
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"bring cake\n")
    seen = await call(story(browser, web_server.base_url, photo, notes))
    width, height = seen["natural"]
    # a thumbnail of the 1600x1200 original, in its proportions
    assert 0 < width <= 320 and 0 < height <= 240
    assert abs(width / height - 4 / 3) < 0.05
    assert seen["src"].startswith("blob:")
    assert seen["downloaded"] == b"bring cake\n"
