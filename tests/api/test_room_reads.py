"""Reading rooms: history visibility on every read path, /messages filters,
/context, timestamp_to_event, /members filters (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from tests.api.test_rooms import ALICE, BOB, V3, create_room, invite, join, send_text
from tests.harness import Client, TestServer

V1 = "/_matrix/client/v1"
CAROL = "@carol:test.local"


# -- helpers ----------------------------------------------------------------------


async def room_with_visibility(alice: Client, visibility: str, **body: Any) -> str:
    return await create_room(alice, initial_state=[{
        "type": "m.room.history_visibility", "content": {"history_visibility": visibility}}],
        **body)


async def timeline(client: Client, room_id: str, **params: str) -> list[dict[str, Any]]:
    """Every event the client can page back through, oldest first."""
    resp = await client.get(f"{V3}/rooms/{room_id}/messages",
                            params={"dir": "b", "limit": "1000", **params})
    assert resp.code == 200, resp.body
    chunk: list[dict[str, Any]] = resp.body["chunk"]
    return list(reversed(chunk))


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def get_event(client: Client, room_id: str, event_id: str) -> Any:
    return await client.get(f"{V3}/rooms/{room_id}/event/{event_id}")


async def context(client: Client, room_id: str, event_id: str, **params: str) -> Any:
    return await client.get(f"{V3}/rooms/{room_id}/context/{event_id}", params=params)


async def story(server: TestServer, visibility: str) -> tuple[Client, Client, str, dict[str, str]]:
    """Alice talks before inviting Bob, while he is invited, and after he joins."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await room_with_visibility(alice, visibility)
    ids = {"before": await send_text(alice, room_id, "before", "t1")}
    assert (await invite(alice, room_id, BOB)).code == 200
    ids["invited"] = await send_text(alice, room_id, "invited", "t2")
    assert (await join(bob, room_id)).code == 200
    ids["joined"] = await send_text(alice, room_id, "joined", "t3")
    return alice, bob, room_id, ids


# -- history visibility -----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_joined_visibility_hides_history_from_before_the_join(server: TestServer) -> None:
    alice, bob, room_id, ids = await story(server, "joined")

    assert bodies(await timeline(bob, room_id)) == ["joined"]
    assert bodies(await timeline(alice, room_id)) == ["before", "invited", "joined"]
    for hidden in (ids["before"], ids["invited"]):
        resp = await get_event(bob, room_id, hidden)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
        resp = await context(bob, room_id, hidden)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    assert (await get_event(bob, room_id, ids["joined"])).code == 200
    # his own join is visible, and /context around it stops at what he may see
    ctx = await context(bob, room_id, ids["joined"], limit="10")
    assert ctx.code == 200
    assert bodies(ctx.body["events_before"]) == []
    assert ctx.body["events_before"][0]["state_key"] == BOB


@pytest_twisted.ensureDeferred
async def test_shared_visibility_shows_earlier_history_to_a_new_member(
        server: TestServer) -> None:
    _, bob, room_id, ids = await story(server, "shared")
    assert bodies(await timeline(bob, room_id)) == ["before", "invited", "joined"]
    assert (await get_event(bob, room_id, ids["before"])).code == 200


@pytest_twisted.ensureDeferred
async def test_invited_visibility_shows_events_from_the_invite_on(server: TestServer) -> None:
    _, bob, room_id, ids = await story(server, "invited")
    events = await timeline(bob, room_id)
    assert bodies(events) == ["invited", "joined"]
    # his invite is the first thing he sees after the visibility was set
    # (the creation events before it were "shared", the default)
    after_setting = [e["type"] for e in events].index("m.room.history_visibility") + 1
    assert (events[after_setting]["type"], events[after_setting]["content"]["membership"]) == (
        "m.room.member", "invite")
    assert (await get_event(bob, room_id, ids["before"])).code == 404


