"""Transactions and events over federation: /send, /event, /state,
/state_ids, /event_auth, /backfill, /get_missing_events.

``/send`` answers once per (origin, txnId): the response is stored and a
retry gets it again without re-processing. PDUs are checked one by one (a
bad one gets its error in the response, the others go on); the rooms of a
transaction are handled side by side, the PDUs of one room in order. EDUs
are handed to ``federation/edus.py`` and never fail the transaction.

The read endpoints answer only a server with a user joined to the room (as
Synapse does), or for a world-readable room; otherwise 403 M_FORBIDDEN.
Server ACLs deny a banned server everything about the room. The events of
``/event``, ``/backfill`` and ``/get_missing_events`` pass the history
visibility rules for servers (``federation/visibility.py``): what the asking
server may not see goes out redacted. ``/state``, ``/state_ids`` and
``/event_auth`` return their events as they are, as Synapse does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.api.federation import FEDERATION_V1
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.events.hashes import compute_event_id
from homeserver.events.identifiers import is_storable_text
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.federation.event_handler import PduError, pdu_for_federation
from homeserver.federation.visibility import ServerEventFilter
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, Router
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.server import HomeServer

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
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


def register_routes(hs: "HomeServer", router: Router) -> None:
    stores = hs.stores
    handler = hs.federation_event_handler
    server_filter = ServerEventFilter(stores.events)

    async def reader_in(req: HttpRequest, room_id: str) -> tuple[RoomInfo, dict[str, str]]:
        """The room, if ``req.origin`` may read it, and the memberships of
        the origin's users in it (what its visibility is judged by)."""
        room = await stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not await handler.origin_allowed(room, req.origin):
            raise forbidden("Server is banned from this room")
        memberships = await stores.rooms.get_memberships_of_server(room.room_nid, req.origin)
        if "join" in memberships.values():
            return room, memberships
        ids = await stores.rooms.get_current_state_ids(
            room.room_nid, [("m.room.history_visibility", "")])
        if ids:
            event = await stores.events.get_event(ids[("m.room.history_visibility", "")])
            if event is not None and event.content.get("history_visibility") == \
                    "world_readable":
                return room, memberships
        raise forbidden("Server is not in this room")

    async def room_for(req: HttpRequest, room_id: str) -> RoomInfo:
        """The room, if ``req.origin`` may read it."""
        room, _ = await reader_in(req, room_id)
        return room

    async def put_send(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v1/send/{txnId}"""
        txn_id = req.params["txnId"]
        origin = req.origin
        earlier = await stores.federation_events.get_inbound_txn(origin, txn_id)
        if earlier is not None:
            return 200, earlier
        body = req.json()
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise MatrixError(400, Codes.BAD_JSON, "pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(400, Codes.BAD_JSON,
                              f"At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")
        if body.get("origin") not in (None, origin):
            raise MatrixError(400, Codes.BAD_JSON, "origin does not match the signature")
        results: dict[str, Any] = {}
        by_room: dict[str, list[Any]] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
            if not isinstance(room_id, str):
                continue
            by_room.setdefault(room_id, []).append(pdu)

        async def one_room(room_id: str, room_pdus: list[Any]) -> None:
            # no room has NUL in its ID (PostgreSQL could not even look one up)
            room = await stores.rooms.get_room(room_id) if is_storable_text(room_id) else None
            if room is not None and len(room_pdus) > 1:
                # a run of plain messages extending the room: one transaction
                rv = KNOWN_ROOM_VERSIONS[room.room_version]
                checked: list[Any] = []
                for pdu in room_pdus:
                    try:
                        checked.append(await handler.check_pdu(pdu, rv))
                    except PduError:
                        break
                if len(checked) == len(room_pdus):
                    try:
                        done = await handler.receive_linear_batch(origin, room, checked)
                    except Exception:
                        # one transaction for the run: nothing of it is stored,
                        # and each PDU gets its own chance (and result) below
                        logger.exception("persisting a run of %d PDUs from %s failed",
                                         len(checked), origin)
                        done = 0
                    for event in checked[:done]:
                        results[event.event_id] = {}
                    room_pdus = room_pdus[done:]
            for pdu in room_pdus:
                if room is None:
                    event_id = pdu.get("event_id")
                    if isinstance(event_id, str):
                        results[event_id] = {"error": "Unknown room"}
                    continue
                rv = KNOWN_ROOM_VERSIONS[room.room_version]
                try:
                    event = await handler.check_pdu(pdu, rv)
                except PduError as e:
                    event_id = _event_id_of(pdu, rv)
                    logger.info("PDU %s from %s refused: %s", event_id, origin, e)
                    if event_id is not None:
                        results[event_id] = {"error": str(e)}
                    continue
                try:
                    await handler.on_receive_pdu(origin, event)
                    results[event.event_id] = {}
                except PduError as e:
                    results[event.event_id] = {"error": str(e)}
                except Exception as e:  # one bad PDU must not fail the others
                    logger.exception("handling PDU %s from %s failed", event.event_id, origin)
                    results[event.event_id] = {"error": f"Internal error: {type(e).__name__}"}

        await defer.DeferredList([defer.ensureDeferred(one_room(r, p))
                                  for r, p in by_room.items()], consumeErrors=True)
        for edu in edus:
            if not isinstance(edu, dict) or not isinstance(edu.get("edu_type"), str):
                continue
            hs.run_in_background(hs.edu_handler.on_edu(origin, edu["edu_type"],
                                                       edu.get("content")))
        response = {"pdus": results}
        await stores.federation_events.store_inbound_txn(origin, txn_id, response,
                                                         hs.now_ms())
        return 200, response

    async def get_event(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/federation/v1/event/{eventId}"""
        event = await stores.events.get_event(req.params["eventId"])
        if event is None:
            raise not_found("Unknown event")
        _, memberships = await reader_in(req, event.room_id)
        (event,) = await server_filter.filter(req.origin, memberships, [event])
        return 200, {"origin": hs.hostname, "origin_server_ts": hs.now_ms(),
                     "pdus": [pdu_for_federation(event)]}

    async def state_at(req: HttpRequest) -> tuple[RoomInfo, dict[Any, str]]:
        room = await room_for(req, req.params["roomId"])
        event_ids = _str_args(req, "event_id")
        if not event_ids:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing event_id")
        event = await stores.events.get_event(event_ids[0])
        if event is None or event.room_id != room.room_id:
            raise not_found("Unknown event")
        state = await stores.federation_events.get_state_ids_before(event.event_id)
        if state is None:
            raise not_found("No state for this event")
        return room, state

    async def auth_chain_ids(event_ids: list[str]) -> list[str]:
        info = await stores.federation_events.get_event_info(event_ids)
        nids = await stores.auth_chains.get_auth_chain_nids([i.event_nid for i in info.values()])
        events = await stores.events.get_events_by_nid(list(nids))
        return [e.event_id for e in events.values()]

    async def get_state_ids(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/federation/v1/state_ids/{roomId}"""
        _, state = await state_at(req)
        ids = list(state.values())
        return 200, {"pdu_ids": ids, "auth_chain_ids": await auth_chain_ids(ids)}

    async def get_state(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/federation/v1/state/{roomId}"""
        _, state = await state_at(req)
        ids = list(state.values())
        chain = await auth_chain_ids(ids)
        events = await stores.events.get_events(ids + chain)
        return 200, {"pdus": [pdu_for_federation(events[e]) for e in ids if e in events],
                     "auth_chain": [pdu_for_federation(events[e]) for e in chain
                                    if e in events]}

    async def get_event_auth(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}"""
        room = await room_for(req, req.params["roomId"])
        event = await stores.events.get_event(req.params["eventId"])
        if event is None or event.room_id != room.room_id:
            raise not_found("Unknown event")
        chain = await auth_chain_ids([event.event_id])
        events = await stores.events.get_events(chain)
        return 200, {"auth_chain": [pdu_for_federation(events[e]) for e in chain
                                    if e in events]}

    async def get_backfill(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/federation/v1/backfill/{roomId}"""
        room, memberships = await reader_in(req, req.params["roomId"])
        starts = _str_args(req, "v")
        if not starts:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing v")
        limit = max(0, min(_int_arg(req, "limit", 10), MAX_BACKFILL))
        ids = await stores.federation_events.get_prev_events_for_backfill(
            room.room_nid, starts, limit)
        events = await stores.events.get_events(ids)
        shown = await server_filter.filter(req.origin, memberships,
                                           [events[e] for e in ids if e in events])
        return 200, {"origin": hs.hostname, "origin_server_ts": hs.now_ms(),
                     "pdus": [pdu_for_federation(e) for e in shown]}

    async def post_get_missing_events(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/federation/v1/get_missing_events/{roomId}"""
        room, memberships = await reader_in(req, req.params["roomId"])
        body = req.json()
        earliest = body.get("earliest_events", [])
        latest = body.get("latest_events")
        limit = body.get("limit", 10)
        min_depth = body.get("min_depth", 0)
        if not (isinstance(earliest, list) and all(isinstance(e, str) for e in earliest)
                and isinstance(latest, list) and all(isinstance(e, str) for e in latest)
                and isinstance(limit, int) and isinstance(min_depth, int)):
            raise MatrixError(400, Codes.BAD_JSON, "Bad get_missing_events request")
        ids = await stores.federation_events.get_missing_events(
            room.room_nid, earliest, latest, max(0, min(limit, MAX_MISSING_EVENTS)), min_depth)
        events = await stores.events.get_events(ids)
        shown = await server_filter.filter(req.origin, memberships,
                                           [events[e] for e in ids if e in events])
        return 200, {"events": [pdu_for_federation(e) for e in shown]}

    f = FEDERATION_V1
    router.add("PUT", f + "/send/{txnId}", put_send, auth=AUTH_FEDERATION,
               max_body=MAX_TXN_BYTES)
    router.add("GET", f + "/event/{eventId}", get_event, auth=AUTH_FEDERATION)
    router.add("GET", f + "/state/{roomId}", get_state, auth=AUTH_FEDERATION)
    router.add("GET", f + "/state_ids/{roomId}", get_state_ids, auth=AUTH_FEDERATION)
    router.add("GET", f + "/event_auth/{roomId}/{eventId}", get_event_auth,
               auth=AUTH_FEDERATION)
    router.add("GET", f + "/backfill/{roomId}", get_backfill, auth=AUTH_FEDERATION)
    router.add("POST", f + "/get_missing_events/{roomId}", post_get_missing_events,
               auth=AUTH_FEDERATION)


def _event_id_of(pdu: Any, rv: Any) -> str | None:
    """The ID of a PDU we refuse, to name it in the response (None when it
    is too broken to have one)."""
    if not isinstance(pdu, dict):
        return None
    if not rv.event_ids_are_hashes:
        event_id = pdu.get("event_id")
        return event_id if isinstance(event_id, str) else None
    try:
        return compute_event_id(pdu, rv)
    except Exception:  # not hashable JSON: no ID to name
        return None
