"""HTTPS push gateways: certificates are checked unless the operator turns
checking off with Synapse's test-only
``use_insecure_ssl_client_just_for_testing_do_not_use``; the address guard
applies either way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from twisted.internet import reactor, task

from tests.api.test_rooms import create_room, join, send_text
from tests.federation.ca import TestCA, make_test_ca
from tests.harness import TestServer
from tests.push.gateway import PushGateway
from tests.push.test_pushers import eventually, pusher_body, set_pusher


@pytest_twisted.async_yield_fixture
async def private_ca(tmp_path: Any) -> AsyncIterator[TestCA]:
    # a CA the system does not trust, as SyTest's push gateway has
    yield make_test_ca(str(tmp_path / "ca"))


async def https_gateway(ca: TestCA, interface: str) -> PushGateway:
    gateway = PushGateway(interface, tls=ca.issue(f"gateway-{interface}",
                                                  hostnames=("localhost",),
                                                  ips=(interface,)))
    await gateway.start()
    return gateway


async def bob_pushed_by(srv: TestServer, *gateways: PushGateway) -> str:
    """Bob sets a pusher per gateway; Alice sends him a message (its ID)."""
    alice = await srv.register("alice")
    bob = await srv.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    assert (await join(bob, room_id)).code == 200
    for i, gateway in enumerate(gateways):
        await set_pusher(bob, pusher_body(gateway.url, pushkey=f"key-{i}"))
    return await send_text(alice, room_id, "hello", "t1")


@pytest_twisted.ensureDeferred
async def test_gateway_with_an_untrusted_certificate_is_not_sent_the_notification(
        make_server: Any, private_ca: TestCA) -> None:
    srv: TestServer = await make_server()
    gateway = await https_gateway(private_ca, "127.0.0.1")
    try:
        await bob_pushed_by(srv, gateway)

        async def connected() -> bool:
            return gateway.connections >= 1
        await eventually(connected)
        # the handshake fails on our side: nothing is posted
        await task.deferLater(reactor, 0.3, lambda: None)  # type: ignore[arg-type]
        assert gateway.received == []
    finally:
        await gateway.stop()


@pytest_twisted.ensureDeferred
async def test_insecure_test_setting_reaches_any_certificate_but_not_blocked_addresses(
        make_server: Any, private_ca: TestCA) -> None:
    srv: TestServer = await make_server(
        use_insecure_ssl_client_just_for_testing_do_not_use=True,
        ip_range_whitelist=["127.0.0.2/32"])
    allowed = await https_gateway(private_ca, "127.0.0.2")
    blocked = await https_gateway(private_ca, "127.0.0.1")
    try:
        event_id = await bob_pushed_by(srv, allowed, blocked)

        [note] = await allowed.wait_for(1)
        assert note["event_id"] == event_id
        assert note["content"]["body"] == "hello"
        assert blocked.connections == 0 and blocked.received == []
    finally:
        await allowed.stop()
        await blocked.stop()
