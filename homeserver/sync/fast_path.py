"""The sync fast path: a woken incremental /sync answered from memory.

A message into a room of 1,000 members wakes 1,000 long-polls at once, and
each would read the same rows. ``FastPath.answer`` builds the response from
what ``SyncMemory`` (``sync/memory.py``) knows instead, when all that
happened since the token is plain messages from others in the user's rooms;
otherwise it says None and the full builder reads the database.

It answers exactly as the full builder would (tests/sync/test_fast_path.py
compares both on the same token): the timeline of each room with news
(never limited: more than the filter's limit goes to the full builder, which
adds the state), the typing of rooms whose typing changed (from the typing
manager) and the receipts others wrote in the range (kept with each write
by ``RecentActivity``; the user's own receipt goes to the full builder, as
it changes their counts), and the unread counts carried forward from the last ones
the full builder counted for the user and room (per thread too, when the
filter asks for ``unread_thread_notifications``). The state is empty, but
with lazy-loaded members: then it holds the member events of the timeline's
senders this connection was not sent yet, with the room's summary, from
what the full builder last read of them (``sync/lazy_members.py``); a
sender never read yet, or whose member event changed since, goes to the
full builder, which reads it for every receiver after. The response's JSON
comes from templates derived from the full builder's own shapes
(``sync/encoder.py``), so the two cannot drift apart.

Receivers woken by the same write share the work: the range's events are
grouped once per range, and each room's timeline section is serialised once
per filter (so ``unsigned.age`` is as of the first receiver). This runs per
receiver and per room: nothing here may read the database or grow with more
than the rooms that have news.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.events.model import Event
from homeserver.http.resource import EncodedDict
from homeserver.push.actions import thread_of
from homeserver.rooms.client_format import client_event
from homeserver.rooms.relations import relates_within
from homeserver.storage.receipts import READ_PRIVATE
from homeserver.storage.streams import ONLY_USER, PRESENCE
from homeserver.sync.encoder import (
    encode_quiet_body,
    encode_quiet_room,
    encode_room,
    encode_timeline,
    joined_room,
    quiet_joined_room,
    sync_body,
    timeline_section,
    unread_section,
)
from homeserver.sync.filter import apply_event_fields, room_event_matches
from homeserver.sync.lazy_members import Connection, connection, summary_body
from homeserver.sync.recent import Receipt, ThreadCounts, rooms_of
from homeserver.sync.room_builder import MAX_COUNTED_UNREAD, joined_by
from homeserver.sync.tokens import StreamToken, pagination_token

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.sync.filter import SyncFilter
    from homeserver.sync.memory import SyncMemory

# ranges and timelines remembered (sync ranges in use at once)
FAST_MEMO_SIZE = 256

Scopes = list[tuple[str | None, str | None]]
# a range's barrier scopes, plain events by room, senders by room, receipts
# by room (who wrote one, the m.receipt content)
Range = tuple[Scopes, dict[str, list[tuple[int, Event]]], dict[str, frozenset[str]],
              dict[str, tuple[frozenset[str], dict[str, Any]]]]
# a room's timeline for the fast path: the events as the client sees them,
# the whole section, its JSON, and the senders of its events
Timeline = tuple[list[dict[str, Any]], dict[str, Any], bytes, frozenset[str]]


class FastPath:
    """Answers woken incremental syncs from ``SyncMemory``, with the work
    shared by every receiver of the same range kept in two small memos."""

    def __init__(self, ctx: "ServerContext", memory: "SyncMemory") -> None:
        self.ctx = ctx
        self.memory = memory
        # (since, until) -> (barrier scopes, plain events by room, senders by
        # room) and (room, since, until) -> (filter, timeline): shared work
        self._range_memo: dict[tuple[int, int], Range] = {}
        self._timeline_memo: dict[tuple[str, int, int], tuple[Any, Timeline | None]] = {}

    def answer(self, user_id: str, device_id: str | None, since: StreamToken,
               until: StreamToken, f: "SyncFilter") -> dict[str, Any] | None:
        """The incremental response from ``since`` to ``until`` (the current
        token) from memory; None when the full builder must answer."""
        if f.event_format != "client" or f.timeline_limit == 0:
            return None
        memory = self.memory
        if device_id is not None and memory.to_device_pending(user_id, device_id):
            return None  # the full builder deletes what the device has acknowledged
        key_counts = memory.key_counts(user_id, device_id)
        if key_counts is None:
            return None  # the full builder reads them (and caches them)
        typing: dict[str, list[str]] = {}
        if memory.typing_changed(since.typing_pos, until.typing_pos):
            found_typing = self._typing(user_id, since, f)
            if found_typing is None:
                return None
            typing = found_typing
        key = (since.global_pos, until.global_pos)
        found = self._range(key)
        if found is None:
            return None
        scopes, by_room, senders, receipts = found
        if not self._out_of_reach(user_id, f, scopes):
            return None
        if any(user_id in readers for readers, _ in receipts.values()):
            return None  # the user's own receipt: their unread counts change
        # events of ignored users are left out by the full builder
        # (rooms/ignored.py); an unknown list is loaded there too
        ignored = memory.ignored(user_id)
        if ignored is None or any(ignored & s for s in senders.values()):
            return None
        threaded = f.unread_thread_notifications
        join: dict[str, Any] = {}
        encoded: list[bytes] = []
        unread: list[tuple[str, int, int]] = []
        thread_unread: list[tuple[str, ThreadCounts]] = []
        sent: list[tuple[Connection, dict[str, str]]] = []
        rooms = by_room
        if typing or receipts:
            rooms = {**by_room, **{r: [] for r in [*typing, *receipts] if r not in by_room}}
        for room_id, events in rooms.items():
            members = memory.room_members(room_id)
            if members is None:
                return None
            if user_id not in members or not f.room_allowed(room_id):
                continue
            if events and user_id in senders[room_id]:
                return None  # the sender's own events carry its transaction IDs
            if relates_within(events):
                return None  # a parent with its children: the full builder bundles them
            threads: dict[str, dict[str, int]] | None = None
            if threaded:
                found_threads = self._thread_unread(user_id, room_id, since, until, events, f)
                if found_threads is None:
                    return None
                thread_unread.append((room_id, found_threads))
                _, notifications, highlights, by_thread = found_threads
                threads = {root: unread_section(*c) for root, c in by_thread.items()}
            else:
                counts = self._unread(user_id, room_id, since, events, f)
                if counts is None:
                    return None
                unread.append(counts)
                _, notifications, highlights = counts
            timeline = self._timeline(room_id, key, events, f, until.global_pos)
            if timeline is None:
                return None
            out, section, timeline_json, timeline_senders = timeline
            ephemeral: list[dict[str, Any]] = []
            if room_id in typing:
                ephemeral.append({"type": "m.typing",
                                  "content": {"user_ids": typing[room_id]}})
            if room_id in receipts and receipts[room_id][1] and f.ephemeral_room_allowed(room_id) \
                    and room_event_matches(f.ephemeral, "m.receipt", None):
                ephemeral.append({"type": "m.receipt", "content": receipts[room_id][1]})
            if not out and not ephemeral:
                continue
            state: list[dict[str, Any]] = []
            summary = None
            if f.lazy_load_members and f.state_room_allowed(room_id):
                lazy = self._lazy_members(user_id, device_id, f, room_id, timeline_senders,
                                          until.global_pos)
                if lazy is None:
                    return None
                state, record = lazy
                if record:
                    sent.append((connection(user_id, device_id, f, room_id), record))
                if state:
                    # member events in the state: the full builder adds the
                    # summary, and the presence of whoever joined
                    summary = self._summary(user_id, room_id, until.global_pos)
                    if summary is None or (not f.presence.blocks_all()
                                           and joined_by(state, user_id)):
                        return None
            if not state and threads is None and not ephemeral:
                join[room_id] = quiet_joined_room(section, notifications, highlights)
                encoded.append(encode_quiet_room(room_id, timeline_json, notifications,
                                                 highlights))
            else:
                room = joined_room(section, state, notifications, highlights, summary,
                                   threads, ephemeral)
                join[room_id] = room
                encoded.append(encode_room(room_id, room, timeline_json))
        for room_id, notifications, highlights in unread:
            memory.set_unread(user_id, room_id, until.global_pos, notifications, highlights)
        for room_id, thread_counts in thread_unread:
            memory.set_thread_unread(user_id, room_id, thread_counts)
        for device, record in sent:
            memory.sent_members.record(device, False, record)
        next_batch = str(until)
        body = EncodedDict(sync_body(next_batch, join, {}, {}, {}, [], [], [], set(), set(),
                                     key_counts))
        # the same JSON encode_json would make of it, from the shared parts
        body.encoded = encode_quiet_body(next_batch, encoded,
                                         body["device_one_time_keys_count"],
                                         body["device_unused_fallback_key_types"])
        return body

    def _lazy_members(self, user_id: str, device_id: str | None, f: "SyncFilter",
                      room_id: str, senders: frozenset[str], until: int,
                      ) -> tuple[list[dict[str, Any]], dict[str, str]] | None:
        """The state section lazy-loading gives the timeline's ``senders``:
        their member events this connection was not sent yet, as the full
        builder would serialise them, and what to record as sent (None: not
        known here)."""
        facts = self.memory.facts.members(room_id)
        if facts is None:
            return None
        sent = self.memory.sent_members.get(connection(user_id, device_id, f, room_id))
        wanted: list[dict[str, Any]] = []
        for sender in sorted(senders):
            if sender not in facts.member_ids:
                return None
            event_id = facts.member_ids[sender]
            if event_id is None:
                continue
            if sent.get(sender) == event_id and not f.include_redundant_members:
                continue
            event = facts.serialised.get(event_id)
            if event is None or event["sender"] == user_id:
                return None  # not read yet, or with the reader's transaction ID
            wanted.append(event)
        if not self.memory.members_unchanged_since(room_id, senders, min(facts.as_of, until),
                                                   [e["event_id"] for e in wanted]):
            return None
        now = self.ctx.now_ms()
        state: list[dict[str, Any]] = []
        record: dict[str, str] = {}
        for event in wanted:
            if not room_event_matches(f.state, event["type"], event["sender"],
                                      event["content"]):
                continue
            record[event["state_key"]] = event["event_id"]
            served = {**event, "unsigned": {
                "age": max(0, now - event["origin_server_ts"]), **event["unsigned"]}}
            state.append(served if f.event_fields is None
                         else apply_event_fields(served, f.event_fields))
        return state, record

    def _summary(self, user_id: str, room_id: str, until: int) -> dict[str, Any] | None:
        """The room's summary as the full builder reads it (None: not known here)."""
        summary = self.memory.facts.summary(room_id)
        if summary is None or not self.memory.unchanged_since(room_id,
                                                              min(summary.as_of, until)):
            return None
        return summary_body(summary, user_id)

    def _range(self, key: tuple[int, int]) -> Range | None:
        """The range's barrier scopes, plain events by room, senders by room,
        and receipts by room (who wrote any, and the ``m.receipt`` content
        others are sent)."""
        memo = self._range_memo.get(key)
        if memo is not None:
            return memo
        found = self.memory.plain_events(*key)
        if found is None:
            return None
        # a range at or below "persisted up to" never changes: every
        # receiver woken by the same write shares this work
        by_room = rooms_of(found[0])
        memo = (found[1], by_room,
                {r: frozenset(e.sender for _, e in evs) for r, evs in by_room.items()},
                _receipts_by_room(found[2]))
        if len(self._range_memo) >= FAST_MEMO_SIZE:
            self._range_memo.clear()
        self._range_memo[key] = memo
        return memo

    def _unread(self, user_id: str, room_id: str, since: StreamToken,
                events: list[tuple[int, Event]], f: "SyncFilter",
                ) -> tuple[str, int, int] | None:
        """(room, notifications, highlights): the room's unread counts carried
        forward over ``events`` (None: not known here)."""
        memory = self.memory
        counts = memory.unread(user_id, room_id)
        if counts is None:
            return None
        as_of, notifications, highlights = counts
        counted = [e for pos, e in events if pos > as_of]
        if as_of < since.global_pos:
            before = memory.plain_events(as_of, since.global_pos)
            if before is None or not _counts_unaffected(user_id, room_id, before[1], before[2]):
                return None
            counted = [e for _, r, e in before[0] if r == room_id] + counted
        for event in counted:
            verdicts = memory.push_verdicts(event.event_id)
            if verdicts is None:
                return None  # persisted before this process started
            notify, highlight = verdicts.get(user_id, (0, 0))
            notifications += notify
            highlights += highlight
        return room_id, min(notifications, MAX_COUNTED_UNREAD), highlights

    def _thread_unread(self, user_id: str, room_id: str, since: StreamToken,
                       until: StreamToken, events: list[tuple[int, Event]],
                       f: "SyncFilter") -> ThreadCounts | None:
        """As of ``until``: the room's unread counts per thread
        (``unread_thread_notifications``) carried forward over ``events``
        (None: not known here)."""
        memory = self.memory
        counts = memory.thread_unread(user_id, room_id)
        if counts is None:
            return None
        as_of, notifications, highlights, known = counts
        counted = [e for pos, e in events if pos > as_of]
        if as_of < since.global_pos:
            before = memory.plain_events(as_of, since.global_pos)
            if before is None or not _counts_unaffected(user_id, room_id, before[1], before[2]):
                return None
            counted = [e for _, r, e in before[0] if r == room_id] + counted
        threads = dict(known)
        for event in counted:
            verdicts = memory.push_verdicts(event.event_id)
            if verdicts is None:
                return None  # persisted before this process started
            notify, highlight = verdicts.get(user_id, (0, 0))
            if not notify and not highlight:
                continue
            root = thread_of(event)
            if root is not None:
                n, h = threads.get(root, (0, 0))
                threads[root] = (n + notify, h + highlight)
            elif isinstance(event.content.get("m.relates_to"), dict):
                # an edit, reaction or reference counts in the thread of
                # its target, which the database knows
                return None
            else:
                notifications += notify
                highlights += highlight
        if notifications + sum(n for n, _ in threads.values()) >= MAX_COUNTED_UNREAD:
            return None  # the full builder's count stops there
        return until.global_pos, notifications, highlights, threads

    def _typing(self, user_id: str, since: StreamToken,
                f: "SyncFilter") -> dict[str, list[str]] | None:
        """Room -> who types now, for the user's rooms whose typing changed
        since the token and whose ephemeral events the filter keeps (None:
        a room's members are not known here)."""
        memory = self.memory
        mine = []
        for room_id in memory.typing_rooms(since.typing_pos):
            members = memory.room_members(room_id)
            if members is None:
                return None
            if user_id in members and f.room_allowed(room_id) \
                    and f.ephemeral_room_allowed(room_id):
                mine.append(room_id)
        if not mine or not room_event_matches(f.ephemeral, "m.typing", None):
            return {}
        return memory.typing(mine, since.typing_pos)

    def _timeline(self, room_id: str, key: tuple[int, int],
                  events: list[tuple[int, Event]], f: "SyncFilter",
                  until: int) -> Timeline | None:
        """The room's timeline section, shared by every receiver with the same
        range and filter (None: over the limit): the events, the section, and
        its JSON. The events are serialised once, so ``unsigned.age`` is as of
        the first."""
        memo_key = (room_id, *key)
        cached = self._timeline_memo.get(memo_key)
        if cached is not None and cached[0] is f:
            return cached[1]
        timeline: list[tuple[int, Event]] = []
        if f.timeline_room_allowed(room_id):
            timeline = [(pos, e) for pos, e in events if f.timeline.matches(e)]
        result: Timeline | None = None
        if len(timeline) <= f.timeline_limit:
            now = self.ctx.now_ms()
            out = [client_event(e, room_id, now) for _, e in timeline]
            for entry in out:
                # the receivers are joined, and none of them changed their
                # membership in the range (that goes to the full builder):
                # their membership at each event is "join" (MSC4115)
                entry["unsigned"]["membership"] = "join"
            if f.event_fields is not None:
                out = [apply_event_fields(e, f.event_fields) for e in out]
            # no event: the full builder's timeline starts at the range's end
            prev_batch = pagination_token(timeline[0][0] - 1 if timeline else until)
            section = timeline_section(out, False, prev_batch)
            result = (out, section, encode_timeline(section),
                      frozenset(e.sender for _, e in timeline))
        if len(self._timeline_memo) >= FAST_MEMO_SIZE:
            self._timeline_memo.clear()
        self._timeline_memo[memo_key] = (f, result)
        return result

    def _out_of_reach(self, user_id: str, f: "SyncFilter", scopes: Scopes) -> bool:
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
            members = self.memory.room_members(room_id)
            if members is None or user_id in members:
                return False
        return True


