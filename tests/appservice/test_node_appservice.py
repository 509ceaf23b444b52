"""matrix-appservice (npm), matrix.org's application service framework (the
one under matrix-appservice-bridge), as a real service against our server:
its own ``AppServiceRegistration`` writes the registration file we load; its
``AppService`` serves our transactions (checking our hs_token); the bridge
registers a ghost, names it, joins it and sends as it with the as_token, and
hears a room member's message pushed to it. A second, independent
implementation beside mautrix (test_mautrix.py).

Needs Node.js and ``tests/appservice/node/node_modules`` (``make test``
installs it with npm); skipped without them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, utils

from tests.harness import SERVER_NAME, start_server, stop_server
from tests.helpers import create_room, send_text

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")
NODE = shutil.which("node")
V3 = "/_matrix/client/v3"

_MISSING = NODE is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules",
                                                        "matrix-appservice"))
# in CI a missing framework is a failure (the test must run), elsewhere a skip
if _MISSING and os.environ.get("CI"):
    raise RuntimeError("CI: node and tests/appservice/node/node_modules are needed "
                       "(make test installs them with npm)")
pytestmark = pytest.mark.skipif(
    _MISSING, reason="needs node and tests/appservice/node/node_modules (make test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def node(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    assert NODE is not None
    out, err, code = await utils.getProcessOutputAndValue(
        NODE, [os.path.join(NODE_DIR, "bridge.js"), *args], env=dict(os.environ),
        path=NODE_DIR, reactor=reactor)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return code, lines, err.decode()


@pytest_twisted.ensureDeferred
async def test_matrix_appservice_bridges_a_room(engine: str, tmp_path: Any) -> None:
    port = free_port()
    reg_path = os.path.join(str(tmp_path), "node-bridge.yaml")
    code, lines, err = await node("register", reg_path, f"http://127.0.0.1:{port}",
                                  SERVER_NAME)
    assert code == 0, (lines, err)
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[reg_path])
    try:
        alice = await srv.register("alice")
        room_id = await create_room(alice, preset="public_chat")
        bridge = defer.ensureDeferred(node("run", reg_path, str(port), srv.base_url, room_id))

        async def ghost_spoke() -> bool:
            resp = await alice.get(f"{V3}/rooms/{room_id}/messages",
                                   params={"dir": "b", "limit": "20"})
            return any(e["type"] == "m.room.message"
                       and e["content"].get("body") == "hello from node"
                       for e in resp.body.get("chunk", []))

        for _ in range(500):
            if bridge.called or await ghost_spoke():
                break
            await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
        else:
            raise AssertionError("the node bridge's ghost never spoke")
        assert not bridge.called, await bridge
        await send_text(alice, room_id, "hello node")
        code, lines, err = await bridge
        assert code == 0, (lines, err)
        ghost = f"@node_ghost:{SERVER_NAME}"
        assert {"ghost": ghost} in lines
        assert {"heard": "hello node", "sender": alice.user_id} in lines
        profile = await alice.get(f"{V3}/profile/{ghost}")
        assert profile.body["displayname"] == "Node Ghost"
        members = await alice.get(f"{V3}/rooms/{room_id}/joined_members")
        assert ghost in members.body["joined"]
    finally:
        await stop_server(srv)
