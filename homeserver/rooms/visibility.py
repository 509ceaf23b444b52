"""Which room events a user may see (history visibility), and guest access.

Pure: callers load the state and pass plain values in; nothing here does I/O.

The rules (client-server API, "Room History Visibility", server behaviour)
are applied to the state of the room *at* each event, meaning the state
*after* it (what storage keeps as an event's snapshot). For an event E, with
``hv`` the ``m.room.history_visibility`` in force at E and ``m`` the user's
membership at E:

1. ``hv`` is ``world_readable``: visible;
2. ``m`` is ``join``: visible;
3. ``hv`` is ``shared`` and the user joined the room at some point after E:
   visible;
4. ``hv`` is ``invited`` and ``m`` is ``invite``: visible;
5. otherwise hidden.

A missing ``m.room.history_visibility`` event, or a value the spec does not
define, means ``shared``. A user who left or was banned has membership
``leave``/``ban`` at every later event, so rules 2 and 4 stop applying, and
rule 3 does too unless they join again: that is the spec's "no events
received after they left" cutoff. ``world_readable`` events stay visible to
everyone, members or not.

Two exceptions look at the state *before* the event as well:

- an ``m.room.history_visibility`` event is visible if either the value
  before it or its own value would allow it (so a change from
  ``world_readable`` to ``joined``, or back, is seen by the same people who
  could see the room on either side of it);
- the user's own ``m.room.member`` event is visible if either their
  membership before or after it would allow it (they always see their own
  join, and their leave after having been joined).

Where we differ from Synapse (``synapse/visibility.py``), and why:

- Synapse picks the *less restrictive* of the two values by a fixed order
  (``world_readable`` < ``shared`` < ``invited`` < ``joined``; ``join`` <
  ``invite`` < ``knock`` < ``leave`` < ``ban``) instead of trying both. The
  two agree except where ``invited`` admits someone ``shared`` does not (an
  invitee who never joined): we follow the spec's "before *or* after".
- Synapse approximates rule 3 with "is the user peeking" (not joined now);
  a user who joined and left then sees every ``shared`` event, and the
  leave cutoff is left to the caller's pagination range. We apply rule 3
  as written, from the memberships in the events being filtered plus one
  fact from the caller (was the user joined at some point after the last of
  them), so the cutoff holds here too.
- Like Synapse, a user always sees their own leave that follows an invite
  (an invite rejection, or an invite withdrawn), even under ``joined``
  visibility: otherwise a client never learns the invite is gone.
- Like Synapse, there is no "senders see their own events" rule: a sender
  was joined when they sent, so rule 2 already covers it.
- Like Synapse, if the sender has asked to be erased, a user who was not
  joined at the event sees only its redacted form.

Ignored users, retention and soft-failed events are the caller's business.

Other servers (federation ``/event``, ``/backfill``, ``/get_missing_events``)
are judged as a whole: the spec treats a server as having "the same
visibility as the most permissive of its users", and Synapse
(``filter_events_for_server``) applies that as: at event E, with ``hv`` in
the state after E, the server sees E in full if ``hv`` is ``world_readable``
or ``shared``, or if one of its users is ``join`` at E, or ``invite`` at E
when ``hv`` is ``invited``. Events it may not see go out *redacted*, not
dropped, so its copy of the DAG has no holes (the redacted form keeps what
the auth rules and state resolution read). Two points where we are stricter
than Synapse, which only asks this of servers with a user in the room:

- ``shared`` counts only for a server with a user joined now (rule 3 with
  "joined later" meaning "has a user joined now"); a server that may read
  the room only because it is ``world_readable`` sees its ``shared`` past
  redacted, as a local non-member would not see it at all;
- the two before/after exceptions are not applied: they only ever concern
  state events, whose redacted forms keep the fields that matter
  (``history_visibility``, ``membership``).

Erased users (deactivated with ``erase``, ``UserStore.get_erased``): other
servers get their events redacted (``federation/visibility.py``).

Guest access (client-server API, "Guest Access"): a guest may join only a
room whose ``m.room.guest_access`` is ``can_join`` (the join rules still
apply: that is the auth rules' job); anyone, guests included, may peek into a
room whose history is ``world_readable``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from homeserver.events.model import Event
from homeserver.events.redaction import redact

StateMap = Mapping[tuple[str, str], Event]

WORLD_READABLE: Final = "world_readable"
SHARED: Final = "shared"
INVITED: Final = "invited"
JOINED: Final = "joined"
HISTORY_VISIBILITIES: Final = frozenset({WORLD_READABLE, SHARED, INVITED, JOINED})

HISTORY_VISIBILITY_TYPE: Final = "m.room.history_visibility"
GUEST_ACCESS_TYPE: Final = "m.room.guest_access"
MEMBER_TYPE: Final = "m.room.member"
HISTORY_VISIBILITY_KEY: Final = (HISTORY_VISIBILITY_TYPE, "")
GUEST_ACCESS_KEY: Final = (GUEST_ACCESS_TYPE, "")


def effective_history_visibility(value: object) -> str:
    """The visibility a ``history_visibility`` value means: unknown or missing is ``shared``."""
    return value if isinstance(value, str) and value in HISTORY_VISIBILITIES else SHARED


def history_visibility_of(event: Event | None) -> str | None:
    """The raw ``history_visibility`` of an ``m.room.history_visibility`` event, if any."""
    if event is None:
        return None
    value = event.content.get("history_visibility")
    return value if isinstance(value, str) else None


def history_visibility_from_state(state: StateMap) -> str:
    """The effective history visibility in ``state``."""
    return effective_history_visibility(history_visibility_of(state.get(HISTORY_VISIBILITY_KEY)))


def membership_from_state(state: StateMap, user_id: str) -> str | None:
    """``user_id``'s membership in ``state``, or None if they have no member event."""
    event = state.get((MEMBER_TYPE, user_id))
    return event.membership if event is not None else None