def _counts_unaffected(user_id: str, room_id: str, scopes: Scopes,
                       receipts: list[Receipt]) -> bool:
    """Whether none of these writes (``RecentActivity.plain_events``) can
    change the user's unread counts in a room as carried forward: their own
    receipt, a redaction or state change in the room, or a write of unknown
    reach, can; presence, others' receipts, another room's writes or a
    user's own data cannot."""
    return (all(room is not None and room != room_id for room, _ in scopes)
            and not any(r[0] == room_id and r[1] == user_id for r in receipts))


def _receipts_by_room(receipts: list[Receipt]) -> dict[str, tuple[frozenset[str],
                                                                   dict[str, Any]]]:
    """Room -> (who wrote a receipt, the ``m.receipt`` content others are
    sent: private receipts left out), shaped as the receipt store's
    ``get_receipt_events``."""
    readers: dict[str, set[str]] = {}
    contents: dict[str, dict[str, Any]] = {}
    for room_id, reader, receipt_type, thread, event_id, data in receipts:
        readers.setdefault(room_id, set()).add(reader)
        content = contents.setdefault(room_id, {})
        if receipt_type == READ_PRIVATE:
            continue
        receipt = dict(data)
        if thread:
            receipt["thread_id"] = thread
        else:
            receipt.pop("thread_id", None)
        content.setdefault(event_id, {}).setdefault(receipt_type, {})[reader] = receipt
    return {r: (frozenset(users), contents[r]) for r, users in readers.items()}
