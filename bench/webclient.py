"""Scenario ``webclient``: the web client in Chromium, as a person sees it.

    python -m bench.webclient --engine sqlite|postgres [--messages 100] [--history 1000]
        [--paint-runs 5] [--json PATH]

Needs Debian's Chromium (``apt-get install chromium``, or ``HS_CHROMIUM``)
and the built client (``make webclient``). Our server runs as for every
scenario (``bench.server.LocalServer``; ``homeserver init`` turns the web
client on), and two headless browser pages sign up through the client's own
form; Alice creates a room and invites Bob, who accepts.

Figures:

- ``send_to_screen``: for each of ``messages`` messages, from the moment
  Alice presses Enter in her page to the moment the message is in Bob's
  page's DOM (a MutationObserver notes ``Date.now()``; both pages share the
  machine's clock), one message at a time; p50, p90, p99, max (ms). The path
  is the whole product: React, matrix-js-sdk's send, the server, the
  WebSocket push to Bob, the SDK's sync processing, React again.
- ``room_first_paint``: a room holding ``history`` messages (sent over the
  API, not timed); Alice opens a fresh page (her session in its storage), and
  the figure is from the click on the room in the list to its newest message
  on screen, p50 over ``paint_runs`` page loads (ms); ``load_to_list`` is from
  navigation to the room being listed (the initial sync).
- ``history_window``: that room scrolled back to its start in one page (so
  all ``history`` messages are loaded): the most rows the page held (the
  timeline is windowed), each scroll-to-top's time to the next frame, and
  "Jump to latest" to the newest message on screen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
import uuid
from typing import Any
from urllib.parse import quote

from bench.server import DEFAULT_PG_DSN, LocalServer, finish_run, interrupt_on_signals
from bench.sync import summary_ms

CHROMIUM = os.environ.get("HS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-gpu"]
PASSWORD = "a long enough password"
SESSION_KEY = "homeserver-webclient.session"
TIMEOUT_MS = 30_000

# notes when each "bench N" message first shows in the page
OBSERVER = """() => {
  window.__seen = {};
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('.message .body')) {
      const m = /^bench (\\d+)$/.exec(el.textContent || '');
      if (m && !(m[1] in window.__seen)) window.__seen[m[1]] = Date.now();
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def sign_up(page: Any, name: str) -> None:
    page.get_by_role("button", name="No account? Create one").click()
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("button", name="Sign out").wait_for()


def put(base_url: str, token: str, path: str, body: Any) -> Any:
    req = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def scroll_through(context: Any, base_url: str, history: int) -> dict[str, Any]:
    """Scroll the History room back to its start (every event loaded), noting
    the most rows the page held and how long each scroll took to paint; then
    time "Jump to latest" to the newest message on screen."""
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base_url + "/")
    page.get_by_role("button", name="History", exact=True).click()
    page.locator(".message .body", has_text=f"history {history}").wait_for()
    timeline = page.locator(".timeline")
    start_text = page.get_by_text("This is the start of History")
    most_rows, frames, began = 0, [], time.monotonic()
    while not start_text.is_visible() and time.monotonic() - began < 600:
        t0 = time.monotonic()
        # one scroll to the top, and the frame after it
        timeline.evaluate("el => new Promise(r => { el.scrollTop = 0;"
                          " requestAnimationFrame(() => requestAnimationFrame(r)); })")
        frames.append(time.monotonic() - t0)
        most_rows = max(most_rows, page.locator(".events > li").count())
        page.wait_for_timeout(50)
    loaded = int(timeline.get_attribute("data-loaded") or 0)
    scrolled = time.monotonic() - began
    t0 = time.monotonic()
    jump = page.get_by_role("button", name="Jump to latest")
    if jump.count():
        jump.click()
    else:  # a client without the button (one that keeps every row in the page)
        timeline.evaluate("el => { el.scrollTop = el.scrollHeight }")
    page.locator(".message .body", has_text=f"history {history}").wait_for(state="visible")
    jump = time.monotonic() - t0
    rows_after = page.locator(".events > li").count()
    page.close()
    return {"events_loaded": loaded, "most_rows_in_page": most_rows,
            "rows_after_jump": rows_after, "scroll_to_start_s": round(scrolled, 1),
            "scroll_frame": summary_ms(frames), "jump_to_latest_ms": round(jump * 1000)}


