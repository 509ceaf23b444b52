"""Send-to-device messages, as clients send them and as /sync will deliver them."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from homeserver.storage.streams import current_stream_id
from tests.harness import Client, Response, TestServer

V3 = "/_matrix/client/v3"


async def send_to_device(client: Client, event_type: str, txn_id: str,
                         messages: Any) -> Response:
    return await client.put(f"{V3}/sendToDevice/{event_type}/{txn_id}",
                            {"messages": messages})


async def login(server: TestServer, client: Client, device_id: str) -> Client:
    """Another device of ``client``'s user."""
    assert client.user_id is not None
    session = await server.hs.sessions.create_login_session(client.user_id, device_id)
    other = server.client(session.access_token)
    other.user_id, other.device_id = client.user_id, session.device_id
    return other


async def inbox(server: TestServer, client: Client) -> list[dict[str, Any]]:
    """What the client's device would get from /sync now."""
    assert client.user_id is not None and client.device_id is not None
    until = await current_stream_id(server.hs.db)
    messages, upto = await server.hs.stores.to_device.get_messages(
        client.user_id, client.device_id, 0, until)
    assert upto == until
    return messages


@pytest_twisted.ensureDeferred
async def test_message_reaches_the_named_device_only(server: TestServer) -> None:
    alice = await server.register("alice")
    bob_phone = await server.register("bob", device_id="PHONE")
    bob_laptop = await login(server, bob_phone, "LAPTOP")
    assert bob_phone.user_id is not None

    resp = await send_to_device(alice, "m.room_key_request", "t1",
                                {bob_phone.user_id: {"PHONE": {"action": "request"}}})

    assert (resp.code, resp.body) == (200, {})
    assert await inbox(server, bob_phone) == [
        {"type": "m.room_key_request", "sender": alice.user_id,
         "content": {"action": "request"}}]
    assert await inbox(server, bob_laptop) == []


@pytest_twisted.ensureDeferred
async def test_star_reaches_every_device_of_the_user(server: TestServer) -> None:
    alice = await server.register("alice")
    bob_phone = await server.register("bob", device_id="PHONE")
    bob_laptop = await login(server, bob_phone, "LAPTOP")
    assert bob_phone.user_id is not None

    await send_to_device(alice, "m.new_device", "t1", {bob_phone.user_id: {"*": {"n": 1}}})

    for device in (bob_phone, bob_laptop):
        assert [m["content"] for m in await inbox(server, device)] == [{"n": 1}]


@pytest_twisted.ensureDeferred
async def test_named_device_wins_over_star(server: TestServer) -> None:
    alice = await server.register("alice")
    bob_phone = await server.register("bob", device_id="PHONE")
    bob_laptop = await login(server, bob_phone, "LAPTOP")
    assert bob_phone.user_id is not None

    await send_to_device(alice, "m.x", "t1",
                         {bob_phone.user_id: {"*": {"to": "all"}, "PHONE": {"to": "phone"}}})

    assert [m["content"] for m in await inbox(server, bob_phone)] == [{"to": "phone"}]
    assert [m["content"] for m in await inbox(server, bob_laptop)] == [{"to": "all"}]


