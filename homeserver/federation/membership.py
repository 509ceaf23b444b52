"""Joins, leaves, invites and knocks across servers.

Both directions of server-server-api.md "Joining Rooms", "Leaving Rooms",
"Inviting to a room" and "Knocking upon a room":

Resident side (a user of another server enters one of our rooms):
``make_membership`` builds the event template (prev_events = our forward
extremities, auth_events from current state, checked against the auth rules
so a refused join fails here with 403), the remote server signs it and
``send_membership`` runs it through the inbound pipeline like any PDU. For
a join we answer with the state before it and the auth chain; we then relay
the join to the other servers in the room. Restricted joins: the template
names one of our users with the invite level in
``join_authorised_via_users_server``, and we sign the join before checking it.

Joining side (one of our users enters a room on another server):
``join_remote`` tries the candidate servers in order (make_join, then
send_join v2), checks every PDU of the response (signatures, hashes, each
state event against its own auth events), stores the auth chain and state as
outliers, and the join as the room's first timeline event with that state
before it. The room is then ours as much as theirs: new events arrive by
/send, our users' events go out through the sender.

Invites: ``send_invite`` has the invitee's server countersign our invite
(PUT /v2/invite) before we persist it; ``on_invite`` countersigns an invite
of one of our users and, for a room we are not in, stores it with the
stripped state the inviter sent. Rejecting such an invite (or rescinding a
knock) goes through make_leave/send_leave on the inviting server.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from signedjson.sign import sign_json

from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.events.hashes import reference_hash_base64
from homeserver.events.identifiers import generate_assigned_event_id, server_name_of
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import sign_event
from homeserver.federation.client import FederationError, RequestFailed
from homeserver.federation.event_handler import InvalidPdu, PduError, pdu_for_federation
from homeserver.rooms.auth import (
    AUTHORISING_USER,
    AuthError,
    auth_types_for_event,
    check_auth_rules,
)
from homeserver.rooms.power_levels import CREATE
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.client import FederationClient
    from homeserver.federation.event_handler import FederationEventHandler
    from homeserver.federation.sender import FederationSender
    from homeserver.moderation.gate import ModerationGate
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.rooms.upgrade import RoomUpgrader
    from homeserver.storage import Stores
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
FEDERATION_V2 = "/_matrix/federation/v2"
MAX_PREV_EVENTS = 10
STRIPPED_STATE_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name",
                        "m.room.avatar", "m.room.canonical_alias", "m.room.encryption",
                        "m.room.topic")


def _q(value: str) -> str:
    return quote(value, safe="")


def _domain(user_id: str) -> str | None:
    try:
        return server_name_of(user_id)
    except ValueError:
        return None


def stripped(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key, "content": event.content,
            "sender": event.sender}


class FederationMembership:
    # the local membership handler (restricted joins: which of our users may
    # authorise one), which calls us for remote joins: set by
    # HomeServer._wire_late
    membership: "MembershipHandler"

    def __init__(self, ctx: "ServerContext", stores: "Stores", client: "FederationClient",
                 sender: "FederationSender", event_handler: "FederationEventHandler",
                 event_creator: "EventCreator", notifier: "Notifier",
                 room_upgrader: "RoomUpgrader") -> None:
        self.ctx = ctx
        self.stores = stores
        self.client = client
        self.sender = sender
        self.event_handler = event_handler
        # its room locks: what we persist here is serialised with local sends
        self.event_creator = event_creator
        self.notifier = notifier
        # a joined room that replaces one of ours takes over our aliases etc.
        self.room_upgrader = room_upgrader
        # policy lists and spam checker modules judge invites from other
        # servers (moderation/gate.py; set by HomeServer._wire_late)
        self.gate: "ModerationGate | None" = None

    # -- resident side ------------------------------------------------------

    async def _room_we_are_in(self, room_id: str) -> RoomInfo:
        room = await self.stores.rooms.get_room(room_id)
        if room is None or not await self.stores.rooms.get_local_members(room_id,
                                                                         self.ctx.hostname):
            raise not_found("Unknown room")
        return room

    async def make_membership(self, origin: str, room_id: str, user_id: str,
                              membership: str, versions: list[str] | None) -> dict[str, Any]:
        """GET make_join / make_leave / make_knock: the event template."""
        if _domain(user_id) != origin:
            raise forbidden("The user is not of the requesting server")
        room = await self._room_we_are_in(room_id)
        if not await self.event_handler.origin_allowed(room, origin):
            raise forbidden("Server is banned from this room")
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        if versions is not None and room.room_version not in versions:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              "Your homeserver does not support this room's version",
                              room_version=room.room_version)
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            try:
                authoriser = await self.membership._restricted_join_authoriser(room,
                                                                                  user_id)
            except MatrixError:
                authoriser = None
            if authoriser is not None:
                content[AUTHORISING_USER] = authoriser
        skeleton = {"type": "m.room.member", "sender": user_id, "state_key": user_id,
                    "content": content}
        keys = auth_types_for_event(rv, skeleton) | {CREATE}
        state_ids = await self.stores.rooms.get_current_state_ids(room.room_nid, keys)
        state_events = await self.stores.events.get_events(list(state_ids.values()))
        state = {k: state_events[v] for k, v in state_ids.items() if v in state_events}
        extremities = (await self.stores.rooms.get_forward_extremities(
            room.room_nid))[:MAX_PREV_EVENTS]
        auth_ids = sorted(v for k, v in state_ids.items()
                          if k != CREATE or not rv.room_id_from_create_event)
        prev_ids = [x.event_id for x in extremities]
        template: dict[str, Any] = {
            "type": "m.room.member", "room_id": room_id, "sender": user_id,
            "state_key": user_id, "content": content, "origin": origin,
            "origin_server_ts": self.ctx.now_ms(),
            "depth": max((x.depth for x in extremities), default=0) + 1,
            "prev_events": prev_ids, "auth_events": auth_ids,
        }
        if not rv.event_ids_are_hashes:
            refs = await self.stores.events.get_events(prev_ids + auth_ids)
            template["prev_events"] = [[e, {"sha256": reference_hash_base64(refs[e].json, rv)}]
                                       for e in prev_ids if e in refs]
            template["auth_events"] = [[e, {"sha256": reference_hash_base64(refs[e].json, rv)}]
                                       for e in auth_ids if e in refs]
        try:
            check_auth_rules(Event("$template", rv, template), state)
        except AuthError as e:
            raise forbidden(f"You are not allowed to {membership} this room: {e}") from None
        return {"event": template, "room_version": room.room_version}

    async def send_membership(self, origin: str, room_id: str, event_id: str, pdu: Any,
                              membership: str) -> tuple[RoomInfo, Event]:
        """PUT send_join / send_leave / send_knock: check and persist the
        signed event; returns it (with our signature for a restricted join)."""
        room = await self._room_we_are_in(room_id)
        if not await self.event_handler.origin_allowed(room, origin):
            raise forbidden("Server is banned from this room")
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        if not isinstance(pdu, dict):
            raise MatrixError(400, Codes.BAD_JSON, "The body must be the event")
        content = pdu.get("content")
        sender = pdu.get("sender")
        if (pdu.get("type") != "m.room.member" or not isinstance(content, dict)
                or content.get("membership") != membership or not isinstance(sender, str)
                or pdu.get("state_key") != sender or pdu.get("room_id") != room_id):
            raise MatrixError(400, Codes.BAD_JSON, f"Not a {membership} event of your user")
        if _domain(sender) != origin:
            # a server replaying another's join (Synapse's 403)
            raise forbidden(f"Not allowed to send a {membership} for another server")
        authoriser = content.get(AUTHORISING_USER)
        if membership == "join" and isinstance(authoriser, str) and \
                self.ctx.is_mine(authoriser) and rv.restricted_join_rule:
            pdu = self._countersign(pdu, rv)
        handler = self.event_handler
        try:
            event = await handler.check_pdu(pdu, rv)
        except PduError as e:
            raise _refusal(e) from None
        if event.event_id != event_id:
            raise MatrixError(400, Codes.BAD_JSON, "The event ID does not match the path")
        async with handler.inbound_lock(room.room_id):
            info = await self.stores.federation_events.get_event_info([event.event_id])
            if event.event_id not in info:
                await handler._handle_new_event(origin, room, event)
                info = await self.stores.federation_events.get_event_info([event.event_id])
        held = info.get(event.event_id)
        if held is None or held.rejected or held.soft_failed:
            raise forbidden(f"The {membership} event was not allowed")
        if held.stream_ordering is not None:
            self.sender.notify_new_events(
                room.room_id, [(event, held.stream_ordering)], on_behalf_of=origin)
        return room, event

    def _countersign(self, pdu: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
        """``pdu`` with our signature added (over its redacted form)."""
        from homeserver.events.redaction import redact

        signed = sign_json(redact(pdu, rv), self.ctx.hostname, self.ctx.signing_key)
        out = dict(pdu)
        sigs = {k: dict(v) for k, v in pdu.get("signatures", {}).items()}
        sigs.setdefault(self.ctx.hostname, {}).update(signed["signatures"][self.ctx.hostname])
        out["signatures"] = sigs
        return out

    async def join_response(self, room: RoomInfo, event: Event,
                            omit_members: bool = False) -> dict[str, Any]:
        """The body of a send_join response: the state before the join and
        the auth chain of that state and the join."""
        state = await self.stores.federation_events.get_state_ids_before(event.event_id) or {}
        ids = list(state.values())
        info = await self.stores.federation_events.get_event_info(ids + [event.event_id])
        chain_nids = await self.stores.auth_chains.get_auth_chain_nids(
            [i.event_nid for i in info.values()])
        chain = await self.stores.events.get_events_by_nid(list(chain_nids))
        state_events = await self.stores.events.get_events(ids)
        members = await self.stores.rooms.get_members(room.room_nid)
        servers = sorted({d for d in (_domain(m) for m in members) if d})
        return {
            "origin": self.ctx.hostname,
            "state": [pdu_for_federation(state_events[e]) for e in ids if e in state_events],
            "auth_chain": [pdu_for_federation(e) for e in chain.values()],
            "event": pdu_for_federation(event),
            "members_omitted": False,
            "servers_in_room": servers,
        }

    async def knock_state(self, room: RoomInfo) -> list[dict[str, Any]]:
        ids = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [(t, "") for t in STRIPPED_STATE_TYPES])
        events = await self.stores.events.get_events(list(ids.values()))
        return [stripped(e) for e in events.values()]

    async def on_invite(self, origin: str, room_id: str, event_id: str, pdu: Any,
                        room_version: str, invite_room_state: Any) -> dict[str, Any]:
        """PUT /v2/invite: countersign an invite of one of our users."""
        rv = KNOWN_ROOM_VERSIONS.get(room_version)
        if rv is None:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              "This server does not support that room version",
                              room_version=room_version)
        if not isinstance(pdu, dict):
            raise MatrixError(400, Codes.BAD_JSON, "Missing event")
        content = pdu.get("content")
        target = pdu.get("state_key")
        if (pdu.get("type") != "m.room.member" or not isinstance(content, dict)
                or content.get("membership") != "invite" or not isinstance(target, str)
                or not self.ctx.is_mine(target) or pdu.get("room_id") != room_id
                or _domain(str(pdu.get("sender"))) != origin):
            raise MatrixError(400, Codes.BAD_JSON, "Not an invite of one of our users")
        if await self.stores.admin_rooms.room_blocked_by(room_id) is not None:
            raise forbidden("This room has been blocked on this server")
        # no 404 for a user we do not have (the spec has none, Synapse
        # countersigns): the invite then waits for nobody
        room = await self.stores.rooms.get_room(room_id)
        if room is not None and not await self.event_handler.origin_allowed(room, origin):
            raise forbidden("Server is banned from this room")
        try:
            event = await self.event_handler.check_pdu(pdu, rv)
        except PduError as e:
            raise _refusal(e) from None
        if event.event_id != event_id:
            raise MatrixError(400, Codes.BAD_JSON, "The event ID does not match the path")
        if self.gate is not None:
            await self.gate.check_federated_invite(event)
        signed = self._countersign(event.json, rv)
        signed_event = Event(event.event_id, rv, signed)
        we_are_in = room is not None and bool(
            await self.stores.rooms.get_local_members(room_id, self.ctx.hostname))
        if not we_are_in:
            state = [s for s in invite_room_state if isinstance(s, dict)] \
                if isinstance(invite_room_state, list) else []
            stream = await self.stores.federation_events.store_remote_invite(
                room_id, room_version, signed_event, state, self.ctx.now_ms())
            self.notifier.on_new_event(room_id, "m.room.member", target, stream)
        return {"event": signed}

    # -- joining side -------------------------------------------------------

    async def send_invite(self, event: Event, room: RoomInfo,
                          state: dict[tuple[str, str], Event]) -> Event:
        """Have the invitee's server countersign our invite (the creator
        persists what we return)."""
        assert event.state_key is not None
        destination = _domain(event.state_key)
        assert destination is not None
        ids = await self.stores.rooms.get_current_state_ids(
            room.room_nid, [(t, "") for t in STRIPPED_STATE_TYPES]
            + [("m.room.member", event.sender)])
        current = await self.stores.events.get_events(list(ids.values()))
        invite_state = [stripped(e) for e in current.values()]
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        try:
            body = await self._put_invite(destination, room, event, rv, invite_state)
        except FederationError as e:
            raise MatrixError(403 if e.code == 403 else 502, Codes.FORBIDDEN
                              if e.code == 403 else Codes.UNKNOWN,
                              f"The invitee's server refused the invite: {e}") from None
        except RequestFailed as e:
            raise MatrixError(502, Codes.UNKNOWN,
                              f"Could not reach the invitee's server: {e}") from None
        signed = body.get("event") if isinstance(body, dict) else None
        try:
            checked = await self.event_handler.check_pdu(signed, rv)
        except InvalidPdu as e:
            # Synapse's answer too: the client hears the event was bad JSON
            raise MatrixError(400, Codes.BAD_JSON,
                              f"Bad invite from the invitee's server: {e}") from None
        except PduError as e:
            raise MatrixError(502, Codes.UNKNOWN, f"Bad invite from the invitee's server: {e}") \
                from None
        if checked.event_id != event.event_id:
            raise MatrixError(502, Codes.UNKNOWN, "The invitee's server changed the invite")
        return checked

    async def _put_invite(self, destination: str, room: RoomInfo, event: Event,
                          rv: RoomVersion, invite_state: list[dict[str, Any]]) -> Any:
        """PUT /v2/invite, or /v1/invite to a server that does not know v2
        (404, or 400 M_UNRECOGNIZED: the spec's sign of an unknown endpoint)
        when the room's events can travel in v1's format; returns the
        answer's body (v1's ``[200, body]`` unwrapped)."""
        path = f"{_q(room.room_id)}/{_q(event.event_id)}"
        pdu = pdu_for_federation(event)
        try:
            return await self.client.put_json(
                destination, f"{FEDERATION_V2}/invite/{path}",
                {"event": pdu, "room_version": room.room_version,
                 "invite_room_state": invite_state})
        except FederationError as e:
            unknown = e.code == 404 or (e.code == 400 and e.errcode == Codes.UNRECOGNIZED)
            if not unknown:
                raise
            # v1 invites carry no room version: only rooms whose events
            # have v1's format can travel that way (Synapse's rule)
            if rv.event_ids_are_hashes:
                raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION,
                                  "The invitee's server does not support this room version"
                                  ) from None
        logger.info("%s does not know /v2/invite: trying /v1/invite", destination)
        body = await self.client.put_json(
            destination, f"{FEDERATION_V1}/invite/{path}",
            {**pdu, "unsigned": {"invite_room_state": invite_state}})
        if isinstance(body, list) and len(body) == 2:
            return body[1]
        return body

    def _candidates(self, room_id: str, via: list[str]) -> list[str]:
        out = [s for s in via if s != self.ctx.hostname]
        domain = _domain(room_id)
        if domain and domain != self.ctx.hostname and domain not in out:
            out.append(domain)
        return list(dict.fromkeys(out))

    async def _make(self, servers: list[str], room_id: str, user_id: str,
                    membership: str) -> tuple[str, dict[str, Any], RoomVersion]:
        """The first template a candidate server gives (make_join, ...).

        As Synapse: a server that cannot be reached, errs (5xx), answers
        garbage or does not know the room (404 M_NOT_FOUND; for a join also
        "cannot authorise it") is passed over for the next; any other refusal
        is the client's answer as the server gave it (its status, errcode,
        message and fields, e.g. M_INCOMPATIBLE_ROOM_VERSION with
        ``room_version``), and a room version we do not know is refused."""
        path = {"join": f"{FEDERATION_V1}/make_join", "leave": f"{FEDERATION_V1}/make_leave",
                "knock": f"{FEDERATION_V1}/make_knock"}[membership]
        args: dict[str, str | list[str]] = {}
        if membership in ("join", "knock"):
            args["ver"] = list(KNOWN_ROOM_VERSIONS)
        failover = {Codes.NOT_FOUND}
        if membership == "join":
            failover |= {Codes.UNABLE_AUTHORISE_JOIN, Codes.UNABLE_TO_GRANT_JOIN}
        last: Exception | None = None
        for server in servers:
            try:
                body = await self.client.get_json(
                    server, f"{path}/{_q(room_id)}/{_q(user_id)}", args)
            except (FederationError, RequestFailed) as e:
                logger.info("make_%s via %s failed: %s", membership, server, e)
                last = e
                if isinstance(e, FederationError) and 400 <= e.code < 500 and \
                        e.code != 401 and e.errcode not in failover:
                    raise _passed_on(server, e) from None
                continue
            if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
                logger.info("make_%s via %s: no event template in the answer",
                            membership, server)
                continue
            version = body.get("room_version", "1")
            rv = KNOWN_ROOM_VERSIONS.get(version) if isinstance(version, str) else None
            if rv is None:
                raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION,
                                  f"Room version {version!r} is not supported")
            if membership == "knock" and not rv.knock_join_rule:
                raise forbidden("This room version does not support knocking")
            return server, body["event"], rv
        if isinstance(last, FederationError) and last.code == 404:
            raise not_found("No known server could find the room")
        if isinstance(last, FederationError):
            # a server answered, with an error: the details stay in our log
            raise MatrixError(502, Codes.UNKNOWN, f"No server could help with the {membership}")
        # none answered (or there was none to ask): Synapse's 404, and no
        # addresses or errors of our outbound requests in the message
        raise not_found("No known servers")

    def _build_from_template(self, template: dict[str, Any], rv: RoomVersion,
                             user_id: str, membership: str,
                             extra_content: dict[str, Any]) -> Event:
        wanted = ("type", "room_id", "sender", "state_key", "prev_events", "auth_events",
                  "depth", "content")
        pdu: dict[str, Any] = {k: template[k] for k in wanted if k in template}
        if pdu.get("sender") != user_id or pdu.get("state_key") != user_id or \
                pdu.get("type") != "m.room.member":
            raise MatrixError(502, Codes.UNKNOWN, "The resident server sent a bad template")
        content = dict(pdu.get("content") or {})
        content.update(extra_content)
        content["membership"] = membership
        pdu["content"] = content
        pdu["origin"] = self.ctx.hostname
        pdu["origin_server_ts"] = self.ctx.now_ms()
        if not rv.event_ids_are_hashes:
            pdu["event_id"] = generate_assigned_event_id(self.ctx.hostname)
        signed = sign_event(pdu, rv, self.ctx.hostname, self.ctx.signing_key)
        return Event.from_pdu(signed, rv)

    async def _send(self, server: str, path: str, room_id: str, event: Event,
                    what: str) -> Any:
        """PUT our signed membership event to the resident server; its
        refusal is the client's answer as it gave it, anything else going
        wrong a 502."""
        try:
            return await self.client.put_json(
                server, f"{path}/{_q(room_id)}/{_q(event.event_id)}",
                pdu_for_federation(event))
        except FederationError as e:
            raise _refused(server, what, e) from None
        except RequestFailed as e:
            raise MatrixError(502, Codes.UNKNOWN, f"Could not reach {server}: {e}") from None

    async def _send_join(self, server: str, room_id: str, event: Event) -> dict[str, Any]:
        """The send_join response: v2, or v1 (whose answer is wrapped in
        ``[200, {...}]``) from a server that does not know v2."""
        try:
            body = await self.client.put_json(
                server, f"{FEDERATION_V2}/send_join/{_q(room_id)}/{_q(event.event_id)}",
                pdu_for_federation(event))
        except FederationError as e:
            if not e.is_unknown_endpoint():
                raise _refused(server, "join", e) from None
            logger.info("%s has no v2 send_join: trying v1", server)
            body = await self._send(server, f"{FEDERATION_V1}/send_join", room_id, event,
                                    "join")
            if isinstance(body, list) and len(body) == 2 and body[0] == 200:
                body = body[1]
        except RequestFailed as e:
            raise MatrixError(502, Codes.UNKNOWN, f"Could not reach {server}: {e}") from None
        if not isinstance(body, dict):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} sent a bad send_join response")
        return body

    async def join_remote(self, user_id: str, room_id: str, via: list[str],
                          content: dict[str, Any]) -> str:
        """Join ``room_id`` through one of ``via``; returns the room ID."""
        servers = self._candidates(room_id, via)
        if not servers:
            raise not_found("No server to join the room through")
        server, template, rv = await self._make(servers, room_id, user_id, "join")
        event = self._build_from_template(template, rv, user_id, "join", content)
        body = await self._send_join(server, room_id, event)
        handler = self.event_handler
        if isinstance(body.get("event"), dict):
            # a restricted join, countersigned by the resident server
            try:
                signed = await handler.check_pdu(body["event"], rv)
                if signed.event_id == event.event_id:
                    event = signed
            except PduError as e:
                logger.info("ignoring a bad countersigned join from %s: %s", server, e)
        state = await handler.check_pdus(_list(body.get("state")), rv, room_id)
        chain = await handler.check_pdus(_list(body.get("auth_chain")), rv, room_id)
        # the state must have it (Synapse's rule): a room without one is
        # invalid, whatever the auth chain holds
        create = next((e for e in state if e.is_state() and e.state_pair() == CREATE), None)
        if create is None:
            raise MatrixError(502, Codes.UNKNOWN, "The join response has no create event")
        if create.content.get("room_version", "1") != rv.identifier:
            raise MatrixError(502, Codes.UNKNOWN, "The room version does not match")
        room_nid = await self.stores.federation_events.ensure_room(
            room_id, rv.identifier, create.sender, self.ctx.now_ms())
        room = RoomInfo(room_nid, room_id, rv.identifier, create.sender)
        async with self.event_creator.room_lock(room_id):
            await handler.persist_checked_outliers(room, chain + state)
            # a room we held before (and left): its old extremities are
            # ancestors of this join, not rival branches (Synapse does the same)
            await self.stores.federation_events.clean_room_for_join(room_nid)
            held = await self.stores.federation_events.get_event_info(
                [e.event_id for e in state])
            state_before = {e.state_pair(): e.event_id for e in state
                            if e.is_state() and e.event_id in held
                            and not held[e.event_id].rejected}
            result = await handler.process_event(server, room, event,
                                                 state_before=state_before,
                                                 check_soft_fail=False)
        if result is None or result.stream_ordering is None:
            raise MatrixError(502, Codes.UNKNOWN, "Our join did not pass the room's rules")
        try:
            await self.room_upgrader.on_joined_over_federation(room_id)
        except Exception:  # the join stands whatever happens to the extras
            logger.exception("moving state to the upgraded room %s failed", room_id)
        return room_id

    async def leave_remote(self, user_id: str, room_id: str, via: list[str],
                           membership: str = "leave", *,
                           invite_event_id: str | None = None) -> str:
        """Reject an invite / rescind a knock in a room we are not in:
        make_leave + send_leave through ``via``; the leave is stored like an
        invite (an outlier the user's /sync sees).

        When no server of the room will take it (refused, failing,
        unreachable), the user is still rid of the invite, as on Synapse:
        a leave of our own making, after the invite (``invite_event_id``)
        and authorised by it alone, is stored the same way; the other
        servers never hear of it."""
        try:
            event = await self._send_remote_leave(user_id, room_id, via)
        except MatrixError as e:
            if invite_event_id is None:
                raise
            logger.info("rejecting %s's invite to %s locally: %s", user_id, room_id, e)
            event = await self._local_leave(user_id, room_id, invite_event_id)
        rv = event.room_version
        stream = await self.stores.federation_events.store_remote_invite(
            room_id, rv.identifier, event, [], self.ctx.now_ms())
        self.notifier.on_new_event(room_id, "m.room.member", user_id, stream)
        return event.event_id

    async def _send_remote_leave(self, user_id: str, room_id: str, via: list[str]) -> Event:
        servers = self._candidates(room_id, via)
        server, template, rv = await self._make(servers, room_id, user_id, "leave")
        event = self._build_from_template(template, rv, user_id, "leave", {})
        try:
            await self.client.put_json(
                server, f"{FEDERATION_V2}/send_leave/{_q(room_id)}/{_q(event.event_id)}",
                pdu_for_federation(event))
        except (FederationError, RequestFailed) as e:
            raise MatrixError(502, Codes.UNKNOWN, f"{server} refused the leave: {e}") from None
        return event

    async def _local_leave(self, user_id: str, room_id: str, invite_event_id: str) -> Event:
        """An out-of-band leave: signed by us, its one prev and auth event
        the invite (or knock) it answers."""
        invite = await self.stores.events.get_event(invite_event_id)
        if invite is None:
            raise not_found("The invite is gone")
        rv = invite.room_version
        refs: list[Any] = [invite_event_id]
        if not rv.event_ids_are_hashes:
            refs = [[invite_event_id, {"sha256": reference_hash_base64(invite.json, rv)}]]
        template = {"type": "m.room.member", "room_id": room_id, "sender": user_id,
                    "state_key": user_id, "content": {"membership": "leave"},
                    "prev_events": refs, "auth_events": refs, "depth": invite.depth + 1}
        return self._build_from_template(template, rv, user_id, "leave", {})

    async def knock_remote(self, user_id: str, room_id: str, via: list[str],
                           content: dict[str, Any]) -> str:
        servers = self._candidates(room_id, via)
        server, template, rv = await self._make(servers, room_id, user_id, "knock")
        event = self._build_from_template(template, rv, user_id, "knock", content)
        body = await self._send(server, f"{FEDERATION_V1}/send_knock", room_id, event, "knock")
        knock_state = _list(body.get("knock_room_state")) if isinstance(body, dict) else []
        stream = await self.stores.federation_events.store_remote_invite(
            room_id, rv.identifier, event, [s for s in knock_state if isinstance(s, dict)],
            self.ctx.now_ms())
        self.notifier.on_new_event(room_id, "m.room.member", user_id, stream)
        return room_id


def _refusal(e: PduError) -> MatrixError:
    """The answer to another server whose PDU we refuse: 400 M_BAD_JSON for
    a malformed one (e.g. a float in a v6+ room), 403 for the rest (bad
    signatures)."""
    if isinstance(e, InvalidPdu):
        return MatrixError(400, Codes.BAD_JSON, str(e))
    return forbidden(str(e))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _refused(server: str, what: str, e: FederationError) -> MatrixError:
    """A resident server's answer to our send_join/send_knock: its 4xx
    refusal passed on (403 and all), anything else a 502."""
    if 400 <= e.code < 500 and e.code != 401:
        return _passed_on(server, e)
    return MatrixError(502, Codes.UNKNOWN, f"{server} refused the {what}: {_error_text(e)}")


def _passed_on(server: str, e: FederationError) -> MatrixError:
    """The refusal of another server as the client's answer: its status,
    errcode, message and any other fields (``room_version``, ...)."""
    body = e.body if isinstance(e.body, dict) else {}
    errcode = e.errcode if isinstance(e.errcode, str) and e.errcode.startswith("M_") \
        else (Codes.FORBIDDEN if e.code == 403 else Codes.UNKNOWN)
    error = MatrixError(e.code, errcode, f"{server} refused: {_error_text(e)}")
    error.extra = {k: v for k, v in body.items() if k not in ("errcode", "error")}
    return error


def _error_text(e: FederationError) -> str:
    if isinstance(e.body, dict) and isinstance(e.body.get("error"), str):
        return str(e.body["error"])
    return str(e)
