"""The content filter and spam checker modules on a running server, as users
see them: refusals with reasons, redacted messages, a room's own words, the
two example modules, and modules that fail (open, or closed when told)."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from homeserver.moderation.spam_checker import NOT_SPAM
from tests.api.test_register import register_with_dummy
from tests.harness import Client
from tests.helpers import create_room, join, q, send

CLIENT = "/_matrix/client/v3"
EXAMPLES = "homeserver.moderation.examples"


class Exploding:
    """A module whose every check raises."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(check_event_for_spam=self.check,
                                            user_may_create_room=self.check)

    async def check(self, *args: Any) -> Any:
        raise RuntimeError("the module is broken")


class Gatekeeper:
    """Denies registrations of spammer*, shadow-bans shady*, refuses uploads
    that carry a marker."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(
            check_registration_for_spam=self.registration,
            check_media_file_for_spam=self.media)

    async def registration(self, email: Any, username: str | None, request_info: Any,
                           auth_provider_id: Any) -> str:
        name = username or ""
        return "deny" if name.startswith("spammer") else \
            "shadow_ban" if name.startswith("shady") else "allow"

    def media(self, data: bytes, file_info: dict[str, Any]) -> Any:
        return "M_FORBIDDEN" if b"MALWARE" in data else NOT_SPAM


class RoomRules:
    """No knocks on rooms by users named knocker*, no aliases starting with
    "free", no publishing by users named lurker* (Synapse's older booleans
    and errcodes both)."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(user_may_knock=self.knock,
                                            user_may_create_room_alias=self.alias,
                                            user_may_publish_room=self.publish,
                                            user_may_send_state_event=self.state)

    def state(self, user_id: str, room_id: str, event_type: str, state_key: str,
              content: dict[str, Any]) -> Any:
        topic = content.get("topic")
        return "M_FORBIDDEN" if isinstance(topic, str) and "nope" in topic else NOT_SPAM

    def knock(self, user_id: str, room_id: str) -> Any:
        return False if user_id.startswith("@knocker") else NOT_SPAM

    async def alias(self, user_id: str, room_alias: Any) -> Any:
        assert room_alias.to_string() == str(room_alias)
        return "M_FORBIDDEN" if room_alias.localpart.startswith("free") else NOT_SPAM

    def publish(self, user_id: str, room_id: str) -> bool:
        return not user_id.startswith("@lurker")


class NoLoginsFromBots:
    """Refuses logins of users named bot* or from a device called Spambot."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(check_login_for_spam=self.check)

    async def check(self, user_id: str, device_id: Any, initial_display_name: Any,
                    request_info: Any, auth_provider_id: Any) -> Any:
        assert request_info and request_info[0][1]
        if user_id.startswith("@bot") or initial_display_name == "Spambot":
            return "M_FORBIDDEN"
        return NOT_SPAM


class NoSpamAddresses:
    """Refuses invites by address to spam* addresses."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(user_may_send_3pid_invite=self.check)

    def check(self, inviter: str, medium: str, address: str, room_id: str) -> Any:
        return "M_FORBIDDEN" if address.startswith("spam") else NOT_SPAM


class HideSpammyNames:
    """Finds users named spam* spammy in the user directory; the older
    one-argument form."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(check_username_for_spam=self.check)

    def check(self, profile: dict[str, Any]) -> bool:
        return str(profile["user_id"]).startswith("@spam")


class HideFromStrangers:
    """The two-argument form: hides everyone from @outsider."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_spam_checker_callbacks(check_username_for_spam=self.check)

    async def check(self, profile: dict[str, Any], requester_id: str) -> bool:
        return requester_id.startswith("@outsider")


async def _bodies(client: Client, room_id: str) -> list[Any]:
    resp = await client.get(f"{CLIENT}/rooms/{q(room_id)}/messages",
                            params={"dir": "b", "limit": "50"})
    assert resp.code == 200, resp.body
    return [e["content"].get("body") for e in resp.body["chunk"]
            if e["type"] == "m.room.message"]


def _text(body: str) -> dict[str, str]:
    return {"msgtype": "m.text", "body": body}


@pytest_twisted.ensureDeferred
async def test_filtered_words_are_refused_with_the_reason(make_server: Any) -> None:
    server = await make_server(content_filter={"enabled": True, "words": ["scam"],
                                               "max_links": 1})
    alice = await server.register("alice")
    room = await create_room(alice)

    refused = await send(alice, room, _text("this is a SCAM"), "t1")
    links = await send(alice, room, _text("https://a.example https://b.example"), "t2")
    fine = await send(alice, room, _text("scampi for dinner"), "t3")

    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    assert "word" in refused.body["error"]
    assert (links.code, links.body["errcode"]) == (403, "M_FORBIDDEN")
    assert fine.code == 200
    assert await _bodies(alice, room) == ["scampi for dinner"]


