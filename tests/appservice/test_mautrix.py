"""mautrix (PyPI), the framework most Python bridges are built on, as a real
application service against our server: it registers ghosts, joins them,
sends as them, names them, receives the room's events in transactions and
pings itself through us.

The suite runs Twisted on the asyncio reactor (pytest.ini), so mautrix's
aiohttp server and client share the event loop with the homeserver.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from tests.appservice.conftest import AS_TOKEN, HS_TOKEN, registration, write_registration
from tests.harness import SERVER_NAME, TestServer, start_server, stop_server
from tests.helpers import create_room, send_text

mautrix_appservice = pytest.importorskip("mautrix.appservice")
from mautrix.appservice.state_store import ASStateStore  # noqa: E402
from mautrix.client.state_store import MemoryStateStore  # noqa: E402
from mautrix.types import Event, EventType  # noqa: E402

T = TypeVar("T")
V3 = "/_matrix/client/v3"


async def call(coro: Coroutine[Any, Any, T]) -> T:
    return await Deferred.fromFuture(asyncio.ensure_future(coro))


class MemoryASStateStore(ASStateStore, MemoryStateStore):  # type: ignore[misc]
    """mautrix's in-memory state store with the appservice's registered-users part."""

    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bridge:
    def __init__(self, appservice: Any, received: list[Event]) -> None:
        self.appservice = appservice
        self.received = received

    async def wait_for(self, check: Any, timeout: float = 10.0) -> Event:
        from twisted.internet import reactor, task

        for _ in range(int(timeout / 0.02)):
            for event in self.received:
                if check(event):
                    return event
            await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
        raise AssertionError("mautrix did not receive the expected event")


@pytest_twisted.async_yield_fixture
async def bridge(engine: str, tmp_path: Any) -> AsyncIterator[tuple[TestServer, Bridge]]:
    port = free_port()
    path = write_registration(tmp_path, registration(f"http://127.0.0.1:{port}"))
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[path])
    appservice = mautrix_appservice.AppService(
        server=srv.base_url, domain=SERVER_NAME, as_token=AS_TOKEN, hs_token=HS_TOKEN,
        bot_localpart="bridgebot", id="bridge", state_store=MemoryASStateStore())
    received: list[Event] = []

    @appservice.matrix_event_handler
    async def on_event(event: Event) -> None:
        received.append(event)

    await call(appservice.start("127.0.0.1", port))
    try:
        yield srv, Bridge(appservice, received)
    finally:
        await call(appservice.stop())
        await stop_server(srv)


@pytest_twisted.ensureDeferred
async def test_mautrix_ghosts_join_talk_and_hear_the_room(
        bridge: tuple[TestServer, Bridge]) -> None:
    srv, br = bridge
    alice = await srv.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    ghost_id = f"@bridge_mau:{SERVER_NAME}"
    ghost = br.appservice.intent.user(ghost_id)
    await call(ghost.ensure_registered())
    await call(ghost.set_displayname("Mau (bridged)"))
    await call(ghost.ensure_joined(room_id))
    event_id = await call(ghost.send_text(room_id, "hello from the other network"))

    seen = await alice.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert seen.code == 200, seen.body
    assert (seen.body["sender"], seen.body["content"]["body"]) == (
        ghost_id, "hello from the other network")
    profile = await alice.get(f"{V3}/profile/{ghost_id}")
    assert profile.body["displayname"] == "Mau (bridged)"

    await send_text(alice, room_id, "hello, bridge")
    message = await br.wait_for(lambda e: e.type == EventType.ROOM_MESSAGE
                                and e.sender == alice.user_id)
    assert (message.room_id, message.content.body) == (room_id, "hello, bridge")
    joined = await br.wait_for(lambda e: e.type == EventType.ROOM_MEMBER
                               and e.state_key == ghost_id)
    assert joined.room_id == room_id


@pytest_twisted.ensureDeferred
async def test_mautrix_pings_itself_through_the_homeserver(
        bridge: tuple[TestServer, Bridge]) -> None:
    _, br = bridge
    duration = await call(br.appservice.ping_self("ping-1"))
    assert isinstance(duration, int) and duration >= 0


@pytest_twisted.ensureDeferred
async def test_mautrix_bot_is_refused_outside_its_namespace(
        bridge: tuple[TestServer, Bridge]) -> None:
    from mautrix.errors import MatrixRequestError

    _, br = bridge
    outsider = br.appservice.intent.user(f"@someone:{SERVER_NAME}")
    with pytest.raises(MatrixRequestError) as e:
        await call(outsider.ensure_registered())
    assert e.value.errcode == "M_EXCLUSIVE"
