"""Make room admin, forward extremities, timestamp_to_event, fetch_event,
joining a user, suspension, external IDs, membership lookups and background
updates through the admin API, over real HTTP on both engines."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.harness import TestServer
from tests.helpers import create_room, join, q, send_text

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
CLIENT = "/_matrix/client/v3"


@pytest_twisted.ensureDeferred
async def test_make_room_admin_grants_the_top_level_and_invites(
        server: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.admin.audit")
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="private_chat", room_alias_name="secret")

    resp = await admin.post(f"{V1}/rooms/{q('#secret:test.local')}/make_room_admin",
                            {"user_id": bob.user_id})

    assert resp.code == 200, resp.body
    levels = await alice.get(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.power_levels/")
    assert levels.body["users"][bob.user_id] == 100
    # not public and bob was not in it: invited, so he can join
    await join(bob, room_id)
    assert (await bob.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.topic/",
                          {"topic": "mine now"})).code == 200
    # the caller by default
    me = await admin.post(f"{V1}/rooms/{q(room_id)}/make_room_admin", {})
    assert me.code == 200, me.body
    assert any("action=make_room_admin" in r.getMessage() for r in caplog.records)

    unknown = await admin.post(f"{V1}/rooms/{q('!nope:test.local')}/make_room_admin", {})
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    bad_alias = await admin.post(f"{V1}/rooms/{q('#nope:test.local')}/make_room_admin", {})
    assert bad_alias.code == 404
    not_a_room = await admin.post(f"{V1}/rooms/nonsense/make_room_admin", {})
    assert not_a_room.code == 400
    remote = await admin.post(f"{V1}/rooms/{q(room_id)}/make_room_admin",
                              {"user_id": "@x:elsewhere.example"})
    assert remote.code == 400
    bad_type = await admin.post(f"{V1}/rooms/{q(room_id)}/make_room_admin", {"user_id": 5})
    assert bad_type.code == 400
    # nobody local left with power: 400
    await alice.post(f"{CLIENT}/rooms/{q(room_id)}/leave", {})
    await bob.post(f"{CLIENT}/rooms/{q(room_id)}/leave", {})
    await admin.post(f"{CLIENT}/rooms/{q(room_id)}/leave", {})
    orphan = await admin.post(f"{V1}/rooms/{q(room_id)}/make_room_admin", {})
    assert orphan.code == 400


@pytest_twisted.ensureDeferred
async def test_forward_extremities_are_listed_and_cleared(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    last = await send_text(alice, room_id, "hello")
    # a second tip, as a federation gap would leave: the room's create event
    room = await server.hs.stores.rooms.get_room(room_id)
    assert room is not None
    create_nid = await server.hs.db.execute(
        "t", "SELECT event_nid FROM events WHERE room_nid = ? AND event_type = 'm.room.create'",
        (room.room_nid,))
    await server.hs.db.execute("t", "INSERT INTO forward_extremities (room_nid, event_nid)"
                               " VALUES (?, ?)", (room.room_nid, create_nid[0][0]))

    listed = await admin.get(f"{V1}/rooms/{q(room_id)}/forward_extremities")

    assert listed.code == 200, listed.body
    assert listed.body["count"] == 2
    assert listed.body["results"][0]["event_id"] == last
    assert set(listed.body["results"][0]) == {"event_id", "state_group", "depth",
                                              "received_ts"}
    cleared = await admin.delete(f"{V1}/rooms/{q(room_id)}/forward_extremities")
    assert cleared.body == {"deleted": 1}
    after = await admin.get(f"{V1}/rooms/{q(room_id)}/forward_extremities")
    assert [r["event_id"] for r in after.body["results"]] == [last]
    # the room goes on from the one tip
    await send_text(alice, room_id, "still works")
    assert (await admin.get(f"{V1}/rooms/{q('!x:test.local')}/forward_extremities")).code \
        == 404


@pytest_twisted.ensureDeferred
async def test_timestamp_to_event_and_fetch_event_see_every_room(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    first = await send_text(alice, room_id, "one")
    event = await server.hs.stores.events.get_event(first)
    assert event is not None
    ts = event.origin_server_ts

    forward = await admin.get(f"{V1}/rooms/{q(room_id)}/timestamp_to_event?ts={ts}&dir=f")
    assert forward.code == 200, forward.body
    assert forward.body == {"event_id": first, "origin_server_ts": ts}
    backward = await admin.get(f"{V1}/rooms/{q(room_id)}/timestamp_to_event?ts={ts}&dir=b")
    assert backward.body["origin_server_ts"] <= ts
    none = await admin.get(f"{V1}/rooms/{q(room_id)}/timestamp_to_event?ts=1&dir=b")
    assert (none.code, none.body["errcode"]) == (404, "M_NOT_FOUND")
    bad = await admin.get(f"{V1}/rooms/{q(room_id)}/timestamp_to_event?ts=x")
    assert bad.code == 400
    bad_dir = await admin.get(f"{V1}/rooms/{q(room_id)}/timestamp_to_event?ts=1&dir=up")
    assert (bad_dir.code, bad_dir.body["errcode"]) == (400, "M_INVALID_PARAM")

    fetched = await admin.get(f"{V1}/fetch_event/{q(first)}")
    assert fetched.code == 200, fetched.body
    assert fetched.body["event"]["event_id"] == first
    assert fetched.body["event"]["content"]["body"] == "one"
    assert {"auth_events", "prev_events", "hashes", "signatures"} <= set(fetched.body["event"])
    assert (await admin.get(f"{V1}/fetch_event/{q('$nope')}")).code == 404


@pytest_twisted.ensureDeferred
async def test_an_admin_joins_a_user_to_a_room(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    public = await create_room(admin, preset="public_chat", room_alias_name="lobby")
    private = await create_room(admin, preset="private_chat")
    elsewhere = await create_room(bob, preset="private_chat")
    carol = await server.register("carol")

    resp = await admin.post(f"{V1}/join/{q('#lobby:test.local')}", {"user_id": bob.user_id})
    assert resp.body == {"room_id": public}
    resp = await admin.post(f"{V1}/join/{q(private)}", {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    joined = await bob.get(f"{CLIENT}/joined_rooms")
    assert set(joined.body["joined_rooms"]) == {public, private, elsewhere}
    # the admin is not in it: cannot invite
    refused = await admin.post(f"{V1}/join/{q(elsewhere)}", {"user_id": carol.user_id})
    assert refused.code == 403
    assert (await admin.post(f"{V1}/join/{q(public)}", {})).code == 400
    remote = await admin.post(f"{V1}/join/{q(public)}", {"user_id": "@a:elsewhere.example"})
    assert remote.code == 400
    unknown = await admin.post(f"{V1}/join/{q(public)}", {"user_id": "@ghost:test.local"})
    assert unknown.code == 404


@pytest_twisted.ensureDeferred
async def test_a_suspended_user_reads_and_leaves_but_cannot_act(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    other = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    mine = await send_text(bob, room_id, "before")
    theirs = await send_text(alice, room_id, "alice's")

    resp = await admin.put(f"{V1}/suspend/{q(bob.user_id)}", {"suspend": True})
    assert resp.code == 200, resp.body
    assert resp.body == {f"user_{bob.user_id}_suspended": True}
    details = await admin.get(f"{V2}/users/{q(bob.user_id)}")
    assert details.body["suspended"] is True

    def suspended(r: Any) -> bool:
        return (r.code, r.body.get("errcode")) == (403, "M_USER_SUSPENDED")
    assert suspended(await bob.put(f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/t1",
                                   {"msgtype": "m.text", "body": "spam"}))
    assert suspended(await bob.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.topic/",
                                   {"topic": "x"}))
    assert suspended(await bob.post(f"{CLIENT}/join/{q(other)}", {}))
    assert suspended(await bob.post(f"{CLIENT}/rooms/{q(room_id)}/invite",
                                    {"user_id": admin.user_id}))
    assert suspended(await bob.post(f"{CLIENT}/createRoom", {}))
    assert suspended(await bob.put(f"{CLIENT}/profile/{q(bob.user_id)}/displayname",
                                   {"displayname": "Spammer"}))
    assert suspended(await bob.put(f"{CLIENT}/rooms/{q(room_id)}/redact/{q(theirs)}/r1", {}))
    # reading, redacting their own and leaving still work
    assert (await bob.get(f"{CLIENT}/rooms/{q(room_id)}/messages?dir=b")).code == 200
    assert (await bob.put(f"{CLIENT}/rooms/{q(room_id)}/redact/{q(mine)}/r2", {})).code == 200
    assert (await bob.post(f"{CLIENT}/rooms/{q(room_id)}/leave", {})).code == 200

    lifted = await admin.put(f"{V1}/suspend/{q(bob.user_id)}", {"suspend": False})
    assert lifted.body == {f"user_{bob.user_id}_suspended": False}
    assert (await bob.post(f"{CLIENT}/join/{q(other)}", {})).code == 200
    bad = await admin.put(f"{V1}/suspend/{q(bob.user_id)}", {"suspend": "yes"})
    assert (bad.code, bad.body["errcode"]) == (400, "M_BAD_JSON")
    remote = await admin.put(f"{V1}/suspend/{q('@x:elsewhere.example')}", {"suspend": True})
    assert remote.code == 400
    ghost = await admin.put(f"{V1}/suspend/{q('@ghost:test.local')}", {"suspend": True})
    assert (ghost.code, ghost.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_external_ids_are_set_shown_and_looked_up(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    await server.register("carol")
    ids = [{"auth_provider": "oidc", "external_id": "sub/1@idp"},
           {"auth_provider": "saml", "external_id": "b"}]

    put = await admin.put(f"{V2}/users/{q(bob.user_id)}", {"external_ids": ids})

    assert put.code == 200, put.body
    details = await admin.get(f"{V2}/users/{q(bob.user_id)}")
    assert details.body["external_ids"] == ids
    found = await admin.get(f"{V1}/auth_providers/oidc/users/{q('sub/1@idp')}")
    assert found.code == 200, found.body
    assert found.body == {"user_id": bob.user_id}
    missing = await admin.get(f"{V1}/auth_providers/oidc/users/nobody")
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")
    taken = await admin.put(f"{V2}/users/{q('@carol:test.local')}",
                            {"external_ids": [ids[0]]})
    assert taken.code == 409
    bad = await admin.put(f"{V2}/users/{q(bob.user_id)}", {"external_ids": [{"x": 1}]})
    assert bad.code == 400
    assert (await admin.get(f"{V2}/users/{q(bob.user_id)}")).body["external_ids"] == ids
    # a new user with them
    new = await admin.put(f"{V2}/users/{q('@dave:test.local')}",
                          {"external_ids": [{"auth_provider": "oidc", "external_id": "d"}]})
    assert new.code == 201, new.body
    dave = await admin.get(f"{V1}/auth_providers/oidc/users/d")
    assert dave.body == {"user_id": "@dave:test.local"}


@pytest_twisted.ensureDeferred
async def test_memberships_counts_and_threepid_lookup(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    start = server.hs.ctx.now_ms()
    one = await create_room(alice)
    two = await create_room(alice)
    await alice.post(f"{CLIENT}/rooms/{q(one)}/invite", {"user_id": bob.user_id})
    await alice.post(f"{CLIENT}/rooms/{q(two)}/invite", {"user_id": bob.user_id})
    await join(bob, one)

    memberships = await admin.get(f"{V1}/users/{q(bob.user_id)}/memberships")
    assert memberships.body == {"memberships": {one: "join", two: "invite"}}
    invites = await admin.get(f"{V1}/users/{q(alice.user_id)}/sent_invite_count?from_ts={start}")
    assert invites.body == {"invite_count": 2}
    joins = await admin.get(
        f"{V1}/users/{q(alice.user_id)}/cumulative_joined_room_count?from_ts={start}")
    assert joins.body == {"cumulative_joined_room_count": 2}
    later = await admin.get(f"{V1}/users/{q(alice.user_id)}/sent_invite_count"
                            f"?from_ts={start + 10**9}")
    assert later.body == {"invite_count": 0}
    missing = await admin.get(f"{V1}/users/{q(alice.user_id)}/sent_invite_count")
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    huge = await admin.get(f"{V1}/users/{q(alice.user_id)}/sent_invite_count?from_ts={10**30}")
    assert (huge.code, huge.body["errcode"]) == (400, "M_INVALID_PARAM")

    await admin.put(f"{V2}/users/{q(bob.user_id)}",
                    {"threepids": [{"medium": "email", "address": "bob@example.org"}]})
    found = await admin.get(f"{V1}/threepid/email/users/{q('bob@example.org')}")
    assert found.body == {"user_id": bob.user_id}
    nobody = await admin.get(f"{V1}/threepid/email/users/{q('x@example.org')}")
    assert (nobody.code, nobody.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_background_updates_status_pause_and_jobs(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    status = await admin.get(f"{V1}/background_updates/status")
    assert status.code == 200, status.body
    assert status.body["enabled"] is True
    assert isinstance(status.body["current_updates"], dict)

    paused = await admin.post(f"{V1}/background_updates/enabled", {"enabled": False})
    assert paused.body == {"enabled": False}
    assert (await admin.get(f"{V1}/background_updates/enabled")).body == {"enabled": False}
    # the directory is rebuilt once updates run again
    await server.hs.db.execute("t", "DELETE FROM user_directory")
    started = await admin.post(f"{V1}/background_updates/start_job",
                               {"job_name": "regenerate_directory"})
    assert started.code == 200, started.body
    running = await admin.get(f"{V1}/background_updates/status")
    assert running.body["current_updates"]["master"]["name"] == "regenerate_directory"
    again = await admin.post(f"{V1}/background_updates/start_job",
                             {"job_name": "regenerate_directory"})
    assert again.code == 400
    await admin.post(f"{V1}/background_updates/enabled", {"enabled": True})
    for _ in range(100):
        if not (await admin.get(f"{V1}/background_updates/status")).body["current_updates"]:
            break
        await task.deferLater(reactor, 0.05, lambda: None)
    rows = await server.hs.db.execute("t", "SELECT user_id FROM user_directory")
    assert alice.user_id in {r[0] for r in rows}

    stats = await admin.post(f"{V1}/background_updates/start_job",
                             {"job_name": "populate_stats_process_rooms"})
    assert stats.code == 200
    unknown = await admin.post(f"{V1}/background_updates/start_job", {"job_name": "nope"})
    assert unknown.code == 400
    assert (await admin.post(f"{V1}/background_updates/start_job", {})).code == 400
    bad = await admin.post(f"{V1}/background_updates/enabled", {"enabled": "no"})
    assert bad.code == 400


@pytest_twisted.ensureDeferred
async def test_room_context_for_an_admin_outside_the_room(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    room_id = await create_room(alice, name="Private")
    ids = [await send_text(alice, room_id, f"m{i}") for i in range(5)]

    resp = await admin.get(f"{V1}/rooms/{q(room_id)}/context/{q(ids[2])}?limit=4")

    assert resp.code == 200, resp.body
    assert resp.body["event"]["content"]["body"] == "m2"
    assert [e["content"].get("body") for e in resp.body["events_before"]] == ["m1", "m0"]
    assert [e["content"].get("body") for e in resp.body["events_after"]] == ["m3", "m4"]
    assert any(e["type"] == "m.room.name" for e in resp.body["state"])
    # the tokens page on through the admin's /messages
    older = await admin.get(f"{V1}/rooms/{q(room_id)}/messages?dir=b&limit=1"
                            f"&from={resp.body['start']}")
    assert older.body["chunk"][0]["type"] != "m.room.message"
    other = await create_room(alice)
    wrong = await admin.get(f"{V1}/rooms/{q(other)}/context/{q(ids[2])}")
    assert (wrong.code, wrong.body["errcode"]) == (404, "M_NOT_FOUND")
    bad = await admin.get(f"{V1}/rooms/{q(room_id)}/context/{q(ids[2])}?limit=x")
    assert bad.code == 400


@pytest_twisted.ensureDeferred
async def test_an_admin_creates_a_device(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")

    resp = await admin.post(f"{V2}/users/{q(bob.user_id)}/devices", {"device_id": "QBUAZIFURK"})

    assert resp.code == 200, resp.body
    devices = await admin.get(f"{V2}/users/{q(bob.user_id)}/devices")
    assert "QBUAZIFURK" in {d["device_id"] for d in devices.body["devices"]}
    assert (await admin.post(f"{V2}/users/{q(bob.user_id)}/devices", {})).code == 400
    ghost = await admin.post(f"{V2}/users/{q('@ghost:test.local')}/devices",
                             {"device_id": "X"})
    assert ghost.code == 404


@pytest_twisted.ensureDeferred
async def test_an_admin_lets_a_user_replace_cross_signing_keys_without_uia(
        server: TestServer) -> None:
    from tests.api.test_cross_signing import CrossSigner, pub, query
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    assert alice.user_id is not None
    path = f"{V1}/users/{q(alice.user_id)}/_allow_cross_signing_replacement_without_uia"
    none_yet = await admin.post(path, {})
    assert (none_yet.code, none_yet.body["errcode"]) == (404, "M_NOT_FOUND")
    upload = f"{CLIENT}/keys/device_signing/upload"
    assert (await alice.post(upload, CrossSigner(alice.user_id).body())).code == 200
    second = CrossSigner(alice.user_id)
    assert (await alice.post(upload, second.body())).code == 401

    allowed = await admin.post(path, {})

    assert allowed.code == 200, allowed.body
    until = allowed.body["updatable_without_uia_before_ms"]
    assert until > server.hs.ctx.now_ms()
    replaced = await alice.post(upload, second.body())
    assert replaced.code == 200, replaced.body
    keys = await query(alice, alice.user_id)
    assert pub(second.master) in keys["master_keys"][alice.user_id]["keys"].values()


@pytest_twisted.ensureDeferred
async def test_the_admin_hierarchy_shows_rooms_the_admin_is_not_in(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    space = await create_room(alice, name="Space", creation_content={"type": "m.space"})
    public = await create_room(alice, name="Public", preset="public_chat")
    secret = await create_room(alice, name="Secret", preset="private_chat")
    for child in (public, secret):
        resp = await alice.put(f"{CLIENT}/rooms/{q(space)}/state/m.space.child/{q(child)}",
                               {"via": ["test.local"]})
        assert resp.code == 200, resp.body
    # the client API refuses the admin, who is not in the space
    client = await admin.get(f"/_matrix/client/v1/rooms/{q(space)}/hierarchy")
    assert client.code == 403

    resp = await admin.get(f"{V1}/rooms/{q(space)}/hierarchy")

    assert resp.code == 200, resp.body
    rooms = {r["room_id"]: r for r in resp.body["rooms"]}
    assert set(rooms) == {space, public, secret}
    assert rooms[secret]["name"] == "Secret"
    assert len(rooms[space]["children_state"]) == 2
    first = await admin.get(f"{V1}/rooms/{q(space)}/hierarchy?limit=1")
    assert [r["room_id"] for r in first.body["rooms"]] == [space]
    rest = await admin.get(f"{V1}/rooms/{q(space)}/hierarchy?limit=5"
                           f"&from={first.body['next_batch']}")
    assert {r["room_id"] for r in rest.body["rooms"]} == {public, secret}
    shallow = await admin.get(f"{V1}/rooms/{q(space)}/hierarchy?max_depth=0")
    assert [r["room_id"] for r in shallow.body["rooms"]] == [space]
    assert (await admin.get(f"{V1}/rooms/{q('!x:test.local')}/hierarchy")).code == 404
    assert (await admin.get(f"{V1}/rooms/{q(space)}/hierarchy?max_depth=-1")).code == 400


@pytest_twisted.ensureDeferred
async def test_scheduled_tasks_list_deletions_purges_and_redactions(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    doomed = await create_room(alice)
    kept = await create_room(alice)
    last = await send_text(alice, kept, "hello")
    deletion = await admin.delete(f"{V2}/rooms/{q(doomed)}", {})
    purge = await admin.post(f"{V1}/purge_history/{q(kept)}/{q(last)}", {})
    redaction = await admin.post(f"{V1}/user/{q(alice.user_id)}/redact", {"rooms": [kept]})
    assert deletion.code == purge.code == redaction.code == 200

    async def all_done() -> list[dict[str, Any]]:
        for _ in range(100):
            tasks = (await admin.get(f"{V1}/scheduled_tasks")).body["scheduled_tasks"]
            if len(tasks) == 3 and all(t["status"] == "complete" for t in tasks):
                return list(tasks)
            await task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(tasks)
    tasks = await all_done()

    by_action = {t["action"]: t for t in tasks}
    assert by_action["shutdown_and_purge_room"]["id"] == deletion.body["delete_id"]
    assert by_action["shutdown_and_purge_room"]["resource_id"] == doomed
    assert by_action["purge_history"]["id"] == purge.body["purge_id"]
    assert by_action["redact_all_events"]["resource_id"] == alice.user_id
    assert set(tasks[0]) == {"id", "action", "status", "timestamp_ms", "resource_id",
                             "result", "error"}
    only = await admin.get(f"{V1}/scheduled_tasks?action_name=purge_history")
    assert [t["action"] for t in only.body["scheduled_tasks"]] == ["purge_history"]
    by_room = await admin.get(f"{V1}/scheduled_tasks?resource_id={q(doomed)}")
    assert len(by_room.body["scheduled_tasks"]) == 1
    none = await admin.get(f"{V1}/scheduled_tasks?max_timestamp=1")
    assert none.body["scheduled_tasks"] == []
    assert (await admin.get(f"{V1}/scheduled_tasks?status=nope")).code == 400
    assert (await admin.get(f"{V1}/scheduled_tasks?max_timestamp=x")).code == 400