@pytest_twisted.ensureDeferred
async def test_a_room_name_or_topic_with_a_filtered_word_is_refused(make_server: Any) -> None:
    server = await make_server(content_filter={"enabled": True, "words": ["scam"],
                                               "action": "redact"})
    alice = await server.register("alice")
    room = await create_room(alice, name="Fine name")

    name = await alice.put(f"{CLIENT}/rooms/{q(room)}/state/m.room.name/",
                           {"name": "Best scam ever"})
    topic = await alice.put(f"{CLIENT}/rooms/{q(room)}/state/m.room.topic/",
                            {"topic": "join the SCAM"})
    fine = await alice.put(f"{CLIENT}/rooms/{q(room)}/state/m.room.topic/",
                           {"topic": "scampi recipes"})

    assert (name.code, name.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (topic.code, topic.body["errcode"]) == (403, "M_FORBIDDEN")
    assert fine.code == 200, fine.body
    kept = await alice.get(f"{CLIENT}/rooms/{q(room)}/state/m.room.name/")
    assert kept.body == {"name": "Fine name"}


@pytest_twisted.ensureDeferred
async def test_a_room_adds_its_own_words_by_state_event(make_server: Any) -> None:
    server = await make_server(content_filter={"enabled": True})
    alice = await server.register("alice")
    room = await create_room(alice)
    other = await create_room(alice)
    rules = await alice.put(f"{CLIENT}/rooms/{q(room)}/state/org.homeserver.content_filter",
                            {"words": ["pineapple"]})
    assert rules.code == 200, rules.body

    here = await send(alice, room, _text("pineapple pizza"), "t1")
    there = await send(alice, other, _text("pineapple pizza"), "t2")

    assert here.code == 403
    assert there.code == 200


@pytest_twisted.ensureDeferred
async def test_the_redact_action_sends_then_removes_the_message(make_server: Any) -> None:
    server = await make_server(content_filter={"enabled": True, "words": ["scam"],
                                               "action": "redact"})
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(alice, preset="public_chat")
    await join(bob, room)

    sent = await send(alice, room, _text("a scam"), "t1")

    assert sent.code == 200, sent.body
    event = await bob.get(f"{CLIENT}/rooms/{q(room)}/event/{q(sent.body['event_id'])}")
    assert event.code == 200
    assert event.body["content"] == {}
    assert event.body["unsigned"]["redacted_because"]["content"]["reason"] == \
        "Removed by the content filter"


@pytest_twisted.ensureDeferred
async def test_the_blocked_servers_module(make_server: Any) -> None:
    server = await make_server(modules=[{
        "module": f"{EXAMPLES}.blocked_servers.BlockedServers",
        "config": {"servers": ["spam.example"]}}])
    alice = await server.register("alice")
    room = await create_room(alice)

    invite = await alice.post(f"{CLIENT}/rooms/{q(room)}/invite",
                              {"user_id": "@bot:spam.example"})
    joined = await alice.post(f"{CLIENT}/join/{q('!room:spam.example')}", {})
    link = await send(alice, room, _text("see https://www.spam.example/offer"), "t1")
    other = await send(alice, room, _text("see https://matrix.org"), "t2")

    assert (invite.code, invite.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (joined.code, joined.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (link.code, link.body["errcode"]) == (403, "M_FORBIDDEN")
    assert other.code == 200


@pytest_twisted.ensureDeferred
async def test_the_new_accounts_module_holds_back_young_accounts(make_server: Any) -> None:
    clock = Clock()
    clock.advance(1_800_000_000)
    server = await make_server(clock=clock, modules=[{
        "module": f"{EXAMPLES}.new_accounts.NewAccountLimits",
        "config": {"min_age_ms": 3_600_000, "invites_per_hour": 1}}])
    old = await server.register("old")
    clock.advance(7200)
    young = await server.register("young")
    carol = await server.register("carol")
    dave = await server.register("dave")

    refused = await young.post(f"{CLIENT}/createRoom", {})
    room = await create_room(old, preset="public_chat",
                             power_level_content_override={"invite": 0})
    await join(young, room)
    first = await young.post(f"{CLIENT}/rooms/{q(room)}/invite", {"user_id": carol.user_id})
    second = await young.post(f"{CLIENT}/rooms/{q(room)}/invite", {"user_id": dave.user_id})
    link = await send(young, room, _text("https://example.org"), "t1")
    old_link = await send(old, room, _text("https://example.org"), "t2")

    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    assert first.code == 200
    assert (second.code, second.body["errcode"]) == (403, "M_LIMIT_EXCEEDED")
    assert link.code == 403
    assert old_link.code == 200
    clock.advance(3600)  # no longer new
    assert (await young.post(f"{CLIENT}/createRoom", {})).code == 200


@pytest_twisted.ensureDeferred
async def test_a_failing_module_lets_events_through_unless_fail_closed(
        make_server: Any) -> None:
    module = {"module": f"{__name__}.Exploding"}
    open_server = await make_server(modules=[module])
    alice = await open_server.register("alice")
    room = await create_room(alice)
    assert (await send(alice, room, _text("hello"), "t1")).code == 200

    closed_server = await make_server(modules=[{**module, "fail_closed": True}])
    bob = await closed_server.register("bob")
    refused = await bob.post(f"{CLIENT}/createRoom", {})
    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_modules_check_registrations_and_uploads(make_server: Any) -> None:
    server = await make_server(modules=[{"module": f"{__name__}.Gatekeeper"}])
    admin = await server.register("admin", admin=True)
    anonymous = server.client()

    denied = await register_with_dummy(anonymous, "spammer1")
    shady = await register_with_dummy(anonymous, "shady1")
    fine = await register_with_dummy(anonymous, "fine1")

    assert (denied.code, denied.body["errcode"]) == (403, "M_FORBIDDEN")
    assert shady.code == 200 and fine.code == 200
    details = await admin.get(f"/_synapse/admin/v2/users/{q(shady.body['user_id'])}")
    assert details.body["shadow_banned"] is True
    fine_details = await admin.get(f"/_synapse/admin/v2/users/{q(fine.body['user_id'])}")
    assert fine_details.body["shadow_banned"] is False
    user = server.client(fine.body["access_token"])
    bad = await user.post("/_matrix/media/v3/upload", raw=b"xx MALWARE xx",
                          headers={"Content-Type": "application/octet-stream"})
    good = await user.post("/_matrix/media/v3/upload", raw=b"hello",
                           headers={"Content-Type": "text/plain"})
    assert (bad.code, bad.body["errcode"]) == (403, "M_FORBIDDEN")
    assert good.code == 200


@pytest_twisted.ensureDeferred
async def test_policy_list_bans_apply_when_the_rule_arrives(make_server: Any) -> None:
    server = await make_server(policy_rooms=["#bans:test.local"])
    mod = await server.register("mod")
    alice = await server.register("alice")
    spammer = await server.register("spammer")
    policy = await create_room(mod, room_alias_name="bans")
    room = await create_room(alice, preset="public_chat",
                             power_level_content_override={"invite": 0})
    await join(spammer, room)
    assert (await send(spammer, room, _text("hi"), "t1")).code == 200

    rule = await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.user/r1", {
        "entity": "@spam*:test.local", "recommendation": "m.ban", "reason": "spam"})
    assert rule.code == 200, rule.body

    refused = await send(spammer, room, _text("buy now"), "t2")
    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    assert "spam" in refused.body["error"]
    invite = await alice.post(f"{CLIENT}/rooms/{q(room)}/invite",
                              {"user_id": spammer.user_id})
    assert invite.code == 403
    # a server rule and a room rule
    await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.server/r2",
                  {"entity": "*.bad.example", "recommendation": "m.ban"})
    remote = await alice.post(f"{CLIENT}/rooms/{q(room)}/invite",
                              {"user_id": "@x:chat.bad.example"})
    assert (remote.code, remote.body["errcode"]) == (403, "M_FORBIDDEN")
    bad_room = await create_room(alice, preset="public_chat")
    await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.room/r3",
                  {"entity": bad_room, "recommendation": "m.ban"})
    carol = await server.register("carol")
    joined = await carol.post(f"{CLIENT}/rooms/{q(bad_room)}/join", {})
    assert (joined.code, joined.body["errcode"]) == (403, "M_FORBIDDEN")
    # a rule removed (empty content) no longer applies
    await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.user/r1", {})
    assert (await send(spammer, room, _text("sorry"), "t3")).code == 200
    denied = await register_with_dummy(server.client(), "spammy")
    assert denied.code == 200  # no user rule left
    await mod.put(f"{CLIENT}/rooms/{q(policy)}/state/m.policy.rule.user/r4",
                  {"entity": "@spammy2:test.local", "recommendation": "m.ban"})
    blocked = await register_with_dummy(server.client(), "spammy2")
    assert (blocked.code, blocked.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_check_username_for_spam_filters_the_user_directory(make_server: Any) -> None:
    server = await make_server(user_directory={"search_all_users": True}, modules=[
        {"module": f"{__name__}.HideSpammyNames"}, {"module": f"{__name__}.HideFromStrangers"}])
    searcher = await server.register("searcher")
    outsider = await server.register("outsider")
    await server.register("spammy_sam")
    await server.register("sammy")

    found = await searcher.post(f"{CLIENT}/user_directory/search", {"search_term": "sam"})
    hidden = await outsider.post(f"{CLIENT}/user_directory/search", {"search_term": "sam"})

    assert found.code == 200, found.body
    assert [r["user_id"] for r in found.body["results"]] == ["@sammy:test.local"]
    assert hidden.body["results"] == []


@pytest_twisted.ensureDeferred
async def test_modules_rule_knocks_aliases_and_publishing(make_server: Any) -> None:
    server = await make_server(modules=[{"module": f"{__name__}.RoomRules"}])
    alice = await server.register("alice")
    knocker = await server.register("knocker")
    lurker = await server.register("lurker")
    room = await create_room(alice, room_version="10",
                             initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                             "content": {"join_rule": "knock"}}])

    refused = await knocker.post(f"{CLIENT}/knock/{q(room)}", {})
    allowed = await lurker.post(f"{CLIENT}/knock/{q(room)}", {})
    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    assert allowed.code == 200, allowed.body

    bad_alias = await alice.put(f"{CLIENT}/directory/room/{q('#freestuff:test.local')}",
                                {"room_id": room})
    good_alias = await alice.put(f"{CLIENT}/directory/room/{q('#club:test.local')}",
                                 {"room_id": room})
    created = await alice.post(f"{CLIENT}/createRoom", {"room_alias_name": "freebies"})
    assert (bad_alias.code, bad_alias.body["errcode"]) == (403, "M_FORBIDDEN")
    assert good_alias.code == 200, good_alias.body
    assert created.code == 403
    assert (await alice.get(f"{CLIENT}/directory/room/{q('#freebies:test.local')}")).code \
        == 404

    own = await create_room(lurker)
    unlisted = await lurker.put(f"{CLIENT}/directory/list/room/{q(own)}",
                                {"visibility": "public"})
    listed = await alice.put(f"{CLIENT}/directory/list/room/{q(room)}",
                             {"visibility": "public"})
    assert unlisted.code == 403
    assert listed.code == 200, listed.body

    topic = await alice.put(f"{CLIENT}/rooms/{q(room)}/state/m.room.topic/", {"topic": "nope"})
    fine = await alice.put(f"{CLIENT}/rooms/{q(room)}/state/m.room.topic/", {"topic": "yes"})
    assert (topic.code, topic.body["errcode"]) == (403, "M_FORBIDDEN")
    assert fine.code == 200