@pytest_twisted.ensureDeferred
async def test_world_readable_room_is_readable_without_joining(server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await room_with_visibility(alice, "world_readable", preset="public_chat",
                                         name="Open")
    event_id = await send_text(alice, room_id, "hello world", "t1")

    assert bodies(await timeline(carol, room_id)) == ["hello world"]
    assert (await get_event(carol, room_id, event_id)).body["content"]["body"] == "hello world"
    assert (await context(carol, room_id, event_id)).code == 200
    name = await carol.get(f"{V3}/rooms/{room_id}/state/m.room.name")
    assert name.body == {"name": "Open"}
    assert (await carol.get(f"{V3}/rooms/{room_id}/state")).code == 200
    members = await carol.get(f"{V3}/rooms/{room_id}/members")
    assert [e["state_key"] for e in members.body["chunk"]] == [ALICE]
    # peeking is reading only
    resp = await carol.put(f"{V3}/rooms/{room_id}/send/m.room.message/x", {"body": "hi"})
    assert resp.code == 403


@pytest_twisted.ensureDeferred
async def test_peekers_see_only_what_was_world_readable(server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    await send_text(alice, room_id, "private", "t1")
    await alice.put(f"{V3}/rooms/{room_id}/state/m.room.history_visibility",
                    {"history_visibility": "world_readable"})
    await send_text(alice, room_id, "public", "t2")
    assert bodies(await timeline(carol, room_id)) == ["public"]


@pytest_twisted.ensureDeferred
async def test_nothing_after_leaving_is_visible(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await send_text(alice, room_id, "while there", "t1")
    assert (await bob.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    after = await send_text(alice, room_id, "after leaving", "t2")

    assert bodies(await timeline(bob, room_id)) == ["while there"]
    forward = await bob.get(f"{V3}/rooms/{room_id}/messages",
                            params={"dir": "f", "from": "s0", "limit": "100"})
    assert "after leaving" not in bodies(forward.body["chunk"])
    assert (await get_event(bob, room_id, after)).code == 404
    assert (await context(bob, room_id, after)).code == 404
    resp = await bob.get(f"{V1}/rooms/{room_id}/timestamp_to_event",
                         params={"ts": str(2**50), "dir": "b"})
    assert resp.body["event_id"] != after
    assert (await bob.get(f"{V3}/rooms/{room_id}/joined_members")).code == 403


@pytest_twisted.ensureDeferred
async def test_a_banned_user_can_no_longer_read_the_room(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await send_text(alice, room_id, "while there", "t1")
    assert (await alice.post(f"{V3}/rooms/{room_id}/ban", {"user_id": BOB})).code == 200

    for path in (f"{V3}/rooms/{room_id}/state/m.room.member/{BOB}",
                 f"{V3}/rooms/{room_id}/state", f"{V3}/rooms/{room_id}/members",
                 f"{V3}/rooms/{room_id}/messages"):
        resp = await bob.get(path, params={"dir": "b"})
        assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN"), path
    # he cannot come back until unbanned
    assert (await join(bob, room_id)).code == 403
    assert (await alice.post(f"{V3}/rooms/{room_id}/unban", {"user_id": BOB})).code == 200
    assert (await join(bob, room_id)).code == 200
    assert bodies(await timeline(bob, room_id))[-1:] == ["while there"]


@pytest_twisted.ensureDeferred
async def test_strangers_are_refused_on_every_read_path(server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    event_id = await send_text(alice, room_id, "hi", "t1")
    for path, params in ((f"{V3}/rooms/{room_id}/context/{event_id}", {}),
                         (f"{V1}/rooms/{room_id}/timestamp_to_event", {"ts": "0", "dir": "f"})):
        resp = await carol.get(path, params=params)
        assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN"), path
    # /event says "not found", as Synapse does, and so names no room either
    resp = await carol.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


# -- /messages: filters, tokens, limits -------------------------------------------------


async def filtered(client: Client, room_id: str, event_filter: dict[str, Any],
                   **params: str) -> Any:
    resp = await client.get(f"{V3}/rooms/{room_id}/messages", params={
        "dir": "b", "filter": json.dumps(event_filter), **params})
    assert resp.code == 200, resp.body
    return resp.body


@pytest_twisted.ensureDeferred
async def test_messages_filter_by_type_sender_and_url(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await send_text(alice, room_id, "a1", "t1")
    await send_text(bob, room_id, "b1", "t2")
    image = await alice.put(f"{V3}/rooms/{room_id}/send/m.room.message/t3",
                            {"msgtype": "m.image", "body": "pic", "url": "mxc://test.local/x"})
    await alice.put(f"{V3}/rooms/{room_id}/send/org.example.custom/t4", {"body": "c"})

    def types(body: Any) -> list[str]:
        return [e["type"] for e in body["chunk"]]

    only_messages = await filtered(alice, room_id, {"types": ["m.room.message"]})
    assert bodies(only_messages["chunk"]) == ["pic", "b1", "a1"]
    wildcard = await filtered(alice, room_id, {"types": ["org.example.*"]})
    assert types(wildcard) == ["org.example.custom"]
    not_state = await filtered(alice, room_id, {"not_types": ["m.room.*"]})
    assert types(not_state) == ["org.example.custom"]
    from_bob = await filtered(alice, room_id, {"senders": [BOB], "types": ["m.room.message"]})
    assert bodies(from_bob["chunk"]) == ["b1"]
    not_bob = await filtered(alice, room_id, {"not_senders": [BOB],
                                              "types": ["m.room.message"]})
    assert bodies(not_bob["chunk"]) == ["pic", "a1"]
    with_url = await filtered(alice, room_id, {"contains_url": True})
    assert [e["event_id"] for e in with_url["chunk"]] == [image.body["event_id"]]
    without_url = await filtered(alice, room_id, {"contains_url": False,
                                                  "types": ["m.room.message"]})
    assert bodies(without_url["chunk"]) == ["b1", "a1"]


@pytest_twisted.ensureDeferred
async def test_filtered_pages_continue_where_the_scan_stopped(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    for i in range(30):
        await send_text(alice, room_id, f"m{i}", f"t{i}")
        await alice.put(f"{V3}/rooms/{room_id}/send/org.example.noise/n{i}", {})
    seen: list[str] = []
    params: dict[str, str] = {"limit": "7"}
    for _ in range(10):
        page = await filtered(alice, room_id, {"types": ["m.room.message"]}, **params)
        seen += bodies(page["chunk"])
        if "end" not in page:
            break
        params["from"] = page["end"]
    assert seen == [f"m{i}" for i in reversed(range(30))]


@pytest_twisted.ensureDeferred
async def test_lazy_loading_members_returns_the_senders_member_events(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await join(carol, room_id)
    await send_text(carol, room_id, "early", "t0")
    await send_text(alice, room_id, "a", "t1")
    await send_text(bob, room_id, "b", "t2")

    body = await filtered(alice, room_id, {"lazy_load_members": True}, limit="2")
    assert sorted(e["state_key"] for e in body["state"]) == [ALICE, BOB]
    assert all(e["type"] == "m.room.member" for e in body["state"])
    plain = await filtered(alice, room_id, {}, limit="2")
    assert "state" not in plain


@pytest_twisted.ensureDeferred
async def test_messages_to_token_default_and_max_limit(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    sent = [await send_text(alice, room_id, f"m{i}", f"t{i}") for i in range(12)]

    default = await alice.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b"})
    assert len(default.body["chunk"]) == 10
    huge = await alice.get(f"{V3}/rooms/{room_id}/messages",
                           params={"dir": "b", "limit": "100000"})
    assert huge.code == 200 and "end" in huge.body  # it has events (as Synapse)
    past = await alice.get(f"{V3}/rooms/{room_id}/messages",
                           params={"dir": "b", "limit": "100000", "from": huge.body["end"]})
    assert past.body["chunk"] == [] and "end" not in past.body

    # a backwards page from now to the token taken after m5
    first = await alice.get(f"{V3}/rooms/{room_id}/messages",
                            params={"dir": "b", "limit": "6"})
    assert [e["event_id"] for e in first.body["chunk"]] == sent[:5:-1]
    stop = first.body["end"]
    again = await alice.get(f"{V3}/rooms/{room_id}/messages",
                            params={"dir": "b", "limit": "100", "to": stop})
    assert [e["event_id"] for e in again.body["chunk"]] == sent[:5:-1]
    # forwards from the start up to that token
    forward = await alice.get(f"{V3}/rooms/{room_id}/messages",
                              params={"dir": "f", "from": "s0", "to": stop, "limit": "100"})
    assert [e["event_id"] for e in forward.body["chunk"]][-6:] == sent[:6]


@pytest_twisted.ensureDeferred
async def test_the_filters_limit_applies_without_a_limit_parameter(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    for i in range(5):
        await send_text(alice, room_id, f"m{i}", f"t{i}")
    body = await filtered(alice, room_id, {"limit": 3})
    assert len(body["chunk"]) == 3


@pytest.mark.parametrize("value", [
    "{not json", "[1, 2]", json.dumps({"limit": "ten"}), json.dumps({"types": "m.room.message"}),
    json.dumps({"senders": ["not-a-user"]}), json.dumps({"lazy_load_members": 1}),
])
@pytest_twisted.ensureDeferred
async def test_bad_filters_are_400(server: TestServer, value: str) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "hi", "t")
    for path in (f"/rooms/{room_id}/messages", f"/rooms/{room_id}/context/{event_id}"):
        resp = await alice.get(V3 + path, params={"dir": "b", "filter": value})
        assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), (path, resp.body)


# -- /context -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_context_returns_events_around_and_the_state(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, name="Ctx")
    sent = [await send_text(alice, room_id, f"m{i}", f"t{i}") for i in range(9)]

    resp = await context(alice, room_id, sent[4], limit="4")

    assert resp.code == 200
    body = resp.body
    assert body["event"]["event_id"] == sent[4]
    assert [e["event_id"] for e in body["events_before"]] == [sent[3], sent[2]]
    assert [e["event_id"] for e in body["events_after"]] == [sent[5], sent[6]]
    state = {(e["type"], e["state_key"]) for e in body["state"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", ALICE)} <= state
    # the tokens continue with /messages
    older = await alice.get(f"{V3}/rooms/{room_id}/messages",
                            params={"dir": "b", "from": body["start"], "limit": "2"})
    assert [e["event_id"] for e in older.body["chunk"]] == [sent[1], sent[0]]
    newer = await alice.get(f"{V3}/rooms/{room_id}/messages",
                            params={"dir": "f", "from": body["end"], "limit": "10"})
    assert [e["event_id"] for e in newer.body["chunk"]] == [sent[7], sent[8]]


@pytest_twisted.ensureDeferred
async def test_context_default_limit_and_lazy_loaded_members(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await join(carol, room_id)
    sent = [await send_text(alice if i % 2 else bob, room_id, f"m{i}", f"t{i}")
            for i in range(20)]

    full = await context(alice, room_id, sent[10])
    assert len(full.body["events_before"]) == 5 and len(full.body["events_after"]) == 5
    members = {e["state_key"] for e in full.body["state"] if e["type"] == "m.room.member"}
    assert members == {ALICE, BOB, CAROL}

    lazy = await context(alice, room_id, sent[10], limit="4",
                         filter=json.dumps({"lazy_load_members": True}))
    members = {e["state_key"] for e in lazy.body["state"] if e["type"] == "m.room.member"}
    assert members == {ALICE, BOB}
    assert any(e["type"] == "m.room.create" for e in lazy.body["state"])


@pytest_twisted.ensureDeferred
async def test_context_of_an_unknown_event_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    other_room = await create_room(alice)
    elsewhere = await send_text(alice, other_room, "elsewhere", "t")
    for event_id in ("$nothere", elsewhere):
        resp = await context(alice, room_id, event_id)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
        resp = await get_event(alice, room_id, event_id)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


# -- timestamp_to_event -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_timestamp_to_event_finds_the_nearest_event(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    last = await send_text(alice, room_id, "last", "t")
    last_ts = (await get_event(alice, room_id, last)).body["origin_server_ts"]
    create = [e for e in await timeline(alice, room_id) if e["type"] == "m.room.create"][0]
    path = f"{V1}/rooms/{room_id}/timestamp_to_event"

    backwards = await alice.get(path, params={"ts": str(last_ts + 1), "dir": "b"})
    assert backwards.body == {"event_id": last, "origin_server_ts": last_ts}
    forwards = await alice.get(path, params={"ts": str(create["origin_server_ts"]),
                                             "dir": "f"})
    assert forwards.body["event_id"] == create["event_id"]
    for params in ({"ts": str(last_ts + 1), "dir": "f"},
                   {"ts": str(create["origin_server_ts"] - 1), "dir": "b"}):
        resp = await alice.get(path, params=params)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), params


@pytest_twisted.ensureDeferred
async def test_timestamp_to_event_skips_what_the_reader_may_not_see(
        server: TestServer) -> None:
    alice, bob, room_id, ids = await story(server, "joined")
    before = await get_event(alice, room_id, ids["before"])
    resp = await bob.get(f"{V1}/rooms/{room_id}/timestamp_to_event",
                         params={"ts": str(before.body["origin_server_ts"]), "dir": "f"})
    assert resp.code == 200
    assert resp.body["event_id"] not in (ids["before"], ids["invited"])
    assert (await get_event(bob, room_id, resp.body["event_id"])).code == 200


@pytest_twisted.ensureDeferred
async def test_timestamp_to_event_bad_parameters_are_400(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    path = f"{V1}/rooms/{room_id}/timestamp_to_event"
    for params, code in (({"ts": "1", "dir": "x"}, "M_INVALID_PARAM"),
                         ({"ts": "soon", "dir": "f"}, "M_INVALID_PARAM"),
                         ({"ts": "-5", "dir": "f"}, "M_INVALID_PARAM"),
                         ({"dir": "f"}, "M_MISSING_PARAM"),
                         ({"ts": "1"}, "M_MISSING_PARAM")):
        resp = await alice.get(path, params=params)
        assert (resp.code, resp.body["errcode"]) == (400, code), params


@pytest_twisted.ensureDeferred
async def test_bad_dir_on_messages_is_invalid_param(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "sideways"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


# -- /members ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_members_membership_filters(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await server.register("carol")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    await invite(alice, room_id, CAROL)
    path = f"{V3}/rooms/{room_id}/members"

    def keys(resp: Any) -> list[str]:
        return sorted(e["state_key"] for e in resp.body["chunk"])

    assert keys(await alice.get(path)) == [ALICE, BOB, CAROL]
    assert keys(await alice.get(path, params={"membership": "join"})) == [ALICE]
    assert keys(await alice.get(path, params={"not_membership": "leave"})) == [ALICE, CAROL]


# -- the filter itself (pure) -------------------------------------------------------------


def test_room_event_filter_matching() -> None:
    from homeserver.events.model import Event
    from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
    from homeserver.rooms.access import RoomEventFilter

    def event(event_type: str, sender: str = ALICE, **content: Any) -> Event:
        return Event("$e", KNOWN_ROOM_VERSIONS["12"],
                     {"type": event_type, "sender": sender, "content": content})

    f = RoomEventFilter.from_json({"types": ["m.*"], "not_types": ["m.room.member"],
                                   "not_senders": [BOB]})
    assert f.matches(event("m.room.message"))
    assert not f.matches(event("m.room.member"))
    assert not f.matches(event("org.example"))
    assert not f.matches(event("m.room.message", BOB))
    urls = RoomEventFilter.from_json({"contains_url": True})
    assert urls.matches(event("m.room.message", url="mxc://a/b"))
    assert not urls.matches(event("m.room.message", url=5))
    assert RoomEventFilter.from_json({"types": []}).matches(event("m.room.message")) is False
    assert RoomEventFilter.from_json({}).lazy_load_members is False


@pytest_twisted.ensureDeferred
async def test_members_at_a_token_are_the_members_then(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    token = (await alice.get(f"{V3}/rooms/{room_id}/messages",
                             params={"dir": "b", "limit": "1"})).body["start"]
    await join(bob, room_id)

    then = await alice.get(f"{V3}/rooms/{room_id}/members", params={"at": token})
    now = await alice.get(f"{V3}/rooms/{room_id}/members")
    bad = await alice.get(f"{V3}/rooms/{room_id}/members", params={"at": "nonsense"})

    assert sorted(e["state_key"] for e in then.body["chunk"]) == [ALICE]
    assert sorted(e["state_key"] for e in now.body["chunk"]) == [ALICE, BOB]
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")
