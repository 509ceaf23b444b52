"""Pushers: clients set them; notifications reach the push gateway as the
spec's push gateway API describes (checked by a real gateway on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.api.test_rooms import V3, create_room, join, send_text
from tests.harness import Client, TestServer
from tests.push.gateway import PushGateway


@pytest_twisted.async_yield_fixture
async def gateway() -> AsyncIterator[PushGateway]:
    gw = PushGateway()
    await gw.start()
    yield gw
    await gw.stop()
    assert gw.invalid == [], "the server sent bodies that break the spec's schema"


def pusher_body(url: str, pushkey: str = "key-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "http", "app_id": "com.example.app.ios", "pushkey": pushkey,
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": {"url": url},
    }
    body.update(extra)
    return body


async def set_pusher(client: Client, body: dict[str, Any]) -> None:
    resp = await client.post(f"{V3}/pushers/set", body)
    assert (resp.code, resp.body) == (200, {}), resp.body


async def pushers_of(client: Client) -> list[dict[str, Any]]:
    resp = await client.get(f"{V3}/pushers")
    assert resp.code == 200, resp.body
    return list(resp.body["pushers"])


async def eventually(check: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if await check():
            return
        await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
    raise AssertionError("condition not met in time")


# -- the client API -----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_pusher_is_set_listed_updated_and_deleted(server: TestServer) -> None:
    alice = await server.register("alice")
    url = "https://push.example.com/_matrix/push/v1/notify"
    await set_pusher(alice, pusher_body(url, profile_tag="tag", data={
        "url": url, "format": "event_id_only", "custom": 1}))

    assert await pushers_of(alice) == [{
        "pushkey": "key-1", "kind": "http", "app_id": "com.example.app.ios",
        "app_display_name": "Example", "device_display_name": "Phone", "profile_tag": "tag",
        "lang": "en", "data": {"url": url, "format": "event_id_only", "custom": 1}}]

    await set_pusher(alice, pusher_body(url, device_display_name="New phone"))
    [updated] = await pushers_of(alice)
    assert updated["device_display_name"] == "New phone"
    assert updated["data"] == {"url": url}

    await set_pusher(alice, {"kind": None, "app_id": "com.example.app.ios",
                             "pushkey": "key-1"})
    assert await pushers_of(alice) == []


@pytest_twisted.ensureDeferred
async def test_pushkey_moves_between_users_unless_appended(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    url = "https://push.example.com/_matrix/push/v1/notify"
    await set_pusher(alice, pusher_body(url))

    await set_pusher(bob, pusher_body(url, append=True))
    assert len(await pushers_of(alice)) == 1

    await set_pusher(bob, pusher_body(url))
    assert await pushers_of(alice) == []
    assert len(await pushers_of(bob)) == 1


URL = "https://push.example.com/_matrix/push/v1/notify"


@pytest.mark.parametrize(("body", "errcode"), [
    ({"app_id": "a", "pushkey": "k"}, "M_MISSING_PARAM"),
    (pusher_body(URL, lang=None), "M_MISSING_PARAM"),
    ({k: v for k, v in pusher_body(URL).items() if k != "data"}, "M_MISSING_PARAM"),
    (pusher_body(URL, data={}), "M_MISSING_PARAM"),
    (pusher_body(URL, data={"url": "https://push.example.com/notify"}), "M_INVALID_PARAM"),
    (pusher_body(URL, data={"url": "ftp://push.example.com/_matrix/push/v1/notify"}),
     "M_INVALID_PARAM"),
    (pusher_body(URL, data={"url": URL, "format": 3}), "M_INVALID_PARAM"),
    (pusher_body(URL, kind="email"), "M_INVALID_PARAM"),
    (pusher_body(URL, kind=7), "M_INVALID_PARAM"),
    (pusher_body(URL, pushkey="k" * 513), "M_INVALID_PARAM"),
    (pusher_body(URL, app_id="a" * 65), "M_INVALID_PARAM"),
    (pusher_body(URL, append="yes"), "M_INVALID_PARAM"),
    (pusher_body(URL, data="https://x/_matrix/push/v1/notify"), "M_INVALID_PARAM"),
])
@pytest_twisted.ensureDeferred
async def test_bad_pusher_is_refused_and_not_stored(server: TestServer, body: Any,
                                                    errcode: str) -> None:
    alice = await server.register("alice")
    resp = await alice.post(f"{V3}/pushers/set", body)
    assert (resp.code, resp.body["errcode"]) == (400, errcode)
    assert await pushers_of(alice) == []


# -- delivery -----------------------------------------------------------------

async def bob_with_pusher(server: TestServer, gateway: PushGateway,
                          **data: Any) -> tuple[Client, Client, str]:
    """alice's room "Chat" with bob joined; bob has a pusher to the gateway."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    assert (await join(bob, room_id)).code == 200
    await set_pusher(bob, pusher_body(gateway.url, data={"url": gateway.url, **data}))
    return alice, bob, room_id


