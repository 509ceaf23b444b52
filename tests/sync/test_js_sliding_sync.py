"""matrix-js-sdk's ``SlidingSync`` (MSC4186, what Element X and Element Web's
sliding sync mode speak) against our server: a user in 200 rooms sees the 20
most recent first, scrolls to the next 20, subscribes to a room outside the
window (the window grows to 40 as the user scrolls: only the 20 new rooms
come), and sees another user's message, typing, read receipt and to-device
message arrive live, through the SDK's own models (tests/sync/node/scenario.js).

Needs Node.js and ``tests/sync/node/node_modules`` (``make test`` installs
them with npm): a failure in CI, a skip elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, utils

from tests.harness import Client, TestServer
from tests.helpers import create_public_room, join, send_text

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")
# the SDK needs Node.js 22: the npm package ``node`` brings it (Debian's is 20)
NODE = os.path.join(NODE_DIR, "node_modules", ".bin", "node")
ROOMS = 200

_MISSING = shutil.which("npm") is None or not os.path.isdir(
    os.path.join(NODE_DIR, "node_modules", "matrix-js-sdk")) or not os.path.exists(NODE)
if _MISSING and os.environ.get("CI"):
    raise RuntimeError("CI: node and tests/sync/node/node_modules are needed "
                       "(make test installs them with npm)")
pytestmark = pytest.mark.skipif(
    _MISSING, reason="needs node and tests/sync/node/node_modules (make test installs it)")


def creds(client: Client) -> str:
    return json.dumps({"user_id": client.user_id, "access_token": client.access_token,
                       "device_id": client.device_id})


@pytest_twisted.ensureDeferred
async def test_js_sdk_sliding_sync_windows_subscriptions_and_live_updates(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    rooms = []
    for i in range(ROOMS):
        room_id = await create_public_room(alice, name=f"room {i}")
        await send_text(alice, room_id, f"m{i}")
        rooms.append(room_id)
    live = rooms[4]
    await join(bob, live)
    # the five oldest rooms become the most recent, room 4 last
    for i in range(5):
        await send_text(alice, rooms[i], f"bump {i}")

    out, err, code = await utils.getProcessOutputAndValue(
        NODE, [os.path.join(NODE_DIR, "scenario.js"), server.base_url, creds(alice),
               creds(bob), rooms[100], live],
        env=dict(os.environ), path=NODE_DIR, reactor=reactor)
    assert code == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])

    assert result["errors"] == []
    newest_first = [rooms[i] for i in (4, 3, 2, 1, 0)] + rooms[:4:-1]
    assert result["windows"][0] == newest_first[:20]
    assert result["windows"][1] == newest_first[20:40]
    assert result["counts"] == [ROOMS, ROOMS]
    assert result["subscribed"]["timeline"] == ["m100"]
    assert {"m.room.create", "m.room.member", "m.room.name", "m.room.power_levels"} <= set(
        result["subscribed"]["state_types"])
    live_result = result["live"]
    assert live_result["message"] and live_result["typing"] and live_result["receipt"]
    assert live_result["to_device"] == {"n": 1}
    assert live_result["room_timeline"][-1] == "hello from bob"
