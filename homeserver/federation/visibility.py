"""What another server may read of a room's events (federation reads).

``/event``, ``/backfill`` and ``/get_missing_events`` hand out events to the
server that asks; this decides, per event, whether it gets the event in full
or redacted, by the rules in ``rooms/visibility.py`` (``server_may_see``):
the history visibility in the state after each event, and the memberships
there of the asking server's users.

The state is read in at most two batches for the whole answer, never per
event: first the ``m.room.history_visibility`` at every event; then, only
for the events whose visibility makes memberships matter (``invited``,
``joined``), the member state of the server's users. Those users are taken
from the room's membership table (every user who has a membership in the
room now): a user whose member event a state reset dropped from the room's
state is not looked at, which can only redact more, never less.

The events of a user who deactivated with ``erase`` go out redacted, to
every server, as Synapse's do.

``/state``, ``/state_ids`` and ``/event_auth`` are not filtered, as on
Synapse: a server that may read the room needs the state and auth events
as they are to check anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.events.model import Event
from homeserver.rooms.visibility import (
    HISTORY_VISIBILITY_KEY,
    MEMBER_TYPE,
    ServerVisibilityAtEvent,
    filter_events_for_server,
    history_visibility_of,
    needs_server_memberships,
    redacted_copy,
)
from homeserver.storage.events import EventStore
from homeserver.storage.users import UserStore


class ServerEventFilter:
    """Applies history visibility to the events another server reads."""

    def __init__(self, events: EventStore, users: UserStore) -> None:
        self.events = events
        self.users = users

    async def filter(self, server_name: str, memberships: Mapping[str, str],
                     events: Sequence[Event]) -> list[Event]:
        """``events`` (of one room) as ``server_name`` may have them, in the
        same order: in full or redacted.

        ``memberships``: the latest membership of each of the server's users
        in the room (``RoomStore.get_memberships_of_server``).
        """
        if not events:
            return []
        in_room = "join" in memberships.values()
        hv_ids = await self.events.get_state_at_events(
            [e.event_id for e in events], [HISTORY_VISIBILITY_KEY])
        hv_events = await self.events.get_events(
            list({i for state in hv_ids.values() for i in state.values()}))
        states: dict[str, dict[tuple[str, str], Event]] = {
            eid: {key: hv_events[i] for key, i in state.items() if i in hv_events}
            for eid, state in hv_ids.items()}

        restricted = [e.event_id for e in events if needs_server_memberships(
            history_visibility_of(states.get(e.event_id, {}).get(HISTORY_VISIBILITY_KEY)),
            in_room=in_room)]
        if restricted and memberships:
            member_ids = await self.events.get_state_at_events(
                restricted, [(MEMBER_TYPE, user_id) for user_id in memberships])
            member_events = await self.events.get_events(
                list({i for state in member_ids.values() for i in state.values()}))
            for eid, state in member_ids.items():
                states.setdefault(eid, {}).update(
                    (key, member_events[i]) for key, i in state.items() if i in member_events)

        shown = filter_events_for_server(
            [(e, ServerVisibilityAtEvent.from_state_after(server_name,
                                                          states.get(e.event_id, {})))
             for e in events], in_room=in_room)
        # the events of users who asked to be erased go out redacted, to
        # every server (Synapse's filter_out_erased_senders)
        erased = await self.users.get_erased(e.sender for e in shown)
        return [redacted_copy(e) if e.sender in erased else e for e in shown]
