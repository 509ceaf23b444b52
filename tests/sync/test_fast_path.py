"""A woken incremental /sync answered from memory (``sync/recent.py``) says
exactly what the full builder says from the database.

Each case: bob makes an initial sync, things happen, then bob syncs from
that token twice -- first with the fast path allowed, then with it off --
and the two bodies must be equal (``unsigned.age`` aside: time passes
between them). Cases of plain messages must actually take the fast path;
the others must fall back to the full builder and still agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted

from tests.api.test_receipts import receipt
from tests.api.test_rooms import create_room, send_text, two_users_in_a_room
from tests.api.test_to_device import send_to_device
from tests.harness import Client, TestServer
from tests.sync.test_sync import sleep, sync

V3 = "/_matrix/client/v3"
BOB = "@bob:test.local"


def without_age(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_age(v) for k, v in value.items()
                if k not in ("age", "last_active_ago")}
    if isinstance(value, list):
        return [without_age(v) for v in value]
    return value


async def messages(alice: Client, bob: Client, room_id: str) -> None:
    for k in range(3):
        await send_text(alice, room_id, f"plain {k}", f"m{k}")


async def mention(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "hello", "a")
    await send_text(alice, room_id, f"hey {BOB} look", "b")
    await send_text(alice, room_id, "bob: and you", "c")


async def other_room(alice: Client, bob: Client, room_id: str) -> None:
    elsewhere = await create_room(alice)  # bob is not in it
    await send_text(alice, elsewhere, "not for bob", "x")
    await send_text(alice, room_id, "for bob", "y")


async def state_change(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "before", "a")
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic/", {"topic": "new"})
    assert resp.code == 200
    await send_text(alice, room_id, "after", "b")


async def bobs_receipt(alice: Client, bob: Client, room_id: str) -> None:
    first = await send_text(alice, room_id, "one", "a")
    await send_text(alice, room_id, "two", "b")
    assert (await receipt(bob, room_id, first)).code == 200
    await send_text(alice, room_id, "three", "c")


async def bob_speaks(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "question", "a")
    await send_text(bob, room_id, "answer", "b")


async def to_device_for_bob(alice: Client, bob: Client, room_id: str) -> None:
    await send_text(alice, room_id, "look", "a")
    resp = await send_to_device(alice, "m.x", "td", {BOB: {"*": {"n": 1}}})
    assert resp.code == 200


Case = Callable[[Client, Client, str], Awaitable[None]]
# (what happens, the sync filter, whether the fast path must answer)
CASES: dict[str, tuple[Case, dict[str, Any] | None, bool]] = {
    "plain messages": (messages, None, True),
    "mentions count as highlights": (mention, None, True),
    "a room bob is not in": (other_room, None, True),
    "timeline type filter keeps nothing": (
        messages, {"room": {"timeline": {"types": ["m.sticker"]}}}, True),
    "event_fields": (messages, {"event_fields": ["type", "content.body"]}, True),
    "more than the limit": (messages, {"room": {"timeline": {"limit": 2}}}, False),
    "a state change": (state_change, None, False),
    "bob's read receipt": (bobs_receipt, None, False),
    "bob's own message": (bob_speaks, None, False),
    "presence filtered out": (messages, {"presence": {"not_types": ["*"]}}, True),
    "a to-device message for bob": (to_device_for_bob, None, False),
    "lazy-loaded members": (messages, {"room": {"state": {"lazy_load_members": True}}},
                            False),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest_twisted.ensureDeferred
async def test_fast_path_answers_as_the_database_does(server: TestServer, case: str) -> None:
    happen, sync_filter, fast = CASES[case]
    alice, bob, room_id = await two_users_in_a_room(server)
    await send_text(alice, room_id, "before the token", "first")
    await sleep(0.2)  # alice's presence (she came online by sending) lands
    params: dict[str, Any] = {} if sync_filter is None else {"filter": sync_filter}
    start = (await sync(bob, **params))["next_batch"]
    await happen(alice, bob, room_id)

    handler = server.hs.sync_handler
    answered = handler.fast_answers
    from_memory = await sync(bob, since=start, **params)
    assert (handler.fast_answers > answered) is fast
    handler.fast_path = False
    from_database = await sync(bob, since=start, **params)
    assert from_database["next_batch"] == from_memory["next_batch"]
    assert without_age(from_memory) == without_age(from_database)
    if fast and sync_filter is None:
        assert from_memory["rooms"]["join"][room_id]["timeline"]["events"]


@pytest_twisted.ensureDeferred
async def test_a_woken_long_poll_is_answered_from_memory(server: TestServer) -> None:
    from twisted.internet import defer

    alice, bob, room_id = await two_users_in_a_room(server)
    await send_text(alice, room_id, "warm", "w")
    await sleep(0.2)  # alice's presence (she came online by sending) lands
    token = (await sync(bob))["next_batch"]
    handler = server.hs.sync_handler
    answered = handler.fast_answers
    waiting = defer.ensureDeferred(sync(bob, since=token, timeout=30000))
    await send_text(alice, room_id, "news", "n")
    body = await waiting
    assert [e["content"]["body"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]
            ] == ["news"]
    assert body["rooms"]["join"][room_id]["unread_notifications"]["notification_count"] == 2
    assert handler.fast_answers > answered


@pytest_twisted.ensureDeferred
async def test_presence_does_not_wake_a_poll_whose_filter_drops_it(server: TestServer) -> None:
    """In a big room presence churns; a client that filters presence out is
    not woken for each change (to build a response that holds nothing)."""
    from twisted.internet import defer

    alice, bob, room_id = await two_users_in_a_room(server)
    no_presence = {"presence": {"not_types": ["*"]}}
    token = (await sync(bob, filter=no_presence))["next_batch"]
    waiting = defer.ensureDeferred(sync(bob, since=token, timeout=30000, filter=no_presence))
    await sleep(0.2)
    handler = server.hs.sync_handler
    built = handler.fast_answers
    resp = await alice.put(f"{V3}/presence/@alice:test.local/status",
                           {"presence": "unavailable", "status_msg": "away"})
    assert resp.code == 200
    await sleep(0.3)
    assert not waiting.called
    assert handler.fast_answers == built  # not woken, so nothing was built
    await send_text(alice, room_id, "now", "n")
    body = await waiting
    assert [e["content"]["body"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]
            ] == ["now"]
