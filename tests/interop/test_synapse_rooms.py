"""Rooms shared with a real Synapse: the interop target of issue 6.

Every scenario runs in both directions: once in a room that lives on our
server with a Synapse user joining it, once in a room that lives on Synapse
with our user joining it. Each test drives only the client APIs of the two
servers, as two people on two servers would, and checks what the other side
sees: joins, messages, typing, read receipts, invites, leaves, kicks, bans,
redactions, and that both servers end with the same room state (the same
event id for every (type, state_key)).

Cross-server effects are asynchronous, so the checks poll (``eventually``)
with a deadline instead of sleeping; a timeout names what never happened
and prints the tail of Synapse's log.

These tests need federation joins (make_join/send_join both ways), the
sender and the receiver; they fail until those land, by design: they are the
target, not a skip.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from tests.harness import Client, TestServer
from tests.helpers import create_room, join, send_text
from tests.interop.synapse import (  # noqa: F401 (the *_fixture imports are fixtures)
    SynapseServer,
    interop_ca_fixture,
    ours_fixture,
    synapse_fixture,
    unique,
)

T = TypeVar("T")
TIMEOUT_S = 30.0


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# -- the two sides ---------------------------------------------------------


@dataclass
class Side:
    """One server of the pair, as the tests use it."""

    label: str
    server_name: str
    new_user: Callable[[str], Awaitable[Client]]


def our_side(ours: TestServer) -> Side:
    return Side("ours", str(ours.hs.hostname), lambda localpart: ours.register(localpart))


def synapse_side(synapse: SynapseServer) -> Side:
    return Side("synapse", synapse.server_name,
                lambda localpart: synapse.register(unique(localpart)))


@pytest.fixture(params=["room_on_ours", "room_on_synapse"])
def sides(request: pytest.FixtureRequest, ours: TestServer,
          synapse: SynapseServer) -> tuple[Side, Side]:
    """(host, guest): the room is created on host; guest's users join it over federation."""
    if request.param == "room_on_ours":
        return our_side(ours), synapse_side(synapse)
    return synapse_side(synapse), our_side(ours)


# -- waiting for the other server --------------------------------------------


_synapse_for_errors: list[SynapseServer] = []


@pytest.fixture(autouse=True)
def _remember_synapse(synapse: SynapseServer) -> None:
    _synapse_for_errors[:] = [synapse]


async def eventually(check: Callable[[], Awaitable[T | None]], what: str,
                     timeout: float = TIMEOUT_S) -> T:
    """The first truthy result of ``check``, polled until ``timeout``."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = _synapse_for_errors[0].log_tail(40) if _synapse_for_errors else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        await deferLater(reactor, 0.1, lambda: None)


# -- client moves ---------------------------------------------------------------


async def membership_of(client: Client, room_id: str, user_id: str) -> str | None:
    resp = await client.get(
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}")
    if resp.code != 200:
        return None
    return str(resp.body.get("membership"))


async def wait_membership(client: Client, room_id: str, user_id: str, membership: str) -> None:
    async def check() -> bool:
        return await membership_of(client, room_id, user_id) == membership
    await eventually(check, f"{client.user_id} to see {user_id} {membership} in {room_id}")


async def timeline(client: Client, room_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/messages",
                            params={"dir": "b", "limit": "100"})
    assert resp.code == 200, resp.body
    return list(resp.body["chunk"])


async def wait_event(client: Client, room_id: str, event_id: str,
                     pred: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        for event in await timeline(client, room_id):
            if event["event_id"] == event_id and pred(event):
                return event
        return None
    return await eventually(check, f"{client.user_id} to see {event_id} in {room_id}")


async def room_state(client: Client, room_id: str) -> dict[tuple[str, str], str]:
    """(type, state_key) -> event id, as the client's server has it now."""
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    assert resp.code == 200, resp.body
    return {(e["type"], e["state_key"]): e["event_id"] for e in resp.body}


async def assert_same_state(a: Client, b: Client, room_id: str) -> None:
    """Both servers converge on the same state (they may lag each other a moment)."""
    async def check() -> bool:
        return await room_state(a, room_id) == await room_state(b, room_id)
    try:
        await eventually(check, f"the same state of {room_id} on both servers")
    except AssertionError:
        state_a, state_b = await room_state(a, room_id), await room_state(b, room_id)
        diff = {k: (state_a.get(k), state_b.get(k)) for k in set(state_a) | set(state_b)
                if state_a.get(k) != state_b.get(k)}
        raise AssertionError(f"room state differs between the servers: {diff}") from None


