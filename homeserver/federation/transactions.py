"""Inbound transactions: what PUT /_matrix/federation/v1/send/{txnId} does.

A transaction answers once per (origin, txnId): the response is stored and a
retry gets it again without re-processing (a sender that lost our answer
must not have its PDUs handled twice).

Limits: at most ``MAX_PDUS`` PDUs and ``MAX_EDUS`` EDUs, both lists; a body
naming another origin than the signature's is refused (400 M_BAD_JSON).

PDUs are checked one by one: a bad one gets its error in the response, the
others go on. The rooms of a transaction are handled side by side, the PDUs
of one room in order. A run of several PDUs for one known room that all
pass their checks is first offered to the event handler as one batch (one
database transaction: a busy room's messages are cheap); if that stops
part-way, or fails, the rest go one by one, each with its own result.

EDUs are handed to ``edus.py`` in the background and never fail the
transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.errors import Codes, MatrixError
from homeserver.events.hashes import compute_event_id
from homeserver.events.identifiers import is_storable_text
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.federation.event_handler import PduError

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.federation.edus import EduHandler
    from homeserver.federation.event_handler import FederationEventHandler
    from homeserver.moderation.gate import ModerationGate
    from homeserver.storage.federation_events import FederationEventStore
    from homeserver.storage.rooms import RoomInfo, RoomStore

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100

# event ID -> {} (accepted) or {"error": why}
PduResults = dict[str, dict[str, str]]


def parse_transaction(origin: str, body: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The PDUs and EDUs of a transaction body (400 M_BAD_JSON past the limits
    or for another origin); the entries themselves are checked later."""
    pdus = body.get("pdus", [])
    edus = body.get("edus", [])
    if not isinstance(pdus, list) or not isinstance(edus, list):
        raise MatrixError(400, Codes.BAD_JSON, "pdus and edus must be lists")
    if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
        raise MatrixError(400, Codes.BAD_JSON,
                          f"At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")
    if body.get("origin") not in (None, origin):
        raise MatrixError(400, Codes.BAD_JSON, "origin does not match the signature")
    return pdus, edus


def pdus_by_room(pdus: list[Any]) -> dict[str, list[Any]]:
    """The PDUs of each room, in transaction order (those naming no room are
    left out: they have no result to give)."""
    by_room: dict[str, list[Any]] = {}
    for pdu in pdus:
        room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
        if isinstance(room_id, str):
            by_room.setdefault(room_id, []).append(pdu)
    return by_room


def event_id_of(pdu: Any, rv: RoomVersion) -> str | None:
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


class TransactionReceiver:
    """Handles the transactions other servers push to us (module docstring)."""

    def __init__(self, ctx: "ServerContext", txns: "FederationEventStore",
                 rooms: "RoomStore", event_handler: "FederationEventHandler",
                 edu_handler: "EduHandler") -> None:
        self.ctx = ctx
        self.txns = txns
        self.rooms = rooms
        self.event_handler = event_handler
        self.edu_handler = edu_handler
        # spam checker modules' should_drop_federated_event (moderation/gate.py;
        # set by HomeServer._wire_late when a module is loaded)
        self.gate: "ModerationGate | None" = None

    async def receive(self, origin: str, txn_id: str,
                      read_body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The response to transaction ``txn_id`` of ``origin``. ``read_body``
        parses the request body: a retry is answered before it is read."""
        earlier = await self.txns.get_inbound_txn(origin, txn_id)
        if earlier is not None:
            return earlier  # type: ignore[no-any-return]
        pdus, edus = parse_transaction(origin, read_body())
        results: PduResults = {}
        await defer.DeferredList(
            [defer.ensureDeferred(self._one_room(origin, room_id, room_pdus, results))
             for room_id, room_pdus in pdus_by_room(pdus).items()], consumeErrors=True)
        self._hand_over_edus(origin, edus)
        response = {"pdus": results}
        await self.txns.store_inbound_txn(origin, txn_id, response, self.ctx.now_ms())
        return response

    async def _one_room(self, origin: str, room_id: str, pdus: list[Any],
                        results: PduResults) -> None:
        # no room has NUL in its ID (PostgreSQL could not even look one up)
        room = await self.rooms.get_room(room_id) if is_storable_text(room_id) else None
        if room is None:
            for pdu in pdus:
                event_id = pdu.get("event_id")
                if isinstance(event_id, str):
                    results[event_id] = {"error": "Unknown room"}
            return
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        if self.gate is not None:
            kept = []
            for pdu in pdus:
                if await self.gate.should_drop_federated_event(pdu):
                    event_id = event_id_of(pdu, rv)
                    logger.info("a module dropped PDU %s from %s", event_id, origin)
                    if event_id is not None:
                        results[event_id] = {}
                    continue
                kept.append(pdu)
            pdus = kept
        if len(pdus) > 1:
            pdus = await self._linear_run(origin, room, pdus, results)
        for pdu in pdus:
            await self._one_pdu(origin, rv, pdu, results)

    async def _linear_run(self, origin: str, room: "RoomInfo", pdus: list[Any],
                          results: PduResults) -> list[Any]:
        """A run of plain messages extending the room, persisted in one
        transaction when every PDU passes its checks; the PDUs left to handle
        one by one."""
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        checked: list[Event] = []
        for pdu in pdus:
            try:
                checked.append(await self.event_handler.check_pdu(pdu, rv))
            except PduError:
                return pdus
        try:
            done = await self.event_handler.receive_linear_batch(origin, room, checked)
        except Exception:
            # one transaction for the run: nothing of it is stored, and each
            # PDU gets its own chance (and result) one by one
            logger.exception("persisting a run of %d PDUs from %s failed",
                             len(checked), origin)
            done = 0
        for event in checked[:done]:
            results[event.event_id] = {}
        return pdus[done:]

    async def _one_pdu(self, origin: str, rv: RoomVersion, pdu: Any,
                       results: PduResults) -> None:
        try:
            event = await self.event_handler.check_pdu(pdu, rv)
        except PduError as e:
            event_id = event_id_of(pdu, rv)
            logger.info("PDU %s from %s refused: %s", event_id, origin, e)
            if event_id is not None:
                results[event_id] = {"error": str(e)}
            return
        try:
            await self.event_handler.on_receive_pdu(origin, event)
            results[event.event_id] = {}
        except PduError as e:
            results[event.event_id] = {"error": str(e)}
        except Exception as e:  # one bad PDU must not fail the others
            logger.exception("handling PDU %s from %s failed", event.event_id, origin)
            results[event.event_id] = {"error": f"Internal error: {type(e).__name__}"}

    def _hand_over_edus(self, origin: str, edus: list[Any]) -> None:
        for edu in edus:
            if not isinstance(edu, dict) or not isinstance(edu.get("edu_type"), str):
                continue
            self.ctx.run_in_background(self.edu_handler.on_edu(origin, edu["edu_type"],
                                                               edu.get("content")))
