"""Server-side search (POST /search) and the user directory (SQLite and PostgreSQL).

matrix-nio has no search call: these speak raw HTTP, as a client would.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.api.test_rooms import ALICE, BOB, V3, create_room, invite, join, send, send_text
from tests.federation.conftest import federation, test_ca  # noqa: F401 - fixtures
from tests.federation.harness import server_name
from tests.federation.test_rooms import q as fed_q
from tests.federation.test_rooms import send_text as fed_send_text
from tests.federation.test_rooms import wait_for
from tests.harness import Client, TestServer
from tests.helpers import create_public_room as fed_create_room

CAROL = "@carol:test.local"


# -- helpers ----------------------------------------------------------------------


async def search(client: Client, term: str, *, next_batch: str | None = None,
                 expect: int = 200, **criteria: Any) -> Any:
    body = {"search_categories": {"room_events": {"search_term": term, **criteria}}}
    params = {"next_batch": next_batch} if next_batch is not None else None
    resp = await client.post(f"{V3}/search", body, params=params)
    assert resp.code == expect, resp.body
    return resp.body["search_categories"]["room_events"] if expect == 200 else resp.body


def found(result: Any) -> list[str]:
    """The texts of the results, in the order given."""
    out = []
    for item in result["results"]:
        content = item["result"]["content"]
        out.append(content.get("body") or content.get("name") or content.get("topic"))
    return out


async def leave(client: Client, room_id: str) -> None:
    resp = await client.post(f"{V3}/rooms/{room_id}/leave", {})
    assert resp.code == 200, resp.body


async def directory(client: Client, term: str, **body: Any) -> Any:
    resp = await client.post(f"{V3}/user_directory/search", {"search_term": term, **body})
    assert resp.code == 200, resp.body
    return resp.body


# -- message search ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_member_finds_messages_by_word_and_not_others(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "the quick brown fox", "t1")
    await send_text(alice, room_id, "a lazy dog", "t2")

    result = await search(alice, "fox")

    assert found(result) == ["the quick brown fox"]
    assert result["count"] == 1
    assert result["highlights"] == ["fox"]
    item = result["results"][0]
    assert item["result"]["room_id"] == room_id
    assert item["result"]["sender"] == ALICE
    assert isinstance(item["rank"], (int, float))


@pytest_twisted.ensureDeferred
async def test_stemming_and_case_match_other_forms_of_a_word(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "Deploying the Servers tonight", "t1")

    assert found(await search(alice, "deploy server")) == ["Deploying the Servers tonight"]
    assert found(await search(alice, "SERVERS")) == ["Deploying the Servers tonight"]


@pytest_twisted.ensureDeferred
async def test_room_name_and_topic_are_searchable_by_key(server: TestServer) -> None:
    alice = await server.register("alice")
    await create_room(alice, name="Gardening club", topic="tomatoes and herbs")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "my tomatoes are red", "t1")

    assert sorted(found(await search(alice, "tomatoes"))) == [
        "my tomatoes are red", "tomatoes and herbs"]
    assert found(await search(alice, "tomatoes", keys=["content.topic"])) == [
        "tomatoes and herbs"]
    assert found(await search(alice, "gardening", keys=["content.name"])) == [
        "Gardening club"]
    assert found(await search(alice, "gardening", keys=["content.body"])) == []


@pytest.mark.parametrize("term", [
    "", "   ", '"', '""', "'", "fox'", "\"unclosed phrase", "AND", "OR", "NOT", "or or",
    "-", "--fox", "-fox", "fox -", "*", "fox*", "(fox", "fox)", "a:b", "body:fox", "^fox",
    "NEAR(fox dog)", "fox & dog | !cat", "<->", "\\", "%", "_", "?", "?;DROP TABLE events",
    "émoji 🦊", "中文", "x" * 1000,
])
@pytest_twisted.ensureDeferred
async def test_odd_search_terms_never_break_the_query(server: TestServer, term: str) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "the quick brown fox", "t1")

    result = await search(alice, term)

    assert isinstance(result["results"], list)
    assert isinstance(result["count"], int)


@pytest_twisted.ensureDeferred
async def test_phrases_or_and_exclusion(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "red apple pie", "t1")
    await send_text(alice, room_id, "apple red sauce", "t2")
    await send_text(alice, room_id, "green pear", "t3")

    assert found(await search(alice, '"red apple"')) == ["red apple pie"]
    assert sorted(found(await search(alice, "pie or pear"))) == ["green pear", "red apple pie"]
    assert found(await search(alice, "apple -pie")) == ["apple red sauce"]


@pytest_twisted.ensureDeferred
async def test_outsider_finds_nothing_in_a_room_they_are_not_in(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await send_text(alice, room_id, "secret plans", "t1")

    result = await search(bob, "secret")
    assert (found(result), result["count"]) == ([], 0)
    # naming the room in the filter does not help
    assert found(await search(bob, "secret", filter={"rooms": [room_id]})) == []


@pytest_twisted.ensureDeferred
async def test_user_who_left_finds_only_messages_until_their_leave(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    assert (await join(bob, room_id)).code == 200
    await send_text(alice, room_id, "meeting before noon", "t1")
    await leave(bob, room_id)
    await send_text(alice, room_id, "meeting after lunch", "t2")

    assert found(await search(bob, "meeting")) == ["meeting before noon"]
    assert sorted(found(await search(alice, "meeting"))) == [
        "meeting after lunch", "meeting before noon"]


@pytest_twisted.ensureDeferred
async def test_history_from_before_joining_stays_hidden_when_visibility_is_joined(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    await send_text(alice, room_id, "launch codes early", "t1")
    assert (await join(bob, room_id)).code == 200
    await send_text(alice, room_id, "launch party later", "t2")

    assert found(await search(bob, "launch")) == ["launch party later"]


@pytest_twisted.ensureDeferred
async def test_redacted_message_is_no_longer_found(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await send_text(alice, room_id, "oops my password", "t1")
    assert found(await search(alice, "password")) == ["oops my password"]

    resp = await alice.put(f"{V3}/rooms/{room_id}/redact/{event_id}/r1", {})
    assert resp.code == 200, resp.body

    result = await search(alice, "password")
    assert (found(result), result["count"]) == ([], 0)


@pytest_twisted.ensureDeferred
async def test_recent_order_pages_through_every_match_once(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    for i in range(7):
        await send_text(alice, room_id, f"note number {i}", f"t{i}")
    await send_text(alice, room_id, "unrelated", "tx")

    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        result = await search(alice, "note", order_by="recent", filter={"limit": 3},
                              next_batch=token)
        assert result["count"] == 7
        seen += found(result)
        token = result.get("next_batch")
        if token is None:
            break
    assert seen == [f"note number {i}" for i in reversed(range(7))]


@pytest_twisted.ensureDeferred
async def test_rank_order_puts_the_best_match_first_and_pages(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "cake", "t1")
    await send_text(alice, room_id, "cake cake cake recipe for cake", "t2")
    await send_text(alice, room_id, "a long story that mentions cake only once in passing "
                    "among many other words about the weather", "t3")

    first = await search(alice, "cake", filter={"limit": 2})
    assert found(first)[0] == "cake cake cake recipe for cake"
    ranks = [item["rank"] for item in first["results"]]
    assert ranks == sorted(ranks, reverse=True)
    rest = await search(alice, "cake", filter={"limit": 2}, next_batch=first["next_batch"])
    assert len(found(first) + found(rest)) == 3
    assert set(found(first)).isdisjoint(found(rest))
    assert "next_batch" not in rest


@pytest_twisted.ensureDeferred
async def test_filter_by_room_sender_and_type(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room1 = await create_room(alice, preset="public_chat")
    room2 = await create_room(alice, preset="public_chat")
    assert (await join(bob, room1)).code == 200
    await send_text(alice, room1, "pizza from alice", "t1")
    await send_text(bob, room1, "pizza from bob", "t2")
    await send_text(alice, room2, "pizza elsewhere", "t3")
    resp = await send(alice, room2, {"msgtype": "m.notice", "body": "pizza notice"}, "t4",
                      event_type="m.room.message")
    assert resp.code == 200

    assert sorted(found(await search(alice, "pizza", filter={"rooms": [room1]}))) == [
        "pizza from alice", "pizza from bob"]
    assert sorted(found(await search(alice, "pizza", filter={"not_rooms": [room1]}))) == [
        "pizza elsewhere", "pizza notice"]
    assert found(await search(alice, "pizza", filter={"senders": [BOB]})) == ["pizza from bob"]
    assert BOB not in [item["result"]["sender"] for item in (await search(
        alice, "pizza", filter={"not_senders": [BOB]}))["results"]]
    assert found(await search(alice, "pizza", filter={"types": ["m.room.name"]})) == []


@pytest_twisted.ensureDeferred
async def test_context_state_groups_and_profiles(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, name="Kitchen")
    await send_text(alice, room_id, "one", "t1")
    await send_text(alice, room_id, "two", "t2")
    target = await send_text(alice, room_id, "the soup is ready", "t3")
    await send_text(alice, room_id, "three", "t4")

    result = await search(alice, "soup", include_state=True,
                          event_context={"before_limit": 2, "after_limit": 1,
                                         "include_profile": True},
                          groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]})

    item = result["results"][0]
    assert item["result"]["event_id"] == target
    context = item["context"]
    assert [e["content"]["body"] for e in context["events_before"]] == ["two", "one"]
    assert [e["content"]["body"] for e in context["events_after"]] == ["three"]
    assert context["profile_info"][ALICE]["displayname"] == "alice"
    assert isinstance(context["start"], str) and isinstance(context["end"], str)
    names = [e for e in result["state"][room_id] if e["type"] == "m.room.name"]
    assert names[0]["content"]["name"] == "Kitchen"
    assert result["groups"]["room_id"][room_id]["results"] == [target]
    assert result["groups"]["sender"][ALICE]["results"] == [target]


@pytest_twisted.ensureDeferred
async def test_bad_requests_get_matrix_errors(server: TestServer) -> None:
    alice = await server.register("alice")

    assert (await search(alice, "x", keys=["content.secret"], expect=400))["errcode"] == \
        "M_INVALID_PARAM"
    assert (await search(alice, "x", order_by="sideways", expect=400))["errcode"] == \
        "M_INVALID_PARAM"
    assert (await search(alice, "x", next_batch="garbage", expect=400))["errcode"] == \
        "M_INVALID_PARAM"
    assert (await search(alice, "x", filter={"limit": "ten"}, expect=400))["errcode"] == \
        "M_BAD_JSON"
    resp = await alice.post(f"{V3}/search", {"search_categories": {"room_events": {}}})
    assert (resp.code, resp.body["errcode"]) == (400, "M_MISSING_PARAM")
    resp = await alice.post(f"{V3}/search", {})
    assert resp.code == 400
    resp = await alice.post(f"{V3}/search", {"search_categories": {}})
    assert (resp.code, resp.body) == (200, {"search_categories": {}})
    resp = await server.client().post(f"{V3}/search", {"search_categories": {}})
    assert resp.code == 401


# -- the user directory ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_directory_finds_room_mates_by_name_and_id_case_insensitively(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await server.register("carol")  # shares no room with alice
    resp = await bob.put(f"{V3}/profile/{BOB}/displayname", {"displayname": "Bobby Émile"})
    assert resp.code == 200
    room_id = await create_room(alice)
    assert (await invite(alice, room_id, BOB)).code == 200
    assert (await join(bob, room_id)).code == 200

    by_name = await directory(alice, "émile")
    assert by_name == {"results": [{"user_id": BOB, "display_name": "Bobby Émile"}],
                       "limited": False}
    assert [r["user_id"] for r in (await directory(alice, "BOB"))["results"]] == [BOB]
    assert (await directory(alice, "carol"))["results"] == []


@pytest_twisted.ensureDeferred
async def test_directory_finds_members_of_public_rooms(server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(carol, preset="public_chat")
    assert room_id
    private = await create_room(carol, preset="private_chat")
    assert private

    assert [r["user_id"] for r in (await directory(alice, "carol"))["results"]] == [CAROL]


async def set_state(client: Client, room_id: str, event_type: str,
                    content: dict[str, Any]) -> None:
    resp = await client.put(f"{V3}/rooms/{room_id}/state/{event_type}", content)
    assert resp.code == 200, resp.body


async def finds(client: Client, term: str) -> list[str]:
    return [r["user_id"] for r in (await directory(client, term))["results"]]


@pytest_twisted.ensureDeferred
async def test_user_in_a_private_room_does_not_find_themselves(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="private_chat")
    assert (await invite(alice, room_id, BOB)).code == 200
    assert (await join(bob, room_id)).code == 200

    assert await finds(bob, "bob") == []
    assert await finds(alice, "bob") == [BOB]


@pytest_twisted.ensureDeferred
async def test_members_appear_and_disappear_as_join_rules_change(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="private_chat")
    assert (await invite(alice, room_id, BOB)).code == 200
    assert (await join(bob, room_id)).code == 200
    assert await finds(bob, "bob") == []

    await set_state(alice, room_id, "m.room.join_rules", {"join_rule": "public"})
    assert await finds(bob, "bob") == [BOB]

    await set_state(alice, room_id, "m.room.join_rules", {"join_rule": "invite"})
    assert await finds(bob, "bob") == []


@pytest_twisted.ensureDeferred
async def test_world_readable_history_keeps_members_findable(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="private_chat")
    assert (await invite(alice, room_id, BOB)).code == 200
    assert (await join(bob, room_id)).code == 200

    await set_state(alice, room_id, "m.room.history_visibility",
                    {"history_visibility": "world_readable"})
    assert await finds(bob, "bob") == [BOB]
    await set_state(alice, room_id, "m.room.join_rules", {"join_rule": "public"})
    await set_state(alice, room_id, "m.room.join_rules", {"join_rule": "invite"})
    assert await finds(bob, "bob") == [BOB]

    await set_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "shared"})
    assert await finds(bob, "bob") == []


@pytest_twisted.ensureDeferred
async def test_directory_limit_says_limited(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    for name in ("userone", "usertwo", "userthree"):
        client = await server.register(name)
        assert (await join(client, room_id)).code == 200

    result = await directory(alice, "user", limit=2)
    assert len(result["results"]) == 2
    assert result["limited"] is True
    assert (await directory(alice, "user", limit=10))["limited"] is False


@pytest_twisted.ensureDeferred
async def test_directory_odd_terms_are_literal(server: TestServer) -> None:
    alice = await server.register("alice")
    await create_room(alice)
    for term in ["%", "_", "\\", "'", '"', "a%", ""]:
        result = await directory(alice, term)
        assert result["results"] == [] or term == "", (term, result)


@pytest_twisted.ensureDeferred
async def test_directory_search_all_users_finds_strangers(make_server: Any) -> None:
    srv = await make_server(user_directory={"search_all_users": True})
    alice = await srv.register("alice")
    await srv.register("carol")

    assert [r["user_id"] for r in (await directory(alice, "car"))["results"]] == [CAROL]


@pytest_twisted.ensureDeferred
async def test_directory_disabled_finds_nobody(make_server: Any) -> None:
    srv = await make_server(user_directory={"enabled": False})
    alice = await srv.register("alice")
    bob = await srv.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    assert (await join(bob, room_id)).code == 200

    assert await directory(alice, "bob") == {"results": [], "limited": False}


# -- across servers ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_messages_and_people_from_another_server_are_found(
        federation: Any) -> None:  # noqa: F811 - the fixture
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    resp = await alice.put(f"{V3}/profile/{alice.user_id}/displayname",
                           {"displayname": "Alice Remote"})
    assert resp.code == 200
    room_id = await fed_create_room(alice)
    resp = await bob.post(f"{V3}/join/{fed_q(room_id)}", params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body

    event_id = await fed_send_text(alice, room_id, "greetings across the federation", "t1")

    async def bob_finds() -> Any:
        return found(await search(bob, "federation"))
    assert await wait_for(bob_finds) == ["greetings across the federation"]
    people = await directory(bob, "alice remote")
    assert [r["user_id"] for r in people["results"]] == [alice.user_id]

    resp = await alice.put(f"{V3}/rooms/{fed_q(room_id)}/redact/{fed_q(event_id)}/r1", {})
    assert resp.code == 200, resp.body

    async def gone() -> bool:
        return not found(await search(bob, "federation"))
    await wait_for(gone)


@pytest_twisted.ensureDeferred
async def test_remote_members_vanish_from_directory_once_our_server_left_the_room(
        federation: Any) -> None:  # noqa: F811 - the fixture
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    resp = await alice.put(f"{V3}/profile/{alice.user_id}/displayname",
                           {"displayname": "Alice Remote"})
    assert resp.code == 200
    room_id = await fed_create_room(alice)
    resp = await bob.post(f"{V3}/join/{fed_q(room_id)}", params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    assert await finds(bob, "alice remote") == [alice.user_id]

    assert (await bob.post(f"{V3}/rooms/{fed_q(room_id)}/leave", {})).code == 200
    assert await finds(bob, "alice remote") == []