@pytest_twisted.ensureDeferred
async def test_message_reaches_the_gateway_in_full(server: TestServer,
                                                   gateway: PushGateway) -> None:
    alice, bob, room_id = await bob_with_pusher(server, gateway, extra="kept")

    event_id = await send_text(alice, room_id, "hello there", "t1")

    [note] = await gateway.wait_for(1)
    assert note["event_id"] == event_id
    assert note["room_id"] == room_id
    assert note["type"] == "m.room.message"
    assert note["sender"] == alice.user_id
    assert note["sender_display_name"] == "alice"
    assert note["room_name"] == "Chat"
    assert note["id"] == event_id  # Synapse's older name for event_id, still sent
    assert note["content"] == {"msgtype": "m.text", "body": "hello there"}
    assert note["counts"] == {"unread": 1}
    [device] = note["devices"]
    assert device["app_id"] == "com.example.app.ios"
    assert device["pushkey"] == "key-1"
    # the data the client gave, minus the url
    assert device["data"] == {"extra": "kept"}
    assert isinstance(device["pushkey_ts"], int)
    # a one-to-one room's default rule rings: the tweak and a high priority
    assert device["tweaks"] == {"sound": "default"}
    assert note["prio"] == "high"


@pytest_twisted.ensureDeferred
async def test_invite_is_pushed_with_its_membership_and_target(server: TestServer,
                                                               gateway: PushGateway) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await set_pusher(bob, pusher_body(gateway.url))
    room_id = await create_room(alice, preset="private_chat", name="Secret")

    resp = await alice.post(f"{V3}/rooms/{room_id}/invite", {"user_id": bob.user_id})
    assert resp.code == 200, resp.body

    [note] = await gateway.wait_for(1)
    assert note["type"] == "m.room.member"
    assert note["membership"] == "invite"
    assert note["user_is_target"] is True
    assert note["sender"] == alice.user_id
    assert note["room_id"] == room_id
    assert note["room_name"] == "Secret"


@pytest_twisted.ensureDeferred
async def test_room_without_a_name_is_named_by_its_canonical_alias(
        server: TestServer, gateway: PushGateway) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", room_alias_name="lounge")
    assert (await join(bob, room_id)).code == 200
    await set_pusher(bob, pusher_body(gateway.url))

    await send_text(alice, room_id, "hi", "t1")

    [note] = await gateway.wait_for(1)
    alias = f"#lounge:{server.hs.ctx.hostname}"
    assert note["room_name"] == alias
    assert note["room_alias"] == alias


@pytest_twisted.ensureDeferred
async def test_unread_count_covers_all_unread_and_drops_with_a_receipt(
        server: TestServer, gateway: PushGateway) -> None:
    alice, bob, room_id = await bob_with_pusher(server, gateway, format="event_id_only")
    await send_text(alice, room_id, "one", "t1")
    await gateway.wait_for(1)
    second = await send_text(alice, room_id, "two", "t2")
    notes = await gateway.wait_for(2)
    assert [n["counts"] for n in notes] == [{"unread": 1}, {"unread": 2}]

    resp = await bob.post(f"{V3}/rooms/{room_id}/receipt/m.read/{second}", {})
    assert resp.code == 200
    # the receipt clears the badge: a count-only notification, its zero given
    notes = await gateway.wait_for(3)
    assert notes[2]["counts"] == {"unread": 0}
    assert "event_id" not in notes[2]
    assert notes[2]["devices"][0]["pushkey"] == "key-1"
    await send_text(alice, room_id, "three", "t3")
    notes = await gateway.wait_for(4)
    assert notes[3]["counts"] == {"unread": 1}


