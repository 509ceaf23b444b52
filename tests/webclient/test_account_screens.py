"""The notification list, the account's settings (profile, password,
sessions) and single sign-on in the web client, against a real server (and,
for SSO, a real OpenID provider: tests/sso/node)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from PIL import Image

from tests.harness import TestServer
from tests.helpers import V3, create_room, join, send, send_text
from tests.sso.provider import OpenIdProvider, needs_provider, start_provider
from tests.webclient.conftest import BUNDLE, DESKTOP, PHONE, call
from tests.webclient.pages import (
    PASSWORD,
    open_page,
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
SESSION_KEY = "homeserver-webclient.session"


# -- the notification list ---------------------------------------------------------

async def notifications_story(browser: Any, base_url: str) -> Any:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, PHONE)
    await sign_in(page, "carol")
    await page.get_by_role("button", name="Notifications").click()
    found = page.get_by_role("list", name="Notification list")
    # mentions only, by default: the mention from Busy, not the small talk
    await expect(found).to_contain_text("Busy · mention")
    await expect(found).to_contain_text("dave: carol, look at this")
    await expect(found).not_to_contain_text("small talk")
    assert await serious_accessibility_problems(page) == []
    await screenshot(page, "phone-notifications")
    # all notifications
    await page.get_by_label("Mentions only").uncheck()
    await expect(found).to_contain_text("small talk")
    await expect(found).to_contain_text("Quiet")
    # one opens its room
    await found.get_by_role("button").filter(has_text="look at this").click()
    await expect(page.get_by_role("heading", name="Busy")).to_be_visible()
    assert page.errors == [], page.errors


@pytest_twisted.ensureDeferred
async def test_the_notification_list_shows_mentions_across_rooms(
        web_server: TestServer, browser: Any) -> None:
    carol = await web_server.register("carol", PASSWORD)
    dave = await web_server.register("dave", PASSWORD)
    busy = await create_room(dave, name="Busy", preset="public_chat")
    quiet = await create_room(dave, name="Quiet", preset="public_chat")
    for room_id in (busy, quiet):
        await join(carol, room_id)
    await send_text(dave, quiet, "small talk")
    resp = await send(dave, busy, {"msgtype": "m.text", "body": "carol, look at this",
                                   "m.mentions": {"user_ids": ["@carol:test.local"]}}, "m1")
    assert resp.code == 200
    await call(notifications_story(browser, web_server.base_url))


# -- settings: profile, password, sessions ----------------------------------------------

async def settings_story(browser: Any, base_url: str, other_device: str) -> None:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, DESKTOP)
    await sign_in(page, "carol")
    await page.get_by_role("button", name="Settings").click()
    settings = page.get_by_role("region", name="Settings")

    # profile: a display name (the list's header shows it) and an avatar
    await settings.get_by_label("Display name").fill("Carol Cook")
    await settings.get_by_role("button", name="Save name").click()
    await expect(settings.get_by_role("status").filter(has_text="Display name saved.")
                 ).to_be_visible()
    await expect(page.locator(".room-list .me")).to_have_text("Carol Cook")
    await settings.get_by_label("Change your avatar").set_input_files(
        {"name": "me.png", "mimeType": "image/png", "buffer": PNG})
    await expect(settings.get_by_role("img", name="Your avatar")).to_be_visible()

    # the sessions: this one, and the phone signed in elsewhere
    sessions = settings.get_by_role("list", name="Sessions")
    await expect(sessions.locator(".member")).to_have_count(2)
    await expect(sessions).to_contain_text("this session")
    await expect(sessions).to_contain_text(other_device)
    assert await serious_accessibility_problems(page) == []
    await screenshot(page, "desktop-settings")

    # a password change asks for the current one
    await settings.get_by_label("Current password").fill("not it")
    await settings.get_by_label("New password", exact=True).fill("a brand new password")
    await settings.get_by_label("Confirm new password").fill("a brand new password")
    await settings.get_by_role("button", name="Change password").click()
    await expect(settings.get_by_role("alert")).to_have_text("The current password is wrong.")
    await settings.get_by_label("Current password").fill(PASSWORD)
    await settings.get_by_role("button", name="Change password").click()
    await expect(settings.get_by_role("status").filter(has_text="Password changed.")
                 ).to_be_visible()

    # signing the phone out asks for the (new) password
    await sessions.get_by_role("button", name=f"Sign out session {other_device}").click()
    confirm = settings.get_by_label(f"Your password, to sign out {other_device}")
    await confirm.fill(PASSWORD)
    await settings.get_by_role("button", name="Confirm sign out").click()
    await expect(settings.get_by_role("alert")).to_have_text("Wrong password.")
    await confirm.fill("a brand new password")
    await settings.get_by_role("button", name="Confirm sign out").click()
    await expect(sessions.locator(".member")).to_have_count(1)
    await expect(sessions).not_to_contain_text(other_device)
    # this session goes on
    await settings.get_by_role("button", name="Close settings").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.errors == [], page.errors

    # and the new password signs in
    fresh = await open_page(browser, base_url, PHONE)
    await sign_in(fresh, "carol", "a brand new password")
    assert fresh.errors == []


@pytest_twisted.ensureDeferred
async def test_settings_change_profile_and_password_and_sign_out_another_session(
        web_server: TestServer, browser: Any) -> None:
    phone = await web_server.register("carol", PASSWORD, device_id="PHONEDEVICE")
    await call(settings_story(browser, web_server.base_url, "PHONEDEVICE"))
    # the phone's session is over; the profile is stored
    assert (await phone.get(f"{V3}/account/whoami")).code == 401
    profile = (await web_server.client().get(f"{V3}/profile/@carol:test.local")).body
    assert profile["displayname"] == "Carol Cook"
    assert profile["avatar_url"].startswith("mxc://test.local/")


# -- single sign-on ------------------------------------------------------------------

@pytest_twisted.async_yield_fixture(scope="module")
async def provider() -> AsyncIterator[OpenIdProvider]:
    p = await start_provider()
    yield p
    await p.stop()


def idp(issuer: str) -> dict[str, Any]:
    return {
        "idp_id": "test", "idp_name": "Test SSO", "issuer": issuer,
        "client_id": "homeserver", "client_secret": "homeserver-secret",
        "scopes": ["openid", "profile", "email"], "skip_verification": True,
        "user_mapping_provider": {"config": {
            "localpart_template": "{{ user.preferred_username }}",
            "display_name_template": "{{ user.name }}"}},
    }


async def sso_story(browser: Any, base_url: str) -> dict[str, Any]:
    from playwright.async_api import expect

    page = await open_page(browser, base_url, PHONE)
    button = page.get_by_role("group", name="Single sign-on").get_by_role(
        "button", name="Continue with Test SSO")
    await expect(button).to_be_visible()
    assert await serious_accessibility_problems(page) == []
    await button.click()
    # the provider's own pages: sign in, then consent
    await page.locator("input[name=login]").fill("alice")
    await page.locator("input[name=password]").fill("any password")
    await page.locator("form button[type=submit], form [type=submit]").first.click()
    await page.locator("form button[type=submit], form [type=submit]").first.click()
    # back in the client, signed in, the one-use token gone from the address
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await expect(page.locator(".room-list .me")).to_have_text("Alice Liddell")
    assert "loginToken" not in page.url
    session: dict[str, Any] = json.loads(
        await page.evaluate(f"localStorage.getItem('{SESSION_KEY}')"))
    assert page.errors == [], page.errors
    return session


@needs_provider
@pytest_twisted.ensureDeferred
async def test_sso_buttons_sign_in_through_the_identity_provider(
        make_server: Any, provider: OpenIdProvider, browser: Any) -> None:
    srv: TestServer = await make_server(
        oidc_providers=[idp(provider.issuer)], web_client={"enabled": True, "path": BUNDLE},
        ip_range_whitelist=["127.0.0.0/8", "::1/128"])
    # the provider sends the browser back to public_baseurl: known only now
    srv.hs.config.public_baseurl = srv.base_url + "/"
    session = await call(sso_story(browser, srv.base_url))
    assert session["userId"] == "@alice:test.local"
    whoami = await srv.client(session["accessToken"]).get(f"{V3}/account/whoami")
    assert whoami.body["user_id"] == "@alice:test.local"