def run(base_url: str, messages: int, history: int, paint_runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        alice_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        bob_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        alice, bob = alice_ctx.new_page(), bob_ctx.new_page()
        for page in (alice, bob):
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(base_url + "/")
        sign_up(alice, "alice")
        sign_up(bob, "bob")
        alice.get_by_role("button", name="New room").click()
        alice.get_by_label("Room name").fill("Bench")
        alice.get_by_role("button", name="Create", exact=True).click()
        alice.get_by_role("heading", name="Bench").wait_for()
        alice.get_by_role("button", name="Invite", exact=True).click()
        alice.get_by_label("User to invite").fill("bob")
        alice.get_by_role("button", name="Send invite").click()
        bob.get_by_role("button", name="Accept invite to Bench").click()
        bob.get_by_role("heading", name="Bench").wait_for()
        transport = bob.locator(".chat").get_attribute("data-transport")

        bob.evaluate(OBSERVER)
        box = alice.get_by_role("textbox", name="Message")
        latencies = []
        for i in range(messages):
            box.fill(f"bench {i}")
            pressed = time.time() * 1000
            box.press("Enter")
            seen = bob.wait_for_function(f"() => window.__seen['{i}']").json_value()
            latencies.append((seen - pressed) / 1000)

        # a room with history, then fresh page loads that open it
        session = json.loads(alice.evaluate(f"localStorage.getItem('{SESSION_KEY}')"))
        token = session["accessToken"]
        req = urllib.request.Request(base_url + "/_matrix/client/v3/createRoom",
                                     data=json.dumps({"name": "History"}).encode(),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            room_id = json.loads(resp.read())["room_id"]
        for i in range(1, history + 1):
            put(base_url, token, f"/_matrix/client/v3/rooms/{quote(room_id)}/send/"
                f"m.room.message/{uuid.uuid4().hex}", {"msgtype": "m.text",
                                                       "body": f"history {i}"})
        paints, loads = [], []
        for _ in range(paint_runs):
            page = alice_ctx.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            start = time.monotonic()
            page.goto(base_url + "/")
            room = page.get_by_role("button", name="History", exact=True)
            room.wait_for()
            listed = time.monotonic()
            room.click()
            page.locator(".message .body", has_text=f"history {history}").wait_for()
            painted = time.monotonic()
            loads.append(listed - start)
            paints.append(painted - listed)
            page.close()
        window = scroll_through(alice_ctx, base_url, history)
        browser.close()
    return {"transport": transport,
            "send_to_screen": summary_ms(latencies),
            "room_first_paint": summary_ms(paints),
            "load_to_list": summary_ms(loads),
            "history_window": window,
            "params": {"messages": messages, "history": history, "paint_runs": paint_runs}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webclient", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--paint-runs", type=int, default=5)
    parser.add_argument("--pg-dsn", default=os.environ.get("HS_TEST_POSTGRES", DEFAULT_PG_DSN))
    parser.add_argument("--json", help="write the results here too")
    ns = parser.parse_args(argv)
    if not os.access(CHROMIUM, os.X_OK):
        print(f"Chromium not found at {CHROMIUM}: apt-get install chromium", file=sys.stderr)
        return 2
    interrupt_on_signals()
    results: dict[str, Any] = {"scenario": "webclient", "engine": ns.engine}
    with LocalServer(ns.engine, pg_dsn=ns.pg_dsn) as server:
        try:
            target = server.start()
            results.update(run(target.base_url, ns.messages, ns.history, ns.paint_runs))
        finally:
            finish_run(server, results, ns.json, keep=False)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
