"""Messages stored before full-text search existed become searchable: the
background job of migration 0020 indexes them at start."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.harness import TestServer


async def _search(client: Any, term: str) -> list[str]:
    resp = await client.post("/_matrix/client/v3/search", {
        "search_categories": {"room_events": {"search_term": term}}})
    assert resp.code == 200, resp.body
    return [r["result"]["content"]["body"]
            for r in resp.body["search_categories"]["room_events"]["results"]]


@pytest_twisted.ensureDeferred
async def test_history_from_before_search_is_indexed_at_start(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.post("/_matrix/client/v3/createRoom", {"preset": "private_chat"})
    room_id = resp.body["room_id"]
    for i in range(3):
        resp = await alice.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{i}",
            {"msgtype": "m.text", "body": f"ancient scroll number {i}"})
        assert resp.code == 200
    # as a database upgraded from before search: nothing indexed, the job owed
    db = server.hs.db

    def forget_index(txn: Any) -> None:
        txn.execute("DELETE FROM event_search")
        if txn.engine == "sqlite":
            txn.execute("DELETE FROM event_search_fts")
        txn.execute("INSERT INTO search_history_job (lock, done_nid, target_nid)"
                    " SELECT 1, 0, MAX(event_nid) FROM events")
    await db.run_interaction("forget_index", forget_index)
    assert await _search(alice, "scroll") == []

    await server.hs.stores.search.index_history()
    assert sorted(await _search(alice, "scroll")) == [f"ancient scroll number {i}"
                                                      for i in range(3)]
    # done: the job is gone, a second run does nothing
    rows = await db.execute("job", "SELECT COUNT(*) FROM search_history_job")
    assert rows[0][0] == 0
