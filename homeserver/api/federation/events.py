"""Transactions and events over federation: /send, /event, /state,
/state_ids, /event_auth, /backfill, /get_missing_events.

``/send`` hands the transaction to ``federation/transactions.py`` (answered
once per (origin, txnId); PDUs checked one by one, rooms side by side; EDUs
never fail it).

The read endpoints answer only a server with a user joined to the room (as
Synapse does), or for a world-readable room; otherwise 403 M_FORBIDDEN.
Server ACLs deny a banned server everything about the room. The events of
``/event``, ``/backfill`` and ``/get_missing_events`` pass the history
visibility rules for servers (``federation/visibility.py``): what the asking
server may not see goes out redacted. ``/state``, ``/state_ids`` and
``/event_auth`` return their events as they are, as Synapse does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.api.federation import FEDERATION_V1
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.federation.event_handler import pdu_for_federation
from homeserver.federation.visibility import ServerEventFilter
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, Endpoint, Router
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.event_handler import FederationEventHandler
    from homeserver.federation.transactions import TransactionReceiver
    from homeserver.server import HomeServer
    from homeserver.storage import Stores

MAX_TXN_BYTES = 10 * 1024 * 1024
MAX_BACKFILL = 100
MAX_MISSING_EVENTS = 20


def _int_arg(req: HttpRequest, name: str, default: int) -> int:
    values = req.args.get(name.encode("ascii"))
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise invalid_param(f"{name} must be an integer") from None


def _str_args(req: HttpRequest, name: str) -> list[str]:
    return [v.decode("utf-8", "replace") for v in req.args.get(name.encode("ascii"), [])]



class FederationEvents:
    """What the event endpoints use, and the checks they share: may the
    asking server read a room, and the auth chain of some events."""

    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 event_handler: "FederationEventHandler",
                 transactions: "TransactionReceiver") -> None:
        self.ctx = ctx
        self.stores = stores
        self.event_handler = event_handler
        self.transactions = transactions
        self.server_filter = ServerEventFilter(stores.events, stores.users)

    async def reader_in(self, req: HttpRequest, room_id: str) -> tuple[RoomInfo, dict[str, str]]:
        """The room, if ``req.origin`` may read it, and the memberships of
        the origin's users in it (what its visibility is judged by)."""
        stores = self.stores
        room = await stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not await self.event_handler.origin_allowed(room, req.origin):
            raise forbidden("Server is banned from this room")
        memberships = await stores.rooms.get_memberships_of_server(room.room_nid, req.origin)
        if "join" in memberships.values() or await self._world_readable(room):
            return room, memberships
        raise forbidden("Server is not in this room")

    async def _world_readable(self, room: RoomInfo) -> bool:
        ids = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [("m.room.history_visibility", "")])
        if not ids:
            return False
        event = await self.stores.events.get_event(ids[("m.room.history_visibility", "")])
        return event is not None and \
            event.content.get("history_visibility") == "world_readable"

    async def room_for(self, req: HttpRequest, room_id: str) -> RoomInfo:
        """The room, if ``req.origin`` may read it."""
        room, _ = await self.reader_in(req, room_id)
        return room

    async def state_at(self, req: HttpRequest) -> tuple[RoomInfo, dict[Any, str]]:
        """The room and the state IDs before the event of the ``event_id`` argument."""
        room = await self.room_for(req, req.params["roomId"])
        event_ids = _str_args(req, "event_id")
        if not event_ids:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing event_id")
        event = await self.stores.events.get_event(event_ids[0])
        if event is None or event.room_id != room.room_id:
            raise not_found("Unknown event")
        state = await self.stores.federation_events.get_state_ids_before(event.event_id)
        if state is None:
            raise not_found("No state for this event")
        return room, state

    async def auth_chain_ids(self, event_ids: list[str]) -> list[str]:
        stores = self.stores
        info = await stores.federation_events.get_event_info(event_ids)
        nids = await stores.auth_chains.get_auth_chain_nids([i.event_nid for i in info.values()])
        events = await stores.events.get_events_by_nid(list(nids))
        return [e.event_id for e in events.values()]

    def pdus_answer(self, pdus: list[dict[str, Any]]) -> dict[str, Any]:
        """A transaction-shaped answer (``/event``, ``/backfill``) from us."""
        return {"origin": self.ctx.hostname, "origin_server_ts": self.ctx.now_ms(),
                "pdus": pdus}


