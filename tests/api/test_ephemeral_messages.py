"""Self-destructing messages (MSC2228, ``enable_ephemeral_messages``): a
message whose content has ``org.matrix.self_destruct_after`` loses its
content at that time, for every reader; nothing else does, and with the
switch off nothing does."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from tests.api.test_rooms import create_room
from tests.harness import Client
from tests.helpers import q, send

V3 = "/_matrix/client/v3"
DESTRUCT = "org.matrix.self_destruct_after"


async def messages(client: Client, room_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/messages", params={
        "dir": "b", "filter": json.dumps({"types": ["m.room.message"]})})
    assert resp.code == 200, resp.body
    return list(resp.body["chunk"])


async def pause(seconds: float) -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    await d


async def contents_after_expiry(make_server: Any, enabled: bool) -> list[dict[str, Any]]:
    clock = Clock()
    clock.advance(1_800_000_000)
    server = await make_server(clock=clock, enable_ephemeral_messages=enabled)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    now_ms = int(clock.seconds() * 1000)
    for i, extra in enumerate(({DESTRUCT: now_ms + 1000}, {})):
        resp = await send(alice, room_id, {"msgtype": "m.text", "body": f"message {i}",
                                           **extra}, f"t{i}")
        assert resp.code == 200, resp.body
    assert [m["content"]["body"] for m in await messages(alice, room_id)] == [
        "message 1", "message 0"]
    clock.advance(1.5)
    for _ in range(100):  # the expiry runs on the database thread
        chunk = await messages(alice, room_id)
        if not enabled or chunk[1]["content"] == {}:
            break
        await pause(0.02)
    return [m["content"] for m in chunk]


@pytest_twisted.ensureDeferred
async def test_a_self_destructing_message_loses_its_content_when_it_expires(
        make_server: Any) -> None:
    contents = await contents_after_expiry(make_server, enabled=True)
    assert contents == [{"msgtype": "m.text", "body": "message 1"}, {}]


@pytest_twisted.ensureDeferred
async def test_without_the_switch_messages_keep_their_content(make_server: Any) -> None:
    contents = await contents_after_expiry(make_server, enabled=False)
    assert contents[1]["body"] == "message 0"
