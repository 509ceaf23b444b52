"""Message retention (m.room.retention, the retention config) and media
retention, through real HTTP on a server whose clock the test moves."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.task import Clock

from homeserver.config import ConfigError
from homeserver.rooms.retention import PurgeJob, RetentionConfig, RetentionPolicy
from tests.harness import Client, TestServer, make_config, start_server, stop_server
from tests.helpers import create_room, q, send_text
from tests.media.test_media import media_id, png, upload

V1 = "/_synapse/admin/v1"
CLIENT = "/_matrix/client/v3"
HOUR = 3600
DAY = 24 * HOUR


def start_clock() -> Clock:
    clock = Clock()
    clock.advance(1_800_000_000)  # 2027, in seconds
    return clock


async def bodies(client: Client, room_id: str, admin: bool = False) -> list[str]:
    path = (f"{V1}/rooms/{q(room_id)}/messages?dir=b&limit=50" if admin
            else f"{CLIENT}/rooms/{q(room_id)}/messages?dir=b&limit=50")
    resp = await client.get(path)
    assert resp.code == 200, resp.body
    return [e["content"]["body"] for e in resp.body["chunk"] if e["type"] == "m.room.message"]


async def settle(server: TestServer) -> None:
    """Until no write is in flight: /messages and /sync read up to the
    stream position below every write in flight, and under load another
    write (presence, a device list) can hold a just-sent message back."""
    tracker = server.hs.db.stream_tracker
    for _ in range(200):
        if tracker.persisted_upto >= tracker.max_allocated:
            return
        await task.deferLater(reactor, 0.01, lambda: None)


async def eventually(check: Any) -> None:
    for _ in range(200):
        if await check():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("never happened")


def test_config_rules_as_synapse() -> None:
    config = RetentionConfig(enabled=True, default_policy=RetentionPolicy(None, 10 * DAY),
                             allowed_lifetime_min=DAY, allowed_lifetime_max=30 * DAY)
    assert config.room_policy(None).max_lifetime == 10 * DAY
    assert config.room_policy({"max_lifetime": 5}).max_lifetime == 5
    assert config.room_policy({"max_lifetime": "x"}).max_lifetime == 10 * DAY
    assert config.purge_lifetime(RetentionPolicy(None, 5)) == DAY
    assert config.purge_lifetime(RetentionPolicy(None, 99 * DAY)) == 30 * DAY
    job = PurgeJob(HOUR, shortest_max_lifetime=DAY, longest_max_lifetime=7 * DAY)
    assert not job.covers(DAY) and job.covers(DAY + 1) and job.covers(7 * DAY)
    assert RetentionConfig.from_raw({}).purge_jobs == (PurgeJob(86_400_000),)
    with pytest.raises(ConfigError, match="allowed_lifetime_min"):
        make_config("sqlite", "/tmp", retention={"allowed_lifetime_min": "2d",
                                                 "allowed_lifetime_max": "1d"})
    with pytest.raises(ConfigError, match="max_lifetime: must be a positive duration"):
        make_config("sqlite", "/tmp", retention={"default_policy": {"max_lifetime": -5}})
    with pytest.raises(ConfigError, match="local_media_lifetime: must be a positive"):
        make_config("sqlite", "/tmp", media_retention={"local_media_lifetime": 0})
    with pytest.raises(ConfigError, match="interval: must be set"):
        make_config("sqlite", "/tmp", retention={"purge_jobs": [{"longest_max_lifetime": "1d"}]})


@pytest_twisted.ensureDeferred
async def test_expired_messages_are_hidden_at_once_and_purged_by_the_job(
        make_server: Any) -> None:
    clock = start_clock()
    server: TestServer = await make_server(clock=clock, retention={
        "enabled": True, "purge_jobs": [{"interval": "1w"}]})
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(bob, name="Short-lived")
    bad = await bob.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.retention/",
                        {"max_lifetime": "one day"})
    assert (bad.code, bad.body["errcode"]) == (400, "M_BAD_JSON")
    policy = await bob.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.retention/",
                           {"max_lifetime": DAY * 1000})
    assert policy.code == 200, policy.body
    old = await send_text(bob, room_id, "old")
    clock.advance(12 * HOUR)
    await send_text(bob, room_id, "new")
    clock.advance(13 * HOUR)  # "old" is 25 hours old: expired

    async def only_new() -> bool:
        # /messages reads up to the stream position below every write in
        # flight: under load "new" may take a moment to be readable
        return await bodies(bob, room_id) == ["new"]
    await eventually(only_new)
    await settle(server)
    assert (await bob.get(f"{CLIENT}/rooms/{q(room_id)}/event/{q(old)}")).code == 404
    sync = await bob.get(f"{CLIENT}/sync")
    timeline = sync.body["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["content"].get("body") for e in timeline if e["type"] == "m.room.message"] \
        == ["new"]
    # still stored until the purge job runs (the admin API reads everything)
    assert await bodies(admin, room_id, admin=True) == ["new", "old"]

    clock.advance(7 * DAY)  # the job's interval: it runs
    async def purged() -> bool:
        return await bodies(admin, room_id, admin=True) == ["new"]
    await eventually(purged)
    # the state stays, and so does the room's latest event (hidden from clients)
    assert await bodies(bob, room_id) == []
    name = await bob.get(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.name/")
    assert name.body == {"name": "Short-lived"}
    await send_text(bob, room_id, "after")
    await settle(server)
    assert await bodies(bob, room_id) == ["after"]


@pytest_twisted.ensureDeferred
async def test_default_policy_and_allowed_bounds_drive_the_purge(make_server: Any) -> None:
    clock = start_clock()
    server: TestServer = await make_server(clock=clock, retention={
        "enabled": True, "default_policy": {"max_lifetime": "2d"},
        "allowed_lifetime_min": "1d",
        "purge_jobs": [{"longest_max_lifetime": "3d", "interval": "1h"},
                       {"shortest_max_lifetime": "3d", "interval": "1h"}]})
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    default_room = await create_room(bob)
    short_room = await create_room(bob)
    # a policy shorter than allowed_lifetime_min: hidden at once, purged after a day
    await bob.put(f"{CLIENT}/rooms/{q(short_room)}/state/m.room.retention/",
                  {"max_lifetime": 60_000})
    await send_text(bob, default_room, "kept a while")
    await send_text(bob, short_room, "short")
    await send_text(bob, short_room, "last")
    clock.advance(2 * 60)
    await settle(server)
    assert await bodies(bob, short_room) == []
    assert await bodies(bob, default_room) == ["kept a while"]
    clock.advance(HOUR)  # both jobs run: nothing is a day old yet
    await task.deferLater(reactor, 0.3, lambda: None)
    assert await bodies(admin, short_room, admin=True) == ["last", "short"]
    clock.advance(DAY)

    async def short_purged() -> bool:
        return await bodies(admin, short_room, admin=True) == ["last"]
    await eventually(short_purged)
    assert await bodies(admin, default_room, admin=True) == ["kept a while"]
    await send_text(bob, default_room, "newest")
    clock.advance(2 * DAY)

    async def default_purged() -> bool:
        return await bodies(admin, default_room, admin=True) == ["newest"]
    await eventually(default_purged)


@pytest_twisted.ensureDeferred
async def test_a_job_keeps_its_schedule_across_restarts(engine: str, tmp_path: Any) -> None:
    """A server restarted more often than a job's interval still runs it:
    the job is due an interval after it last ran, not after each start."""
    clock = start_clock()
    retention = {"enabled": True, "default_policy": {"max_lifetime": "1h"},
                 "purge_jobs": [{"interval": "1d"}]}
    first = await start_server(engine, str(tmp_path), clock=clock, retention=retention)
    args = dict(first.hs.config.database.args)
    database = {"name": "sqlite3" if engine == "sqlite" else "psycopg2", "args": args}
    admin = await first.register("admin", admin=True)
    room_id = await create_room(admin)
    await send_text(admin, room_id, "old")
    await send_text(admin, room_id, "last")
    await first.hs.stop()
    clock.advance(20 * HOUR)
    second = await start_server(engine, str(tmp_path), clock=clock, retention=retention,
                                database=database)
    try:
        again = second.client(admin.access_token)
        assert await bodies(again, room_id, admin=True) == ["last", "old"]
        clock.advance(4 * HOUR)  # a day after the first start

        async def purged() -> bool:
            return await bodies(again, room_id, admin=True) == ["last"]
        await eventually(purged)
    finally:
        await stop_server(second)


@pytest_twisted.ensureDeferred
async def test_media_retention_deletes_unused_local_media(make_server: Any) -> None:
    clock = start_clock()
    server: TestServer = await make_server(clock=clock, media_retention={
        "local_media_lifetime": "30d", "remote_media_lifetime": "7d"})
    bob = await server.register("bob")
    uploads = []
    for size in (10, 11, 12):
        resp = await upload(bob, png(size, size))
        assert resp.code == 200, resp.body
        uploads.append(media_id(resp.body["content_uri"]))
    unused, used, quarantined = uploads
    admin = await server.register("admin", admin=True)
    assert (await admin.post(f"{V1}/media/quarantine/test.local/{quarantined}", {})).code == 200
    clock.advance(20 * DAY)
    got = await bob.get(f"/_matrix/client/v1/media/download/test.local/{used}")
    assert got.code == 200
    await task.deferLater(reactor, 0.3, lambda: None)
    # unused and never-downloaded 31 days: deleted; used 11 days ago; the
    # quarantined file stays too
    clock.advance(11 * DAY)

    async def deleted() -> bool:
        clock.advance(60)  # the next hourly check comes, once the last one is done
        listed = await admin.get(f"{V1}/users/{q(bob.user_id)}/media")
        return {m["media_id"] for m in listed.body["media"]} == {used, quarantined}
    await eventually(deleted)


@pytest_twisted.ensureDeferred
async def test_a_new_policy_counts_at_once_and_state_never_expires(make_server: Any) -> None:
    clock = start_clock()
    server: TestServer = await make_server(clock=clock, retention={"enabled": True})
    bob = await server.register("bob")
    room_id = await create_room(bob, name="Room")
    await send_text(bob, room_id, "hello")
    clock.advance(2 * HOUR)
    await settle(server)
    assert await bodies(bob, room_id) == ["hello"]  # no policy: kept
    await bob.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.retention/",
                  {"max_lifetime": HOUR * 1000})
    assert await bodies(bob, room_id) == []
    await bob.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.retention/",
                  {"max_lifetime": 3 * HOUR * 1000})
    assert await bodies(bob, room_id) == ["hello"]
    clock.advance(5 * HOUR)
    page = await bob.get(f"{CLIENT}/rooms/{q(room_id)}/messages?dir=b&limit=50")
    types = {e["type"] for e in page.body["chunk"]}
    assert "m.room.message" not in types
    assert {"m.room.create", "m.room.name", "m.room.retention"} <= types


@pytest_twisted.ensureDeferred
async def test_expired_messages_are_hidden_from_every_sync(make_server: Any) -> None:
    # the many-room initial sync reads its rooms together and sliding sync
    # has its own timeline reads: both leave expired messages out too
    clock = start_clock()
    server: TestServer = await make_server(clock=clock, retention={"enabled": True})
    bob = await server.register("bob")
    rooms = [await create_room(bob, name=f"Room {i}") for i in range(3)]
    for room_id in rooms:
        policy = await bob.put(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.retention/",
                               {"max_lifetime": DAY * 1000})
        assert policy.code == 200, policy.body
        await send_text(bob, room_id, "old")
    clock.advance(12 * HOUR)
    for room_id in rooms:
        await send_text(bob, room_id, "new")
    clock.advance(13 * HOUR)  # every "old" is 25 hours old: expired
    await settle(server)

    def messages(timeline: list[dict[str, Any]]) -> list[str]:
        return [e["content"]["body"] for e in timeline if e["type"] == "m.room.message"]

    sync = await bob.get(f"{CLIENT}/sync")
    assert sync.code == 200, sync.body
    assert {r: messages(sync.body["rooms"]["join"][r]["timeline"]["events"])
            for r in rooms} == {r: ["new"] for r in rooms}

    sliding = await bob.post(
        "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
        {"conn_id": "retention", "lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 2,
                                                   "required_state": []}}})
    assert sliding.code == 200, sliding.body
    assert {r: messages(sliding.body["rooms"][r].get("timeline", [])) for r in rooms} \
        == {r: ["new"] for r in rooms}
