"""Synapse's media admin API through real HTTP: a user's media (list, delete),
a room's media, quarantine (by ID, room, user) and protection, deletion by ID
and by age and size."""

from __future__ import annotations

import os
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from tests.harness import Client, TestServer
from tests.helpers import create_room, q
from tests.media.test_media import media_id, png, upload

V1 = "/_synapse/admin/v1"
MEDIA = "/_matrix/client/v1/media"
CLIENT = "/_matrix/client/v3"


async def _upload(client: Client, size: int = 40, name: str | None = None) -> str:
    resp = await upload(client, png(size, size), filename=name)
    assert resp.code == 200, resp.body
    return media_id(resp.body["content_uri"])


async def _download_code(client: Client, mid: str) -> int:
    return (await client.get(f"{MEDIA}/download/test.local/{mid}")).code


async def _thumbnail_code(client: Client, mid: str) -> int:
    resp = await client.get(f"{MEDIA}/thumbnail/test.local/{mid}",
                            params={"width": "16", "height": "16"})
    return resp.code


@pytest_twisted.ensureDeferred
async def test_user_media_is_listed_newest_first_paged_and_ordered(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    small = await _upload(bob, 10, "small.png")
    big = await _upload(bob, 200, "big.png")
    await _upload(admin)  # someone else's

    resp = await admin.get(f"{V1}/users/{q(bob.user_id)}/media")

    assert resp.code == 200, resp.body
    assert resp.body["total"] == 2 and "next_token" not in resp.body
    assert {m["media_id"] for m in resp.body["media"]} == {small, big}
    first = resp.body["media"][0]
    assert set(first) >= {"created_ts", "last_access_ts", "media_id", "media_length",
                          "media_type", "quarantined_by", "safe_from_quarantine",
                          "upload_name"}
    assert first["user_id"] == bob.user_id
    assert first["media_type"] == "image/png" and first["quarantined_by"] is None
    assert first["safe_from_quarantine"] is False
    by_size = await admin.get(f"{V1}/users/{q(bob.user_id)}/media?order_by=media_length&dir=b")
    assert [m["upload_name"] for m in by_size.body["media"]] == ["big.png", "small.png"]
    page = await admin.get(f"{V1}/users/{q(bob.user_id)}/media?order_by=media_length&limit=1")
    assert [m["media_id"] for m in page.body["media"]] == [small]
    assert page.body["next_token"] == 1
    bad = await admin.get(f"{V1}/users/{q(bob.user_id)}/media?order_by=user_id")
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")
    unknown = await admin.get(f"{V1}/users/{q('@nobody:test.local')}/media")
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    remote = await admin.get(f"{V1}/users/{q('@x:elsewhere.example')}/media")
    assert (remote.code, remote.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_deleting_a_users_media_removes_the_files(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    small = await _upload(bob, 10)
    big = await _upload(bob, 200)
    store = server.hs.media_repository.base_dir
    path = os.path.join(store, "local_content", big[:2], big[2:4], big[4:])
    assert os.path.exists(path)

    resp = await admin.delete(f"{V1}/users/{q(bob.user_id)}/media?order_by=media_length&dir=b"
                              "&limit=1")

    assert resp.code == 200, resp.body
    assert resp.body == {"deleted_media": [big], "total": 1}
    assert await _download_code(bob, big) == 404
    assert not os.path.exists(path)
    assert await _download_code(bob, small) == 200
    left = await admin.get(f"{V1}/users/{q(bob.user_id)}/media")
    assert [m["media_id"] for m in left.body["media"]] == [small]


@pytest_twisted.ensureDeferred
async def test_quarantined_media_is_not_served_until_released(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    mid = await _upload(bob)
    assert await _thumbnail_code(bob, mid) == 200

    resp = await admin.post(f"{V1}/media/quarantine/test.local/{mid}", {})

    assert (resp.code, resp.body) == (200, {})
    assert await _download_code(bob, mid) == 404
    assert await _download_code(admin, mid) == 404
    assert await _thumbnail_code(bob, mid) == 404
    listed = await admin.get(f"{V1}/users/{q(bob.user_id)}/media")
    assert listed.body["media"][0]["quarantined_by"] == admin.user_id
    info = await admin.get(f"{V1}/media/test.local/{mid}")
    assert info.code == 200, info.body
    assert info.body["media_info"]["quarantined_by"] == admin.user_id
    assert info.body["media_info"]["media_origin"] == "test.local"
    assert info.body["media_info"]["user_id"] == bob.user_id

    released = await admin.post(f"{V1}/media/unquarantine/test.local/{mid}", {})

    assert released.code == 200
    assert await _download_code(bob, mid) == 200
    assert await _thumbnail_code(bob, mid) == 200
    # both changes are listed, oldest first; a release of what is not
    # quarantined changes nothing and is not listed
    again = await admin.post(f"{V1}/media/unquarantine/test.local/{mid}", {})
    assert again.code == 200
    changes = await admin.get(f"{V1}/media/quarantine_changes")
    assert changes.code == 200, changes.body
    assert changes.body["changes"] == [
        {"origin": "test.local", "media_id": mid, "quarantined": True},
        {"origin": "test.local", "media_id": mid, "quarantined": False}]
    rest = await admin.get(f"{V1}/media/quarantine_changes?from={changes.body['next_batch']}")
    assert rest.body["changes"] == []
    assert rest.body["next_batch"] == changes.body["next_batch"]
    bad = await admin.get(f"{V1}/media/quarantine_changes?from=-1")
    assert bad.code == 400


@pytest_twisted.ensureDeferred
async def test_protected_media_escapes_every_quarantine(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    sticker = await _upload(bob, 30)
    other = await _upload(bob, 31)

    assert (await admin.post(f"{V1}/media/protect/{sticker}", {})).code == 200
    by_user = await admin.post(f"{V1}/user/{q(bob.user_id)}/media/quarantine", {})
    by_id = await admin.post(f"{V1}/media/quarantine/test.local/{sticker}", {})

    assert by_user.body == {"num_quarantined": 1}
    assert by_id.code == 200
    assert await _download_code(bob, sticker) == 200
    assert await _download_code(bob, other) == 404
    listed = await admin.get(f"{V1}/users/{q(bob.user_id)}/media?order_by=media_id")
    protected = {m["media_id"]: m["safe_from_quarantine"] for m in listed.body["media"]}
    assert protected == {sticker: True, other: False}
    # unprotected, it can be quarantined
    assert (await admin.post(f"{V1}/media/unprotect/{sticker}", {})).code == 200
    await admin.post(f"{V1}/media/quarantine/test.local/{sticker}", {})
    assert await _download_code(bob, sticker) == 404
    missing = await admin.post(f"{V1}/media/protect/NoSuchMedia", {})
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_room_media_is_listed_and_quarantined_together(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    image = await _upload(bob, 50)
    thumb = await _upload(bob, 20)
    elsewhere = await _upload(bob, 21)
    room = await create_room(bob)
    sent = await bob.put(f"{CLIENT}/rooms/{q(room)}/send/m.room.message/t1", {
        "msgtype": "m.image", "body": "cat.png", "url": f"mxc://test.local/{image}",
        "info": {"thumbnail_url": f"mxc://test.local/{thumb}"}})
    assert sent.code == 200, sent.body
    await bob.put(f"{CLIENT}/rooms/{q(room)}/send/m.room.message/t2", {
        "msgtype": "m.file", "body": "x", "url": "mxc://remote.example/AbCd"})

    listed = await admin.get(f"{V1}/room/{q(room)}/media")

    assert listed.code == 200, listed.body
    assert sorted(listed.body["local"]) == sorted(
        [f"mxc://test.local/{image}", f"mxc://test.local/{thumb}"])
    assert listed.body["remote"] == ["mxc://remote.example/AbCd"]

    resp = await admin.post(f"{V1}/room/{q(room)}/media/quarantine", {})

    assert resp.body == {"num_quarantined": 2}
    assert await _download_code(bob, image) == 404
    assert await _download_code(bob, thumb) == 404
    assert await _download_code(bob, elsewhere) == 200
    unknown = await admin.get(f"{V1}/room/{q('!nope:test.local')}/media")
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_delete_one_media_by_id(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    mid = await _upload(bob)

    resp = await admin.delete(f"{V1}/media/test.local/{mid}")

    assert resp.code == 200, resp.body
    assert resp.body == {"deleted_media": [mid], "total": 1}
    assert await _download_code(bob, mid) == 404
    again = await admin.delete(f"{V1}/media/test.local/{mid}")
    assert (again.code, again.body["errcode"]) == (404, "M_NOT_FOUND")
    remote = await admin.delete(f"{V1}/media/elsewhere.example/{mid}")
    assert remote.code == 400


@pytest_twisted.ensureDeferred
async def test_delete_by_age_goes_by_last_access_and_keeps_avatars(make_server: Any) -> None:
    clock = Clock()
    clock.advance(1_800_000_000)  # 2027, in seconds
    server = await make_server(clock=clock)
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    used = await _upload(bob, 40)
    unused = await _upload(bob, 41)
    avatar = await _upload(bob, 42)
    small = await _upload(bob, 1)
    set_avatar = await bob.put(f"{CLIENT}/profile/{q(bob.user_id)}/avatar_url",
                               {"avatar_url": f"mxc://test.local/{avatar}"})
    assert set_avatar.code == 200, set_avatar.body
    cutoff = server.hs.ctx.now_ms() + 5_000
    clock.advance(10)
    assert await _download_code(bob, used) == 200  # used after the cutoff

    missing = await admin.post(f"{V1}/media/delete", {})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    seconds = await admin.post(f"{V1}/media/delete?before_ts=1700000000", {})
    assert (seconds.code, seconds.body["errcode"]) == (400, "M_INVALID_PARAM")
    small_size = len(png(1, 1))

    resp = await admin.post(f"{V1}/media/delete?before_ts={cutoff}&size_gt={small_size}", {})

    assert resp.code == 200, resp.body
    assert resp.body == {"deleted_media": [unused], "total": 1}
    left = await admin.get(f"{V1}/users/{q(bob.user_id)}/media")
    assert {m["media_id"] for m in left.body["media"]} == {used, avatar, small}
    profiles_too = await admin.post(
        f"{V1}/media/delete?before_ts={cutoff}&keep_profiles=false", {})
    assert sorted(profiles_too.body["deleted_media"]) == sorted([avatar, small])
    assert await _download_code(bob, avatar) == 404


@pytest_twisted.ensureDeferred
async def test_media_usage_statistics_per_user(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    carol = await server.register("carol")
    await _upload(bob, 10)
    await _upload(bob, 20)
    await _upload(carol, 30)
    sizes = {len(png(s, s)) for s in (10, 20, 30)}
    assert len(sizes) == 3

    resp = await admin.get(f"{V1}/statistics/users/media")

    assert resp.code == 200, resp.body
    assert resp.body["total"] == 2
    by_user = {u["user_id"]: u for u in resp.body["users"]}
    assert by_user[bob.user_id]["media_count"] == 2
    assert by_user[bob.user_id]["media_length"] == len(png(10, 10)) + len(png(20, 20))
    assert by_user[carol.user_id] == {"user_id": carol.user_id, "displayname": "carol",
                                      "media_count": 1, "media_length": len(png(30, 30))}
    top = await admin.get(f"{V1}/statistics/users/media?order_by=media_count&dir=b&limit=1")
    assert [u["user_id"] for u in top.body["users"]] == [bob.user_id]
    assert top.body["next_token"] == 1
    search = await admin.get(f"{V1}/statistics/users/media?search_term=CAR")
    assert [u["user_id"] for u in search.body["users"]] == [carol.user_id]
    bad = await admin.get(f"{V1}/statistics/users/media?order_by=password")
    assert bad.code == 400


@pytest_twisted.ensureDeferred
async def test_largest_rooms_in_the_database(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    small = await create_room(admin)
    big = await create_room(admin)
    for i in range(5):
        await admin.put(f"{CLIENT}/rooms/{q(big)}/send/m.room.message/t{i}",
                        {"msgtype": "m.text", "body": "x" * 2000})

    resp = await admin.get(f"{V1}/statistics/database/rooms")

    assert resp.code == 200, resp.body
    rooms = [r["room_id"] for r in resp.body["rooms"]]
    assert rooms[:2] == [big, small]
    assert resp.body["rooms"][0]["estimated_size"] > 10_000
