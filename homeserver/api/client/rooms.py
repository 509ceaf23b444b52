"""Rooms: creating them, sending events, reading state and the timeline.

Handlers parse and validate, call ``rooms/`` and serialise; sending an event
is ``rooms/sending.py``'s. Events go back in
the client format (``rooms/client_format.py``), never as PDUs. Reads are
gated by ``rooms/access.py``: not a member (or an unknown room) is 403, and
every timeline event passes the history visibility rules (a hidden or
unknown event is 404). Redactions: ``rooms/redaction.py``.

Pagination tokens of /messages and /context are ``s<stream position>``: a
token splits the timeline between the events at or before the position and
those after. A /sync token is accepted too (``sync/tokens.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, bad_json, invalid_param, not_found
from homeserver.events.identifiers import is_valid_user_id
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.parse import (
    get_bool,
    get_object,
    get_str,
    query_int,
    query_str,
)
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.rooms.access import NO_FILTER, ReadAccess, RoomEventFilter, txn_scope
from homeserver.rooms.creation import PRESETS, CreateRoomRequest, StateEvent
from homeserver.rooms.redaction import redact_event
from homeserver.rooms.sending import check_txn_id
from homeserver.rooms.third_party_invites import parse_third_party_invite
from homeserver.storage.events import NewEventTxn
from homeserver.sync.filter_schema import filter_problem
from homeserver.sync.tokens import parse_pagination_token

if TYPE_CHECKING:
    from homeserver.federation.event_handler import FederationEventHandler
    from homeserver.http.ratelimit import Ratelimiter
    from homeserver.rooms.access import RoomReader
    from homeserver.rooms.creation import RoomCreation
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.delayed_events import DelayedEvents
    from homeserver.rooms.sending import RoomSender
    from homeserver.server import HomeServer
    from homeserver.storage import Stores
    from homeserver.storage.streams import StreamTracker

CLIENT_V1 = "/_matrix/client/v1"
CLIENT_V3 = "/_matrix/client/v3"

# Synapse's cap on /messages pages.
MAX_MESSAGES_LIMIT = 1000
DEFAULT_MESSAGES_LIMIT = 10

# timestamp_to_event looks at this many events nearest the time for one the
# reader may see, then gives up (404)
TIMESTAMP_CANDIDATES = 50


def parse_create_room(body: dict[str, Any], default_version: str) -> CreateRoomRequest:
    """The validated body of POST /createRoom."""
    version_id = get_str(body, "room_version", default_version)
    room_version = KNOWN_ROOM_VERSIONS.get(version_id)
    if room_version is None:
        raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION,
                          f"Your homeserver does not support room version {version_id!r}")
    visibility = get_str(body, "visibility", "private")
    if visibility not in ("public", "private"):
        raise invalid_param("'visibility' must be 'public' or 'private'")
    preset = get_str(body, "preset", None)
    if preset is None:
        preset = "public_chat" if visibility == "public" else "private_chat"
    if preset not in PRESETS:
        raise invalid_param(f"'preset' must be one of {', '.join(PRESETS)}")
    invite = body.get("invite", [])
    if not isinstance(invite, list) or not all(
            isinstance(u, str) and is_valid_user_id(u) for u in invite):
        raise invalid_param("'invite' must be a list of user IDs")
    invite_3pid = body.get("invite_3pid", [])
    if not isinstance(invite_3pid, list) or not all(isinstance(i, dict) for i in invite_3pid):
        raise invalid_param("'invite_3pid' must be a list of objects")
    initial_state = body.get("initial_state", [])
    if not isinstance(initial_state, list):
        raise bad_json("'initial_state' must be a list")
    state: list[StateEvent] = []
    for item in initial_state:
        if not isinstance(item, dict):
            raise bad_json("'initial_state' entries must be objects")
        event_type = get_str(item, "type")
        state_key = get_str(item, "state_key", "")
        if event_type in ("m.room.create", "m.room.member"):
            raise invalid_param(f"{event_type} cannot be set in 'initial_state'")
        state.append(StateEvent(event_type, state_key, get_object(item, "content")))
    return CreateRoomRequest(
        room_version=room_version,
        preset=preset,
        visibility=visibility,
        name=get_str(body, "name", None),
        topic=get_str(body, "topic", None),
        invite=tuple(dict.fromkeys(invite)),
        invite_3pid=tuple(parse_third_party_invite(i) for i in invite_3pid),
        is_direct=get_bool(body, "is_direct", False),
        creation_content=get_object(body, "creation_content", {}),
        initial_state=tuple(state),
        power_level_content_override=get_object(body, "power_level_content_override", None),
        room_alias_name=get_str(body, "room_alias_name", None),
    )


def parse_token(token: str) -> int:
    """A pagination token's stream position (a /sync ``next_batch`` works too)."""
    return parse_pagination_token(token)


