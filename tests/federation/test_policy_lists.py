"""A moderation policy list held on another server: the rule is sent there,
arrives here over federation, and counts here from then on."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor, task

from tests.federation.harness import free_port, server_name
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


@pytest_twisted.ensureDeferred
async def test_a_banned_server_is_refused_at_federation(federation: Any) -> None:
    """A server rule in a followed policy list: that server's requests are
    refused (403), so its users cannot join here and its events stop
    arriving; other servers go on."""
    port = free_port()
    here = f"localhost:{port}"
    hs2 = await federation(federation_port=port, policy_rooms=[f"#bans:{here}"])
    hs1 = await federation(federation_host="127.0.0.1")
    mod = await hs2.register("mod")
    alice = await hs2.register("alice")
    await create_room(mod, room_alias_name="bans")
    policy = (await mod.get(f"{CLIENT}/directory/room/{q('#bans:' + here)}")).body["room_id"]
    room = await create_room(alice, preset="public_chat")
    eve = await hs1.register("eve")
    carol = await hs1.register("carol")
    await join(eve, room, via=here)

    rule = await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.server/r1", {
        "entity": "127.0.0.1:*", "recommendation": "m.ban", "reason": "spam server"})
    assert rule.code == 200, rule.body

    other = await create_room(alice, preset="public_chat")
    refused = await carol.post(f"{CLIENT}/join/{q(other)}?server_name={here}", {})
    assert refused.code != 200, refused.body
    sent = await send(eve, room, {"msgtype": "m.text", "body": "from a banned server"}, "e1")
    assert sent.code == 200
    await send(alice, room, {"msgtype": "m.text", "body": "still here"}, "a1")
    await task.deferLater(reactor, 1.5, lambda: None)
    page = await alice.get(f"{CLIENT}/rooms/{q(room)}/messages?dir=b&limit=20")
    bodies = [e["content"].get("body") for e in page.body["chunk"]
              if e["type"] == "m.room.message"]
    assert bodies == ["still here"]


@pytest_twisted.ensureDeferred
async def test_spam_from_another_server_is_kept_redacted(federation: Any) -> None:
    """The content filter and policy lists also read what other servers send
    (where Synapse's spam checker does): such an event is kept redacted."""
    port = free_port()
    here = f"localhost:{port}"
    hs2 = await federation(federation_port=port, policy_rooms=[f"#bans:{here}"],
                           content_filter={"enabled": True, "words": ["scam"]})
    hs1 = await federation()
    mod = await hs2.register("mod")
    alice = await hs2.register("alice")
    await create_room(mod, room_alias_name="bans")
    policy = (await mod.get(f"{CLIENT}/directory/room/{q('#bans:' + here)}")).body["room_id"]
    room = await create_room(alice, preset="public_chat")
    eve = await hs1.register("eve")
    mallory = await hs1.register("mallory")
    await join(eve, room, via=here)
    await join(mallory, room, via=here)
    rule = await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.user/r1", {
        "entity": mallory.user_id, "recommendation": "m.ban"})
    assert rule.code == 200, rule.body

    await send(eve, room, {"msgtype": "m.text", "body": "a scam"}, "e1")
    await send(eve, room, {"msgtype": "m.text", "body": "scampi"}, "e2")
    await send(mallory, room, {"msgtype": "m.text", "body": "hello"}, "m1")

    async def arrived() -> bool:
        page = await alice.get(f"{CLIENT}/rooms/{q(room)}/messages?dir=b&limit=20")
        return len([e for e in page.body["chunk"] if e["type"] == "m.room.message"]) == 3
    await eventually(arrived, timeout=15.0)
    page = await alice.get(f"{CLIENT}/rooms/{q(room)}/messages?dir=b&limit=20")
    seen = [(e["sender"], e["content"].get("body")) for e in reversed(page.body["chunk"])
            if e["type"] == "m.room.message"]
    assert seen == [(eve.user_id, None), (eve.user_id, "scampi"), (mallory.user_id, None)]


class NoInvitesFromMallory:
    """Refuses invites from other servers sent by a user named mallory."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(federated_user_may_invite=self.check)

    def check(self, event: dict[str, Any]) -> Any:
        return "M_FORBIDDEN" if event["sender"].startswith("@mallory") else "NOT_SPAM"


@pytest_twisted.ensureDeferred
async def test_invites_from_other_servers_pass_policy_lists_and_modules(
        federation: Any) -> None:
    port = free_port()
    here = f"localhost:{port}"
    hs2 = await federation(federation_port=port, policy_rooms=[f"#bans:{here}"],
                           modules=[{"module": f"{__name__}.NoInvitesFromMallory"}])
    hs1 = await federation()
    mod = await hs2.register("mod")
    bob = await hs2.register("bob")
    await create_room(mod, room_alias_name="bans")
    policy = (await mod.get(f"{CLIENT}/directory/room/{q('#bans:' + here)}")).body["room_id"]
    eve = await hs1.register("eve")
    mallory = await hs1.register("mallory")
    trent = await hs1.register("trent")
    rule = await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.user/r1", {
        "entity": eve.user_id, "recommendation": "m.ban"})
    assert rule.code == 200, rule.body

    codes = {}
    for name, inviter in (("eve", eve), ("mallory", mallory), ("trent", trent)):
        room = await create_room(inviter)
        resp = await inviter.post(f"{CLIENT}/rooms/{q(room)}/invite", {"user_id": bob.user_id})
        codes[name] = resp.code
    assert codes["eve"] == 403 and codes["mallory"] == 403
    assert codes["trent"] == 200


class DropMarked:
    """Drops PDUs whose body asks for it."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(should_drop_federated_event=self.check)

    async def check(self, pdu: dict[str, Any]) -> bool:
        return pdu.get("content", {}).get("body") == "drop me"


@pytest_twisted.ensureDeferred
async def test_a_module_drops_federated_events_unseen(federation: Any) -> None:
    hs2 = await federation(modules=[{"module": f"{__name__}.DropMarked"}])
    hs1 = await federation()
    alice = await hs2.register("alice")
    eve = await hs1.register("eve")
    room = await create_room(alice, preset="public_chat")
    await join(eve, room, via=server_name(hs2))

    await send(eve, room, {"msgtype": "m.text", "body": "drop me"}, "e1")
    await send(eve, room, {"msgtype": "m.text", "body": "keep me"}, "e2")

    async def kept() -> bool:
        page = await alice.get(f"{CLIENT}/rooms/{q(room)}/messages?dir=b&limit=20")
        return "keep me" in [e["content"].get("body") for e in page.body["chunk"]]
    await eventually(kept, timeout=15.0)
    page = await alice.get(f"{CLIENT}/rooms/{q(room)}/messages?dir=b&limit=20")
    assert "drop me" not in [e["content"].get("body") for e in page.body["chunk"]]
