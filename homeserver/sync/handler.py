"""The /sync response builder: what changed for a user between two tokens.

A response covers the global stream range (since, until]: ``until`` is the
stream's "persisted up to" position when the request is served (so no write
below it is still in flight), lowered when a device has more to-device
messages than one response carries: everything in the response stops at the
same position, and the next sync continues from there with no gap and no
duplicate.

An incremental sync asks the stream-indexed tables what changed in the range
(rooms with new events or receipts, account data, to-device messages,
presence, device lists; ``storage/sync.py``) and then reads only those rooms:
its cost follows what happened, not how many rooms the user is in. Typing
comes from memory (``edu/typing.py``). An initial sync (no ``since``) or a
``full_state`` one reads every room of the user.

Per joined room: the timeline is the newest ``limit`` events of the range
that the filter and history visibility let through, ``limited`` when there
were more, with ``prev_batch`` the pagination token just before them. The
state is the state at the start of the timeline: all of it for an initial
sync, a room the user newly joined, or ``full_state``; for an incremental
``limited`` timeline, the entries that differ from the state at ``since``;
otherwise nothing (every change is in the timeline). With lazy-loaded members,
member events are those of the timeline's senders.

Long-polling (``sync``): build; when the response is empty, wait on the
notifier (``sync/notifier.py``) until something is written for the user or
the timeout passes, then build again. The notifier counter is read before
building, so a write that lands while building still wakes the wait.

Unread notification counts are the user's rows of ``event_push_actions``
(the push rules' verdict, written when each event was persisted:
``storage/push_rules.py``) after the user's read receipt; the fast path
carries them forward with the same verdicts kept in memory
(``storage.push_rules.recent_actions``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.events.model import Event
from homeserver.http.request import Requester
from homeserver.http.resource import EncodedDict, encode_json
from homeserver.push.rules import client_ruleset
from homeserver.rooms.access import ReadAccess
from homeserver.rooms.client_format import client_event
from homeserver.rooms.relations import relates_within
from homeserver.storage.e2e_keys import KeyCounts
from homeserver.storage.push_rules import PUSH_RULES_TYPE, recent_actions
from homeserver.storage.rooms import Membership, RoomInfo
from homeserver.storage.streams import ONLY_USER, PRESENCE
from homeserver.storage.sync import RoomMembership
from homeserver.sync.filter import apply_event_fields, room_event_matches
from homeserver.sync.recent import rooms_of
from homeserver.sync.tokens import StreamToken, pagination_token, parse_sync_token

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.sync.filter import SyncFilter

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]

MEMBER = "m.room.member"
# the state an invitee or knocker sees of the room (the spec's recommendation)
STRIPPED_STATE_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name",
                        "m.room.avatar", "m.room.canonical_alias", "m.room.encryption",
                        "m.room.topic")
MAX_COUNTED_UNREAD = 1000
# rooms read at once in an initial sync
ROOM_CONCURRENCY = 8
# the longest a request may wait
MAX_TIMEOUT_MS = 10 * 60 * 1000
# ranges and timelines the fast path remembers (sync ranges in use at once)
FAST_MEMO_SIZE = 256
# the fixed parts of a fast-path response's JSON (SyncHandler._body's shape)
_FAST_BODY_START = b'{"next_batch":'
_FAST_ROOM_MIDDLE = (b'"state":{"events":[]},"account_data":{"events":[]},'
                     b'"ephemeral":{"events":[]},"unread_notifications":'
                     b'{"notification_count":')
_FAST_BODY_END = (b',"invite":{},"leave":{},"knock":{}},"presence":{"events":[]},'
                  b'"account_data":{"events":[]},"to_device":{"events":[]},'
                  b'"device_lists":{"changed":[],"left":[]},'
                  b'"device_one_time_keys_count":')
_NO_KEYS = KeyCounts({}, [])


@dataclass(frozen=True)
class SyncParams:
    since: str | None
    timeout_ms: int
    full_state: bool
    filter: "SyncFilter"
    # "online", "unavailable" or "offline" (None: online)
    set_presence: str | None


@dataclass
class _Changes:
    """What the whole response needs to know before building rooms."""

    typing: dict[str, list[str]]
    receipts_since: int | None
    room_account_data: dict[str, dict[str, dict[str, Any]]]
    device_changed: set[str]
    device_left_candidates: set[str]
    # the user joined a room in this range: they need its members' presence
    newly_joined: bool = False
    # rooms with receipts in the range (None: any room may have some)
    receipt_rooms: set[str] | None = None
    # read for every joined room at once (an initial sync): receipts by room
    # ID, (member counts, heroes) by room NID
    receipts: dict[str, dict[str, Any]] | None = None
    summaries: dict[int, tuple[dict[str, int], list[str]]] | None = None


def _stripped(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key, "content": event.content,
            "sender": event.sender}


def is_empty(body: dict[str, Any]) -> bool:
    """Whether a response carries nothing but its token."""
    rooms = body.get("rooms", {})
    if any(rooms.get(k) for k in ("join", "invite", "leave", "knock")):
        return False
    for key in ("presence", "account_data", "to_device"):
        if body.get(key, {}).get("events"):
            return False
    lists = body.get("device_lists", {})
    return not (lists.get("changed") or lists.get("left"))


class SyncHandler:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs
        self.stores = hs.stores
        # answer woken incremental syncs from memory when possible (``_fast``);
        # off only to check that both ways answer alike
        self.fast_path = True
        self.fast_answers = 0  # how many responses it gave (tests, metrics)
        # (since, until) -> (barrier scopes, plain events by room) and
        # (room, since, until) -> (filter, timeline section): shared work
        self._fast_memo: dict[tuple[int, int], tuple[
            list[tuple[str | None, str | None]], dict[str, list[tuple[int, Event]]],
            dict[str, frozenset[str]]]] = {}
        self._timeline_memo: dict[tuple[str, int, int], tuple[
            Any, tuple[list[dict[str, Any]], str, bytes] | None]] = {}
        # (user ID, filter ID) -> parsed stored filter (sync/filter.py)
        self.stored_filters: dict[tuple[str, int], SyncFilter] = {}

    def current_token(self) -> StreamToken:
        return StreamToken(self.hs.db.stream_tracker.persisted_upto,
                           self.hs.typing.current_position(), self.hs.epoch)

    def parse_since(self, text: str) -> StreamToken:
        return parse_sync_token(text, current=self.current_token(),
                                max_global=self.hs.db.stream_tracker.max_allocated)

    # -- long-polling -------------------------------------------------------

    async def sync(self, requester: Requester, params: SyncParams) -> dict[str, Any]:
        """The /sync response body (``next_batch`` included); waits up to
        ``params.timeout_ms`` for something new when there is nothing yet."""
        user_id = requester.user_id
        since = self.parse_since(params.since) if params.since is not None else None
        await self.hs.presence.user_syncing(user_id, params.set_presence)
        try:
            return await self._long_poll(requester, since, params)
        finally:
            self.hs.presence.sync_ended(user_id, params.set_presence)

    async def _long_poll(self, requester: Requester, since: StreamToken | None,
                         params: SyncParams) -> dict[str, Any]:
        user_id = requester.user_id
        timeout = min(max(params.timeout_ms, 0), MAX_TIMEOUT_MS)
        if since is None or params.full_state or timeout == 0:
            return await self._build(requester, since, params)
        counts = await self._key_counts(requester)
        deadline = self.hs.clock.seconds() + timeout / 1000
        while True:
            counter = self.hs.notifier.counter(user_id)
            if self._nothing_since(since):
                body = self._empty(since, counts)
            else:
                body = await self._build(requester, since, params)
                if not is_empty(body):
                    return body
            remaining = deadline - self.hs.clock.seconds()
            if remaining <= 0:
                return body
            woken = await self.hs.notifier.wait(
                user_id, counter, int(remaining * 1000),
                presence=not params.filter.presence.blocks_all())
            if not woken:
                return body

    def _nothing_since(self, since: StreamToken) -> bool:
        now = self.current_token()
        return now.global_pos == since.global_pos and now.typing_pos == since.typing_pos

    def _empty(self, token: StreamToken, counts: KeyCounts) -> dict[str, Any]:
        return self._body(token, {}, {}, {}, {}, [], [], [], set(), set(), counts)

    async def _key_counts(self, requester: Requester) -> KeyCounts:
        """The device's one-time key counts and unused fallback key types."""
        keys = self.hs.e2e_keys
        counts = keys.cached_counts(requester.user_id, requester.device_id)
        if counts is None:
            counts = await keys.key_counts(requester.user_id, requester.device_id)
        return counts

    @staticmethod
    def _body(token: StreamToken, join: dict[str, Any], invite: dict[str, Any],
              leave: dict[str, Any], knock: dict[str, Any], presence: list[dict[str, Any]],
              account_data: list[dict[str, Any]], to_device: list[dict[str, Any]],
              changed: set[str], left: set[str],
              counts: KeyCounts = _NO_KEYS) -> dict[str, Any]:
        return {
            "next_batch": str(token),
            "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
            "presence": {"events": presence},
            "account_data": {"events": account_data},
            "to_device": {"events": to_device},
            "device_lists": {"changed": sorted(changed), "left": sorted(left)},
            # signed_curve25519 always: older clients read a missing one as
            # "unknown" and never upload (Synapse does the same)
            "device_one_time_keys_count": {"signed_curve25519": 0, **counts.one_time},
            "device_unused_fallback_key_types": counts.unused_fallback,
        }

    # -- building -----------------------------------------------------------

    async def _build(self, requester: Requester, since: StreamToken | None,
                     params: SyncParams) -> dict[str, Any]:
        if since is not None and not params.full_state and self.fast_path:
            body = self._fast(requester.user_id, requester.device_id, since, params.filter)
            if body is not None:
                self.fast_answers += 1
                return body
        user_id = requester.user_id
        device_id = requester.device_id
        f = params.filter
        until = self.current_token()
        since_pos = since.global_pos if since is not None else 0

        typing = self.hs.typing.rooms_changed_since(since.typing_pos if since else 0)
        found = await self.stores.sync.get_changes(
            user_id, device_id, since_pos if since is not None else None, until.global_pos,
            extra_rooms=typing, all_rooms=params.full_state)
        until = replace(until, global_pos=found.until)
        end = found.until
        to_device = found.to_device
        if device_id is not None:
            # what is left to acknowledge (recent.py; a message written since
            # is a barrier in the next range, so dropping the mark is safe)
            if to_device:
                self.hs.recent.to_device_pending.add((user_id, device_id))
            else:
                self.hs.recent.to_device_pending.discard((user_id, device_id))
        global_data = found.global_account_data
        memberships = found.memberships
        changes = _Changes(
            typing=self.hs.typing.get_typing(
                [m.room_id for m in memberships if m.membership == "join"],
                since.typing_pos if since else 0),
            receipts_since=since_pos if since is not None else None,
            room_account_data=found.room_account_data,
            device_changed=set(found.device_lists_changed), device_left_candidates=set(),
            receipt_rooms=found.receipt_rooms)

        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        leave: dict[str, Any] = {}
        knock: dict[str, Any] = {}
        joined = [m for m in memberships if m.membership == "join" and f.room_allowed(m.room_id)]
        unread_from = await self._unread_positions(user_id, joined)
        if since is None and len(joined) > 1:
            # what every room needs, in one read each instead of one per room
            changes.receipts = await self.stores.receipts.get_receipt_events(
                [m.room_id for m in joined], None, end, user_id)
            changes.summaries = await self.stores.sync.get_summaries(
                [m.room_nid for m in joined], user_id)

        async def one_joined(m: RoomMembership) -> None:
            room = await self._joined_room(requester, m, since, end, f, params.full_state,
                                           changes, unread_from.get(m.room_id, 0))
            if room is not None:
                join[m.room_id] = room

        await self._gather([one_joined(m) for m in joined])

        for m in memberships:
            if not f.room_allowed(m.room_id) or m.membership == "join":
                continue
            is_new = since is None or m.stream_ordering > since_pos or params.full_state
            if m.membership == "invite" and is_new:
                if await self._invited_by_ignored(user_id, m.event_id):
                    continue
                invite[m.room_id] = {"invite_state": {
                    "events": await self._stripped_state(m.event_id)}}
            elif m.membership == "knock" and is_new:
                knock[m.room_id] = {"knock_state": {
                    "events": await self._stripped_state(m.event_id)}}
            elif m.membership in ("leave", "ban") and is_new:
                if since is None and not f.include_leave:
                    continue
                room = await self._left_room(requester, m, since, f, params.full_state,
                                             changes)
                if room is not None:
                    leave[m.room_id] = room

        presence: list[dict[str, Any]] = []
        if not f.presence.blocks_all():
            presence = await self.hs.presence.get_presence_events(
                user_id, since_pos if since is not None and not changes.newly_joined else None,
                end)
            presence = [p for p in presence if f.presence.matches(p["type"], p["sender"])]
        if (since is None or params.full_state) and PUSH_RULES_TYPE not in global_data:
            # a user who never changed a rule has the default ruleset, and
            # clients (Element) read it from here, as Synapse serves it
            global_data = dict(global_data)
            global_data[PUSH_RULES_TYPE] = {"global": client_ruleset(
                await self.stores.push_rules.get_ruleset(user_id))}
        account_data = [{"type": t, "content": c} for t, c in global_data.items()
                        if f.account_data.matches(t, user_id)]

        left: set[str] = set()
        if changes.device_left_candidates:
            still = await self.stores.rooms.get_room_mates(
                user_id, changes.device_left_candidates)
            left = changes.device_left_candidates - still - {user_id}
            changes.device_changed -= left
        return self._body(until, join, invite, leave, knock, presence, account_data,
                          to_device, changes.device_changed, left,
                          await self._key_counts(requester))

    @staticmethod
    async def _gather(coros: list[Any]) -> None:
        """Run ``coros`` a few at a time (the database pool is small)."""
        for start in range(0, len(coros), ROOM_CONCURRENCY):
            await defer.gatherResults(
                [defer.ensureDeferred(c) for c in coros[start:start + ROOM_CONCURRENCY]],
                consumeErrors=True)

    def _fast(self, user_id: str, device_id: str | None, since: StreamToken,
              f: "SyncFilter") -> dict[str, Any] | None:
        """The incremental response from memory (``sync/recent.py``), when
        all that happened since the token is plain messages from others in
        the user's rooms; None when the full builder must answer.

        It answers exactly as the full builder would: the timeline of each
        room with news (never limited: more than the filter's limit goes to
        the full builder, which adds the state), no state, no ephemeral
        events (any typing change or receipt goes to the full builder), and
        the unread counts carried forward from the last ones the full builder
        counted for the user and room.
        """
        if (f.lazy_load_members or f.event_format != "client" or f.unread_thread_notifications
                or f.timeline_limit == 0):
            return None
        if device_id is not None and (user_id, device_id) in self.hs.recent.to_device_pending:
            return None  # the full builder deletes what the device has acknowledged
        key_counts = self.hs.e2e_keys.cached_counts(user_id, device_id)
        if key_counts is None:
            return None  # the full builder reads them (and caches them)
        until = self.current_token()
        if until.typing_pos != since.typing_pos \
                and self.hs.typing.rooms_changed_since(since.typing_pos):
            return None
        recent = self.hs.recent
        key = (since.global_pos, until.global_pos)
        memo = self._fast_memo.get(key)
        if memo is None:
            found = recent.plain_events(*key)
            if found is None:
                return None
            # a range at or below "persisted up to" never changes: every
            # receiver woken by the same write shares this work
            by_room = rooms_of(found[0])
            memo = (found[1], by_room,
                    {r: frozenset(e.sender for _, e in evs) for r, evs in by_room.items()})
            if len(self._fast_memo) >= FAST_MEMO_SIZE:
                self._fast_memo.clear()
            self._fast_memo[key] = memo
        scopes, by_room, senders = memo
        if not self._out_of_reach(user_id, f, scopes):
            return None
        # events of ignored users are left out by the full builder
        # (rooms/ignored.py); an unknown list is loaded there too
        ignored = self.hs.room_reader.ignored.cached(user_id)
        if ignored is None or any(ignored & s for s in senders.values()):
            return None
        join: dict[str, Any] = {}
        encoded: list[bytes] = []
        unread: list[tuple[str, int, int]] = []
        for room_id, events in by_room.items():
            members = self.hs.notifier.cached_members(room_id)
            if members is None:
                return None
            if user_id not in members or not f.room_allowed(room_id):
                continue
            if user_id in senders[room_id]:
                return None  # the sender's own events carry its transaction IDs
            if relates_within(events):
                return None  # a parent with its children: the full builder bundles them
            counts = recent.unread(user_id, room_id)
            if counts is None:
                return None
            as_of, notifications, highlights = counts
            counted = [e for pos, e in events if pos > as_of]
            if as_of < since.global_pos:
                before = recent.plain_events(as_of, since.global_pos)
                if before is None or not self._out_of_reach(user_id, f, before[1]):
                    return None
                counted = [e for _, r, e in before[0] if r == room_id] + counted
            for event in counted:
                verdicts = recent_actions(event.event_id)
                if verdicts is None:
                    return None  # persisted before this process started
                notify, highlight = verdicts.get(user_id, (0, 0))
                notifications += notify
                highlights += highlight
            notifications = min(notifications, MAX_COUNTED_UNREAD)
            unread.append((room_id, notifications, highlights))
            timeline = self._fast_timeline(room_id, key, events, f)
            if timeline is None:
                return None
            if not timeline[0]:
                continue
            join[room_id] = {
                "timeline": {"events": timeline[0], "limited": False,
                             "prev_batch": timeline[1]},
                "state": {"events": []},
                "account_data": {"events": []},
                "ephemeral": {"events": []},
                "unread_notifications": {"notification_count": notifications,
                                         "highlight_count": highlights},
            }
            encoded.append(b"%s:{\"timeline\":{\"events\":%s},%s%d,\"highlight_count\":%d}}" % (
                encode_json(room_id), timeline[2], _FAST_ROOM_MIDDLE, notifications,
                highlights))
        for room_id, notifications, highlights in unread:
            recent.set_unread(user_id, room_id, until.global_pos, notifications, highlights)
        body = EncodedDict(self._body(until, join, {}, {}, {}, [], [], [], set(), set(),
                                      key_counts))
        # the same JSON encode_json would make of it, from the shared parts
        body.encoded = b"%s%s%s%s%s,\"device_unused_fallback_key_types\":%s}" % (
            _FAST_BODY_START, encode_json(str(until)),
            b',"rooms":{"join":{' + b",".join(encoded) + b"}", _FAST_BODY_END,
            encode_json(body["device_one_time_keys_count"]),
            encode_json(body["device_unused_fallback_key_types"]))
        return body

    def _fast_timeline(self, room_id: str, key: tuple[int, int],
                       events: list[tuple[int, Event]], f: "SyncFilter",
                       ) -> tuple[list[dict[str, Any]], str, bytes] | None:
        """The room's timeline section for the fast path, shared by every
        receiver with the same range and filter (None: over the limit): the
        events, prev_batch, and the JSON of both as the section's inside. The
        events are serialised once, so ``unsigned.age`` is as of the first."""
        memo_key = (room_id, *key)
        cached = self._timeline_memo.get(memo_key)
        if cached is not None and cached[0] is f:
            return cached[1]
        timeline: list[tuple[int, Event]] = []
        if f.timeline_room_allowed(room_id):
            timeline = [(pos, e) for pos, e in events if f.timeline.matches(e)]
        result: tuple[list[dict[str, Any]], str, bytes] | None = None
        if len(timeline) <= f.timeline_limit:
            now = self.hs.now_ms()
            out = [client_event(e, room_id, now) for _, e in timeline]
            if f.event_fields is not None:
                out = [apply_event_fields(e, f.event_fields) for e in out]
            prev_batch = pagination_token(timeline[0][0] - 1) if timeline else ""
            result = (out, prev_batch, encode_json(out) + b',"limited":false,"prev_batch":'
                      + encode_json(prev_batch))
        if len(self._timeline_memo) >= FAST_MEMO_SIZE:
            self._timeline_memo.clear()
        self._timeline_memo[memo_key] = (f, result)
        return result

    def _out_of_reach(self, user_id: str, f: "SyncFilter",
                      scopes: list[tuple[str | None, str | None]]) -> bool:
        """Whether none of these writes (``RecentActivity.plain_events``) can
        change the user's response: each concerns only someone else, a room
        the user is not joined to, or presence the filter drops."""
        for room_id, target in scopes:
            if room_id is None or target == user_id:
                return False
            if room_id == ONLY_USER:
                continue
            if room_id == PRESENCE:
                if f.presence.blocks_all():
                    continue
                return False
            members = self.hs.notifier.cached_members(room_id)
            if members is None or user_id in members:
                return False
        return True

    # -- one room -----------------------------------------------------------

    async def _joined_room(self, requester: Requester, m: RoomMembership,
                           since: StreamToken | None, end: int, f: "SyncFilter",
                           full_state: bool, changes: _Changes,
                           unread_from: int) -> dict[str, Any] | None:
        user_id = requester.user_id
        since_pos = since.global_pos if since is not None else None
        newly_joined = False
        if since_pos is not None and m.stream_ordering > since_pos:
            before = await self.stores.sync.get_memberships(user_id, since_pos,
                                                            room_nids=[m.room_nid])
            newly_joined = not before or before[0].membership != "join"
        info = RoomInfo(m.room_nid, m.room_id, m.room_version, None)
        access = ReadAccess(info, Membership(m.membership, m.event_id, 0, m.stream_ordering,
                                             False), None, None)
        timeline_since = None if newly_joined else since_pos
        state_since = None if (newly_joined or full_state) else since_pos
        room = await self._room_body(requester, access, m, end, timeline_since, state_since,
                                     f, changes)
        ephemeral = self._ephemeral(m.room_id, changes, f)
        receipts: dict[str, dict[str, Any]] = {}
        if changes.receipts is not None:
            receipts = changes.receipts
        elif newly_joined or full_state or changes.receipt_rooms is None \
                or m.room_id in changes.receipt_rooms:
            receipts = await self.stores.receipts.get_receipt_events(
                [m.room_id], None if newly_joined else changes.receipts_since, end, user_id)
        if m.room_id in receipts and f.ephemeral_room_allowed(m.room_id) \
                and room_event_matches(f.ephemeral, "m.receipt", None):
            ephemeral.append({"type": "m.receipt", "content": receipts[m.room_id]})
        room["ephemeral"] = {"events": ephemeral}
        if (since is not None and not newly_joined and not full_state
                and not room["timeline"]["events"] and not room["state"]["events"]
                and not ephemeral and not room["account_data"]["events"]):
            return None
        member_change = any(e.get("type") == MEMBER for e in
                            room["timeline"]["events"] + room["state"]["events"])
        if changes.summaries is not None and m.room_nid in changes.summaries:
            counts, heroes = changes.summaries[m.room_nid]
            room["summary"] = _summary_body(counts, heroes)
        elif since is None or newly_joined or full_state or member_change:
            room["summary"] = await self._summary(m.room_nid, user_id)
        room["unread_notifications"], threads = await self._unread_counts(
            m.room_nid, user_id, unread_from, end, f.unread_thread_notifications)
        if not f.unread_thread_notifications:
            self.hs.recent.set_unread(user_id, m.room_id, end,
                                      room["unread_notifications"]["notification_count"],
                                      room["unread_notifications"]["highlight_count"])
        if f.unread_thread_notifications:
            room["unread_thread_notifications"] = threads
        if newly_joined:
            changes.newly_joined = True
            members = await self.stores.rooms.get_members(m.room_nid)
            changes.device_changed.update(u for u in members if u != user_id)
        else:
            for e in room["timeline"]["events"]:
                if e.get("type") == MEMBER and e.get("state_key") != user_id:
                    target = e.get("state_key")
                    if (e.get("content") or {}).get("membership") == "join":
                        changes.device_changed.add(target)
                    elif isinstance(target, str):
                        changes.device_left_candidates.add(target)
        return room

    async def _left_room(self, requester: Requester, m: RoomMembership,
                         since: StreamToken | None, f: "SyncFilter", full_state: bool,
                         changes: _Changes) -> dict[str, Any] | None:
        info = RoomInfo(m.room_nid, m.room_id, m.room_version, None)
        access = ReadAccess(info, Membership(m.membership, m.event_id, 0, m.stream_ordering,
                                             False), m.stream_ordering, None)
        since_pos = since.global_pos if since is not None else None
        room = await self._room_body(requester, access, m, m.stream_ordering, since_pos,
                                     None if full_state else since_pos, f, changes)
        room.pop("ephemeral", None)
        members = await self.stores.rooms.get_members(m.room_nid)
        changes.device_left_candidates.update(u for u in members if u != requester.user_id)
        return room

    async def _room_body(self, requester: Requester, access: ReadAccess,
                         m: RoomMembership, end: int, timeline_since: int | None,
                         state_since: int | None, f: "SyncFilter",
                         changes: _Changes) -> dict[str, Any]:
        """timeline, state and account_data of one room, up to ``end``."""
        user_id = requester.user_id
        room_id = m.room_id
        limit = f.timeline_limit
        events: list[Event] = []
        positions: list[int] = []
        limited = False
        if f.timeline_room_allowed(room_id):
            page = await self.hs.room_reader.paginate(
                user_id, access, from_pos=end, to_pos=timeline_since, backwards=True,
                limit=limit + 1, event_filter=f.timeline)
            events, positions = list(page.events), list(page.positions)
            limited = len(events) > limit or not page.exhausted
            events, positions = events[:limit], positions[:limit]
            events.reverse()
            positions.reverse()
        start = positions[0] - 1 if positions else end
        if limit == 0 and timeline_since is not None:
            limited = limited and start > timeline_since

        state: list[Event] = []
        if f.state_room_allowed(room_id):
            state = await self._state(access.room.room_nid, start, state_since, limited,
                                      events, f, user_id)

        serialize = self._serializer(requester, f)
        account_data = []
        if f.room_account_data_room_allowed(room_id):
            account_data = [
                {"type": t, "content": c}
                for t, c in changes.room_account_data.get(room_id, {}).items()
                if room_event_matches(f.room_account_data, t, None)]
        return {
            "timeline": {"events": await serialize(room_id, events), "limited": limited,
                         "prev_batch": pagination_token(start)},
            "state": {"events": await serialize(room_id, state)},
            "account_data": {"events": account_data},
        }

    async def _state(self, room_nid: int, start: int, state_since: int | None,
                     limited: bool, timeline: list[Event], f: "SyncFilter",
                     user_id: str) -> list[Event]:
        if state_since is not None and not limited and not f.lazy_load_members:
            return []
        at_start = await self._state_ids_at(room_nid, start)
        if state_since is None:
            wanted = dict(at_start)
        elif limited:
            before = await self._state_ids_at(room_nid, state_since)
            wanted = {k: v for k, v in at_start.items() if before.get(k) != v}
        else:
            wanted = {}
        if f.lazy_load_members:
            senders = {e.sender for e in timeline}
            if state_since is None:
                senders.add(user_id)
            in_timeline = {e.event_id for e in timeline}
            wanted = {k: v for k, v in wanted.items() if k[0] != MEMBER}
            for sender in senders:
                eid = at_start.get((MEMBER, sender))
                if eid is not None and eid not in in_timeline:
                    wanted[(MEMBER, sender)] = eid
        events = await self.stores.events.get_events(list(wanted.values()))
        out = [events[v] for v in wanted.values() if v in events]
        return [e for e in out if room_event_matches(f.state, e.type, e.sender, e.content)]

    async def _state_ids_at(self, room_nid: int, pos: int) -> dict[StateKey, str]:
        snapshot = await self.stores.events.get_snapshot_at_stream(room_nid, pos)
        if snapshot is None:
            return {}
        return await self.stores.state.get_snapshot_ids(snapshot)

    def _serializer(self, requester: Requester, f: "SyncFilter") -> Any:
        async def serialize(room_id: str, events: list[Event]) -> list[dict[str, Any]]:
            if f.event_format == "federation":
                out = [dict(e.json) for e in events]
            else:
                out = await self.hs.room_reader.serialize(requester, room_id, events)
            if f.event_fields is not None:
                out = [apply_event_fields(e, f.event_fields) for e in out]
            return out
        return serialize

    def _ephemeral(self, room_id: str, changes: _Changes,
                   f: "SyncFilter") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if room_id in changes.typing and f.ephemeral_room_allowed(room_id) \
                and room_event_matches(f.ephemeral, "m.typing", None):
            out.append({"type": "m.typing",
                        "content": {"user_ids": changes.typing[room_id]}})
        return out

    async def _invited_by_ignored(self, user_id: str, event_id: str) -> bool:
        """Whether the invite ``event_id`` comes from a user ``user_id``
        ignores: the spec says such invites are not sent to the client."""
        ignored = await self.hs.room_reader.ignored.get(user_id)
        if not ignored:
            return False
        event = await self.stores.events.get_event(event_id)
        return event is not None and event.sender in ignored

    async def _stripped_state(self, event_id: str) -> list[dict[str, Any]]:
        remote = await self.stores.federation_events.get_remote_invite_state(event_id)
        if remote is not None:
            # an invite to a room on another server: the state it sent
            event = await self.stores.events.get_event(event_id)
            return remote + ([_stripped(event)] if event is not None else [])
        keys = [(t, "") for t in STRIPPED_STATE_TYPES]
        state = await self.hs.room_reader.get_state_at_event(event_id, keys)
        out = [_stripped(e) for e in state.values()]
        event = await self.stores.events.get_event(event_id)
        if event is not None:
            out.append(_stripped(event))
        return out

    async def _summary(self, room_nid: int, user_id: str) -> dict[str, Any]:
        counts = await self.stores.sync.get_member_counts(room_nid)
        return _summary_body(counts, await self.stores.sync.get_heroes(room_nid, user_id))

    # -- unread counts ------------------------------------------------------

    async def _unread_positions(self, user_id: str,
                                joined: list[RoomMembership]) -> dict[str, int]:
        """Per room, the stream position after which events are unread: the
        user's read receipt, else when they joined."""
        receipts = await self.stores.receipts.get_own_receipt_positions(
            user_id, [m.room_id for m in joined])
        return {m.room_id: receipts.get(m.room_id, m.stream_ordering) for m in joined}

    async def _unread_counts(self, room_nid: int, user_id: str, after: int, end: int,
                             by_thread: bool,
                             ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        if by_thread:
            return await self._unread_thread_counts(room_nid, user_id, end)
        rows = await self.stores.push_rules.get_unread_actions(room_nid, user_id, after, end,
                                                               MAX_COUNTED_UNREAD)
        return {"notification_count": len(rows),
                "highlight_count": sum(1 for _, highlight, _ in rows if highlight)}, {}

    async def _unread_thread_counts(self, room_nid: int, user_id: str, end: int,
                                    ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Unread counts per thread (``unread_thread_notifications``), with
        threaded read receipts: an event is read when the user's unthreaded
        receipt is at or after it, or the receipt of its own thread is (the
        ``"main"`` one for the main timeline, the root's for a thread). The
        thread of an event is its ``m.thread`` relation, as recorded with its
        push actions (``storage/push_rules.py``)."""
        reads = await self.stores.relations.get_read_positions(room_nid, user_id)
        floor = reads.get("")
        if floor is None:  # no unthreaded receipt: everything since the join
            membership = await self.stores.rooms.get_membership(user_id, room_nid)
            floor = membership.stream_ordering if membership is not None else end
        rows = await self.stores.push_rules.get_unread_actions(room_nid, user_id, floor, end,
                                                               MAX_COUNTED_UNREAD)
        main = {"notification_count": 0, "highlight_count": 0}
        threads: dict[str, dict[str, int]] = {}
        for pos, highlight, root in rows:
            if pos <= reads.get(root if root is not None else "main", floor):
                continue
            counts = main if root is None else threads.setdefault(
                root, {"notification_count": 0, "highlight_count": 0})
            counts["notification_count"] += 1
            if highlight:
                counts["highlight_count"] += 1
        return main, threads


def _summary_body(counts: dict[str, int], heroes: list[str]) -> dict[str, Any]:
    return {
        "m.heroes": heroes,
        "m.joined_member_count": counts.get("join", 0),
        "m.invited_member_count": counts.get("invite", 0),
    }