@pytest_twisted.ensureDeferred
async def test_unknown_devices_and_users_are_skipped(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None

    resp = await send_to_device(alice, "m.x", "t1", {
        bob.user_id: {"GONE": {"a": 1}, "PHONE": {"a": 2}},
        "@nobody:test.local": {"*": {"a": 3}}})

    assert resp.code == 200
    assert [m["content"] for m in await inbox(server, bob)] == [{"a": 2}]


@pytest_twisted.ensureDeferred
async def test_retried_txn_id_delivers_once(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    messages = {bob.user_id: {"PHONE": {"n": 1}}}

    first = await send_to_device(alice, "m.x", "same", messages)
    retry = await send_to_device(alice, "m.x", "same", messages)

    assert (first.code, retry.code) == (200, 200)
    assert len(await inbox(server, bob)) == 1


@pytest_twisted.ensureDeferred
async def test_same_txn_id_from_another_device_is_a_new_request(server: TestServer) -> None:
    alice_phone = await server.register("alice", device_id="A1")
    alice_laptop = await login(server, alice_phone, "A2")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    messages = {bob.user_id: {"PHONE": {"n": 1}}}

    await send_to_device(alice_phone, "m.x", "same", messages)
    await send_to_device(alice_laptop, "m.x", "same", messages)

    assert len(await inbox(server, bob)) == 2


@pytest_twisted.ensureDeferred
async def test_messages_arrive_in_order_and_go_once_acknowledged(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    for n in range(3):
        await send_to_device(alice, "m.x", f"t{n}", {bob.user_id: {"PHONE": {"n": n}}})
    store = server.hs.stores.to_device
    until = await current_stream_id(server.hs.db)

    first, upto = await store.get_messages(bob.user_id, "PHONE", 0, until, limit=2)
    await store.delete_messages_upto(bob.user_id, "PHONE", upto)
    rest, end = await store.get_messages(bob.user_id, "PHONE", upto, until, limit=2)

    assert [m["content"]["n"] for m in first] == [0, 1]
    assert [m["content"]["n"] for m in rest] == [2]
    assert end == until
    assert [m["content"]["n"] for m in await inbox(server, bob)] == [2]


@pytest_twisted.ensureDeferred
async def test_message_wakes_the_recipient(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    notifier = server.hs.notifier
    woken = notifier.wait(bob.user_id, notifier.counter(bob.user_id), 5_000)

    await send_to_device(alice, "m.x", "t1", {bob.user_id: {"PHONE": {}}})

    assert await woken is True


@pytest_twisted.ensureDeferred
async def test_remote_recipients_are_queued_for_federation(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await send_to_device(alice, "m.x", "t1", {
        "@carol:remote.example": {"DEV": {"k": "v"}},
        "@dave:remote.example": {"*": {"k": "w"}}})

    assert resp.code == 200
    queued = await server.hs.stores.to_device.get_outbox("remote.example")
    assert len(queued) == 1
    edu = queued[0][1]
    assert (edu["sender"], edu["type"]) == (alice.user_id, "m.x")
    assert edu["messages"] == {"@carol:remote.example": {"DEV": {"k": "v"}},
                               "@dave:remote.example": {"*": {"k": "w"}}}
    assert isinstance(edu["message_id"], str)


@pytest_twisted.ensureDeferred
async def test_oversized_message_is_413(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None

    resp = await send_to_device(alice, "m.x", "t1",
                                {bob.user_id: {"PHONE": {"blob": "x" * 70_000}}})

    assert (resp.code, resp.body["errcode"]) == (413, "M_TOO_LARGE")
    assert await inbox(server, bob) == []


@pytest_twisted.ensureDeferred
async def test_many_messages_may_exceed_the_usual_body_limit(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    messages = {bob.user_id: {"PHONE": {"blob": "x" * 60_000}},
                "@carol:remote.example": {"DEV": {"blob": "y" * 60_000}}}

    resp = await send_to_device(alice, "m.x", "t1", messages)

    assert resp.code == 200, resp.body
    assert len(await inbox(server, bob)) == 1


@pytest.mark.parametrize("body,errcode", [
    ({}, "M_MISSING_PARAM"),
    ({"messages": []}, "M_BAD_JSON"),
    ({"messages": {"@bob:test.local": "hi"}}, "M_BAD_JSON"),
    ({"messages": {"@bob:test.local": {"PHONE": "hi"}}}, "M_BAD_JSON"),
    ({"messages": {"@bob:test.local": {"PHONE": [1]}}}, "M_BAD_JSON"),
    ({"messages": {"bob": {"PHONE": {}}}}, "M_INVALID_PARAM"),
    ({"messages": {"@bob": {"PHONE": {}}}}, "M_INVALID_PARAM"),
])
@pytest_twisted.ensureDeferred
async def test_malformed_body_is_400(server: TestServer, body: Any, errcode: str) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")

    resp = await alice.put(f"{V3}/sendToDevice/m.x/t1", body)

    assert (resp.code, resp.body["errcode"]) == (400, errcode)
    assert await inbox(server, bob) == []


@pytest_twisted.ensureDeferred
async def test_non_json_body_is_400(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await alice.request("PUT", f"{V3}/sendToDevice/m.x/t1", raw=b"{nope")

    assert (resp.code, resp.body["errcode"]) == (400, "M_NOT_JSON")


@pytest_twisted.ensureDeferred
async def test_overlong_event_type_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await send_to_device(alice, "m." + "x" * 300, "t1", {})

    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_retry_after_a_refused_request_is_not_swallowed(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None

    bad = await alice.put(f"{V3}/sendToDevice/m.x/t1",
                          {"messages": {bob.user_id: {"PHONE": "oops"}}})
    good = await send_to_device(alice, "m.x", "t1", {bob.user_id: {"PHONE": {"ok": True}}})

    assert (bad.code, good.code) == (400, 200)
    assert [m["content"] for m in await inbox(server, bob)] == [{"ok": True}]


@pytest_twisted.ensureDeferred
async def test_unauthenticated_request_is_401(server: TestServer) -> None:
    resp = await server.client().put(f"{V3}/sendToDevice/m.x/t1", {"messages": {}})

    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")


@pytest_twisted.ensureDeferred
async def test_any_string_content_is_delivered_intact(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    content = {"emoji": "🦊", "nul": "a\x00b", "nested": {"list": [1, 2.5, None, True]}}

    await send_to_device(alice, "m.x", "t1", {bob.user_id: {"PHONE": content}})

    assert [m["content"] for m in await inbox(server, bob)] == [content]


# -- through /sync ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sync_delivers_each_message_once(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    first = await bob.get(f"{V3}/sync")

    await send_to_device(alice, "m.x", "t1", {bob.user_id: {"PHONE": {"n": 1}}})
    delivered = await bob.get(f"{V3}/sync", params={"since": first.body["next_batch"]})
    again = await bob.get(f"{V3}/sync", params={"since": delivered.body["next_batch"]})

    assert delivered.body["to_device"]["events"] == [
        {"type": "m.x", "sender": alice.user_id, "content": {"n": 1}}]
    assert again.body.get("to_device", {}).get("events", []) == []
    # acknowledged by the second sync: gone from the inbox
    assert await inbox(server, bob) == []


@pytest_twisted.ensureDeferred
async def test_sync_that_is_not_acknowledged_delivers_again(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob", device_id="PHONE")
    assert bob.user_id is not None
    first = await bob.get(f"{V3}/sync")
    await send_to_device(alice, "m.x", "t1", {bob.user_id: {"PHONE": {"n": 1}}})

    once = await bob.get(f"{V3}/sync", params={"since": first.body["next_batch"]})
    retried = await bob.get(f"{V3}/sync", params={"since": first.body["next_batch"]})

    assert [e["content"] for e in once.body["to_device"]["events"]] == [{"n": 1}]
    assert [e["content"] for e in retried.body["to_device"]["events"]] == [{"n": 1}]
