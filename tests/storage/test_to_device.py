"""ToDeviceStore: inboxes, the delivery cut rule and acknowledgement (both engines)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted

from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.streams import current_stream_id, next_stream_id_txn
from homeserver.storage.to_device import ToDeviceStore
from tests.storage.conftest import Databases, prepare

ALICE = "@alice:test.local"
BOB = "@bob:test.local"


@pytest_twisted.async_yield_fixture
async def store(databases: Databases) -> AsyncIterator[ToDeviceStore]:
    db = databases.open()
    await prepare(db)

    def txn_fn(txn: Txn) -> None:
        for device_id in ("PHONE", "LAPTOP"):
            DeviceStore.ensure_device_txn(txn, BOB, device_id, None)
    await db.run_interaction("devices", txn_fn)
    yield ToDeviceStore(db)


async def send(store: ToDeviceStore, local: dict[str, Any], txn_id: str | None = None,
               remote: dict[str, Any] | None = None) -> tuple[int, list[str]] | None:
    key = None if txn_id is None else (ALICE, "DEV", txn_id)
    return await store.add_messages(ALICE, "m.x", local, remote or {}, key, 1000)


async def put_raw(store: ToDeviceStore, device_id: str, contents: list[Any]) -> int:
    """Several messages for one of Bob's devices at one new stream position."""
    def txn_fn(txn: Txn) -> int:
        pos = next_stream_id_txn(txn)
        for content in contents:
            txn.execute("INSERT INTO device_inbox (user_id, device_id, stream_id, message)"
                        " VALUES (?, ?, ?, ?)",
                        (BOB, device_id, pos, json.dumps({"content": content})))
        return pos
    return int(await store.db.run_interaction("put_raw", txn_fn))


def contents(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["content"] for m in messages]


@pytest_twisted.ensureDeferred
async def test_star_expands_to_every_device_in_one_position(store: ToDeviceStore) -> None:
    stored = await send(store, {BOB: {"*": {"n": 1}}})

    assert stored is not None
    pos, users = stored
    assert users == [BOB]
    for device_id in ("PHONE", "LAPTOP"):
        messages, upto = await store.get_messages(BOB, device_id, 0, pos)
        assert messages == [{"type": "m.x", "sender": ALICE, "content": {"n": 1}}]
        assert upto == pos


@pytest_twisted.ensureDeferred
async def test_txn_id_is_stored_once(store: ToDeviceStore) -> None:
    first = await send(store, {BOB: {"PHONE": {}}}, txn_id="t1")
    again = await send(store, {BOB: {"PHONE": {}}}, txn_id="t1")

    assert first is not None and again is None
    messages, _ = await store.get_messages(BOB, "PHONE", 0, await current_stream_id(store.db))
    assert len(messages) == 1


@pytest_twisted.ensureDeferred
async def test_pruned_txn_ids_are_forgotten(store: ToDeviceStore) -> None:
    await send(store, {BOB: {"PHONE": {}}}, txn_id="t1")

    await store.prune_txn_ids(older_than_ms=2000)

    assert await send(store, {BOB: {"PHONE": {}}}, txn_id="t1") is not None


@pytest_twisted.ensureDeferred
async def test_nothing_to_deliver_takes_no_position(store: ToDeviceStore) -> None:
    before = await current_stream_id(store.db)

    stored = await send(store, {BOB: {"GONE": {}}, "@nobody:test.local": {"*": {}}})

    assert stored == (0, [])
    assert await current_stream_id(store.db) == before


@pytest_twisted.ensureDeferred
async def test_limit_stops_at_a_whole_position(store: ToDeviceStore) -> None:
    p1 = await put_raw(store, "PHONE", [1, 2])
    p2 = await put_raw(store, "PHONE", [3, 4, 5])
    p3 = await put_raw(store, "PHONE", [6])

    first, upto1 = await store.get_messages(BOB, "PHONE", 0, p3, limit=3)
    second, upto2 = await store.get_messages(BOB, "PHONE", upto1, p3, limit=3)

    # the limit falls inside p2's messages: all of them come, and the batch ends at p2
    assert (contents(first), upto1) == ([1, 2, 3, 4, 5], p2)
    assert (contents(second), upto2) == ([6], p3)
    assert p1 < p2


@pytest_twisted.ensureDeferred
async def test_limit_at_a_position_boundary_cuts_there(store: ToDeviceStore) -> None:
    p1 = await put_raw(store, "PHONE", [1, 2])
    p2 = await put_raw(store, "PHONE", [3])

    messages, upto = await store.get_messages(BOB, "PHONE", 0, p2, limit=2)
    exact, end = await store.get_messages(BOB, "PHONE", 0, p2, limit=3)

    assert (contents(messages), upto) == ([1, 2], p1)
    assert (contents(exact), end) == ([1, 2, 3], p2)


@pytest_twisted.ensureDeferred
async def test_messages_after_until_wait_for_a_later_sync(store: ToDeviceStore) -> None:
    p1 = await put_raw(store, "PHONE", [1])
    p2 = await put_raw(store, "PHONE", [2])

    messages, upto = await store.get_messages(BOB, "PHONE", 0, p1)

    assert (contents(messages), upto) == ([1], p1)
    assert await store.has_messages(BOB, "PHONE", p1, p2)
    assert not await store.has_messages(BOB, "PHONE", p2, p2 + 10)
    assert not await store.has_messages(BOB, "LAPTOP", 0, p2)


@pytest_twisted.ensureDeferred
async def test_delete_upto_acknowledges_only_that_device(store: ToDeviceStore) -> None:
    p1 = await put_raw(store, "PHONE", [1])
    p2 = await put_raw(store, "PHONE", [2])
    await put_raw(store, "LAPTOP", [3])
    until = await current_stream_id(store.db)

    await store.delete_messages_upto(BOB, "PHONE", p1)

    phone, _ = await store.get_messages(BOB, "PHONE", 0, until)
    laptop, _ = await store.get_messages(BOB, "LAPTOP", 0, until)
    assert contents(phone) == [2] and contents(laptop) == [3]
    assert p2 > p1


@pytest_twisted.ensureDeferred
async def test_deleted_device_loses_its_inbox(store: ToDeviceStore) -> None:
    await send(store, {BOB: {"*": {"n": 1}}})
    until = await current_stream_id(store.db)

    await store.delete_device_inbox(BOB, ["PHONE"])

    assert not await store.has_messages(BOB, "PHONE", 0, until)
    assert await store.has_messages(BOB, "LAPTOP", 0, until)

    await store.db.run_interaction("all", ToDeviceStore.delete_all_device_inboxes_txn, BOB,
                                   None)
    assert not await store.has_messages(BOB, "LAPTOP", 0, until)


@pytest_twisted.ensureDeferred
async def test_remote_messages_wait_in_the_outbox(store: ToDeviceStore) -> None:
    edu = {"sender": ALICE, "type": "m.x", "message_id": "m1",
           "messages": {"@carol:remote.example": {"*": {"k": 1}}}}

    stored = await send(store, {}, remote={"remote.example": edu})

    assert stored is not None and stored[0] > 0 and stored[1] == []
    queued = await store.get_outbox("remote.example")
    assert [content for _, content in queued] == [edu]
    await store.delete_outbox([row_id for row_id, _ in queued])
    assert await store.get_outbox("remote.example") == []
