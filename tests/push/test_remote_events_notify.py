"""Events from another server notify local users by their push rules, as local ones do."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.federation.conftest import federation, test_ca  # noqa: F401  (fixtures)
from tests.federation.harness import server_name
from tests.federation.test_rooms import q, wait_for
from tests.helpers import create_public_room as create_room
from tests.push.gateway import PushGateway
from tests.push.test_pushers import gateway, pusher_body, set_pusher  # noqa: F401  (fixture)

V3 = "/_matrix/client/v3"


async def _alice_room_and_remote_bob(start: Any) -> tuple[Any, Any, Any, str]:
    """Two servers: alice (on the first) made a room; bob is on the second."""
    a = await start()
    b = await start()
    alice = await a.register("alice")
    bob = await b.register("bob")
    return a, alice, bob, await create_room(alice)


@pytest_twisted.ensureDeferred
async def test_remote_mention_notifies_and_highlights_local_user(
        federation: Any) -> None:  # noqa: F811
    a, alice, bob, room_id = await _alice_room_and_remote_bob(federation)
    resp = await bob.post(f"{V3}/join/{q(room_id)}", params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body

    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/t1",
                           {"msgtype": "m.text", "body": "hi",
                            "m.mentions": {"user_ids": [bob.user_id]}})
    assert resp.code == 200, resp.body
    event_id = resp.body["event_id"]

    async def notified() -> Any:
        got = await bob.get(f"{V3}/notifications")
        return [n for n in got.body["notifications"] if n["event"]["event_id"] == event_id]

    found = await wait_for(notified)
    assert {"set_tweak": "highlight"} in found[0]["actions"]
    synced = await bob.get(f"{V3}/sync")
    assert synced.body["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 1, "highlight_count": 1}


@pytest_twisted.ensureDeferred
async def test_invite_from_another_server_notifies_the_invitee(
        federation: Any) -> None:  # noqa: F811
    a, alice, bob, room_id = await _alice_room_and_remote_bob(federation)
    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    assert resp.code == 200, resp.body

    async def notified() -> Any:
        got = await bob.get(f"{V3}/notifications")
        return [n for n in got.body["notifications"] if n["room_id"] == room_id]

    # the invite reaches bob's server as an outlier (it holds no state of the
    # room) and still notifies him by .m.rule.invite_for_me
    found = await wait_for(notified)
    invite = found[0]["event"]
    assert invite["type"] == "m.room.member" and invite["state_key"] == bob.user_id
    assert invite["content"]["membership"] == "invite"
    assert "notify" in found[0]["actions"]


@pytest_twisted.ensureDeferred
async def test_remote_invite_reaches_the_push_gateway_with_the_room_name(
        federation: Any, gateway: PushGateway) -> None:  # noqa: F811
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    await alice.put(f"{V3}/profile/{alice.user_id}/displayname", {"displayname": "Alice"})
    await set_pusher(bob, pusher_body(gateway.url))
    room_id = await create_room(alice, name="Planning")
    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    assert resp.code == 200, resp.body

    [note] = await gateway.wait_for(1, timeout=15.0)
    # bob's server holds no state of the room: the name comes from the
    # invite's stripped state
    assert note["room_id"] == room_id and note["type"] == "m.room.member"
    assert note["user_is_target"] is True
    assert note["room_name"] == "Planning"
    assert note["sender_display_name"] == "Alice"