class SyncStream:
    """A client's /sync, followed incrementally, for the ephemeral things
    (typing, receipts) and invites that only /sync shows."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.since: str | None = None

    async def next(self) -> dict[str, Any]:
        params = {"timeout": "500" if self.since else "0"}
        if self.since:
            params["since"] = self.since
        resp = await self.client.get("/_matrix/client/v3/sync", params=params)
        assert resp.code == 200, resp.body
        self.since = resp.body["next_batch"]
        return dict(resp.body)

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body = await self.next()
            return body if pred(body) else None
        return await eventually(check, f"{self.client.user_id}'s /sync to show {what}")


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def typing_users(body: dict[str, Any], room_id: str) -> set[str]:
    users: set[str] = set()
    for event in ephemeral(body, room_id, "m.typing"):
        users |= set(event["content"].get("user_ids", []))
    return users


SyncPredicate = Callable[[dict[str, Any]], bool]


def is_typing(room_id: str, user_id: str) -> SyncPredicate:
    return lambda body: user_id in typing_users(body, room_id)


def stopped_typing(room_id: str, user_id: str) -> SyncPredicate:
    # an m.typing update that no longer lists the user (not just "no update")
    return lambda body: (bool(ephemeral(body, room_id, "m.typing"))
                         and user_id not in typing_users(body, room_id))


def has_read_receipt(room_id: str, event_id: str, user_id: str) -> SyncPredicate:
    return lambda body: any(user_id in e["content"].get(event_id, {}).get("m.read", {})
                            for e in ephemeral(body, room_id, "m.receipt"))


async def start_shared_room(host: Side, guest: Side, **create: Any
                            ) -> tuple[Client, Client, str]:
    """A public room on ``host`` that a ``guest`` user has joined; both see the join."""
    owner = await host.new_user("owner")
    visitor = await guest.new_user("visitor")
    room_id = await create_room(owner, preset="public_chat", **create)
    await join(visitor, room_id, host.server_name)
    assert visitor.user_id and owner.user_id
    await wait_membership(owner, room_id, visitor.user_id, "join")
    await wait_membership(visitor, room_id, owner.user_id, "join")
    return owner, visitor, room_id


# -- the tests ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_remote_user_joins_and_messages_flow_both_ways(sides: tuple[Side, Side]) -> None:
    host, guest = sides
    owner, visitor, room_id = await start_shared_room(host, guest, name="Interop")

    # the joined server got the room's state: its user sees the name
    name = await visitor.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.name")
    assert name.code == 200 and name.body["name"] == "Interop", name.body

    hello = await send_text(owner, room_id, f"hello from {host.label}")
    event = await wait_event(visitor, room_id, hello)
    assert event["content"]["body"] == f"hello from {host.label}"
    assert event["sender"] == owner.user_id

    reply = await send_text(visitor, room_id, f"hello from {guest.label}")
    event = await wait_event(owner, room_id, reply)
    assert event["content"]["body"] == f"hello from {guest.label}"
    assert event["sender"] == visitor.user_id

    # a burst keeps its order on the other side
    sent = [await send_text(owner, room_id, f"burst {i}") for i in range(5)]
    await wait_event(visitor, room_id, sent[-1])
    seen = [e["event_id"] for e in reversed(await timeline(visitor, room_id))
            if e["event_id"] in sent]
    assert seen == sent

    joined = await visitor.get(f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members")
    assert joined.code == 200
    assert set(joined.body["joined"]) == {owner.user_id, visitor.user_id}
    await assert_same_state(owner, visitor, room_id)


@pytest_twisted.ensureDeferred
async def test_typing_and_read_receipts_flow_both_ways(sides: tuple[Side, Side]) -> None:
    host, guest = sides
    owner, visitor, room_id = await start_shared_room(host, guest)
    assert owner.user_id and visitor.user_id
    owner_sync, visitor_sync = SyncStream(owner), SyncStream(visitor)
    await owner_sync.next()
    await visitor_sync.next()

    for typist, watcher in ((owner, visitor_sync), (visitor, owner_sync)):
        typing_path = f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(typist.user_id or '')}"
        resp = await typist.put(typing_path, {"typing": True, "timeout": 30000})
        assert resp.code == 200, resp.body
        await watcher.wait_for(is_typing(room_id, typist.user_id or ""),
                               f"{typist.user_id} typing")
        resp = await typist.put(typing_path, {"typing": False})
        assert resp.code == 200, resp.body
        await watcher.wait_for(stopped_typing(room_id, typist.user_id or ""),
                               f"{typist.user_id} no longer typing")

    for author, reader, author_sync in ((owner, visitor, owner_sync),
                                        (visitor, owner, visitor_sync)):
        event_id = await send_text(author, room_id, "read me")
        await wait_event(reader, room_id, event_id)
        resp = await reader.post(
            f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
        assert resp.code == 200, resp.body
        await author_sync.wait_for(has_read_receipt(room_id, event_id, reader.user_id or ""),
                                   f"{reader.user_id}'s read receipt on {event_id}")


@pytest_twisted.ensureDeferred
async def test_invites_cross_servers_and_are_accepted(sides: tuple[Side, Side]) -> None:
    host, guest = sides
    owner = await host.new_user("inviter")
    invitee = await guest.new_user("invitee")
    assert owner.user_id and invitee.user_id
    room_id = await create_room(owner, preset="private_chat", name="Private")
    invitee_sync = SyncStream(invitee)
    await invitee_sync.next()

    # not invited yet: a private room refuses the join
    refused = await invitee.post(f"/_matrix/client/v3/join/{q(room_id)}", {},
                                 params={"via": host.server_name,
                                         "server_name": host.server_name})
    assert refused.code == 403, refused.body

    resp = await owner.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": invitee.user_id, "reason": "come in"})
    assert resp.code == 200, resp.body
    body = await invitee_sync.wait_for(
        lambda b: room_id in b.get("rooms", {}).get("invite", {}), "the invite")
    stripped = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    # the invite carries enough of the room for a client to show it
    assert [e["content"].get("name") for e in stripped if e["type"] == "m.room.name"] \
        == ["Private"]
    mine = [e for e in stripped if e["type"] == "m.room.member"
            and e["state_key"] == invitee.user_id]
    assert mine and mine[0]["content"]["membership"] == "invite"
    await wait_membership(owner, room_id, invitee.user_id, "invite")

    await join(invitee, room_id, host.server_name)
    await wait_membership(owner, room_id, invitee.user_id, "join")
    message = await send_text(invitee, room_id, "thanks for the invite")
    await wait_event(owner, room_id, message)
    await assert_same_state(owner, invitee, room_id)

    # an invite that is refused: the inviter's server sees the leave
    other = await guest.new_user("decliner")
    assert other.user_id
    resp = await owner.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": other.user_id})
    assert resp.code == 200, resp.body
    other_sync = SyncStream(other)
    await other_sync.wait_for(lambda b: room_id in b.get("rooms", {}).get("invite", {}),
                              "the second invite")
    resp = await other.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    assert resp.code == 200, resp.body
    await wait_membership(owner, room_id, other.user_id, "leave")


@pytest_twisted.ensureDeferred
async def test_leave_kick_and_ban_of_a_remote_user(sides: tuple[Side, Side]) -> None:
    host, guest = sides
    owner, visitor, room_id = await start_shared_room(host, guest)
    # a second guest user keeps the guest server in the room throughout, so
    # both servers' state can be compared at the end
    witness = await guest.new_user("witness")
    await join(witness, room_id, host.server_name)
    assert owner.user_id and visitor.user_id and witness.user_id
    await wait_membership(owner, room_id, witness.user_id, "join")
    rooms = f"/_matrix/client/v3/rooms/{q(room_id)}"

    # leave: the host sees it; the user can come back (public room)
    resp = await visitor.post(f"{rooms}/leave", {})
    assert resp.code == 200, resp.body
    await wait_membership(owner, room_id, visitor.user_id, "leave")
    await join(visitor, room_id, host.server_name)
    await wait_membership(owner, room_id, visitor.user_id, "join")

    # kick: the guest server sees the leave, sent by the owner, with the reason
    resp = await owner.post(f"{rooms}/kick", {"user_id": visitor.user_id, "reason": "cool off"})
    assert resp.code == 200, resp.body
    await wait_membership(witness, room_id, visitor.user_id, "leave")
    kick = await witness.get(f"{rooms}/state/m.room.member/{q(visitor.user_id)}")
    assert kick.body.get("reason") == "cool off", kick.body
    # a kicked user may rejoin
    await join(visitor, room_id, host.server_name)
    await wait_membership(owner, room_id, visitor.user_id, "join")

    # ban: seen on the guest server, and the banned user's join is refused
    resp = await owner.post(f"{rooms}/ban", {"user_id": visitor.user_id, "reason": "enough"})
    assert resp.code == 200, resp.body
    await wait_membership(witness, room_id, visitor.user_id, "ban")
    again = await visitor.post(f"/_matrix/client/v3/join/{q(room_id)}", {},
                               params={"via": host.server_name, "server_name": host.server_name})
    assert again.code == 403, again.body
    assert await membership_of(owner, room_id, visitor.user_id) == "ban"

    # unban lets them back
    resp = await owner.post(f"{rooms}/unban", {"user_id": visitor.user_id})
    assert resp.code == 200, resp.body
    await wait_membership(witness, room_id, visitor.user_id, "leave")
    await join(visitor, room_id, host.server_name)
    await wait_membership(owner, room_id, visitor.user_id, "join")

    await assert_same_state(owner, witness, room_id)


@pytest_twisted.ensureDeferred
async def test_a_remote_moderator_kicks_and_bans_a_host_user(sides: tuple[Side, Side]) -> None:
    # the other direction of moderation: a guest-server user, made moderator,
    # removes a user of the room's own server
    host, guest = sides
    owner, moderator, room_id = await start_shared_room(host, guest)
    member = await host.new_user("member")
    assert owner.user_id and moderator.user_id and member.user_id
    await join(member, room_id, host.server_name)
    await wait_membership(moderator, room_id, member.user_id, "join")
    rooms = f"/_matrix/client/v3/rooms/{q(room_id)}"

    power = (await owner.get(f"{rooms}/state/m.room.power_levels")).body
    power.setdefault("users", {})[moderator.user_id] = 50
    resp = await owner.put(f"{rooms}/state/m.room.power_levels", power)
    assert resp.code == 200, resp.body
    pl_event = resp.body["event_id"]

    async def moderator_has_power() -> bool:
        return (await room_state(moderator, room_id)).get(("m.room.power_levels", "")) == pl_event
    await eventually(moderator_has_power, "the power levels to reach the moderator")

    resp = await moderator.post(f"{rooms}/kick", {"user_id": member.user_id})
    assert resp.code == 200, resp.body
    await wait_membership(owner, room_id, member.user_id, "leave")
    await join(member, room_id, host.server_name)
    await wait_membership(moderator, room_id, member.user_id, "join")

    resp = await moderator.post(f"{rooms}/ban", {"user_id": member.user_id})
    assert resp.code == 200, resp.body
    await wait_membership(owner, room_id, member.user_id, "ban")
    again = await member.post(f"/_matrix/client/v3/join/{q(room_id)}", {})
    assert again.code == 403, again.body

    await assert_same_state(owner, moderator, room_id)


@pytest_twisted.ensureDeferred
async def test_redactions_flow_both_ways(sides: tuple[Side, Side]) -> None:
    host, guest = sides
    owner, visitor, room_id = await start_shared_room(host, guest)
    rooms = f"/_matrix/client/v3/rooms/{q(room_id)}"

    def redacted(event: dict[str, Any]) -> bool:
        return not event["content"] and "redacted_because" in event.get("unsigned", {})

    # each redacts their own message; the other server strips it
    for author, reader in ((owner, visitor), (visitor, owner)):
        event_id = await send_text(author, room_id, f"oops from {author.user_id}")
        await wait_event(reader, room_id, event_id)
        resp = await author.put(f"{rooms}/redact/{q(event_id)}/{unique('redact')}",
                                {"reason": "typo"})
        assert resp.code == 200, resp.body
        redaction_id = resp.body["event_id"]
        event = await wait_event(reader, room_id, event_id, redacted)
        assert event["unsigned"]["redacted_because"]["event_id"] == redaction_id

    # the room owner (power 100) redacts the remote user's message
    event_id = await send_text(visitor, room_id, "spam")
    await wait_event(owner, room_id, event_id)
    resp = await owner.put(f"{rooms}/redact/{q(event_id)}/{unique('redact')}", {})
    assert resp.code == 200, resp.body
    await wait_event(visitor, room_id, event_id, redacted)

    # the remote user (power 0) cannot redact the owner's message
    event_id = await send_text(owner, room_id, "keep me")
    await wait_event(visitor, room_id, event_id)
    resp = await visitor.put(f"{rooms}/redact/{q(event_id)}/{unique('redact')}", {})
    assert resp.code == 403, resp.body

    await assert_same_state(owner, visitor, room_id)


@pytest_twisted.ensureDeferred
async def test_display_name_changes_reach_the_other_server(sides: tuple[Side, Side]) -> None:
    host, guest = sides
    owner, visitor, room_id = await start_shared_room(host, guest)
    assert visitor.user_id
    resp = await visitor.put(f"/_matrix/client/v3/profile/{q(visitor.user_id)}/displayname",
                             {"displayname": "Renamed Visitor"})
    assert resp.code == 200, resp.body

    async def renamed() -> bool:
        resp = await owner.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/"
                               f"{q(visitor.user_id or '')}")
        return resp.code == 200 and resp.body.get("displayname") == "Renamed Visitor"
    await eventually(renamed, "the visitor's new display name in the room")

    profile = await owner.get(f"/_matrix/client/v3/profile/{q(visitor.user_id)}")
    assert profile.code == 200 and profile.body.get("displayname") == "Renamed Visitor"
    await assert_same_state(owner, visitor, room_id)
