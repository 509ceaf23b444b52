"""Relations between events: the rules on top of ``storage/relations.py``.

Send-time checks (``check_new_relation``, local clients only; what arrives
over federation is indexed as it is):

- the parent must be in the same room; a parent we do not hold is accepted
  only when other events already relate to it (the client must know of it
  somehow), else 400 M_UNKNOWN, as Synapse does;
- ``m.annotation`` needs a string ``key`` (at most 500 characters), and a
  user may not annotate the same event twice with the same type and key
  (unless the first was redacted): 400 M_DUPLICATE_ANNOTATION;
- ``m.thread`` may not start from an event that itself relates to another
  (400 M_UNKNOWN, as the spec asks).

Bundled aggregations (``bundle_aggregations``), put in
``unsigned["m.relations"]`` wherever events go to clients (``/messages``,
``/context``, ``/event``, ``/relations``, ``/threads``, sync timelines;
``RoomReader.serialize``). As in the spec (v1.7+) and Synapse:

- state events, and events that are themselves an annotation or an edit,
  get no bundle;
- ``m.annotation`` is not aggregated by the server;
- ``m.replace``: the most recent *valid* edit (same sender, same type, the
  original neither a state event nor itself an edit, ``m.new_content``
  present unless encrypted), by ``origin_server_ts`` then event ID, as a
  whole client-format event; never on a redacted original. An edit by
  another user is ignored (not an error at send time: it is just not
  bundled);
- ``m.thread`` on a thread root (an event not itself in a thread):
  ``latest_event`` (the newest reply, with its own edit bundled), ``count``
  (both leaving out replies by users the reader ignores) and
  ``current_user_participated`` (the user sent the root or a reply);
- ``m.reference``: ``{"chunk": [{"event_id": ...}, ...]}``, oldest first.

All of it costs a fixed number of queries per page of events, whatever its
size (``RelationStore.get_aggregation_rows`` reads the rows of every parent
in one transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.events.identifiers import is_storable_text
from homeserver.events.model import Event
from homeserver.rooms.client_format import client_event, redacted_by
from homeserver.storage.relations import (
    ANNOTATION,
    REFERENCE,
    REPLACE,
    THREAD,
    AggregationRows,
    relation_of,
)

if TYPE_CHECKING:
    from homeserver.rooms.ignored import IgnoredUsers
    from homeserver.storage import Stores
    from homeserver.storage.events import EventStore

logger = logging.getLogger(__name__)

# The spec's error code for a second identical reaction (to move to
# errors.py Codes with the other codes).
MAX_ANNOTATION_KEY_LENGTH = 500
ENCRYPTED = "m.room.encrypted"


async def check_new_relation(stores: "Stores", sender: str, room_id: str, event_type: str,
                             content: dict[str, Any]) -> None:
    """Refuse (MatrixError 400) a local user's new event whose relation breaks
    the rules in the module docstring; anything else passes."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return
    rel_type = relates.get("rel_type")
    parent_id = relates.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent_id, str):
        return  # a reply (m.in_reply_to only) or not a relation at all
    key = relates.get("key")
    if not all(is_storable_text(v) for v in (rel_type, parent_id, key) if isinstance(v, str)):
        # these are looked up and stored in text columns (PostgreSQL refuses NUL)
        raise MatrixError(400, Codes.BAD_JSON, "m.relates_to fields may not contain NUL")
    parent = await stores.events.get_event(parent_id)
    if parent is not None:
        if parent.room_id != room_id:
            raise MatrixError(400, Codes.UNKNOWN, "Relations must be in the same room")
    elif not await stores.relations.is_target_of_relation(parent_id):
        raise MatrixError(400, Codes.UNKNOWN, "Can't send relation to unknown event")
    if rel_type == ANNOTATION:
        if not isinstance(key, str):
            raise MatrixError(400, Codes.INVALID_PARAM, "Missing aggregation key")
        if len(key) > MAX_ANNOTATION_KEY_LENGTH:
            raise MatrixError(400, Codes.INVALID_PARAM, "Aggregation key is too long")
        if await stores.relations.has_user_annotated(parent_id, event_type, key, sender):
            raise MatrixError(400, Codes.DUPLICATE_ANNOTATION, "Can't send same reaction twice")
    elif rel_type == THREAD and parent is not None and relation_of(parent) is not None:
        raise MatrixError(400, Codes.UNKNOWN,
                          "Cannot start threads from an event with a relation")


def relates_within(events: Sequence[tuple[int, Event]]) -> bool:
    """Whether one of ``events`` relates to another of them: then the parent
    needs bundled aggregations (the sync fast path, which serialises events
    once for every receiver, leaves such a range to the full builder)."""
    ids = {e.event_id for _, e in events}
    for _, event in events:
        relation = relation_of(event)
        if relation is not None and relation[1] in ids:
            return True
    return False


def is_valid_edit(original: Event, edit: Event) -> bool:
    """The spec's "validity of replacement events" (the room is checked by
    the index: a relation row belongs to its child's room)."""
    if original.is_state() or edit.is_state():
        return False
    if original.sender != edit.sender or original.type != edit.type:
        return False
    own = relation_of(original)
    if own is not None and own[0] == REPLACE:
        return False
    if redacted_by(edit) is not None:
        return False
    if edit.type != ENCRYPTED and not isinstance(edit.content.get("m.new_content"), dict):
        return False
    return True


def _wants_bundle(event: Event) -> bool:
    if event.is_state():
        return False
    own = relation_of(event)
    return own is None or own[0] not in (ANNOTATION, REPLACE)


