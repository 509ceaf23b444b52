"""Simplified sliding sync (MSC4186) as Element X sees it: lists sorted by
recency with ranges, room subscriptions, required_state, timelines,
long-polling, the extensions, connections that survive a restart, and
Matrix errors for bad input. Real HTTP, both engines."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, task

from tests.harness import Client, TestServer
from tests.helpers import create_room, join, q, send_text

V3 = "/_matrix/client/v3"
SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def ss(client: Client, body: dict[str, Any], pos: str | None = None,
             timeout: int | None = None, code: int = 200) -> Any:
    """One sliding sync request; pos and timeout in the query, as Element X
    and matrix-js-sdk send them."""
    params = {}
    if pos is not None:
        params["pos"] = pos
    if timeout is not None:
        params["timeout"] = str(timeout)
    resp = await client.post(SS, body, params=params)
    assert resp.code == code, resp.body
    return resp.body


def window(start: int, end: int, limit: int = 1, **extra: Any) -> dict[str, Any]:
    return {"ranges": [[start, end]], "timeline_limit": limit,
            "required_state": [["m.room.name", ""]], **extra}


def bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"]["body"] for e in room.get("timeline", [])
            if e["type"] == "m.room.message"]


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds, lambda: None)


async def user_with_rooms(server: TestServer, n: int) -> tuple[Client, list[str]]:
    """alice in ``n`` rooms "Room 0" .. "Room n-1", with a message in each, in
    that order (so Room n-1 is the most recent)."""
    alice = await server.register("alice")
    rooms = []
    for i in range(n):
        room_id = await create_room(alice, name=f"Room {i}")
        await send_text(alice, room_id, f"hello {i}")
        rooms.append(room_id)
    return alice, rooms


@pytest_twisted.ensureDeferred
async def test_versions_advertise_simplified_sliding_sync(server: TestServer) -> None:
    resp = await server.client().get("/_matrix/client/versions")
    assert resp.body["unstable_features"]["org.matrix.simplified_msc3575"] is True


@pytest_twisted.ensureDeferred
async def test_many_rooms_show_the_most_recent_first_and_scroll(server: TestServer) -> None:
    alice, rooms = await user_with_rooms(server, 12)
    first = await ss(alice, {"lists": {"all": window(0, 4)}})
    assert first["lists"]["all"]["count"] == 12
    newest = list(reversed(rooms))
    assert first["lists"]["all"]["ops"][0]["room_ids"] == newest[:5]
    assert set(first["rooms"]) == set(newest[:5])
    room = first["rooms"][newest[0]]
    assert room["initial"] is True
    assert room["name"] == "Room 11"
    assert bodies(room) == ["hello 11"]
    assert room["membership"] == "join"
    assert room["joined_count"] == 1 and room["invited_count"] == 0
    assert room["lists"] == ["all"]
    assert room["limited"] is True
    assert room["prev_batch"]
    assert room["num_live"] == 0
    stamps = [first["rooms"][r]["bump_stamp"] for r in newest[:5]]
    assert stamps == sorted(stamps, reverse=True)

    # scrolling: the next five come, the first five are not sent again
    second = await ss(alice, {"lists": {"all": window(0, 9)}}, pos=first["pos"])
    assert set(second["rooms"]) == set(newest[5:10])
    assert all(r["initial"] for r in second["rooms"].values())

    # a message in an older room brings it to the top, as a change, not initial
    await send_text(alice, rooms[2], "back on top")
    third = await ss(alice, {"lists": {"all": window(0, 9)}}, pos=second["pos"],
                     timeout=5000)
    assert third["lists"]["all"]["ops"][0]["room_ids"][0] == rooms[2]
    assert list(third["rooms"]) == [rooms[2]]
    top = third["rooms"][rooms[2]]
    assert "initial" not in top
    assert bodies(top) == ["back on top"]
    assert top["num_live"] == 1
    # a room never sent that comes into the window arrives whole
    await send_text(alice, rooms[0], "from the bottom")
    fourth = await ss(alice, {"lists": {"all": window(0, 9)}}, pos=third["pos"],
                      timeout=5000)
    assert fourth["rooms"][rooms[0]]["initial"] is True
    assert fourth["rooms"][rooms[0]]["num_live"] == 1


@pytest_twisted.ensureDeferred
async def test_new_messages_arrive_on_a_long_poll(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    await join(bob, room_id)
    first = await ss(bob, {"lists": {"all": window(0, 9, 5)}})
    assert room_id in first["rooms"]

    nothing = await ss(bob, {"lists": {"all": window(0, 9, 5)}}, pos=first["pos"], timeout=0)
    assert nothing["rooms"] == {}

    waiting = defer.ensureDeferred(
        ss(bob, {"lists": {"all": window(0, 9, 5)}}, pos=nothing["pos"], timeout=30000))
    await sleep(0.3)
    assert not waiting.called
    await send_text(alice, room_id, "are you there?")
    woken = await waiting
    room = woken["rooms"][room_id]
    assert bodies(room) == ["are you there?"]
    assert room["num_live"] == 1
    assert room["limited"] is False
    assert room["notification_count"] == 1


def without_age(body: dict[str, Any]) -> dict[str, Any]:
    """A response less what differs between two builds of it: ``pos`` and
    each event's ``unsigned.age``."""
    def events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**e, "unsigned": {k: v for k, v in e["unsigned"].items() if k != "age"}}
                for e in events]

    out = {k: v for k, v in body.items() if k != "pos"}
    out["rooms"] = {room_id: {**room, "timeline": events(room.get("timeline", [])),
                              "required_state": events(room.get("required_state", []))}
                    for room_id, room in body["rooms"].items()}
    return out