async def put_send(fed: FederationEvents, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v1/send/{txnId}"""
    return 200, await fed.transactions.receive(req.origin, req.params["txnId"], req.json)


async def get_event(fed: FederationEvents, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/event/{eventId}"""
    event = await fed.stores.events.get_event(req.params["eventId"])
    if event is None:
        raise not_found("Unknown event")
    _, memberships = await fed.reader_in(req, event.room_id)
    (event,) = await fed.server_filter.filter(req.origin, memberships, [event])
    return 200, fed.pdus_answer([pdu_for_federation(event)])


async def get_state_ids(fed: FederationEvents, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/state_ids/{roomId}"""
    _, state = await fed.state_at(req)
    ids = list(state.values())
    return 200, {"pdu_ids": ids, "auth_chain_ids": await fed.auth_chain_ids(ids)}


async def get_state(fed: FederationEvents, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/state/{roomId}"""
    _, state = await fed.state_at(req)
    ids = list(state.values())
    chain = await fed.auth_chain_ids(ids)
    events = await fed.stores.events.get_events(ids + chain)
    return 200, {"pdus": [pdu_for_federation(events[e]) for e in ids if e in events],
                 "auth_chain": [pdu_for_federation(events[e]) for e in chain if e in events]}


async def get_event_auth(fed: FederationEvents, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}"""
    room = await fed.room_for(req, req.params["roomId"])
    event = await fed.stores.events.get_event(req.params["eventId"])
    if event is None or event.room_id != room.room_id:
        raise not_found("Unknown event")
    chain = await fed.auth_chain_ids([event.event_id])
    events = await fed.stores.events.get_events(chain)
    return 200, {"auth_chain": [pdu_for_federation(events[e]) for e in chain if e in events]}


async def get_backfill(fed: FederationEvents, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/backfill/{roomId}"""
    room, memberships = await fed.reader_in(req, req.params["roomId"])
    starts = _str_args(req, "v")
    if not starts:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing v")
    limit = max(0, min(_int_arg(req, "limit", 10), MAX_BACKFILL))
    ids = await fed.stores.federation_events.get_prev_events_for_backfill(
        room.room_nid, starts, limit)
    events = await fed.stores.events.get_events(ids)
    shown = await fed.server_filter.filter(req.origin, memberships,
                                           [events[e] for e in ids if e in events])
    return 200, fed.pdus_answer([pdu_for_federation(e) for e in shown])


def _missing_events_query(body: dict[str, Any]) -> tuple[list[str], list[str], int, int]:
    """(earliest, latest, limit, min_depth) of a get_missing_events body."""
    earliest = body.get("earliest_events", [])
    latest = body.get("latest_events")
    limit = body.get("limit", 10)
    min_depth = body.get("min_depth", 0)
    if not (isinstance(earliest, list) and all(isinstance(e, str) for e in earliest)
            and isinstance(latest, list) and all(isinstance(e, str) for e in latest)
            and isinstance(limit, int) and isinstance(min_depth, int)):
        raise MatrixError(400, Codes.BAD_JSON, "Bad get_missing_events request")
    return earliest, latest, max(0, min(limit, MAX_MISSING_EVENTS)), min_depth


async def post_get_missing_events(fed: FederationEvents, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/federation/v1/get_missing_events/{roomId}"""
    room, memberships = await fed.reader_in(req, req.params["roomId"])
    earliest, latest, limit, min_depth = _missing_events_query(req.json())
    ids = await fed.stores.federation_events.get_missing_events(
        room.room_nid, earliest, latest, limit, min_depth)
    events = await fed.stores.events.get_events(ids)
    shown = await fed.server_filter.filter(req.origin, memberships,
                                           [events[e] for e in ids if e in events])
    return 200, {"events": [pdu_for_federation(e) for e in shown]}


_V1 = FEDERATION_V1
ENDPOINTS = (
    Endpoint("PUT", f"{_V1}/send/{{txnId}}", put_send, auth=AUTH_FEDERATION,
             max_body=MAX_TXN_BYTES),
    Endpoint("GET", f"{_V1}/event/{{eventId}}", get_event, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/state/{{roomId}}", get_state, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/state_ids/{{roomId}}", get_state_ids, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/event_auth/{{roomId}}/{{eventId}}", get_event_auth,
             auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/backfill/{{roomId}}", get_backfill, auth=AUTH_FEDERATION),
    Endpoint("POST", f"{_V1}/get_missing_events/{{roomId}}", post_get_missing_events,
             auth=AUTH_FEDERATION),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(FederationEvents(hs.ctx, hs.stores, hs.federation_event_handler,
                                          hs.federation_transactions), ENDPOINTS)