@dataclass(frozen=True)
class VisibilityAtEvent:
    """What the rules need to know about the room at one event, for one user.

    ``history_visibility`` and ``membership`` are from the state *after* the
    event (raw values; None when there is no such state event). The ``prev_``
    fields are from the state *before* it and are read only when the event is
    itself an ``m.room.history_visibility`` event, or the user's own
    ``m.room.member`` event; None means there was none.
    """

    history_visibility: str | None
    membership: str | None
    prev_history_visibility: str | None = None
    prev_membership: str | None = None

    @classmethod
    def from_state_after(cls, user_id: str, event: Event, state_after: StateMap,
                         replaced: Event | None = None) -> VisibilityAtEvent:
        """From the state after ``event`` and the state event it replaced, if any.

        ``replaced`` is the event that held ``event``'s (type, state_key)
        before it (what a client sees as ``unsigned.replaces_state``); it is
        only read for the two exceptions, so pass it when ``event`` is a
        history-visibility event or ``user_id``'s member event.
        """
        prev_hv: str | None = None
        prev_membership: str | None = None
        if replaced is not None:
            if event.type == HISTORY_VISIBILITY_TYPE and event.state_key == "":
                prev_hv = history_visibility_of(replaced)
            elif event.type == MEMBER_TYPE and event.state_key == user_id:
                prev_membership = replaced.membership
        return cls(
            history_visibility=history_visibility_of(state_after.get(HISTORY_VISIBILITY_KEY)),
            membership=membership_from_state(state_after, user_id),
            prev_history_visibility=prev_hv,
            prev_membership=prev_membership,
        )

    @classmethod
    def from_state_before(cls, user_id: str, event: Event,
                          state_before: StateMap) -> VisibilityAtEvent:
        """From the state before ``event`` (the state after is that plus ``event``)."""
        hv = history_visibility_of(state_before.get(HISTORY_VISIBILITY_KEY))
        membership = membership_from_state(state_before, user_id)
        if event.type == HISTORY_VISIBILITY_TYPE and event.state_key == "":
            return cls(history_visibility_of(event), membership, prev_history_visibility=hv)
        if event.type == MEMBER_TYPE and event.state_key == user_id:
            return cls(hv, event.membership, prev_membership=membership)
        return cls(hv, membership)


class Visibility(Enum):
    """How much of an event a user may see."""

    HIDDEN = "hidden"
    VISIBLE = "visible"
    # visible, but only in its redacted form (the sender asked to be erased)
    REDACTED = "redacted"


def _allowed(history_visibility: str, membership: str | None, joined_later: bool) -> bool:
    """The spec's five rules for one (visibility, membership) pair."""
    if history_visibility == WORLD_READABLE:
        return True
    if membership == "join":
        return True
    if history_visibility == SHARED and joined_later:
        return True
    return history_visibility == INVITED and membership == "invite"


def event_visibility(user_id: str, event: Event, at: VisibilityAtEvent, *,
                     joined_later: bool, sender_erased: bool = False) -> Visibility:
    """How much of ``event`` ``user_id`` may see.

    ``joined_later``: the user's membership was ``join`` at some point after
    the event (always true when they are joined now). ``sender_erased``: the
    sender asked for their messages to be erased (GDPR): users who were not
    joined at the event get the redacted form.
    """
    hvs = [effective_history_visibility(at.history_visibility)]
    memberships = [at.membership]
    if event.type == HISTORY_VISIBILITY_TYPE and event.state_key == "":
        hvs.append(effective_history_visibility(at.prev_history_visibility))
    own_member_event = event.type == MEMBER_TYPE and event.state_key == user_id
    if own_member_event:
        memberships.append(at.prev_membership)

    allowed = any(_allowed(hv, m, joined_later) for hv in hvs for m in memberships)
    if (not allowed and own_member_event and at.membership == "leave"
            and at.prev_membership == "invite"):
        # the user must see their invite go away (see the module docstring)
        allowed = True
    if not allowed:
        return Visibility.HIDDEN
    if sender_erased and "join" not in memberships:
        return Visibility.REDACTED
    return Visibility.VISIBLE