@pytest_twisted.ensureDeferred
async def test_a_woken_connection_gets_what_a_full_build_gives(server: TestServer) -> None:
    """Messages from others answered from memory (sync/sliding_fast.py)
    read the same as the database's answer to the same pos (a retried pos
    is built in full), across rooms, a list that reorders and counts."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    rooms = [await create_room(alice, preset="public_chat", name=f"Chat {i}")
             for i in range(3)]
    for room_id in rooms:
        await join(bob, room_id)
    body = {"lists": {"all": {"ranges": [[0, 1]], "timeline_limit": 5,
                              "required_state": [["m.room.name", ""],
                                                 ["m.room.member", "$LAZY"]]}}}
    pos = (await ss(bob, body))["pos"]
    for k, room_id in enumerate([rooms[0], rooms[1], rooms[1], rooms[0]]):
        waiting = defer.ensureDeferred(ss(bob, body, pos=pos, timeout=30000))
        await sleep(0.1)
        await send_text(alice, room_id, f"news {k}")
        woken = await waiting
        assert bodies(woken["rooms"][room_id])[-1] == f"news {k}"
        again = await ss(bob, body, pos=pos, timeout=0)
        assert without_age(again) == without_age(woken), k
        pos = woken["pos"]
        # the retry forgot the woken pos: go on from the retry's
        pos = again["pos"]


@pytest_twisted.ensureDeferred
async def test_a_subscribed_room_gets_its_state_and_a_longer_timeline(
        server: TestServer) -> None:
    alice, rooms = await user_with_rooms(server, 3)
    target = rooms[0]  # the oldest: outside a window of one
    for i in range(4):
        await send_text(alice, target, f"more {i}")
    await send_text(alice, rooms[1], "newest")
    first = await ss(alice, {"lists": {"all": window(0, 0)}})
    assert target not in first["rooms"]

    sub = {"timeline_limit": 3, "required_state": [["*", "*"]]}
    second = await ss(alice, {"lists": {"all": window(0, 0)},
                              "room_subscriptions": {target: sub}}, pos=first["pos"])
    room = second["rooms"][target]
    assert room["initial"] is True
    assert "lists" not in room
    assert bodies(room) == ["more 1", "more 2", "more 3"]
    types = {(e["type"], e["state_key"]) for e in room["required_state"]}
    assert ("m.room.create", "") in types
    assert ("m.room.member", alice.user_id) in types
    assert ("m.room.name", "") in types

    # nothing new: the subscription alone sends nothing again
    third = await ss(alice, {"lists": {"all": window(0, 0)},
                             "room_subscriptions": {target: sub}}, pos=second["pos"])
    assert target not in third["rooms"]

    # a room the user is not in is ignored
    other = await server.register("other")
    secret = await create_room(other, name="Secret")
    fourth = await ss(alice, {"room_subscriptions": {secret: sub}}, pos=third["pos"])
    assert secret not in fourth["rooms"]


@pytest_twisted.ensureDeferred
async def test_a_larger_timeline_limit_sends_the_older_events_again(
        server: TestServer) -> None:
    alice, rooms = await user_with_rooms(server, 1)
    room_id = rooms[0]
    for i in range(3):
        await send_text(alice, room_id, f"m{i}")
    first = await ss(alice, {"lists": {"all": window(0, 0, 1)}})
    assert bodies(first["rooms"][room_id]) == ["m2"]
    second = await ss(alice, {"lists": {"all": window(0, 0, 3)}}, pos=first["pos"])
    room = second["rooms"][room_id]
    assert bodies(room) == ["m0", "m1", "m2"]
    assert room["expanded_timeline"] is True


@pytest_twisted.ensureDeferred
async def test_lazy_members_bring_only_the_senders(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    await join(bob, room_id)
    await join(carol, room_id)
    await send_text(bob, room_id, "from bob")
    body = await ss(alice, {"room_subscriptions": {room_id: {
        "timeline_limit": 1,
        "required_state": [["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
                           ["m.room.create", ""]]}}})
    members = {e["state_key"] for e in body["rooms"][room_id]["required_state"]
               if e["type"] == "m.room.member"}
    assert members == {bob.user_id, alice.user_id}
    # the MSC's own shape of required_state says the same
    body = await ss(carol, {"room_subscriptions": {room_id: {
        "timeline_limit": 1,
        "required_state": {"include": [{"type": "m.room.create"}], "lazy_members": True}}}})
    members = {e["state_key"] for e in body["rooms"][room_id]["required_state"]
               if e["type"] == "m.room.member"}
    assert members == {bob.user_id}


@pytest_twisted.ensureDeferred
async def test_lazy_members_already_sent_are_not_sent_again(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    await join(bob, room_id)
    await send_text(bob, room_id, "one")
    sub = {"room_subscriptions": {room_id: {
        "timeline_limit": 1, "required_state": [["m.room.member", "$LAZY"]]}}}
    first = await ss(alice, sub)
    assert [e["state_key"] for e in first["rooms"][room_id]["required_state"]] == [
        bob.user_id]
    assert first["rooms"][room_id]["joined_count"] == 2

    await send_text(bob, room_id, "two")
    second = await ss(alice, sub, pos=first["pos"], timeout=0)
    room = second["rooms"][room_id]
    assert bodies(room) == ["two"]
    assert "required_state" not in room  # the client holds bob's member event
    assert "joined_count" not in room  # and the counts did not change

    # bob renames himself: his new member event comes again, with the counts
    resp = await bob.put(f"{V3}/profile/{bob.user_id}/displayname", {"displayname": "Bobby"})
    assert resp.code == 200
    await send_text(bob, room_id, "three")
    third = await ss(alice, sub, pos=second["pos"], timeout=0)
    room = third["rooms"][room_id]
    assert [e["content"].get("displayname") for e in room["required_state"]] == ["Bobby"]
    # a client that never got that answer retries its position: the member
    # event comes again (what the lost answer carried is forgotten)
    again = await ss(alice, sub, pos=second["pos"], timeout=0)
    assert [e["content"].get("displayname")
            for e in again["rooms"][room_id]["required_state"]] == ["Bobby"]


@pytest_twisted.ensureDeferred
async def test_timeline_events_carry_the_readers_membership_at_each(
        server: TestServer) -> None:
    """unsigned.membership (MSC4115): a message from before bob joined shows
    he was not in the room then, the ones after his join that he was."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Lobby")
    await send_text(alice, room_id, "before bob")
    await join(bob, room_id)
    await send_text(alice, room_id, "after bob")
    body = await ss(bob, {"lists": {"all": window(0, 0, limit=10)}})
    timeline = body["rooms"][room_id]["timeline"]
    by_body = {e["content"]["body"]: e["unsigned"]["membership"] for e in timeline
               if e["type"] == "m.room.message"}
    assert by_body == {"before bob": "leave", "after bob": "join"}
    own_join = [e for e in timeline if e["type"] == "m.room.member"
                and e["state_key"] == bob.user_id]
    assert own_join[0]["unsigned"]["membership"] == "join"
    # a new message on the same connection: join
    await send_text(alice, room_id, "later")
    later = await ss(bob, {"lists": {"all": window(0, 0, limit=10)}}, pos=body["pos"])
    assert [e["unsigned"]["membership"] for e in later["rooms"][room_id]["timeline"]] == [
        "join"]


