"""The inbound PDU pipeline: from another server's JSON to a persisted event.

Every PDU that reaches us (a /send transaction, a join response, a fetched
missing event) is first *checked* (``check_pdu``): well-formed for its room
version (events/validation.py), signed by every server that must sign it
(keys from ``federation/keys.py``), and its content hash right; a PDU whose
hash does not match is kept in its redacted form, as the spec says.

A checked timeline event is then *handled* under the room's write lock (the
same per-room lock as local sends, ``rooms/creator.py``), in this order:

1. its prev_events: those we lack are asked for with /get_missing_events
   (up to ``MAX_MISSING``) and handled first, oldest first; if some are still
   missing, the state before each of them comes from /state and the event
   sits on that ("a gap": we hold the state but not the history);
2. its auth_events: those we lack come from /event_auth and are stored as
   outliers after their own checks; the event is checked against them
   (``check_auth_events_list`` + the auth rules): failing is a rejection;
3. the state before it: the state after its prev_events, resolved
   (``rooms/state_res.py``) when there are several; the event must pass the
   auth rules against that state too, else it is rejected;
4. soft failure: an accepted event that fails the auth rules against the
   room's *current* state is stored but kept out of timelines and forward
   extremities (a banned user's server cannot keep talking through old
   prev_events);
5. the new current state: the state after it if it becomes the only forward
   extremity, else the resolution of the states after every extremity;
6. one transaction (``storage/federation_events.py``), then the notifier.

Rejected events are stored too (with ``rejected_reason``): other events may
name them, and nobody asks for them twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from homeserver.events.hashes import check_content_hash
from homeserver.events.model import Event
from homeserver.events.redaction import redact
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import SignatureError
from homeserver.events.validation import ValidationError, validate_pdu
from homeserver.federation.client import FederationError, RequestFailed
from homeserver.rooms.auth import AuthError, check_auth_events_list, check_auth_rules
from homeserver.rooms.power_levels import CREATE
from homeserver.rooms.redaction import may_apply_redaction
from homeserver.rooms.state_res import resolve_state
from homeserver.storage.federation_events import FederatedPersisted
from homeserver.storage.rooms import RoomInfo
from homeserver.storage.state import StateKey

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.edu.typing import TypingManager
    from homeserver.federation.client import FederationClient
    from homeserver.federation.keys import KeyRing
    from homeserver.federation.sender import FederationSender
    from homeserver.moderation.gate import ModerationGate
    from homeserver.rooms.creator import EventCreator
    from homeserver.storage import Stores
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

# prev_events fetched with /get_missing_events before falling back to /state
MAX_MISSING = 20
# events asked for in one /backfill, and servers tried
MAX_BACKFILL = 100
MAX_BACKFILL_SERVERS = 3
# a server whose /backfill failed is not asked again for this long: a client
# paging back through a room whose other servers are down waits once, not at
# every page
BACKFILL_FAILURE_MEMORY_MS = 60_000
# across a gap: events of the state we lack fetched one by one (/event) up to
# this many, else with one /state; and at most this many state events taken
MAX_EVENTS_FETCHED_SINGLY = 20
MAX_STATE_EVENTS = 1000
FEDERATION_V1 = "/_matrix/federation/v1"

StateIds = dict[StateKey, str]


class PduError(Exception):
    """A PDU we refuse: the message goes into the /send response."""


class InvalidPdu(PduError):
    """A PDU that is not a well-formed event of its room version (bad JSON,
    e.g. a float in a v6+ room): the endpoints that take one PDU answer 400
    M_BAD_JSON, as Synapse does, where a bad signature is a 403."""


def server_acl_allows(acl: Event | None, server_name: str) -> bool:
    """Whether ``m.room.server_acl`` lets ``server_name`` take part
    (client-server API, "Server Access Control Lists")."""
    if acl is None:
        return True
    import ipaddress

    from homeserver.glob import compile_glob

    content = acl.content
    host = server_name.rsplit(":", 1)[0] if not server_name.endswith("]") else server_name
    if host.startswith("[") or _is_ip(host, ipaddress):
        if not content.get("allow_ip_literals", True):
            return False

    def matches(patterns: Any) -> bool:
        if not isinstance(patterns, list):
            return False
        # only * and ? are wildcards (the spec's globs; fnmatch's [a-z] is not),
        # matched without backtracking: the patterns are any room admin's
        return any(isinstance(p, str) and compile_glob(p, True, True).matches(host)
                   for p in patterns)

    if matches(content.get("deny")):
        return False
    return matches(content.get("allow"))


def _is_ip(host: str, ipaddress: Any) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def pdu_for_federation(event: Event) -> dict[str, Any]:
    """The PDU as we send it to other servers (``unsigned`` is ours alone)."""
    out = dict(event.json)
    out.pop("unsigned", None)
    return out


class FederationEventHandler:
    def __init__(self, ctx: "ServerContext", stores: "Stores", keyring: "KeyRing",
                 client: "FederationClient", sender: "FederationSender",
                 event_creator: "EventCreator", notifier: "Notifier",
                 typing: "TypingManager") -> None:
        self.ctx = ctx
        self.stores = stores
        self.keyring = keyring
        self.client = client
        self.sender = sender
        # its room locks: inbound events are persisted under the same lock
        # as local sends
        self.event_creator = event_creator
        self.notifier = notifier
        self.typing = typing
        # server -> when its /backfill last failed (ms)
        self._backfill_failed: dict[str, int] = {}
        # the content filter, policy lists and spam checker modules
        # (moderation/gate.py), when any is on: spam PDUs are kept redacted
        self.spam_gate: "ModerationGate | None" = None
        # gaps in rooms' DAGs (missing prev_event IDs) we asked about lately
        self._gaps_asked: dict[str, int] = {}

    # -- checking ----------------------------------------------------------

    async def check_pdu(self, pdu: Any, room_version: RoomVersion) -> Event:
        """``pdu`` as an Event, if well-formed and signed; redacted if its
        content hash does not match. Raises PduError."""
        if isinstance(pdu, dict):
            # unsigned or unhashed is a matter of signatures (403, as
            # Synapse checks those first), not of format (400)
            hashes = pdu.get("hashes")
            if not pdu.get("signatures"):
                raise PduError("Bad signature: the event is not signed")
            if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
                raise PduError("Bad signature: the event has no content hash")
        try:
            validate_pdu(pdu, room_version)
        except ValidationError as e:
            raise InvalidPdu(f"Invalid PDU: {e}") from e
        pdu = dict(pdu)
        pdu.pop("unsigned", None)
        try:
            await self.keyring.verify_event_signatures(pdu, room_version)
        except SignatureError as e:
            raise PduError(f"Bad signature: {e}") from e
        if not check_content_hash(pdu):
            logger.info("content hash mismatch on a PDU from %s: redacting it",
                        pdu.get("sender"))
            pdu = redact(pdu, room_version)
        event = Event.from_pdu(pdu, room_version)
        if self.spam_gate is not None and await self.spam_gate.is_federated_spam(event):
            logger.info("%s from %s is spam: redacting it", event.event_id, event.sender)
            event = Event.from_pdu(redact(pdu, room_version), room_version)
        return event

    async def check_pdus(self, pdus: Iterable[Any], room_version: RoomVersion,
                         room_id: str | None = None) -> list[Event]:
        """The PDUs of ``pdus`` that pass ``check_pdu`` (the rest are dropped)."""
        out = []
        for pdu in pdus:
            try:
                event = await self.check_pdu(pdu, room_version)
            except PduError as e:
                logger.info("dropping a PDU: %s", e)
                continue
            if room_id is not None and event.room_id != room_id and \
                    not (event.type == "m.room.create" and room_version.room_id_from_create_event):
                continue
            out.append(event)
        return out

    # -- receiving ---------------------------------------------------------

    async def on_receive_pdu(self, origin: str, event: Event) -> None:
        """A PDU pushed to us (a /send transaction). Raises PduError."""
        room = await self.stores.rooms.get_room(event.room_id)
        if room is None:
            raise PduError("Unknown room")
        if not await self.origin_allowed(room, origin):
            raise PduError("Server is banned from this room by its server ACL")
        async with self.inbound_lock(room.room_id):
            await self._handle_new_event(origin, room, event)

    def inbound_lock(self, room_id: str) -> Any:
        """Serialises the inbound handling of one room. Fetching from other
        servers happens under this lock only; the room's write lock (shared
        with local sends) is held just to check and persist, so a slow or
        hanging peer never holds up our own users' messages."""
        return self.event_creator.room_lock("inbound:" + room_id)

    async def process_locked(self, origin: str, room: RoomInfo, event: Event, *,
                             state_before: StateIds | None = None
                             ) -> FederatedPersisted | None:
        """``process_event`` with the network part (auth events) done first,
        then the room's write lock for the rest."""
        await self._ensure_auth_events(origin, room, event)
        async with self.event_creator.room_lock(room.room_id):
            info = await self.stores.federation_events.get_event_info([event.event_id])
            if event.event_id in info:
                return None
            return await self.process_event(origin, room, event, state_before=state_before)

    async def origin_allowed(self, room: RoomInfo, origin: str) -> bool:
        ids = await self.stores.rooms.get_current_state_ids(room.room_nid,
                                                            [("m.room.server_acl", "")])
        acl = await self.stores.events.get_event(ids[("m.room.server_acl", "")]) \
            if ids else None
        return server_acl_allows(acl, origin)

    async def _handle_new_event(self, origin: str, room: RoomInfo, event: Event) -> None:
        info = await self.stores.federation_events.get_event_info([event.event_id])
        if event.event_id in info:
            return
        missing = await self._missing_prevs(room, event)
        if missing:
            await self._fetch_missing(origin, room, event, missing)
            missing = await self._missing_prevs(room, event)
        if missing:
            # an event pushed to us may become the room's only forward
            # extremity, its state the room's: the sender must show us its
            # history. Refused, not stored (as Synapse): a later event that
            # names it asks for it again. Only events fetched for it may sit
            # on a gap (``_fetch_missing``).
            raise PduError("Your server isn't divulging details about prev_events "
                           "referenced in this event")
        await self.process_locked(origin, room, event)

    async def _missing_prevs(self, room: RoomInfo, event: Event) -> list[str]:
        """The prev_events of ``event`` we do not hold with their state. One
        we hold in another room counts as missing: a room's history (and
        state) never continues into another room's."""
        prevs = list(event.prev_event_ids)
        info = await self.stores.federation_events.get_event_info(prevs)
        return [p for p in prevs if p not in info or info[p].snapshot_nid is None
                or info[p].room_nid != room.room_nid]

    async def _fetch_missing(self, origin: str, room: RoomInfo, event: Event,
                             missing: list[str]) -> None:
        """/get_missing_events for the prev_events we lack, handled oldest first."""
        extremities = [x.event_id for x in
                       await self.stores.rooms.get_forward_extremities(room.room_nid)]
        try:
            body = await self.client.post_json(
                origin, f"{FEDERATION_V1}/get_missing_events/{_quote(room.room_id)}",
                {"earliest_events": extremities, "latest_events": [event.event_id],
                 "limit": MAX_MISSING, "min_depth": 0})
        except (RequestFailed, FederationError) as e:
            logger.info("get_missing_events from %s failed: %s", origin, e)
            return
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        pdus = body.get("events") if isinstance(body, dict) else None
        if not isinstance(pdus, list):
            return
        events = await self.check_pdus(pdus[:MAX_MISSING], rv, room.room_id)
        events.sort(key=lambda e: e.depth)
        for fetched in events:
            if fetched.event_id == event.event_id:
                continue
            info = await self.stores.federation_events.get_event_info([fetched.event_id])
            if fetched.event_id in info:
                continue
            prevs_missing = await self._missing_prevs(room, fetched)
            override = None
            if prevs_missing:
                override = await self._state_across_gap(origin, room, fetched, prevs_missing)
            await self.process_locked(origin, room, fetched, state_before=override)

    async def _state_across_gap(self, origin: str, room: RoomInfo, event: Event,
                                missing: list[str]) -> StateIds:
        """The state before ``event`` whose prev_events ``missing`` we cannot
        get: the state after each of them (/state_ids at it, plus itself),
        with the prev_events we hold, resolved."""
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        states: list[StateIds] = []
        for prev_id in missing:
            states.append(await self._state_after_remote(origin, room, rv, prev_id))
        held = [p for p in event.prev_event_ids if p not in missing]
        states += await self._states_after(room, held)
        return await self.resolve(rv, states)

    async def _state_after_remote(self, origin: str, room: RoomInfo, rv: RoomVersion,
                                  prev_id: str) -> StateIds:
        """The state after ``prev_id``, an event we do not hold, from
        ``origin``: the IDs of the state before it (/state_ids), the events
        among them and their auth chain we lack (/event each, or one /state
        when many), stored as outliers after their own checks (a forged
        event fails against its own auth events and is left out), and the
        event itself if it is state."""
        try:
            body = await self.client.get_json(
                origin, f"{FEDERATION_V1}/state_ids/{_quote(room.room_id)}",
                {"event_id": prev_id})
        except (RequestFailed, FederationError) as e:
            raise PduError(f"Cannot fetch the state before {prev_id}: {e}") from e
        pdu_ids = _str_list(body.get("pdu_ids")) if isinstance(body, dict) else None
        chain_ids = _str_list(body.get("auth_chain_ids")) if isinstance(body, dict) else None
        if pdu_ids is None or chain_ids is None:
            raise PduError("Bad /state_ids response")
        wanted = list(dict.fromkeys(chain_ids + pdu_ids + [prev_id]))
        held = await self.stores.federation_events.get_event_info(wanted)
        lacking = [e for e in wanted if e not in held]
        fetched: list[Event] = []
        if len(lacking) > MAX_EVENTS_FETCHED_SINGLY:
            fetched = await self._fetch_state(origin, room, rv, prev_id)
            lacking = [e for e in lacking if e not in {f.event_id for f in fetched}]
        for event_id in lacking[:MAX_STATE_EVENTS]:
            fetched += await self._fetch_event(origin, room, rv, event_id)
        fetched = [e for e in fetched if e.event_id in set(wanted)]
        await self.persist_checked_outliers(room, fetched)
        info = await self.stores.federation_events.get_event_info(pdu_ids + [prev_id])
        events = await self.stores.events.get_events(pdu_ids + [prev_id])
        state: StateIds = {}
        for event_id in pdu_ids + [prev_id]:
            ev = events.get(event_id)
            # (the create event of a room whose ID derives from it names no room)
            in_room = ev is not None and (ev.room_id == room.room_id or (
                rv.room_id_from_create_event and ev.type == "m.room.create"
                and event_id == "$" + room.room_id[1:]))
            if ev is None or not ev.is_state() or event_id not in info \
                    or info[event_id].rejected or not in_room:
                continue
            state[ev.state_pair()] = event_id
        return state

    async def _fetch_event(self, origin: str, room: RoomInfo, rv: RoomVersion,
                           event_id: str) -> list[Event]:
        """``event_id`` from ``origin`` (/event), checked; [] if not to be had."""
        try:
            body = await self.client.get_json(origin, f"{FEDERATION_V1}/event/{_quote(event_id)}")
        except (RequestFailed, FederationError) as e:
            logger.info("fetching %s from %s failed: %s", event_id, origin, e)
            return []
        pdus = _list(body.get("pdus")) if isinstance(body, dict) else []
        return [e for e in await self.check_pdus(pdus[:1], rv, room.room_id)
                if e.event_id == event_id]

    async def _fetch_state(self, origin: str, room: RoomInfo, rv: RoomVersion,
                           event_id: str) -> list[Event]:
        """The state before ``event_id`` and its auth chain (/state), checked."""
        try:
            body = await self.client.get_json(
                origin, f"{FEDERATION_V1}/state/{_quote(room.room_id)}", {"event_id": event_id})
        except (RequestFailed, FederationError) as e:
            logger.info("/state from %s failed: %s", origin, e)
            return []
        if not isinstance(body, dict):
            return []
        return await self.check_pdus(_list(body.get("auth_chain")) + _list(body.get("pdus")),
                                     rv, room.room_id)

    async def _states_after(self, room: RoomInfo, event_ids: list[str]) -> list[StateIds]:
        """The state after each of ``event_ids`` we hold in ``room``."""
        info = await self.stores.federation_events.get_event_info(event_ids)
        snapshots = [info[e].snapshot_nid for e in event_ids
                     if e in info and info[e].snapshot_nid is not None
                     and info[e].room_nid == room.room_nid]
        maps = await self.stores.federation_events.get_state_ids_at_snapshots(
            [s for s in snapshots if s is not None])
        return [maps[s] for s in snapshots if s is not None]

    async def resolve(self, rv: RoomVersion, states: list[StateIds]) -> StateIds:
        """State resolution over ``states``, with every event it needs read first."""
        unique = {tuple(sorted(s.items())): s for s in states}
        states = list(unique.values())
        if not states:
            return {}
        if len(states) == 1:
            return dict(states[0])
        ids = {e for s in states for e in s.values()}
        info = await self.stores.federation_events.get_event_info(ids)
        chain = await self.stores.auth_chains.get_auth_chain_nids(
            [i.event_nid for i in info.values()])
        by_nid = await self.stores.events.get_events_by_nid(list(chain))
        events = {e.event_id: e for e in by_nid.values()}
        events.update(await self.stores.events.get_events(list(ids)))
        return resolve_state(rv, states, events)

    async def persist_checked_outliers(self, room: RoomInfo, events: list[Event]) -> None:
        """Store checked events as outliers, auth events first; an event that
        fails the auth rules against its own auth_events is stored rejected."""
        if not events:
            return
        by_id = {e.event_id: e for e in events}
        held = await self.stores.federation_events.get_event_info(by_id)
        todo = [e for e in by_id.values() if e.event_id not in held]
        if not todo:
            return
        ordered = _auth_order(todo)
        known = await self.stores.events.get_events(
            [a for e in ordered for a in e.auth_event_ids if a not in by_id])
        known.update(by_id)
        out: list[Event] = []
        for event in ordered:
            rejected = self._auth_against_own_auth_events(event, known)
            if rejected is not None:
                event = Event(event.event_id, event.room_version, event.json, rejected)
                known[event.event_id] = event
            out.append(event)
        await self.stores.federation_events.persist_outliers(room.room_nid, out)

    @staticmethod
    def _auth_against_own_auth_events(event: Event, known: Mapping[str, Event]) -> str | None:
        """None if ``event`` passes the auth rules against its auth_events
        (all in ``known``), else why not."""
        auth = [known[a] for a in event.auth_event_ids if a in known]
        if len(auth) != len(set(event.auth_event_ids)):
            return "missing auth events"
        auth_map = {a.state_pair(): a for a in auth if a.is_state()}
        if event.room_version.room_id_from_create_event and event.type != "m.room.create":
            create = known.get("$" + event.room_id[1:])
            if create is None:
                return "missing create event"
            auth_map[CREATE] = create
        try:
            check_auth_events_list(event, auth)
            check_auth_rules(event, auth_map)
        except AuthError as e:
            return f"auth error: {e}"
        return None

    async def _ensure_auth_events(self, origin: str, room: RoomInfo, event: Event) -> None:
        """Fetch (/event_auth) and store the auth events of ``event`` we lack."""
        wanted = list(event.auth_event_ids)
        if event.room_version.room_id_from_create_event and event.type != "m.room.create":
            wanted.append("$" + event.room_id[1:])
        info = await self.stores.federation_events.get_event_info(wanted)
        if all(a in info for a in wanted):
            return
        try:
            body = await self.client.get_json(
                origin, f"{FEDERATION_V1}/event_auth/{_quote(room.room_id)}/"
                f"{_quote(event.event_id)}")
        except (RequestFailed, FederationError) as e:
            logger.info("event_auth from %s failed: %s", origin, e)
            return
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        chain = await self.check_pdus(_list(body.get("auth_chain"))
                                      if isinstance(body, dict) else [], rv, room.room_id)
        await self.persist_checked_outliers(room, chain)

    async def process_event(self, origin: str, room: RoomInfo, event: Event, *,
                            state_before: StateIds | None = None,
                            outliers: list[Event] | None = None,
                            check_soft_fail: bool = True) -> FederatedPersisted | None:
        """Auth-check and persist ``event`` (its prev_events held, or
        ``state_before`` given); the caller holds the room's lock."""
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        await self._ensure_auth_events(origin, room, event)
        auth_ids = list(event.auth_event_ids)
        if rv.room_id_from_create_event and event.type != "m.room.create":
            auth_ids.append("$" + event.room_id[1:])
        known = await self.stores.events.get_events(auth_ids)
        rejected = self._auth_against_own_auth_events(event, known)
        target: Event | None = None
        if event.type == "m.room.redaction" and event.redacts is not None:
            target = await self.stores.events.get_event(event.redacts)
            if target is not None and target.room_id != event.room_id and rejected is None:
                # as Synapse withholds it: no client ever sees such a redaction
                rejected = "redacts an event of another room"

        if state_before is None and rejected is None and check_soft_fail and target is None:
            done = await self._extend_linear(room, event)
            if done is not None:
                return done

        base_snapshot: int | None = None
        if state_before is None:
            info = await self.stores.federation_events.get_event_info(event.prev_event_ids)
            snapshots = list(dict.fromkeys(
                info[p].snapshot_nid for p in event.prev_event_ids
                if p in info and info[p].room_nid == room.room_nid))
            states = await self._states_after(room, list(event.prev_event_ids))
            state_before = await self.resolve(rv, states)
            if len(snapshots) == 1 and snapshots[0] is not None:
                base_snapshot = snapshots[0]
        state_events = await self.stores.events.get_events(list(state_before.values()))
        state_map = {k: state_events[v] for k, v in state_before.items() if v in state_events}
        if rejected is None:
            try:
                check_auth_rules(event, state_map)
            except AuthError as e:
                rejected = f"auth error against the state before it: {e}"
        if rejected is not None:
            logger.info("rejecting %s from %s: %s", event.event_id, origin, rejected)
            event = Event(event.event_id, event.room_version, event.json, rejected)
        # a redaction passes the auth rules without the redact level (v3+),
        # but applies only from the target's sender's server or with it
        # (room versions v3+, "Handling redactions"); one whose target we do
        # not hold yet is recorded, and served only in the target's room
        apply_redaction = target is None or may_apply_redaction(
            event.sender, target, state_map, same_server_suffices=True)

        soft_failed = False
        new_current: StateIds | None = None
        if rejected is None:
            current_ids = await self.stores.rooms.get_current_state_ids(room.room_nid)
            if check_soft_fail and current_ids:
                current_events = await self.stores.events.get_events(
                    [current_ids[k] for k in _auth_keys(event) if k in current_ids])
                current = {k: current_events[current_ids[k]] for k in _auth_keys(event)
                           if k in current_ids and current_ids[k] in current_events}
                try:
                    check_auth_rules(event, current)
                except AuthError as e:
                    logger.info("soft-failing %s from %s: %s", event.event_id, origin, e)
                    soft_failed = True
            if not soft_failed:
                after = dict(state_before)
                if event.is_state():
                    after[event.state_pair()] = event.event_id
                extremities = [x.event_id for x in
                               await self.stores.rooms.get_forward_extremities(room.room_nid)]
                others = [x for x in extremities if x not in event.prev_event_ids]
                if others:
                    new_current = await self.resolve(
                        rv, [after] + await self._states_after(room, others))
                else:
                    new_current = after
        result = await self.stores.federation_events.persist_federated(
            room.room_nid, room.room_id, event, state_before=state_before,
            base_snapshot=base_snapshot, soft_failed=soft_failed, new_current=new_current,
            outliers=outliers or [], apply_redaction=apply_redaction)
        self._notify(room, event, result)
        return result

    async def receive_linear_batch(self, origin: str, room: RoomInfo,
                                   events: list[Event]) -> int:
        """The common case of a busy room, cheaply: ``events`` (checked) are
        plain messages, each the only prev_event of the next, the first
        extending the room's only forward extremity. Then they are
        authorised against the current state (which none of them changes)
        and persisted in ONE transaction (``persist_messages_txn``). Returns
        how many were taken this way (0: not that case; the caller handles
        the rest one by one, which decides rejections and soft failures)."""
        if not await self.origin_allowed(room, origin):
            return 0
        if any(e.is_state() or e.type == "m.room.redaction" or len(e.prev_event_ids) != 1
               for e in events):
            return 0
        if any(events[i].prev_event_ids[0] != events[i - 1].event_id
               for i in range(1, len(events))):
            return 0
        async with self.inbound_lock(room.room_id):
            for event in events:
                await self._ensure_auth_events(origin, room, event)
            async with self.event_creator.room_lock(room.room_id):
                held = await self.stores.federation_events.get_event_info(
                    e.event_id for e in events)
                if held:
                    return 0
                extremities = await self.stores.rooms.get_forward_extremities(room.room_nid)
                if [x.event_id for x in extremities] != list(events[0].prev_event_ids):
                    return 0
                keys = set().union(*(_auth_keys(e) for e in events))
                ids = await self.stores.rooms.get_current_state_ids(room.room_nid, keys)
                auth_ids = {a for e in events for a in e.auth_event_ids}
                if room.room_version and \
                        KNOWN_ROOM_VERSIONS[room.room_version].room_id_from_create_event:
                    auth_ids.add("$" + room.room_id[1:])
                known = await self.stores.events.get_events(list(set(ids.values()) | auth_ids))
                current = {k: known[v] for k, v in ids.items() if v in known}
                for event in events:
                    if self._auth_against_own_auth_events(event, known) is not None:
                        return 0
                    try:
                        check_auth_rules(event, current)
                    except AuthError:
                        return 0
                persisted = await self.stores.events.persist_events(
                    [(e, None) for e in events], room_nid=room.room_nid,
                    now_ms=self.ctx.now_ms())
        for event, done in zip(events, persisted, strict=True):
            self._notify(room, event, FederatedPersisted(done.event_nid, done.stream_ordering,
                                                         done.snapshot_nid))
        return len(events)

    async def _extend_linear(self, room: RoomInfo, event: Event) -> FederatedPersisted | None:
        """The common case, cheaply: ``event``'s one prev_event is the room's
        only forward extremity, so the state before it is the current state
        and the current state after it is that plus itself: checked against
        the current state's auth events and persisted like a local event
        (no state maps loaded, nothing to resolve). None: not that case, or
        the check failed (the general path then decides between rejection
        and soft failure)."""
        if len(event.prev_event_ids) != 1:
            return None
        extremities = await self.stores.rooms.get_forward_extremities(room.room_nid)
        if [x.event_id for x in extremities] != list(event.prev_event_ids):
            return None
        keys = _auth_keys(event)
        ids = await self.stores.rooms.get_current_state_ids(room.room_nid, keys)
        events = await self.stores.events.get_events(list(ids.values()))
        current = {k: events[v] for k, v in ids.items() if v in events}
        try:
            check_auth_rules(event, current)
        except AuthError:
            return None
        persisted = await self.stores.events.persist_event(event, room_nid=room.room_nid,
                                                           now_ms=self.ctx.now_ms())
        result = FederatedPersisted(persisted.event_nid, persisted.stream_ordering,
                                    persisted.snapshot_nid)
        if event.type == "m.room.member" and event.state_key is not None \
                and event.membership is not None:
            result.membership_changes[event.state_key] = event.membership
        self._notify(room, event, result)
        return result

    async def maybe_backfill(self, room: RoomInfo, from_pos: int, limit: int) -> None:
        """Before a backwards read of ``limit`` events from ``from_pos``:
        fill the gaps in the DAG there (events whose prev_events we never
        received, e.g. after a /get_missing_events that did not reach
        back far enough), and if we hold fewer than that there and our
        earliest event is not the room's creation, fetch older events
        (/backfill) from the servers in the room. Failures only mean a
        shorter history."""
        wanted = max(limit, 10)
        now = self.ctx.now_ms()
        for memory in (self._backfill_failed, self._gaps_asked):
            for key, failed_at in list(memory.items()):
                if now - failed_at >= BACKFILL_FAILURE_MEMORY_MS:
                    del memory[key]
        gaps = await self.stores.federation_events.get_backfill_gaps(
            room.room_nid, from_pos, wanted)
        for event_id, missing in gaps:
            # a gap asked about lately is not asked about at every page
            missing = [m for m in missing if m not in self._gaps_asked]
            if missing:
                self._gaps_asked.update((m, now) for m in missing)
                await self._backfill_from(room, event_id, missing, wanted)
        held, earliest, complete = await self.stores.federation_events.get_backfill_point(
            room.room_nid, from_pos, wanted)
        if held >= wanted or earliest is None or complete:
            return
        await self._backfill_from(room, earliest, [earliest], wanted - held + 1)

    async def _backfill_from(self, room: RoomInfo, below: str, v: list[str],
                             wanted: int) -> None:
        """/backfill from ``v`` (the IDs to start from) for the history
        below our event ``below``, from the first server in the room that
        gives us something new."""
        members = await self.stores.rooms.get_members(room.room_nid)
        # servers our sender knows to be down, or that just failed a
        # backfill, are skipped: a client waits for history at most once
        servers = [s for s in dict.fromkeys(_server_of(m) for m in members)
                   if s and s != self.ctx.hostname and s not in self._backfill_failed
                   and not self.sender.is_down(s)]
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        for server in servers[:MAX_BACKFILL_SERVERS]:
            try:
                body = await self.client.get_json(
                    server, f"{FEDERATION_V1}/backfill/{_quote(room.room_id)}",
                    {"v": v, "limit": str(min(wanted, MAX_BACKFILL))})
            except (RequestFailed, FederationError) as e:
                logger.info("backfill of %s from %s failed: %s", room.room_id, server, e)
                if isinstance(e, RequestFailed):  # no answer (an error answer is one)
                    self._backfill_failed[server] = self.ctx.now_ms()
                continue
            pdus = _list(body.get("pdus")) if isinstance(body, dict) else []
            # events of another room are dropped here: their prev_events
            # never lead a room's history into another room's
            events = await self.check_pdus(pdus[:MAX_BACKFILL], rv, room.room_id)
            events = [e for e in events if e.event_id != below]
            info = await self.stores.federation_events.get_event_info(
                e.event_id for e in events)
            if all(e.event_id in info and info[e.event_id].stream_ordering is not None
                   for e in events):
                continue
            # history touches neither current state nor forward extremities:
            # the inbound lock (not the write lock) is enough
            async with self.inbound_lock(room.room_id):
                await self._store_backfilled(server, room, below, events)
            return

    async def _store_backfilled(self, origin: str, room: RoomInfo, earliest: str,
                                events: list[Event]) -> None:
        held = await self.stores.federation_events.get_event_info(e.event_id for e in events)
        # outliers we hold (a join's state and auth chain) join the timeline too
        events = [e for e in events if e.event_id not in held
                  or (held[e.event_id].outlier and held[e.event_id].stream_ordering is None)]
        for event in events:
            await self._ensure_auth_events(origin, room, event)
        auth_ids = {a for e in events for a in e.auth_event_ids}
        if room.room_version and KNOWN_ROOM_VERSIONS[room.room_version].room_id_from_create_event:
            auth_ids.add("$" + room.room_id[1:])
        known = await self.stores.events.get_events(list(auth_ids))
        by_id = {e.event_id: e for e in events}
        checked: list[Event] = []
        for event in _auth_order(events):
            rejected = self._auth_against_own_auth_events(event, {**known, **by_id})
            if rejected is not None:
                event = Event(event.event_id, event.room_version, event.json, rejected)
                by_id[event.event_id] = event
            checked.append(event)
        checked.sort(key=lambda e: e.depth, reverse=True)
        state = await self.stores.federation_events.get_state_ids_before(earliest) or {}
        count = await self.stores.federation_events.persist_backfilled(room.room_nid, checked,
                                                                      state)
        logger.info("backfilled %d events of %s from %s", count, room.room_id, origin)

    def _notify(self, room: RoomInfo, event: Event, result: FederatedPersisted) -> None:
        notifier = self.notifier
        if result.stream_ordering is not None:
            notifier.on_new_event(room.room_id, event.type, event.state_key,
                                  result.stream_ordering)
            if event.type == "m.room.member" and event.state_key is not None \
                    and event.content.get("membership") != "join":
                self.typing.left_room(event.state_key, room.room_id)
        position = result.barrier or result.stream_ordering
        changed = [u for u in result.membership_changes if u != event.state_key]
        if position is not None and changed:
            # a join's whole state at once: one wake, not one per member
            notifier.membership_changed(room.room_id)
            notifier.notify_room(room.room_id, position,
                                 tuple(u for u in changed if self.ctx.is_mine(u)))
        if result.barrier is not None:
            notifier.on_new_event(room.room_id, "", None, result.barrier)


