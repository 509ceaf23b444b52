"""Push gateways on addresses in ``ip_range_blacklist`` are never contacted.

A pusher's URL is the user's choice, so it could point this server at its own
admin ports or the cloud metadata service. As Synapse, ``pushers/set``
accepts any well-formed gateway URL; the address is checked when we connect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted

from tests.api.test_rooms import V3, create_room, join, send_text
from tests.harness import TestServer
from tests.push.gateway import PushGateway
from tests.push.test_pushers import eventually, pusher_body, pushers_of, set_pusher


@pytest.fixture
def refusals() -> Iterator[list[str]]:
    """The outbound guard's log lines (who was not connected to), live."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("homeserver.http.outbound")
    handler = Collect()
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest_twisted.ensureDeferred
async def test_only_the_whitelisted_gateway_hears_of_a_message(
        make_server: Any, refusals: list[str]) -> None:
    # loopback is in the default blacklist; only 127.0.0.2 is let through
    srv: TestServer = await make_server(ip_range_whitelist=["127.0.0.2/32"])
    blocked, allowed = PushGateway("127.0.0.1"), PushGateway("127.0.0.2")
    await blocked.start()
    await allowed.start()
    try:
        alice = await srv.register("alice")
        bob = await srv.register("bob")
        room_id = await create_room(alice, preset="public_chat", name="Chat")
        assert (await join(bob, room_id)).code == 200
        # both are accepted: only the URL's form is checked up front
        await set_pusher(bob, pusher_body(blocked.url, pushkey="blocked"))
        await set_pusher(bob, pusher_body(allowed.url, pushkey="allowed"))
        assert sorted(p["pushkey"] for p in await pushers_of(bob)) == ["allowed", "blocked"]

        event_id = await send_text(alice, room_id, "hello", "t1")

        [note] = await allowed.wait_for(1)
        assert note["event_id"] == event_id

        async def refused() -> bool:
            return any("127.0.0.1" in line and "blacklist" in line for line in refusals)
        await eventually(refused)
        assert blocked.connections == 0
        assert blocked.received == []
    finally:
        await blocked.stop()
        await allowed.stop()


@pytest_twisted.ensureDeferred
async def test_a_gateway_on_loopback_is_reached_once_loopback_is_whitelisted(
        make_server: Any) -> None:
    srv: TestServer = await make_server(ip_range_whitelist=["127.0.0.0/8"])
    gateway = PushGateway("127.0.0.1")
    await gateway.start()
    try:
        alice = await srv.register("alice")
        bob = await srv.register("bob")
        room_id = await create_room(alice, preset="public_chat")
        assert (await join(bob, room_id)).code == 200
        await set_pusher(bob, pusher_body(gateway.url))
        event_id = await send_text(alice, room_id, "hello", "t1")
        [note] = await gateway.wait_for(1)
        assert note["event_id"] == event_id
        assert gateway.connections >= 1
    finally:
        await gateway.stop()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/_matrix/push/v1/notify",
    "http://[::1]:8080/_matrix/push/v1/notify",
])
@pytest_twisted.ensureDeferred
async def test_a_blocked_gateway_url_is_accepted_as_synapse_does(
        make_server: Any, url: str) -> None:
    srv: TestServer = await make_server(ip_range_whitelist=[])
    bob = await srv.register("bob")
    resp = await bob.post(f"{V3}/pushers/set", pusher_body(url))
    assert (resp.code, resp.body) == (200, {})