def is_event_visible(user_id: str, event: Event, at: VisibilityAtEvent, *,
                     joined_later: bool) -> bool:
    """Whether ``user_id`` may see ``event`` at all (see ``event_visibility``)."""
    return event_visibility(user_id, event, at, joined_later=joined_later) is not Visibility.HIDDEN


def redacted_copy(event: Event) -> Event:
    """``event`` in its redacted form, under the same event ID."""
    return Event(event.event_id, event.room_version, redact(event.json, event.room_version),
                 event.rejected_reason)


def filter_events_for_client(
    user_id: str,
    events: Sequence[tuple[Event, VisibilityAtEvent]],
    *,
    joined_after_events: bool,
    newest_first: bool = False,
    erased_senders: Collection[str] = frozenset(),
) -> list[Event]:
    """The events of one room ``user_id`` may see, in the order given.

    ``events`` pairs each event with the room's state at it, in timeline order
    (oldest first, or newest first with ``newest_first``, as a backwards
    ``/messages`` page reads). ``joined_after_events``: the user's membership
    was ``join`` at some point after the newest of ``events`` -- true when
    they are joined now; for a user who has left, true when their last join
    comes after the newest event. Within ``events`` the function finds later
    joins itself. Events whose sender is in ``erased_senders`` come back
    redacted to users who were not joined at them.
    """
    # walk newest to oldest so "joined at some point after this event" is known
    order = range(len(events)) if newest_first else range(len(events) - 1, -1, -1)
    joined_later = joined_after_events
    kept: list[Event | None] = [None] * len(events)
    for i in order:
        event, at = events[i]
        seen = event_visibility(user_id, event, at, joined_later=joined_later,
                                sender_erased=event.sender in erased_senders)
        if seen is Visibility.VISIBLE:
            kept[i] = event
        elif seen is Visibility.REDACTED:
            kept[i] = redacted_copy(event)
        if at.membership == "join":
            joined_later = True
    return [e for e in kept if e is not None]


@dataclass(frozen=True)
class ServerVisibilityAtEvent:
    """What the rules need to know about the room at one event, for one server.

    ``history_visibility``: the raw value in the state after the event (None
    when there is none, or the event has no state here, as an outlier).
    ``memberships``: the memberships in that state of the server's users who
    have a member event there.
    """

    history_visibility: str | None
    memberships: tuple[str, ...] = ()

    @classmethod
    def from_state_after(cls, server_name: str, state_after: StateMap) -> ServerVisibilityAtEvent:
        """From (part of) the state after the event; member events of other
        servers' users in it are ignored."""
        return cls(
            history_visibility=history_visibility_of(state_after.get(HISTORY_VISIBILITY_KEY)),
            memberships=tuple(
                event.membership or "" for (etype, skey), event in sorted(state_after.items())
                if etype == MEMBER_TYPE and _server_of(skey) == server_name),
        )


def _server_of(user_id: str) -> str:
    # a localpart never holds ":", so the server name is all after the first
    return user_id.partition(":")[2]


def needs_server_memberships(history_visibility: str | None, *, in_room: bool) -> bool:
    """Whether a server's memberships at an event with this visibility can
    change what it sees (callers load them only then): not under
    ``world_readable``, nor under ``shared`` for a server in the room."""
    hv = effective_history_visibility(history_visibility)
    return not (hv == WORLD_READABLE or (hv == SHARED and in_room))


def server_may_see(at: ServerVisibilityAtEvent, *, in_room: bool) -> bool:
    """Whether a server may see an event in full (see the module docstring).

    ``in_room``: the server has a user joined to the room now.
    """
    hv = effective_history_visibility(at.history_visibility)
    # membership None: what the server sees with none of its users at the event
    return any(_allowed(hv, m, joined_later=in_room) for m in (None, *at.memberships))


def filter_events_for_server(events: Sequence[tuple[Event, ServerVisibilityAtEvent]], *,
                             in_room: bool) -> list[Event]:
    """``events`` as a server may have them, in the order given: each in
    full, or redacted where the server may not see it (never dropped)."""
    return [event if server_may_see(at, in_room=in_room) else redacted_copy(event)
            for event, at in events]


def guest_access_allows_join(content: Mapping[str, Any] | None) -> bool:
    """Whether ``m.room.guest_access`` content lets guests join (``can_join``)."""
    return content is not None and content.get("guest_access") == "can_join"


def can_guest_join(state: StateMap) -> bool:
    """Whether guests may join the room with ``state`` (join rules apart)."""
    event = state.get(GUEST_ACCESS_KEY)
    return guest_access_allows_join(event.content if event is not None else None)


def can_peek(history_visibility: str | None) -> bool:
    """Whether non-members (guests included) may read a room with this visibility."""
    return effective_history_visibility(history_visibility) == WORLD_READABLE