def _auth_keys(event: Event) -> set[StateKey]:
    from homeserver.rooms.auth import auth_types_for_event
    return auth_types_for_event(event.room_version, event) | {CREATE}


def _auth_order(events: list[Event]) -> list[Event]:
    """``events`` with every event after those of them in its auth chain
    (depth breaks ties; a cycle, which valid events cannot form, is cut)."""
    by_id = {e.event_id: e for e in events}
    out: list[Event] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(event: Event) -> None:
        stack: list[tuple[Event, int]] = [(event, 0)]
        while stack:
            ev, i = stack.pop()
            if ev.event_id in done:
                continue
            deps = [by_id[a] for a in ev.auth_event_ids if a in by_id]
            if i < len(deps):
                stack.append((ev, i + 1))
                dep = deps[i]
                if dep.event_id not in done and dep.event_id not in visiting:
                    visiting.add(dep.event_id)
                    stack.append((dep, 0))
                continue
            done.add(ev.event_id)
            out.append(ev)

    for event in sorted(events, key=lambda e: e.depth):
        visiting.add(event.event_id)
        visit(event)
    return out


def _server_of(user_id: str) -> str | None:
    from homeserver.events.identifiers import server_name_of
    try:
        return server_name_of(user_id)
    except ValueError:
        return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _quote(value: str) -> str:
    from urllib.parse import quote
    return quote(value, safe="")
