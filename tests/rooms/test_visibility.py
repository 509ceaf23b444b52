"""History visibility and guest access: who sees which events of a room."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.visibility import (
    Visibility,
    VisibilityAtEvent,
    can_guest_join,
    can_peek,
    effective_history_visibility,
    event_visibility,
    filter_events_for_client,
    guest_access_allows_join,
    is_event_visible,
)

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
RV = KNOWN_ROOM_VERSIONS["10"]
_ids = itertools.count(1)


def make(etype: str, sender: str, content: dict[str, Any],
         state_key: str | None = None) -> Event:
    n = next(_ids)
    js: dict[str, Any] = {"type": etype, "sender": sender, "content": content,
                          "room_id": "!r:a.test", "depth": n, "prev_events": [],
                          "auth_events": [], "origin_server_ts": n}
    if state_key is not None:
        js["state_key"] = state_key
    return Event(f"$e{n}", RV, js)


def message(sender: str = ALICE, body: str = "hi") -> Event:
    return make("m.room.message", sender, {"msgtype": "m.text", "body": body})


def hv_event(value: str) -> Event:
    return make("m.room.history_visibility", ALICE, {"history_visibility": value}, "")


def member(target: str, membership: str, sender: str | None = None) -> Event:
    return make("m.room.member", sender or target, {"membership": membership}, target)


class Timeline:
    """A linear room: each event is recorded with the state before it."""

    def __init__(self, history_visibility: str | None = "shared") -> None:
        self.state: dict[tuple[str, str], Event] = {}
        self.events: list[tuple[Event, dict[tuple[str, str], Event]]] = []
        self.add(make("m.room.create", ALICE, {"room_version": "10"}, ""))
        self.add(member(ALICE, "join"))
        if history_visibility is not None:
            self.add(hv_event(history_visibility))

    def add(self, event: Event) -> Event:
        self.events.append((event, dict(self.state)))
        if event.state_key is not None:
            self.state[event.state_pair()] = event
        return event

    def say(self, body: str, sender: str = ALICE) -> Event:
        return self.add(message(sender, body))

    def set_member(self, user: str, membership: str, sender: str | None = None) -> Event:
        return self.add(member(user, membership, sender))

    def set_visibility(self, value: str) -> Event:
        return self.add(hv_event(value))

    def seen_by(self, user: str, *, joined_after: bool) -> list[str]:
        """Bodies (or type/membership) of the events ``user`` sees, oldest first."""
        pairs = [(e, VisibilityAtEvent.from_state_before(user, e, before))
                 for e, before in self.events]
        out = filter_events_for_client(user, pairs, joined_after_events=joined_after)
        return [_label(e) for e in out]


def _label(e: Event) -> str:
    if e.type == "m.room.message":
        return str(e.content["body"])
    if e.type == "m.room.member":
        return f"{e.state_key}={e.membership}"
    if e.type == "m.room.history_visibility":
        return f"hv={e.content.get('history_visibility')}"
    return e.type


# -- the rules, one (visibility, membership at the event, joined later) at a time

@pytest.mark.parametrize("hv,membership,joined_later,visible", [
    # world_readable: everyone, whatever their membership, even after leaving
    ("world_readable", None, False, True),
    ("world_readable", "join", False, True),
    ("world_readable", "invite", False, True),
    ("world_readable", "leave", False, True),
    ("world_readable", "ban", False, True),
    ("world_readable", "knock", False, True),
    # shared: members at the event, and anyone who joined after it
    ("shared", "join", False, True),
    ("shared", "join", True, True),
    ("shared", None, True, True),
    ("shared", None, False, False),
    ("shared", "invite", True, True),
    ("shared", "invite", False, False),
    ("shared", "leave", True, True),
    ("shared", "leave", False, False),
    ("shared", "ban", False, False),
    ("shared", "knock", False, False),
    # invited: members and invitees at the event
    ("invited", "join", False, True),
    ("invited", "invite", False, True),
    ("invited", "invite", True, True),
    ("invited", None, True, False),
    ("invited", "leave", True, False),
    ("invited", "ban", False, False),
    ("invited", "knock", True, False),
    # joined: members at the event only
    ("joined", "join", False, True),
    ("joined", "invite", True, False),
    ("joined", None, True, False),
    ("joined", "leave", True, False),
    ("joined", "ban", True, False),
    # no history_visibility event, or an unknown value, is "shared"
    (None, None, True, True),
    (None, None, False, False),
    (None, "join", False, True),
    ("bogus", None, True, True),
    ("bogus", "invite", False, False),
    ("Joined", None, True, True),
    ("", None, True, True),
])
def test_message_visibility(hv: str | None, membership: str | None, joined_later: bool,
                            visible: bool) -> None:
    at = VisibilityAtEvent(history_visibility=hv, membership=membership)
    assert is_event_visible(BOB, message(), at, joined_later=joined_later) is visible


@pytest.mark.parametrize("value,expected", [
    ("world_readable", "world_readable"), ("shared", "shared"), ("invited", "invited"),
    ("joined", "joined"), (None, "shared"), ("nonsense", "shared"), (3, "shared"),
])
def test_effective_history_visibility(value: Any, expected: str) -> None:
    assert effective_history_visibility(value) == expected


# -- m.room.history_visibility events: before or after

@pytest.mark.parametrize("before,after,membership,joined_later,visible", [
    # a non-member sees a change to or from world_readable
    ("world_readable", "joined", None, False, True),
    ("joined", "world_readable", None, False, True),
    # ... but not one between two restricted values
    ("joined", "invited", None, True, False),
    ("shared", "joined", None, False, False),
    # someone who joined later sees the change away from shared
    ("shared", "joined", None, True, True),
    ("joined", "shared", None, True, True),
    # an invitee who never joined sees a change to or from invited
    ("shared", "invited", "invite", False, True),
    ("invited", "joined", "invite", False, True),
    # no previous event counts as shared
    (None, "joined", None, True, True),
    (None, "joined", None, False, False),
])
def test_history_visibility_event_uses_before_or_after(
        before: str | None, after: str, membership: str | None, joined_later: bool,
        visible: bool) -> None:
    at = VisibilityAtEvent(history_visibility=after, membership=membership,
                           prev_history_visibility=before)
    assert is_event_visible(BOB, hv_event(after), at, joined_later=joined_later) is visible


def test_prev_history_visibility_is_ignored_for_other_events() -> None:
    at = VisibilityAtEvent(history_visibility="joined", membership=None,
                           prev_history_visibility="world_readable")
    assert not is_event_visible(BOB, message(), at, joined_later=True)


# -- the user's own membership events: before or after

@pytest.mark.parametrize("hv,before,after,joined_later,visible", [
    ("joined", None, "join", False, True),       # their own join
    ("joined", "invite", "join", False, True),
    ("joined", "join", "leave", False, True),    # leaving after being joined
    ("joined", "join", "ban", False, True),      # being banned while joined
    ("joined", "invite", "leave", False, True),  # rejecting an invite (as Synapse)
    ("joined", None, "invite", False, False),    # an invite under "joined"
    ("invited", None, "invite", False, True),
    ("invited", "invite", "leave", False, True),
    ("joined", "leave", "ban", False, False),    # banned after leaving
    ("joined", None, "knock", False, False),
    ("shared", None, "knock", True, True),
    ("shared", "leave", "ban", False, False),
])
def test_own_membership_event_uses_before_or_after(
        hv: str, before: str | None, after: str, joined_later: bool, visible: bool) -> None:
    at = VisibilityAtEvent(history_visibility=hv, membership=after, prev_membership=before)
    event = member(BOB, after, sender=ALICE if after in ("ban", "invite") else BOB)
    assert is_event_visible(BOB, event, at, joined_later=joined_later) is visible


def test_someone_elses_membership_event_uses_only_the_state_after() -> None:
    # prev_membership is about the reader's own member events only
    at = VisibilityAtEvent(history_visibility="joined", membership="leave",
                           prev_membership="join")
    assert not is_event_visible(BOB, member("@carol:c.test", "join"), at, joined_later=False)


# -- whole timelines: the leave/ban cutoff, rejoining, order

# A room's first events come before its m.room.history_visibility event, so they
# are "shared": anyone who joins later sees them (Synapse's rooms behave so too).
CREATION_BEFORE_HV = ["m.room.create", f"{ALICE}=join"]

def test_joined_visibility_shows_only_the_time_bob_was_joined() -> None:
    tl = Timeline("joined")
    tl.say("before")
    tl.set_member(BOB, "invite", sender=ALICE)
    tl.say("invited")
    tl.set_member(BOB, "join")
    tl.say("during")
    tl.set_member(BOB, "leave")
    tl.say("after")
    assert tl.seen_by(BOB, joined_after=False) == [
        *CREATION_BEFORE_HV, "hv=joined", f"{BOB}=join", "during", f"{BOB}=leave"]


def test_invited_visibility_starts_at_the_invite() -> None:
    tl = Timeline("invited")
    tl.say("before")
    tl.set_member(BOB, "invite", sender=ALICE)
    tl.say("invited")
    tl.set_member(BOB, "join")
    tl.say("during")
    tl.set_member(BOB, "ban", sender=ALICE)
    tl.say("after")
    assert tl.seen_by(BOB, joined_after=False) == [
        *CREATION_BEFORE_HV, "hv=invited",
        f"{BOB}=invite", "invited", f"{BOB}=join", "during", f"{BOB}=ban"]


def test_shared_history_is_seen_up_to_the_leave() -> None:
    tl = Timeline("shared")
    tl.say("before")
    tl.set_member(BOB, "join")
    tl.say("during")
    tl.set_member(BOB, "leave")
    tl.say("after")
    assert tl.seen_by(BOB, joined_after=False) == [
        "m.room.create", f"{ALICE}=join", "hv=shared", "before",
        f"{BOB}=join", "during", f"{BOB}=leave"]


def test_shared_history_is_cut_off_at_a_ban() -> None:
    tl = Timeline("shared")
    tl.set_member(BOB, "join")
    tl.say("during")
    tl.set_member(BOB, "ban", sender=ALICE)
    tl.say("after ban")
    assert "after ban" not in tl.seen_by(BOB, joined_after=False)
    assert "during" in tl.seen_by(BOB, joined_after=False)


def test_rejoining_a_shared_room_reveals_the_gap() -> None:
    tl = Timeline("shared")
    tl.set_member(BOB, "join")
    tl.set_member(BOB, "leave")
    tl.say("while away")
    tl.set_member(BOB, "join")
    assert "while away" in tl.seen_by(BOB, joined_after=True)


def test_rejoining_a_joined_room_does_not_reveal_the_gap() -> None:
    tl = Timeline("joined")
    tl.set_member(BOB, "join")
    tl.set_member(BOB, "leave")
    tl.say("while away")
    tl.set_member(BOB, "join")
    tl.say("back")
    assert tl.seen_by(BOB, joined_after=True) == [
        *CREATION_BEFORE_HV, "hv=joined", f"{BOB}=join", f"{BOB}=leave", f"{BOB}=join", "back"]


def test_shared_history_before_a_later_join_needs_the_caller_to_say_so() -> None:
    # a page of history from before Bob ever joined: only the caller knows he did
    tl = Timeline("shared")
    tl.say("old")
    assert tl.seen_by(BOB, joined_after=True)[-1] == "old"
    assert tl.seen_by(BOB, joined_after=False) == []


def test_world_readable_events_stay_visible_after_leaving() -> None:
    tl = Timeline("world_readable")
    tl.set_member(BOB, "join")
    tl.set_member(BOB, "leave")
    tl.say("after")
    assert "after" in tl.seen_by(BOB, joined_after=False)
    assert "after" in tl.seen_by("@stranger:x.test", joined_after=False)


def test_visibility_changes_apply_from_the_change_onwards() -> None:
    tl = Timeline("world_readable")
    tl.say("public")
    tl.set_visibility("joined")
    tl.say("private")
    tl.set_visibility("world_readable")
    tl.say("public again")
    # the creation events before the first history_visibility event are "shared"
    assert tl.seen_by("@stranger:x.test", joined_after=False) == [
        "hv=world_readable", "public",
        "hv=joined", "hv=world_readable", "public again"]


def test_sender_sees_own_messages_through_their_membership() -> None:
    tl = Timeline("joined")
    tl.set_member(BOB, "join")
    tl.say("mine", sender=BOB)
    assert "mine" in tl.seen_by(BOB, joined_after=False)


def test_filter_keeps_newest_first_order() -> None:
    tl = Timeline("shared")
    tl.say("old")
    tl.set_member(BOB, "join")
    tl.say("new")
    tl.set_member(BOB, "leave")
    tl.say("gone")
    pairs = [(e, VisibilityAtEvent.from_state_before(BOB, e, before))
             for e, before in reversed(tl.events)]
    out = filter_events_for_client(BOB, pairs, joined_after_events=False, newest_first=True)
    assert [_label(e) for e in out] == [
        f"{BOB}=leave", "new", f"{BOB}=join", "old", "hv=shared", f"{ALICE}=join",
        "m.room.create"]


def test_filter_of_nothing_is_nothing() -> None:
    assert filter_events_for_client(BOB, [], joined_after_events=True) == []


# -- building the per-event context from state

def test_state_before_and_state_after_agree() -> None:
    tl = Timeline("shared")
    tl.set_member(BOB, "invite", sender=ALICE)
    tl.set_visibility("joined")
    tl.set_member(BOB, "join")
    tl.say("x")
    state_after: dict[tuple[str, str], Event] = {}
    for event, before in tl.events:
        replaced = before.get(event.state_pair()) if event.state_key is not None else None
        if event.state_key is not None:
            state_after[event.state_pair()] = event
        assert (VisibilityAtEvent.from_state_after(BOB, event, state_after, replaced)
                == VisibilityAtEvent.from_state_before(BOB, event, before))


def test_context_from_state_before_reads_the_change() -> None:
    before = {("m.room.history_visibility", ""): hv_event("shared"),
              ("m.room.member", BOB): member(BOB, "invite", sender=ALICE)}
    assert VisibilityAtEvent.from_state_before(BOB, hv_event("joined"), before) == \
        VisibilityAtEvent("joined", "invite", prev_history_visibility="shared")
    assert VisibilityAtEvent.from_state_before(BOB, member(BOB, "join"), before) == \
        VisibilityAtEvent("shared", "join", prev_membership="invite")
    assert VisibilityAtEvent.from_state_before(BOB, message(), before) == \
        VisibilityAtEvent("shared", "invite")


# -- erased senders

def test_erased_sender_is_redacted_for_users_not_joined_at_the_event() -> None:
    at = VisibilityAtEvent(history_visibility="world_readable", membership=None)
    assert event_visibility(BOB, message(), at, joined_later=False,
                            sender_erased=True) is Visibility.REDACTED
    joined = VisibilityAtEvent(history_visibility="world_readable", membership="join")
    assert event_visibility(BOB, message(), joined, joined_later=False,
                            sender_erased=True) is Visibility.VISIBLE


def test_erased_sender_stays_hidden_when_not_visible() -> None:
    at = VisibilityAtEvent(history_visibility="joined", membership=None)
    assert event_visibility(BOB, message(), at, joined_later=True,
                            sender_erased=True) is Visibility.HIDDEN


def test_filter_returns_erased_senders_events_redacted() -> None:
    tl = Timeline("shared")
    tl.say("secret", sender="@erased:e.test")
    tl.set_member(BOB, "join")
    tl.say("later", sender="@erased:e.test")
    pairs = [(e, VisibilityAtEvent.from_state_before(BOB, e, before))
             for e, before in tl.events]
    out = filter_events_for_client(BOB, pairs, joined_after_events=True,
                                   erased_senders={"@erased:e.test"})
    by_sender = [e for e in out if e.sender == "@erased:e.test"]
    assert [e.content for e in by_sender] == [{}, {"msgtype": "m.text", "body": "later"}]
    assert by_sender[0].event_id == tl.events[3][0].event_id


# -- guests

@pytest.mark.parametrize("content,allowed", [
    ({"guest_access": "can_join"}, True),
    ({"guest_access": "forbidden"}, False),
    ({"guest_access": "CAN_JOIN"}, False),
    ({}, False),
    (None, False),
])
def test_guest_access_content(content: dict[str, Any] | None, allowed: bool) -> None:
    assert guest_access_allows_join(content) is allowed


def test_guests_join_only_rooms_that_say_can_join() -> None:
    assert not can_guest_join({})
    ga = make("m.room.guest_access", ALICE, {"guest_access": "can_join"}, "")
    assert can_guest_join({("m.room.guest_access", ""): ga})
    ga = make("m.room.guest_access", ALICE, {"guest_access": "forbidden"}, "")
    assert not can_guest_join({("m.room.guest_access", ""): ga})


@pytest.mark.parametrize("hv,peekable", [
    ("world_readable", True), ("shared", False), ("invited", False), ("joined", False),
    (None, False), ("bogus", False),
])
def test_only_world_readable_rooms_can_be_peeked(hv: str | None, peekable: bool) -> None:
    assert can_peek(hv) is peekable