async def _latest_edits(events_store: "EventStore", originals: dict[str, Event],
                        rows: AggregationRows) -> dict[str, Event]:
    """Original event ID -> its most recent valid edit."""
    candidates: dict[str, list[tuple[int, str]]] = {}
    for parent, edits in rows.edits.items():
        original = originals.get(parent)
        if original is None or redacted_by(original) is not None:
            continue
        # sender and type first from the index, so few events are loaded
        found = [(ts, eid) for eid, sender, etype, ts in edits
                 if sender == original.sender and etype == original.type]
        if found:
            candidates[parent] = sorted(found, reverse=True)
    if not candidates:
        return {}
    events = await events_store.get_events(
        [eid for found in candidates.values() for _, eid in found])
    out: dict[str, Event] = {}
    for parent, found in candidates.items():
        for _, eid in found:
            edit = events.get(eid)
            if edit is not None and is_valid_edit(originals[parent], edit):
                out[parent] = edit
                break
    return out


async def bundle_aggregations_many(stores: "Stores", ignored_users: "IgnoredUsers",
                                   user_id: str, rooms: Sequence[tuple[str, Sequence[Event]]],
                                   now_ms: int) -> dict[str, dict[str, Any]]:
    """``bundle_aggregations`` of the events of several rooms ((room ID,
    events)): one query tells which have anything to bundle (commonly none),
    and only those rooms are bundled."""
    wanted = [e.event_id for _, events in rooms for e in events if _wants_bundle(e)]
    if not wanted:
        return {}
    ignored = await ignored_users.get(user_id)
    rows = await stores.relations.get_aggregation_rows(wanted, user_id, sorted(ignored))
    parents = {*rows.edits, *rows.threads, *rows.references}
    out: dict[str, dict[str, Any]] = {}
    for room_id, events in rooms:
        if any(e.event_id in parents for e in events):
            out.update(await bundle_aggregations(stores, ignored_users, user_id, room_id,
                                                 events, now_ms))
    return out


async def aggregation_rows_for(stores: "Stores", ignored_users: "IgnoredUsers", user_id: str,
                               events: Sequence[Event]) -> AggregationRows:
    """What ``bundle_aggregations`` reads of ``events``, for ``user_id``:
    read once for many rooms and handed to it as ``known_rows``."""
    wanted = [e.event_id for e in events if _wants_bundle(e)]
    if not wanted:
        return AggregationRows()
    ignored = await ignored_users.get(user_id)
    return await stores.relations.get_aggregation_rows(wanted, user_id, sorted(ignored))


async def bundle_aggregations(stores: "Stores", ignored_users: "IgnoredUsers", user_id: str,
                              room_id: str, events: Sequence[Event], now_ms: int,
                              known_rows: tuple[AbstractSet[str], AggregationRows] | None = None,
                              ) -> dict[str, dict[str, Any]]:
    """Event ID -> its ``unsigned["m.relations"]``, for those of ``events``
    that have something to bundle (as ``user_id`` sees it, leaving out what
    ``ignored_users`` says they ignore). ``known_rows``: the rows of a set
    of events (``aggregation_rows_for``), used when it covers ``events``."""
    if known_rows is not None:
        covered, known = known_rows
        if not (known.edits or known.threads or known.references) \
                and all(e.event_id in covered for e in events):
            return {}  # (the usual case, a thousand rooms in an initial sync)
    wanted = {e.event_id: e for e in events if _wants_bundle(e)}
    if not wanted:
        return {}
    if known_rows is not None and wanted.keys() <= known_rows[0]:
        known = known_rows[1]
        rows = AggregationRows(
            edits={p: v for p, v in known.edits.items() if p in wanted},
            threads={p: v for p, v in known.threads.items() if p in wanted},
            references={p: v for p, v in known.references.items() if p in wanted})
    else:
        ignored = await ignored_users.get(user_id)
        rows = await stores.relations.get_aggregation_rows(list(wanted), user_id,
                                                           sorted(ignored))
    if not rows.edits and not rows.threads and not rows.references:
        return {}
    out: dict[str, dict[str, Any]] = {}
    edits = await _latest_edits(stores.events, wanted, rows)
    for parent, edit in edits.items():
        out.setdefault(parent, {})[REPLACE] = client_event(edit, room_id, now_ms)
    roots = {p: s for p, s in rows.threads.items()
             if (own := relation_of(wanted[p])) is None or own[0] != THREAD}
    if roots:
        latest = await stores.events.get_events([s.latest_event_id for s in roots.values()])
        latest_events = [e for e in latest.values() if _wants_bundle(e)]
        # the latest reply's own edit (a reply is never a thread root: no loop)
        nested_rows = AggregationRows(edits=(await stores.relations.get_aggregation_rows(
            [e.event_id for e in latest_events], user_id)).edits)
        nested = await _latest_edits(stores.events, {e.event_id: e for e in latest_events},
                                     nested_rows)
        for parent, summary in roots.items():
            reply = latest.get(summary.latest_event_id)
            if reply is None:
                continue
            reply_json = client_event(reply, room_id, now_ms)
            if reply.event_id in nested:
                reply_json["unsigned"]["m.relations"] = {
                    REPLACE: client_event(nested[reply.event_id], room_id, now_ms)}
            out.setdefault(parent, {})[THREAD] = {
                "latest_event": reply_json,
                "count": summary.count,
                "current_user_participated": summary.participated
                or wanted[parent].sender == user_id,
            }
    for parent, refs in rows.references.items():
        out.setdefault(parent, {})[REFERENCE] = {"chunk": [{"event_id": r} for r in refs]}
    return out