@pytest_twisted.ensureDeferred
async def test_unread_count_follows_threaded_receipts(
        server: TestServer, gateway: PushGateway) -> None:
    alice, bob, room_id = await bob_with_pusher(server, gateway, format="event_id_only")
    root = await send_text(alice, room_id, "root", "t1")
    resp = await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t2",
                           {"msgtype": "m.text", "body": "in thread",
                            "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    reply = resp.body["event_id"]
    await gateway.wait_for(2)

    # reading the main timeline leaves the thread unread, and the reverse
    resp = await bob.post(f"{V3}/rooms/{room_id}/receipt/m.read/{root}",
                          {"thread_id": "main"})
    assert resp.code == 200, resp.body
    notes = await gateway.wait_for(3)
    assert notes[2]["counts"] == {"unread": 1}  # the badge: the thread reply is left
    await send_text(alice, room_id, "main again", "t3")
    notes = await gateway.wait_for(4)
    assert notes[3]["counts"] == {"unread": 2}  # the thread reply and the new one

    resp = await bob.post(f"{V3}/rooms/{room_id}/receipt/m.read/{reply}",
                          {"thread_id": root})
    assert resp.code == 200, resp.body
    notes = await gateway.wait_for(5)
    assert notes[4]["counts"] == {"unread": 1}  # the badge: "main again" is left
    await send_text(alice, room_id, "main once more", "t4")
    notes = await gateway.wait_for(6)
    assert notes[5]["counts"] == {"unread": 2}  # the two main messages after the root


@pytest_twisted.ensureDeferred
async def test_event_id_only_format_sends_no_event_details(server: TestServer,
                                                            gateway: PushGateway) -> None:
    alice, bob, room_id = await bob_with_pusher(server, gateway, format="event_id_only")

    event_id = await send_text(alice, room_id, "secret", "t1")

    [note] = await gateway.wait_for(1)
    assert note["event_id"] == event_id
    assert note["room_id"] == room_id
    assert note["counts"] == {"unread": 1}
    assert note["devices"][0]["data"] == {"format": "event_id_only"}
    for detail in ("content", "sender", "type", "room_name", "sender_display_name"):
        assert detail not in note


@pytest_twisted.ensureDeferred
async def test_rejected_pushkey_is_removed(server: TestServer, gateway: PushGateway) -> None:
    gateway.reject.add("key-1")
    alice, bob, room_id = await bob_with_pusher(server, gateway)

    await send_text(alice, room_id, "hello", "t1")
    await gateway.wait_for(1)

    async def gone() -> bool:
        return await pushers_of(bob) == []
    await eventually(gone)


@pytest_twisted.ensureDeferred
async def test_gateway_that_fails_then_recovers_gets_the_notification(
        server: TestServer, gateway: PushGateway) -> None:
    server.hs.pushers.initial_backoff_s = 0.05
    gateway.fail_next = 2
    alice, bob, room_id = await bob_with_pusher(server, gateway)

    event_id = await send_text(alice, room_id, "are you there", "t1")

    [note] = await gateway.wait_for(1)
    assert note["event_id"] == event_id
    assert gateway.failures == 2


@pytest_twisted.ensureDeferred
async def test_pusher_stops_when_its_device_is_deleted(server: TestServer,
                                                       gateway: PushGateway) -> None:
    alice, bob, room_id = await bob_with_pusher(server, gateway)
    carol = await server.register("carol")
    assert (await join(carol, room_id)).code == 200
    await set_pusher(carol, pusher_body(gateway.url, pushkey="carol-key"))

    assert (await bob.post(f"{V3}/logout", {})).code == 200

    await send_text(alice, room_id, "who is here", "t1")

    # carol's notification arrives; bob's pusher went with his device
    [note] = await gateway.wait_for(1)
    assert [d["pushkey"] for d in note["devices"]] == ["carol-key"]
    assert [d["pushkey"] for n in gateway.notifications() for d in n["devices"]] == \
        ["carol-key"]
    assert await server.hs.stores.pushers.get_pushers_for_user(bob.user_id or "") == []


@pytest_twisted.ensureDeferred
async def test_notification_owed_at_shutdown_goes_out_after_restart(
        make_server: Any, gateway: PushGateway) -> None:
    from homeserver.server import HomeServer

    first: TestServer = await make_server()
    gateway.fail_next = 10**6  # down until we say so
    alice, bob, room_id = await bob_with_pusher(first, gateway)
    event_id = await send_text(alice, room_id, "while you were out", "t1")

    async def tried() -> bool:
        return gateway.failures >= 1
    await eventually(tried)
    await first.hs.stop()

    gateway.fail_next = 0
    hs = HomeServer(first.hs.config, reactor)
    await hs.setup()
    try:
        [note] = await gateway.wait_for(1)
        assert note["event_id"] == event_id
    finally:
        await hs.stop()