@pytest_twisted.ensureDeferred
async def test_check_login_for_spam_refuses_logins(make_server: Any) -> None:
    server = await make_server(modules=[{"module": f"{__name__}.NoLoginsFromBots"}])
    await server.register("bot1")
    await server.register("human")
    client = server.client()

    def login(user: str, device_name: str | None = None) -> Any:
        body: dict[str, Any] = {"type": "m.login.password", "password": "correct horse battery",
                                "identifier": {"type": "m.id.user", "user": user}}
        if device_name is not None:
            body["initial_device_display_name"] = device_name
        return client.post(f"{CLIENT}/login", body)

    bot = await login("bot1")
    spambot = await login("human", "Spambot")
    human = await login("human", "Phone")
    assert (bot.code, bot.body["errcode"]) == (403, "M_FORBIDDEN")
    assert spambot.code == 403
    assert human.code == 200, human.body


@pytest_twisted.ensureDeferred
async def test_user_may_send_3pid_invite_refuses_before_the_identity_server(
        make_server: Any) -> None:
    server = await make_server(modules=[{"module": f"{__name__}.NoSpamAddresses"}])
    alice = await server.register("alice")
    room = await create_room(alice)

    resp = await alice.post(f"{CLIENT}/rooms/{q(room)}/invite", {
        "id_server": "identity.invalid", "id_access_token": "t", "medium": "email",
        "address": "spam@example.org"})

    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