@pytest_twisted.ensureDeferred
async def test_heroes_name_a_room_without_a_name(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await bob.put(f"{V3}/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"})
    room_id = await create_room(alice, preset="private_chat", is_direct=True,
                                invite=[bob.user_id])
    await join(bob, room_id)
    body = await ss(alice, {"lists": {"all": window(0, 9)}})
    room = body["rooms"][room_id]
    assert "name" not in room
    assert room["heroes"] == [{"user_id": bob.user_id, "displayname": "Bobby"}]


@pytest_twisted.ensureDeferred
async def test_filters_pick_dms_invites_encrypted_rooms_and_spaces(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    plain = await create_room(alice, name="Plain")
    dm = await create_room(alice, name="DM")
    encrypted = await create_room(alice, name="Secret", initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    space = await create_room(alice, name="Space", creation_content={"type": "m.space"})
    resp = await alice.put(f"{V3}/rooms/{q(space)}/state/m.space.child/{q(plain)}",
                           {"via": ["test.local"]})
    assert resp.code == 200, resp.body
    resp = await alice.put(f"{V3}/user/{q(alice.user_id)}/account_data/m.direct",
                           {bob.user_id: [dm]})
    assert resp.code == 200
    resp = await alice.put(f"{V3}/user/{q(alice.user_id)}/rooms/{q(encrypted)}/tags/u.work",
                           {})
    assert resp.code == 200
    invited_to = await create_room(bob, name="Come in", invite=[alice.user_id])

    def listed(body: dict[str, Any], key: str) -> set[str]:
        return set(body["lists"][key]["ops"][0]["room_ids"])

    body = await ss(alice, {"lists": {
        "dms": window(0, 99, filters={"is_dm": True}),
        "invites": window(0, 99, filters={"is_invite": True}),
        "encrypted": window(0, 99, filters={"is_encrypted": True}),
        "spaces": window(0, 99, filters={"room_types": ["m.space"]}),
        "rooms": window(0, 99, filters={"not_room_types": ["m.space"], "is_invite": False}),
        "in_space": window(0, 99, filters={"spaces": [space]}),
        "work": window(0, 99, filters={"tags": ["u.work"]}),
        "not_work": window(0, 99, filters={"not_tags": ["u.work"], "is_invite": False}),
    }})
    assert listed(body, "dms") == {dm}
    assert listed(body, "invites") == {invited_to}
    assert listed(body, "encrypted") == {encrypted}
    assert listed(body, "spaces") == {space}
    assert listed(body, "rooms") == {plain, dm, encrypted}
    assert listed(body, "in_space") == {plain}
    assert listed(body, "work") == {encrypted}
    assert listed(body, "not_work") == {plain, dm, space}
    assert body["rooms"][dm]["is_dm"] is True
    invite = body["rooms"][invited_to]
    assert invite["membership"] == "invite"
    assert {e["type"] for e in invite["invite_state"]} >= {"m.room.create", "m.room.name"}

    # an invite from someone alice ignores is not shown
    resp = await alice.put(f"{V3}/user/{q(alice.user_id)}/account_data/m.ignored_user_list",
                           {"ignored_users": {bob.user_id: {}}})
    assert resp.code == 200
    body = await ss(alice, {"lists": {"invites": window(0, 99, filters={"is_invite": True})}})
    assert body["lists"]["invites"]["count"] == 0


@pytest_twisted.ensureDeferred
async def test_extensions_carry_typing_receipts_to_device_e2ee_and_account_data(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    await join(bob, room_id)
    event_id = await send_text(alice, room_id, "read me")
    extensions = {"to_device": {"enabled": True}, "e2ee": {"enabled": True},
                  "account_data": {"enabled": True}, "receipts": {"enabled": True},
                  "typing": {"enabled": True}}
    request = {"lists": {"all": window(0, 9)}, "extensions": extensions}
    first = await ss(bob, request)
    ext = first["extensions"]
    assert ext["e2ee"]["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert ext["to_device"]["events"] == []
    assert any(d["type"] == "m.push_rules" for d in ext["account_data"]["global"])

    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/typing/{q(alice.user_id)}",
                           {"typing": True, "timeout": 30000})
    assert resp.code == 200
    second = await ss(bob, request, pos=first["pos"], timeout=5000)
    typing = second["extensions"]["typing"]["rooms"][room_id]
    assert typing == {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}

    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
    assert resp.code == 200
    third = await ss(bob, request, pos=second["pos"], timeout=5000)
    receipt = third["extensions"]["receipts"]["rooms"][room_id]
    assert receipt["type"] == "m.receipt"
    assert alice.user_id in receipt["content"][event_id]["m.read"]

    resp = await alice.put(f"{V3}/sendToDevice/m.test/t1", {"messages": {
        bob.user_id: {bob.device_id: {"hello": "bob"}}}})
    assert resp.code == 200
    fourth = await ss(bob, request, pos=third["pos"], timeout=5000)
    to_device = fourth["extensions"]["to_device"]
    assert [m["content"] for m in to_device["events"]] == [{"hello": "bob"}]
    # acknowledged with next_batch: not sent again
    request["extensions"]["to_device"] = {"enabled": True, "since": to_device["next_batch"]}
    resp = await bob.put(f"{V3}/user/{q(bob.user_id)}/account_data/org.example", {"a": 1})
    assert resp.code == 200
    fifth = await ss(bob, request, pos=fourth["pos"], timeout=5000)
    assert fifth["extensions"]["to_device"]["events"] == []
    assert {"type": "org.example", "content": {"a": 1}} in \
        fifth["extensions"]["account_data"]["global"]

    # alice renaming her device shows in bob's device lists
    resp = await alice.put(f"{V3}/devices/{q(alice.device_id or '')}",
                           {"display_name": "laptop"})
    assert resp.code == 200
    sixth = await ss(bob, request, pos=fifth["pos"], timeout=5000)
    assert alice.user_id in sixth["extensions"]["e2ee"]["device_lists"]["changed"]

    # carol joining: bob starts tracking her; carol leaving: he stops
    carol = await server.register("carol")
    await join(carol, room_id)
    seventh = await ss(bob, request, pos=sixth["pos"], timeout=5000)
    assert carol.user_id in seventh["extensions"]["e2ee"]["device_lists"]["changed"]
    resp = await carol.post(f"{V3}/rooms/{q(room_id)}/leave", {})
    assert resp.code == 200
    eighth = await ss(bob, request, pos=seventh["pos"], timeout=5000)
    assert eighth["extensions"]["e2ee"]["device_lists"]["left"] == [carol.user_id]


@pytest_twisted.ensureDeferred
async def test_a_pos_stays_valid_across_a_restart(make_server: Any) -> None:
    from twisted.internet import reactor

    from homeserver.server import HomeServer

    first: TestServer = await make_server()
    alice, rooms = await user_with_rooms(first, 3)
    body = await ss(alice, {"conn_id": "main", "lists": {"all": window(0, 9)}})
    pos = body["pos"]
    await first.hs.stop()

    hs = HomeServer(first.hs.config, reactor)
    await hs.setup()
    hs.listen()
    try:
        alice.base_url = TestServer(hs, first.engine).base_url
        await send_text(alice, rooms[1], "after the restart")
        again = await ss(alice, {"conn_id": "main", "lists": {"all": window(0, 9)}},
                         pos=pos, timeout=5000)
        assert list(again["rooms"]) == [rooms[1]]
        assert "initial" not in again["rooms"][rooms[1]]
        assert bodies(again["rooms"][rooms[1]]) == ["after the restart"]
    finally:
        await hs.stop()


@pytest_twisted.ensureDeferred
async def test_a_room_left_is_sent_once_with_the_leave_a_kick_stays(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    stay = await create_room(alice, preset="public_chat", name="Stay")
    leave = await create_room(alice, preset="public_chat", name="Leave")
    kicked = await create_room(alice, preset="public_chat", name="Kicked")
    for room_id in (stay, leave, kicked):
        await join(bob, room_id)
    request = {"lists": {"all": window(0, 9)}}
    first = await ss(bob, request)
    assert set(first["rooms"]) == {stay, leave, kicked}

    resp = await bob.post(f"{V3}/rooms/{q(leave)}/leave", {})
    assert resp.code == 200
    resp = await alice.post(f"{V3}/rooms/{q(kicked)}/kick", {"user_id": bob.user_id})
    assert resp.code == 200
    second = await ss(bob, request, pos=first["pos"], timeout=5000)
    if set(second["rooms"]) != {leave, kicked}:  # the two writes came apart
        more = await ss(bob, request, pos=second["pos"], timeout=5000)
        second["rooms"].update(more["rooms"])
        second["pos"] = more["pos"]
    assert second["rooms"][leave]["membership"] == "leave"
    assert second["rooms"][kicked]["membership"] == "leave"
    await send_text(alice, stay, "still here")
    third = await ss(bob, request, pos=second["pos"], timeout=5000)
    # a room the user left themselves leaves the list; a kick stays in it
    assert set(third["lists"]["all"]["ops"][0]["room_ids"]) == {stay, kicked}
    assert third["lists"]["all"]["count"] == 2
    # and the pos pages back in /messages like a next_batch
    resp = await bob.get(f"{V3}/rooms/{q(stay)}/messages",
                         params={"dir": "b", "from": third["pos"], "limit": "1"})
    assert resp.code == 200, resp.body
    assert resp.body["chunk"][0]["content"]["body"] == "still here"
    # forgetting the kicked room takes it out of the list, on this
    # connection and on a new one
    resp = await bob.post(f"{V3}/rooms/{q(kicked)}/forget", {})
    assert resp.code == 200, resp.body
    fourth = await ss(bob, request, pos=third["pos"], timeout=0)
    assert fourth["lists"]["all"]["ops"][0]["room_ids"] == [stay]
    fresh = await ss(bob, {**request, "conn_id": "another"})
    assert fresh["lists"]["all"]["ops"][0]["room_ids"] == [stay]


@pytest_twisted.ensureDeferred
async def test_a_retried_pos_gets_the_same_rooms_again(server: TestServer) -> None:
    alice, rooms = await user_with_rooms(server, 2)
    first = await ss(alice, {"lists": {"all": window(0, 0)}})
    # the client never processed this response and retries with first's pos
    await ss(alice, {"lists": {"all": window(0, 1)}}, pos=first["pos"])
    retry = await ss(alice, {"lists": {"all": window(0, 1)}}, pos=first["pos"])
    assert set(retry["rooms"]) == {rooms[0]}
    assert retry["rooms"][rooms[0]]["initial"] is True


@pytest_twisted.ensureDeferred
async def test_unknown_pos_and_bad_requests_get_matrix_errors(server: TestServer) -> None:
    alice, _ = await user_with_rooms(server, 1)
    bob = await server.register("bob")
    first = await ss(alice, {"conn_id": "a", "lists": {"all": window(0, 9)}})

    for pos in ("nonsense", "999999_s1_0_x", first["pos"].replace("_", "0_", 1)):
        err = await ss(alice, {"conn_id": "a"}, pos=pos, code=400)
        assert err["errcode"] == "M_UNKNOWN_POS", pos
    # another user, another conn_id: not theirs
    assert (await ss(bob, {"conn_id": "a"}, pos=first["pos"], code=400))["errcode"] \
        == "M_UNKNOWN_POS"
    assert (await ss(alice, {"conn_id": "b"}, pos=first["pos"], code=400))["errcode"] \
        == "M_UNKNOWN_POS"
    # a new connection with the same conn_id ends the old one
    await ss(alice, {"conn_id": "a"})
    assert (await ss(alice, {"conn_id": "a"}, pos=first["pos"], code=400))["errcode"] \
        == "M_UNKNOWN_POS"

    bad: list[tuple[dict[str, Any], str]] = [
        ({"lists": []}, "M_BAD_JSON"),
        ({"lists": {"x": {"ranges": [[5, 1]], "timeline_limit": 1}}}, "M_INVALID_PARAM"),
        ({"lists": {"x": {"ranges": [[0, -1]], "timeline_limit": 1}}}, "M_INVALID_PARAM"),
        ({"lists": {"x": {"ranges": [0, 1], "timeline_limit": 1}}}, "M_BAD_JSON"),
        ({"lists": {"x": {"timeline_limit": "10"}}}, "M_BAD_JSON"),
        ({"lists": {"x": {"timeline_limit": 1, "required_state": [["a"]]}}}, "M_BAD_JSON"),
        ({"lists": {"x": {"timeline_limit": 1, "filters": {"is_dm": "yes"}}}}, "M_BAD_JSON"),
        ({"lists": {str(i): window(0, 1) for i in range(101)}}, "M_INVALID_PARAM"),
        ({"room_subscriptions": {f"!{i}:x": {"timeline_limit": 1} for i in range(101)}},
         "M_INVALID_PARAM"),
        ({"conn_id": 5}, "M_BAD_JSON"),
        ({"extensions": {"to_device": {"enabled": "yes"}}}, "M_BAD_JSON"),
        ({"set_presence": "busy"}, "M_INVALID_PARAM"),
    ]
    for body, errcode in bad:
        err = await ss(alice, body, code=400)
        assert err["errcode"] == errcode, body
    resp = await alice.post(SS, {}, params={"timeout": "-5"})
    assert resp.code == 400 and resp.body["errcode"] == "M_INVALID_PARAM"
    resp = await alice.request("POST", SS, raw=b"[1, 2]")
    assert resp.code == 400 and resp.body["errcode"] == "M_NOT_JSON" or \
        resp.body["errcode"] == "M_BAD_JSON"
    resp = await server.client().post(SS, {})
    assert resp.code == 401
    # an unknown extension is ignored
    await ss(alice, {"extensions": {"org.example.future": {"enabled": True}}})


@pytest_twisted.ensureDeferred
async def test_odd_values_anywhere_in_the_body_never_break_the_server(
        server: TestServer) -> None:
    alice, rooms = await user_with_rooms(server, 1)
    odd: list[Any] = [None, True, -1, 2**70, 1.5, "x", "", [], {}, [[]], [None], ["*"],
                      [["*", "*"]], {"a": 1}, "\u0000"]
    base = {"conn_id": "c", "lists": {"l": window(0, 5, filters={})},
            "room_subscriptions": {rooms[0]: {"timeline_limit": 1, "required_state": []}},
            "extensions": {"to_device": {"enabled": True}, "typing": {"enabled": True}}}
    paths: list[tuple[str, ...]] = [
        ("conn_id",), ("lists",), ("lists", "l"), ("lists", "l", "ranges"),
        ("lists", "l", "range"), ("lists", "l", "timeline_limit"),
        ("lists", "l", "required_state"), ("lists", "l", "filters"),
        ("lists", "l", "filters", "spaces"), ("lists", "l", "filters", "room_types"),
        ("lists", "l", "filters", "tags"), ("room_subscriptions",),
        ("room_subscriptions", rooms[0]), ("room_subscriptions", rooms[0], "required_state"),
        ("extensions",), ("extensions", "to_device"), ("extensions", "to_device", "since"),
        ("extensions", "to_device", "limit"), ("extensions", "typing", "lists"),
        ("timeout",), ("pos",), ("set_presence",)]
    import copy
    for path in paths:
        for value in odd:
            body = copy.deepcopy(base)
            target: Any = body
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            resp = await alice.post(SS, body)
            assert resp.code in (200, 400), (path, value, resp.body)
            if resp.code == 400:
                assert resp.body["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM",
                                                "M_UNKNOWN_POS", "M_NOT_JSON"), (path, value)


@pytest_twisted.ensureDeferred
async def test_the_room_order_follows_new_messages_joins_and_leaves(
        server: TestServer) -> None:
    """Each user's sorted room list is kept between requests: a new message,
    a join and a leave each show in the next response's order, on the
    connection and on a new one."""
    alice, rooms = await user_with_rooms(server, 4)
    request = {"lists": {"all": window(0, 1)}}
    first = await ss(alice, request)
    assert first["lists"]["all"]["ops"][0]["room_ids"] == [rooms[3], rooms[2]]
    # the same list asked again, nothing new: the same order
    again = await ss(alice, {**request, "conn_id": "again"})
    assert again["lists"]["all"]["ops"][0]["room_ids"] == [rooms[3], rooms[2]]

    await send_text(alice, rooms[0], "oldest room moves up")
    second = await ss(alice, request, pos=first["pos"], timeout=5000)
    assert second["lists"]["all"]["ops"][0]["room_ids"] == [rooms[0], rooms[3]]
    assert bodies(second["rooms"][rooms[0]]) == ["oldest room moves up"]
    fresh = await ss(alice, {**request, "conn_id": "fresh"})
    assert fresh["lists"]["all"]["ops"][0]["room_ids"] == [rooms[0], rooms[3]]

    # a room alice joins comes first (its create and messages are newer)
    bob = await server.register("bob")
    bobs = await create_room(bob, preset="public_chat", name="Bob's")
    await send_text(bob, bobs, "welcome")
    await join(alice, bobs)
    third = await ss(alice, request, pos=second["pos"], timeout=5000)
    if third["lists"]["all"]["count"] != 5:  # the join came apart from the wake
        third = await ss(alice, request, pos=third["pos"], timeout=5000)
    assert third["lists"]["all"]["count"] == 5
    assert third["lists"]["all"]["ops"][0]["room_ids"][0] == bobs
    # a message in another room puts that one first again
    await send_text(alice, rooms[1], "now this one")
    fourth = await ss(alice, request, pos=third["pos"], timeout=5000)
    assert fourth["lists"]["all"]["ops"][0]["room_ids"] == [rooms[1], bobs]

    # a room she leaves goes from the list (after its leave is sent once)
    resp = await alice.post(f"{V3}/rooms/{q(rooms[1])}/leave", {})
    assert resp.code == 200
    fifth = await ss(alice, request, pos=fourth["pos"], timeout=5000)
    sixth = await ss(alice, request, pos=fifth["pos"], timeout=0)
    assert rooms[1] not in sixth["lists"]["all"]["ops"][0]["room_ids"]
    assert sixth["lists"]["all"]["count"] == 4
    latest = await ss(alice, {**request, "conn_id": "latest"})
    assert latest["lists"]["all"]["ops"][0]["room_ids"] == [bobs, rooms[0]]


@pytest_twisted.ensureDeferred
async def test_two_new_connections_of_one_conn_id_at_once_leave_one_valid(
        server: TestServer) -> None:
    """Positions are written after their responses are sent: of two
    connections started together with the same conn_id, the one written
    last replaces the other, whose pos is then M_UNKNOWN_POS."""
    alice, rooms = await user_with_rooms(server, 2)
    request = {"conn_id": "x", "lists": {"all": window(0, 9)}}
    one, two = await defer.gatherResults([defer.ensureDeferred(ss(alice, request)),
                                          defer.ensureDeferred(ss(alice, request))])
    await send_text(alice, rooms[0], "after both")
    outcomes = []
    for body in (one, two):
        resp = await alice.post(SS, request, params={"pos": body["pos"], "timeout": "5000"})
        outcomes.append(resp)
    assert sorted(r.code for r in outcomes) == [200, 400]
    good = next(r for r in outcomes if r.code == 200)
    assert bodies(good.body["rooms"][rooms[0]]) == ["after both"]
    bad = next(r for r in outcomes if r.code == 400)
    assert bad.body["errcode"] == "M_UNKNOWN_POS"


@pytest_twisted.ensureDeferred
async def test_extensions_in_a_quiet_range_still_carry_what_came(server: TestServer) -> None:
    """Between two responses with only messages, the extensions answer from
    memory; a to-device message stored before the connection, a receipt and
    a device change of a room mate each still come."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    await join(bob, room_id)
    resp = await alice.put(f"{V3}/sendToDevice/m.test/early", {"messages": {
        bob.user_id: {bob.device_id: {"before": "the connection"}}}})
    assert resp.code == 200
    extensions: dict[str, Any] = {name: {"enabled": True} for name in (
        "to_device", "e2ee", "account_data", "receipts", "typing")}
    request = {"lists": {"all": window(0, 9)}, "extensions": extensions}
    first = await ss(bob, request)
    to_device = first["extensions"]["to_device"]
    assert [m["content"] for m in to_device["events"]] == [{"before": "the connection"}]
    extensions["to_device"] = {"enabled": True, "since": to_device["next_batch"]}

    event_id = await send_text(alice, room_id, "just a message")
    second = await ss(bob, request, pos=first["pos"], timeout=5000)
    assert bodies(second["rooms"][room_id]) == ["just a message"]
    ext = second["extensions"]
    assert ext["to_device"]["events"] == []
    assert ext["e2ee"]["device_lists"] == {"changed": [], "left": []}
    assert ext["account_data"]["global"] == [] and ext["account_data"]["rooms"] == {}
    assert ext["receipts"]["rooms"] == {}
    extensions["to_device"] = {"enabled": True, "since": ext["to_device"]["next_batch"]}

    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
    assert resp.code == 200
    third = await ss(bob, request, pos=second["pos"], timeout=5000)
    receipt = third["extensions"]["receipts"]["rooms"][room_id]
    assert alice.user_id in receipt["content"][event_id]["m.read"]

    resp = await alice.put(f"{V3}/devices/{q(alice.device_id or '')}",
                           {"display_name": "phone"})
    assert resp.code == 200
    fourth = await ss(bob, request, pos=third["pos"], timeout=5000)
    assert alice.user_id in fourth["extensions"]["e2ee"]["device_lists"]["changed"]

    resp = await alice.put(f"{V3}/sendToDevice/m.test/late", {"messages": {
        bob.user_id: {bob.device_id: {"after": "a quiet range"}}}})
    assert resp.code == 200
    fifth = await ss(bob, request, pos=fourth["pos"], timeout=5000)
    assert [m["content"] for m in fifth["extensions"]["to_device"]["events"]] == \
        [{"after": "a quiet range"}]


@pytest_twisted.ensureDeferred
async def test_a_connection_polling_again_sees_renames_redactions_and_joins(
        server: TestServer) -> None:
    """A connection polling again with the same request waits before
    building; a state change, a redaction and a join each still wake it
    with what changed."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Before")
    await join(bob, room_id)
    event_id = await send_text(alice, room_id, "soon gone")
    request = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 5,
                                 "required_state": [["m.room.name", ""]]}}}
    first = await ss(bob, request)
    assert first["rooms"][room_id]["name"] == "Before"
    assert first["rooms"][room_id]["joined_count"] == 2

    polling = defer.ensureDeferred(ss(bob, request, pos=first["pos"], timeout=10000))
    await sleep(0.2)
    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/state/m.room.name/", {"name": "After"})
    assert resp.code == 200
    second = await polling
    assert second["rooms"][room_id]["name"] == "After"

    polling = defer.ensureDeferred(ss(bob, request, pos=second["pos"], timeout=10000))
    await sleep(0.2)
    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/redact/{q(event_id)}/r1", {})
    assert resp.code == 200
    third = await polling
    timeline = third["rooms"][room_id]["timeline"]
    assert any(e["type"] == "m.room.redaction" and e.get("redacts", e["content"].get(
        "redacts")) == event_id for e in timeline)

    carol = await server.register("carol")
    polling = defer.ensureDeferred(ss(bob, request, pos=third["pos"], timeout=10000))
    await sleep(0.2)
    await join(carol, room_id)
    fourth = await polling
    assert fourth["rooms"][room_id]["joined_count"] == 3


@pytest_twisted.ensureDeferred
async def test_timelines_carry_edits_and_thread_summaries(server: TestServer) -> None:
    """Relations are bundled into a room's timeline as /sync bundles them,
    those that came after a connection's last response too."""
    alice = await server.register("alice")
    room_id = await create_room(alice, name="Threads")
    root = await send_text(alice, room_id, "root")
    request = {"lists": {"all": window(0, 9, limit=10)}}
    first = await ss(alice, request)
    assert "m.relations" not in (first["rooms"][room_id]["timeline"][-1].get("unsigned") or {})

    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/e1", {
        "msgtype": "m.text", "body": "* root edited",
        "m.new_content": {"msgtype": "m.text", "body": "root edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": root}})
    assert resp.code == 200
    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/t1", {
        "msgtype": "m.text", "body": "in the thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    assert resp.code == 200
    fresh = await ss(alice, {**request, "conn_id": "fresh"})
    timeline = fresh["rooms"][room_id]["timeline"]
    original = next(e for e in timeline if e["event_id"] == root)
    relations = original["unsigned"]["m.relations"]
    assert relations["m.replace"]["content"]["m.new_content"]["body"] == "root edited"
    assert relations["m.thread"]["count"] == 1
