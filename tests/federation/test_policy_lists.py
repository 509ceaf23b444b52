"""A moderation policy list held on another server: the rule is sent there,
arrives here over federation, and counts here from then on."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.federation.harness import server_name
from tests.helpers import create_room, join, q, send
from tests.push.test_pushers import eventually

CLIENT = "/_matrix/client/v3"


@pytest_twisted.ensureDeferred
async def test_a_rule_from_a_remote_policy_room_applies_here(federation: Any) -> None:
    hs1 = await federation()
    mod = await hs1.register("mod")
    policy = await create_room(mod, preset="public_chat")
    hs2 = await federation(policy_rooms=[policy])
    watcher = await hs2.register("watcher")
    alice = await hs2.register("alice")
    spammer = await hs2.register("spammer")
    await join(watcher, policy, via=server_name(hs1))
    room = await create_room(alice, preset="public_chat")
    await join(spammer, room)
    assert (await send(spammer, room, {"msgtype": "m.text", "body": "hi"}, "t0")).code == 200
    server2 = spammer.user_id.split(":", 1)[1]

    rule = await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.user/r1", {
        "entity": f"@spammer:{server2}", "recommendation": "m.ban", "reason": "spam"})
    assert rule.code == 200, rule.body

    attempt = [0]

    async def refused() -> bool:
        attempt[0] += 1
        resp = await send(spammer, room, {"msgtype": "m.text", "body": "buy"}, f"t{attempt[0]}")
        return bool(resp.code == 403)
    await eventually(refused, timeout=15.0)
    other = await send(alice, room, {"msgtype": "m.text", "body": "fine"}, "a1")
    assert other.code == 200
