"""Moderating users through Synapse's admin API, as users see it: shadow-bans,
rate-limit overrides, account data and pushers, redacting a user's events,
server notices."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.harness import Client, TestServer
from tests.helpers import create_room, join, q, send, send_text
from tests.push.test_pushers import eventually, pusher_body

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
CLIENT = "/_matrix/client/v3"


async def _timeline_bodies(client: Client, room_id: str) -> list[Any]:
    resp = await client.get(f"{CLIENT}/rooms/{q(room_id)}/messages",
                            params={"dir": "b", "limit": "50"})
    assert resp.code == 200, resp.body
    return [e["content"].get("body") for e in resp.body["chunk"]
            if e["type"] == "m.room.message"]


@pytest_twisted.ensureDeferred
async def test_a_shadow_banned_users_sends_and_invites_seem_to_work_and_reach_nobody(
        server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room = await create_room(alice, preset="public_chat")
    await join(bob, room)

    banned = await admin.post(f"{V1}/users/{q(bob.user_id)}/shadow_ban", {})

    assert (banned.code, banned.body) == (200, {})
    details = await admin.get(f"{V2}/users/{q(bob.user_id)}")
    assert details.body["shadow_banned"] is True
    sent = await send(bob, room, {"msgtype": "m.text", "body": "spam"}, "t1")
    assert sent.code == 200 and sent.body["event_id"].startswith("$")
    assert "spam" not in await _timeline_bodies(alice, room)
    lookup = await alice.get(f"{CLIENT}/rooms/{q(room)}/event/{q(sent.body['event_id'])}")
    assert lookup.code == 404
    topic = await bob.put(f"{CLIENT}/rooms/{q(room)}/state/m.room.topic", {"topic": "spam"})
    assert topic.code == 200
    invite = await bob.post(f"{CLIENT}/rooms/{q(room)}/invite", {"user_id": carol.user_id})
    assert (invite.code, invite.body) == (200, {})
    made = await bob.post(f"{CLIENT}/createRoom", {"invite": [carol.user_id]})
    assert made.code == 200, made.body
    carol_sync = await carol.get(f"{CLIENT}/sync")
    assert carol_sync.body.get("rooms", {}).get("invite", {}) == {}
    state = await alice.get(f"{CLIENT}/rooms/{q(room)}/state/m.room.topic")
    assert state.code == 404
    typing = await bob.put(f"{CLIENT}/rooms/{q(room)}/typing/{q(bob.user_id)}",
                           {"typing": True, "timeout": 30000})
    assert typing.code == 200
    await alice.put(f"{CLIENT}/rooms/{q(room)}/typing/{q(alice.user_id)}",
                    {"typing": True, "timeout": 30000})
    ephemeral = (await alice.get(f"{CLIENT}/sync")).body["rooms"]["join"][room]["ephemeral"]
    typers = [e["content"]["user_ids"] for e in ephemeral["events"] if e["type"] == "m.typing"]
    assert typers == [[alice.user_id]]

    lifted = await admin.delete(f"{V1}/users/{q(bob.user_id)}/shadow_ban")

    assert lifted.code == 200
    await send_text(bob, room, "hello again")
    assert "hello again" in await _timeline_bodies(alice, room)
    remote = await admin.post(f"{V1}/users/{q('@x:elsewhere.example')}/shadow_ban", {})
    assert remote.code == 400
    unknown = await admin.post(f"{V1}/users/{q('@nobody:test.local')}/shadow_ban", {})
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_a_rate_limit_override_lifts_or_sets_a_users_limit(make_server: Any) -> None:
    server = await make_server(rc_message={"per_second": 0.01, "burst_count": 2})
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room = await create_room(bob)
    url = f"{V1}/users/{q(bob.user_id)}/override_ratelimit"
    assert (await admin.get(url)).body == {}
    for i in range(2):
        assert (await send(bob, room, {"msgtype": "m.text", "body": "x"}, f"a{i}")).code == 200
    limited = await send(bob, room, {"msgtype": "m.text", "body": "x"}, "a2")
    assert (limited.code, limited.body["errcode"]) == (429, "M_LIMIT_EXCEEDED")

    lifted = await admin.post(url, {"messages_per_second": 0, "burst_count": 0})

    assert lifted.body == {"messages_per_second": 0, "burst_count": 0}
    for i in range(5):
        assert (await send(bob, room, {"msgtype": "m.text", "body": "x"}, f"b{i}")).code == 200
    assert (await admin.get(url)).body == {"messages_per_second": 0, "burst_count": 0}
    # a limit of its own: a burst of 10 where the server's is 2
    await admin.post(url, {"messages_per_second": 1, "burst_count": 10})
    assert (await send(bob, room, {"msgtype": "m.text", "body": "x"}, "c0")).code == 200
    assert (await admin.delete(url)).body == {}
    assert (await admin.get(url)).body == {}
    again = await send(bob, room, {"msgtype": "m.text", "body": "x"}, "c1")
    assert again.code == 429
    bad = await admin.post(url, {"messages_per_second": -1})
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_admin_reads_a_users_account_data_and_pushers(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room = await create_room(bob)
    await bob.put(f"{CLIENT}/user/{q(bob.user_id)}/account_data/org.example.settings",
                  {"theme": "dark"})
    await bob.put(f"{CLIENT}/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/org.example.x",
                  {"pinned": True})
    set_pusher = await bob.post(f"{CLIENT}/pushers/set",
                                pusher_body("https://push.example.org/_matrix/push/v1/notify"))
    assert set_pusher.code == 200, set_pusher.body

    data = await admin.get(f"{V1}/users/{q(bob.user_id)}/accountdata")
    pushers = await admin.get(f"{V1}/users/{q(bob.user_id)}/pushers")

    assert data.code == 200, data.body
    assert data.body["account_data"]["global"]["org.example.settings"] == {"theme": "dark"}
    assert data.body["account_data"]["rooms"][room]["org.example.x"] == {"pinned": True}
    assert pushers.body["total"] == 1
    p = pushers.body["pushers"][0]
    assert (p["kind"], p["app_id"], p["pushkey"]) == ("http", "com.example.app.ios", "key-1")
    assert p["data"]["url"] == "https://push.example.org/_matrix/push/v1/notify"
    assert set(p) >= {"app_display_name", "device_display_name", "lang", "profile_tag"}


@pytest_twisted.ensureDeferred
async def test_redacting_all_of_a_users_events(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(alice, preset="public_chat")
    await join(bob, room)
    for text in ("spam 1", "spam 2", "spam 3"):
        await send_text(bob, room, text)
    await send_text(alice, room, "not spam")

    started = await admin.post(f"{V1}/user/{q(bob.user_id)}/redact",
                               {"rooms": [], "reason": "spam"})

    assert started.code == 200, started.body
    status_url = f"{V1}/user/redact_status/{q(started.body['redact_id'])}"

    async def done() -> bool:
        return bool((await admin.get(status_url)).body["status"] == "completed")
    await eventually(done)
    assert (await admin.get(status_url)).body["failed_redactions"] == {}
    assert await _timeline_bodies(alice, room) == ["not spam", None, None, None]
    missing = await admin.post(f"{V1}/user/{q(bob.user_id)}/redact", {})
    assert missing.code == 400
    unknown = await admin.get(f"{V1}/user/redact_status/nope")
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_server_notices_arrive_in_a_read_only_room_of_their_own(
        make_server: Any) -> None:
    server = await make_server(server_notices={
        "system_mxid_localpart": "notices", "system_mxid_display_name": "Server",
        "room_name": "Server Notices"})
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    notice = {"msgtype": "m.text", "body": "Maintenance at noon"}

    sent = await admin.post(f"{V1}/send_server_notice",
                            {"user_id": bob.user_id, "content": notice})

    assert sent.code == 200, sent.body
    sync = await bob.get(f"{CLIENT}/sync")
    invites = sync.body["rooms"]["invite"]
    assert len(invites) == 1
    room = next(iter(invites))
    await join(bob, room)
    assert await _timeline_bodies(bob, room) == ["Maintenance at noon"]
    name = await bob.get(f"{CLIENT}/rooms/{q(room)}/state/m.room.name")
    assert name.body == {"name": "Server Notices"}
    tags = await bob.get(f"{CLIENT}/user/{q(bob.user_id)}/rooms/{q(room)}/tags")
    assert "m.server_notice" in tags.body["tags"]
    reply = await send(bob, room, {"msgtype": "m.text", "body": "ok"}, "r1")
    assert reply.code == 403
    again = await admin.put(f"{V1}/send_server_notice/txn1",
                            {"user_id": bob.user_id, "content": {"msgtype": "m.text",
                                                                 "body": "Done"}})
    retried = await admin.put(f"{V1}/send_server_notice/txn1",
                              {"user_id": bob.user_id, "content": {"msgtype": "m.text",
                                                                   "body": "Done"}})
    assert again.body["event_id"] == retried.body["event_id"]
    assert await _timeline_bodies(bob, room) == ["Done", "Maintenance at noon"]
    sender = await bob.get(f"{CLIENT}/profile/{q('@notices:test.local')}/displayname")
    assert sender.body == {"displayname": "Server"}
    unknown = await admin.post(f"{V1}/send_server_notice",
                               {"user_id": "@nobody:test.local", "content": notice})
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_server_notices_are_off_without_config(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    resp = await admin.post(f"{V1}/send_server_notice",
                            {"user_id": bob.user_id, "content": {"body": "x"}})
    assert resp.code == 400
