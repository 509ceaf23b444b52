import time
from typing import Any

import pytest_twisted

from tests.federation.harness import server_name
from tests.federation.test_rooms import create_room, q


def timed(obj: Any, name: str, log: dict) -> None:
    orig = getattr(obj, name)

    async def wrapper(*a: Any, **kw: Any) -> Any:
        t = time.monotonic()
        try:
            return await orig(*a, **kw)
        finally:
            log[name] = log.get(name, 0) + time.monotonic() - t
    setattr(obj, name, wrapper)


@pytest_twisted.ensureDeferred
async def test_prof(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    room_id = await create_room(alice)
    from homeserver.accounts.sessions import create_user
    for i in range(1000):
        uid = await create_user(a.hs, f"u{i}", None)
        await a.hs.event_creator.send(uid, room_id, "m.room.member", {"membership": "join"},
                                      state_key=uid)
    bob = await b.register("bob")
    log: dict = {}
    h = b.hs.federation_event_handler
    for n in ("check_pdus", "persist_checked_outliers", "process_event"):
        timed(h, n, log)
    timed(b.hs.federation_client, "put_json", log)
    timed(b.hs.federation_client, "get_json", log)
    timed(b.hs.stores.federation_events, "persist_outliers", log)
    timed(b.hs.stores.federation_events, "persist_federated", log)
    timed(h, "resolve", log)
    timed(h, "_ensure_auth_events", log)
    timed(b.hs.membership, "_needs_remote", log)
    timed(b.hs.membership, "_remote_servers", log)
    timed(b.hs.membership, "_profile_content", log)
    timed(b.hs.membership, "update_membership", log)
    timed(b.hs.stores.rooms, "get_membership", log)
    timed(b.hs.stores.rooms, "get_room", log)
    timed(b.hs.federation_membership, "join_remote", log)
    timed(b.hs.federation_membership, "_make", log)
    timed(b.hs.stores.federation_events, "ensure_room", log)
    timed(b.hs.stores.federation_events, "get_event_info", log)
    timed(b.hs.stores.events, "get_events", log)
    timed(b.hs.stores.rooms, "get_current_state_ids", log)
    timed(b.hs.stores.rooms, "get_forward_extremities", log)
    timed(b.hs.keyring, "verify_event_signatures", log)
    t = time.monotonic()
    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    print("JOIN", resp.code, time.monotonic() - t, {k: round(v, 3) for k, v in log.items()})
