"""Many users joining many rooms at once: every join succeeds (the indexes
their join events update, such as the user directory, must not make the
joins' transactions fail each other on PostgreSQL)."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer

from tests.harness import TestServer


@pytest_twisted.ensureDeferred
async def test_ten_users_joining_twenty_rooms_at_once_all_get_in(server: TestServer) -> None:
    alice = await server.register("alice")
    rooms = []
    for _ in range(20):
        resp = await alice.post("/_matrix/client/v3/createRoom", {"preset": "public_chat"})
        rooms.append(resp.body["room_id"])
    users = [await server.register(f"u{i}") for i in range(10)]
    sem = defer.DeferredSemaphore(20)
    results = await defer.gatherResults([
        sem.run(lambda u=u, r=r: defer.ensureDeferred(
            u.post(f"/_matrix/client/v3/rooms/{r}/join", {})))
        for u in users for r in rooms])
    assert [r.code for r in results] == [200] * 200, [r.body for r in results if r.code != 200]