def parse_room_event_filter(text: str | None) -> RoomEventFilter:
    """The ``filter`` query parameter: RoomEventFilter JSON (else 400 M_BAD_JSON)."""
    if text is None:
        return NO_FILTER
    try:
        body = json.loads(text)
    except ValueError:
        raise bad_json("'filter' is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_json("'filter' must be a JSON object")
    problem = filter_problem({"room": {"timeline": body}})
    if problem is not None:
        raise bad_json(f"Invalid filter: {problem.removeprefix('room.timeline.')}")
    return RoomEventFilter.from_json(body)


def parse_limit(args: dict[bytes, list[bytes]], event_filter: RoomEventFilter) -> int:
    """``limit`` (else the filter's, else 10), capped at Synapse's 1000."""
    default = event_filter.limit if event_filter.limit is not None else DEFAULT_MESSAGES_LIMIT
    limit: int = query_int(args, "limit", default)
    if limit < 0:
        raise invalid_param("'limit' must not be negative")
    return min(limit, MAX_MESSAGES_LIMIT)


def senders_members(events: list[Event]) -> list[tuple[str, str]]:
    """The ``m.room.member`` state keys of the senders of ``events`` (lazy loading)."""
    return [("m.room.member", s) for s in dict.fromkeys(e.sender for e in events)]


@dataclass(frozen=True)
class RoomsApi:
    """What the room endpoints use."""

    stores: "Stores"
    reader: "RoomReader"
    room_creation: "RoomCreation"
    room_sender: "RoomSender"
    # redactions: sent here, checked by rooms/redaction.py
    event_creator: "EventCreator"
    message_ratelimiter: "Ratelimiter"
    # /messages backwards from the newest persisted event; and backfill past
    # the start of what we hold
    stream_tracker: "StreamTracker"
    federation_event_handler: "FederationEventHandler"
    default_room_version: str
    # the real reactor: how long /messages waits for writes in flight
    reactor: Any
    # sends with org.matrix.msc4140.delay (MSC4140)
    delayed_events: "DelayedEvents"


DELAY_PARAM = "org.matrix.msc4140.delay"


def requested_delay(req: HttpRequest) -> int | None:
    """The delay (ms) a send asks for with ``org.matrix.msc4140.delay``."""
    return query_int(req.args, DELAY_PARAM, None)


async def post_create_room(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/createRoom"""
    request = parse_create_room(req.json(allow_empty=True), api.default_room_version)
    room_id = await api.room_creation.create_room(req.user_id, request)
    return 200, {"room_id": room_id}


async def put_send(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"""
    assert req.requester is not None
    # the content is the body: an empty one is not JSON (Synapse: 400
    # M_NOT_JSON), and a NUL in it is stored, as Synapse stores it
    content = req.json(allow_nul=True)
    delay = requested_delay(req)
    if delay is not None:
        check_txn_id(req.params["txnId"])
        delay_id = await api.delayed_events.add(req.requester, req.params["roomId"],
                                                req.params["eventType"], None, content, delay,
                                                txn_id=req.params["txnId"])
        return 200, {"delay_id": delay_id}
    event_id = await api.room_sender.send_message(req.requester, req.params["roomId"],
                                                  req.params["eventType"], content,
                                                  req.params["txnId"])
    return 200, {"event_id": event_id}


async def post_send(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/send/{eventType}

    The form before transaction IDs, which Synapse still serves: the same
    send, without the retry protection."""
    assert req.requester is not None
    content = req.json(allow_nul=True)
    event_id = await api.room_sender.send_message(req.requester, req.params["roomId"],
                                                  req.params["eventType"], content, None)
    return 200, {"event_id": event_id}


async def put_state(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    content = req.json(allow_nul=True)
    delay = requested_delay(req)
    if delay is not None:
        assert req.requester is not None
        delay_id = await api.delayed_events.add(req.requester, req.params["roomId"],
                                                req.params["eventType"],
                                                req.params.get("stateKey", ""), content, delay)
        return 200, {"delay_id": delay_id}
    event_id = await api.room_sender.send_state(req.user_id, req.params["roomId"],
                                                req.params["eventType"],
                                                req.params.get("stateKey", ""), content)
    return 200, {"event_id": event_id}


async def get_state_event(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    reader = api.reader
    room_id = req.params["roomId"]
    access = await reader.check_read(req.user_id, room_id)
    event = await reader.get_state_event(access, req.params["eventType"],
                                         req.params.get("stateKey", ""))
    if event is None:
        raise not_found("Event not found.")
    if query_str(req.args, "format", "content") == "event":
        assert req.requester is not None
        return 200, (await reader.serialize(req.requester, room_id, [event]))[0]
    return 200, event.content


async def get_state(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/state"""
    assert req.requester is not None
    room_id = req.params["roomId"]
    access = await api.reader.check_read(req.user_id, room_id)
    state = await api.reader.get_state(access)
    events = sorted(state.values(), key=lambda e: (e.depth, e.event_id))
    return 200, await api.reader.serialize(req.requester, room_id, events)


async def find_visible_event(api: RoomsApi, req: HttpRequest, access: ReadAccess,
                             event_id: str) -> tuple[int, Event]:
    """The event and its stream position, if the reader may see it; else 404."""
    stores = api.stores
    pos = await stores.events.get_event_position(event_id)
    if pos is None or pos.room_nid != access.room.room_nid or pos.stream_ordering is None \
            or (access.until_stream is not None
                and pos.stream_ordering > access.until_stream):
        raise not_found("Event not found.")
    event = await stores.events.get_event(event_id)
    visible = [] if event is None else await api.reader.filter_visible(
        req.user_id, access, [(pos.stream_ordering, event)])
    if not visible:
        raise not_found("Event not found.")
    # the gate's copy: an erased sender's event may be redacted for this reader
    return pos.stream_ordering, visible[0]


async def get_event(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}"""
    assert req.requester is not None
    room_id = req.params["roomId"]
    try:
        access = await api.reader.check_read(req.user_id, room_id)
    except MatrixError as e:
        # a room the reader may not see: the event is not found, as on
        # Synapse (which does not say whether the room exists either)
        raise not_found("Event not found.") from e
    pos, event = await find_visible_event(api, req, access, req.params["eventId"])
    return 200, (await api.reader.serialize_at(req.requester, room_id, access.membership,
                                               [event], [pos]))[0]


async def get_messages(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/messages"""
    assert req.requester is not None
    reader = api.reader
    room_id = req.params["roomId"]
    direction = query_str(req.args, "dir")
    if direction not in ("b", "f"):
        raise invalid_param("'dir' must be 'b' or 'f'")
    event_filter = parse_room_event_filter(query_str(req.args, "filter", None))
    limit = parse_limit(req.args, event_filter)
    from_token = query_str(req.args, "from", None)
    to_token = query_str(req.args, "to", None)
    from_pos = parse_token(from_token) if from_token is not None else None
    to_pos = parse_token(to_token) if to_token is not None else None
    access = await reader.check_read(req.user_id, room_id)
    backwards = direction == "b"
    if from_pos is None:
        # forwards from the very start: below zero sits backfilled history
        if backwards:
            # the client's own writes just answered are in what it reads
            await api.stream_tracker.writes_before_ended(api.reactor)
            from_pos = api.stream_tracker.persisted_upto
        else:
            from_pos = -(2**62)
    if backwards:
        # reading back past the start of what we hold of a room joined over
        # federation: fetch the history before it from a server in the room
        await api.federation_event_handler.maybe_backfill(access.room, from_pos, limit)
    page = await reader.paginate(req.user_id, access, from_pos=from_pos, to_pos=to_pos,
                                 backwards=backwards, limit=limit,
                                 event_filter=event_filter)
    body: dict[str, Any] = {
        "start": f"s{from_pos}",
        "chunk": await reader.serialize_at(req.requester, room_id, access.membership,
                                           page.events, page.positions),
    }
    if limit and (page.events or not page.exhausted):
        # as Synapse: left out only when this page is empty and nothing is
        # left to read (a client stops paginating when it is missing)
        body["end"] = f"s{page.next_pos}"
    if event_filter.lazy_load_members and page.events:
        members = await reader.get_state_at_event(page.events[0].event_id,
                                                  senders_members(page.events))
        if members:
            body["state"] = await reader.serialize(req.requester, room_id,
                                                   list(members.values()))
    return 200, body


async def get_context(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}"""
    assert req.requester is not None
    reader = api.reader
    room_id = req.params["roomId"]
    event_filter = parse_room_event_filter(query_str(req.args, "filter", None))
    limit = parse_limit(req.args, event_filter)
    access = await reader.check_read(req.user_id, room_id)
    pos, event = await find_visible_event(api, req, access, req.params["eventId"])
    # Synapse's split: the smaller half before
    before = await reader.paginate(req.user_id, access, from_pos=pos - 1, to_pos=None,
                                   backwards=True, limit=limit // 2,
                                   event_filter=event_filter)
    after = await reader.paginate(req.user_id, access, from_pos=pos, to_pos=None,
                                  backwards=False, limit=limit - limit // 2,
                                  event_filter=event_filter)
    # the state at the last event returned
    last = after.events[-1] if after.events else event
    last_pos = await api.stores.events.get_event_position(last.event_id)
    state: dict[tuple[str, str], Event] = {}
    if last_pos is not None and last_pos.snapshot_nid is not None:
        state = await reader.get_state_at_snapshot(last_pos.snapshot_nid)
    if event_filter.lazy_load_members:
        wanted = set(senders_members([*before.events, event, *after.events]))
        state = {k: v for k, v in state.items() if k[0] != "m.room.member" or k in wanted}
    serialize = reader.serialize
    # each event with the requester's membership at it (MSC4115)
    timeline = await reader.serialize_at(
        req.requester, room_id, access.membership, [*before.events, event, *after.events],
        [*before.positions, pos, *after.positions])
    n_before = len(before.events)
    return 200, {
        "event": timeline[n_before],
        "events_before": timeline[:n_before],
        "events_after": timeline[n_before + 1:],
        "state": await serialize(req.requester, room_id, sorted(
            state.values(), key=lambda e: (e.depth, e.event_id))),
        "start": f"s{before.next_pos}",
        "end": f"s{after.next_pos}",
    }


async def put_redact(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}"""
    assert req.requester is not None
    check_txn_id(req.params["txnId"])
    txn = NewEventTxn(req.user_id, txn_scope(req.requester), req.params["txnId"])
    return await redact(api, req, txn)


async def post_redact(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/redact/{eventId}

    The form without a transaction ID (not in the spec; Synapse and older
    clients have it): every request is a new redaction."""
    return await redact(api, req, None)


async def redact(api: RoomsApi, req: HttpRequest, txn: NewEventTxn | None) -> tuple[int, Any]:
    body = req.json(allow_empty=True)
    reason = get_str(body, "reason", None)
    moderation = api.room_sender.user_moderation
    if moderation is not None and moderation.is_suspended(req.user_id):
        target = await api.stores.events.get_event(req.params["eventId"])
        if target is not None and target.sender != req.user_id:
            raise MatrixError(403, Codes.USER_SUSPENDED, "You can only redact your own events "
                              "while account is suspended.")
    api.message_ratelimiter.ratelimit(req.user_id)
    event_id = await redact_event(api.stores, api.event_creator, req.user_id,
                                  req.params["roomId"], req.params["eventId"],
                                  reason=reason, txn_id=txn)
    return 200, {"event_id": event_id}


async def get_timestamp_to_event(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event"""
    room_id = req.params["roomId"]
    ts = query_int(req.args, "ts")
    direction = query_str(req.args, "dir")
    if direction not in ("b", "f"):
        raise invalid_param("'dir' must be 'b' or 'f'")
    if not 0 <= ts < 2**62:
        raise invalid_param("'ts' is out of range")
    access = await api.reader.check_read(req.user_id, room_id)
    candidates = await api.stores.events.get_events_near_timestamp(
        access.room.room_nid, ts, forwards=direction == "f",
        until=access.until_stream, limit=TIMESTAMP_CANDIDATES)
    visible = {e.event_id for e in await api.reader.filter_visible(
        req.user_id, access, sorted(candidates, key=lambda c: c[0]))}
    for _, event in candidates:
        if event.event_id in visible:
            return 200, {"event_id": event.event_id,
                         "origin_server_ts": event.origin_server_ts}
    raise not_found(f"Unable to find event from {ts} in direction {direction}")


_ROOM = f"{CLIENT_V3}/rooms/{{roomId}}"
ENDPOINTS = (
    Endpoint("POST", f"{CLIENT_V3}/createRoom", post_create_room),
    Endpoint("PUT", f"{_ROOM}/send/{{eventType}}/{{txnId}}", put_send, allow_guest=True),
    Endpoint("POST", f"{_ROOM}/send/{{eventType}}", post_send, allow_guest=True),
    # no optional segments in the router: the empty state key is its own route
    Endpoint("PUT", f"{_ROOM}/state/{{eventType}}/{{stateKey}}", put_state,
             allow_guest=True),
    Endpoint("PUT", f"{_ROOM}/state/{{eventType}}", put_state, allow_guest=True),
    Endpoint("GET", f"{_ROOM}/state/{{eventType}}/{{stateKey}}", get_state_event,
             allow_guest=True),
    Endpoint("GET", f"{_ROOM}/state/{{eventType}}", get_state_event, allow_guest=True),
    Endpoint("GET", f"{_ROOM}/state", get_state, allow_guest=True),
    Endpoint("GET", f"{_ROOM}/event/{{eventId}}", get_event, allow_guest=True),
    Endpoint("GET", f"{_ROOM}/messages", get_messages, allow_guest=True),
    Endpoint("GET", f"{_ROOM}/context/{{eventId}}", get_context, allow_guest=True),
    Endpoint("PUT", f"{_ROOM}/redact/{{eventId}}/{{txnId}}", put_redact),
    Endpoint("POST", f"{_ROOM}/redact/{{eventId}}", post_redact),
    Endpoint("GET", f"{CLIENT_V1}/rooms/{{roomId}}/timestamp_to_event",
             get_timestamp_to_event),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    api = RoomsApi(
        stores=hs.stores, reader=hs.room_reader, room_creation=hs.room_creation,
        room_sender=hs.room_sender, event_creator=hs.event_creator,
        message_ratelimiter=hs.ratelimiters["message"], stream_tracker=hs.db.stream_tracker,
        federation_event_handler=hs.federation_event_handler,
        default_room_version=hs.config.default_room_version,
        delayed_events=hs.delayed_events, reactor=hs.reactor)
    router.add_endpoints(api, ENDPOINTS)
