"""Inviting by e-mail address (third-party invites) and turning such an
invite into a membership once the address is bound to a user.

Client-server API "Invite by third-party ID endpoint" and server-server API
"Third-party invites":

1. ``invite``: ``POST /rooms/{roomId}/invite`` (or ``invite_3pid`` of
   ``/createRoom``) names an identity server and an address. We look the
   address up there (hashed v2 lookup); if it is bound to a user, that user
   gets an ordinary invite. Otherwise the identity server stores the invite
   and answers a token, a display name and its public keys, which become an
   ``m.room.third_party_invite`` state event (state key: the token).
2. ``exchange``: when the address is later bound, the identity server calls
   ``/_matrix/federation/v1/3pid/onbind`` on the user's server with the
   invites it stored, each with a ``signed`` block (mxid, token, signatures
   by the identity server's key). The user's server makes an
   ``m.room.member`` invite (sender: the original inviter) carrying
   ``third_party_invite: {display_name, signed}``; the auth rules accept it
   when the signature verifies under a key of the matching
   ``m.room.third_party_invite``. A join carrying ``third_party_signed``
   goes through the same exchange first.
3. The invite is made by the inviter's server when the inviter is one of
   ours and we hold the room; else it is forwarded there with
   ``PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}``
   (``on_exchange`` is that endpoint's use case).

Before sending the invite we also ask the identity server whether the key
that signed is still valid (``key_validity_url``), as Synapse does: a
revoked key, or an identity server we cannot reach, refuses the exchange.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_valid_user_id, server_name_of
from homeserver.identity.client import (
    IdentityServerError,
    IdentityServerUnreachable,
    check_id_server,
)
from homeserver.identity.threepids import identity_error
from homeserver.rooms.auth import THIRD_PARTY_INVITE, signed_by_key

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.client import FederationClient
    from homeserver.federation.sender import FederationSender
    from homeserver.identity.client import IdentityServerClient
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
# state the identity server may show the invitee (Synapse sends the same)
_ROOM_INFO = [("m.room.canonical_alias", ""), ("m.room.name", ""), ("m.room.create", ""),
              ("m.room.join_rules", ""), ("m.room.avatar", "")]


@dataclass(frozen=True)
class ThirdPartyInviteRequest:
    """A validated invite-by-address (``POST /invite`` body, ``invite_3pid`` entry)."""

    id_server: str
    id_access_token: str
    medium: str
    address: str


def parse_third_party_invite(body: dict[str, Any]) -> ThirdPartyInviteRequest:
    values = {}
    for key in ("id_server", "id_access_token", "medium", "address"):
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise MatrixError(400, Codes.MISSING_PARAM, f"'{key}' must be a non-empty string")
        values[key] = value
    if not check_id_server(values["id_server"]):
        raise invalid_param("id_server is not a valid server name")
    return ThirdPartyInviteRequest(**values)


def parse_signed(signed: Any) -> dict[str, Any]:
    """A ``signed`` / ``third_party_signed`` block: mxid, sender, token, signatures."""
    if not isinstance(signed, dict):
        raise MatrixError(400, Codes.BAD_JSON, "'signed' must be an object")
    for key in ("mxid", "token"):
        if not isinstance(signed.get(key), str):
            raise MatrixError(400, Codes.MISSING_PARAM, f"'signed.{key}' must be a string")
    if not isinstance(signed.get("signatures"), dict):
        raise MatrixError(400, Codes.MISSING_PARAM, "'signed.signatures' must be an object")
    return signed


class ThirdPartyInvites:
    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 identity: "IdentityServerClient", event_creator: "EventCreator",
                 membership: "MembershipHandler",
                 federation_client: "FederationClient",
                 federation_sender: "FederationSender") -> None:
        self.ctx = ctx
        self.federation_sender = federation_sender
        self.stores = stores
        self.identity = identity
        self.event_creator = event_creator
        self.membership = membership
        self.federation_client = federation_client

    async def _state(self, room_id: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return {}
        ids = await self.stores.rooms.get_current_state_ids(room.room_nid, keys)
        events = await self.stores.events.get_events(list(ids.values()))
        return {k: events[v] for k, v in ids.items() if v in events}

    # -- 1. inviting -------------------------------------------------------------

    async def invite(self, sender: str, room_id: str, request: ThirdPartyInviteRequest) -> None:
        """Invite the user bound to the address, or leave an
        ``m.room.third_party_invite`` for whoever binds it later."""
        if await self.stores.rooms.get_room(room_id) is None:
            raise not_found("Unknown room")
        # suspension and spam checker modules (admin/user_moderation.py,
        # moderation/gate.py), as for invites by user ID
        if self.membership.user_moderation is not None:
            self.membership.user_moderation.refuse_if_suspended(sender, "Sending invites")
        gate = self.membership.gate
        if gate is not None and gate.has_modules:
            await gate.check_3pid_invite(sender, request.medium, request.address, room_id)
        try:
            mxid = await self.identity.lookup_3pid(request.id_server, request.id_access_token,
                                                   request.medium, request.address)
        except (IdentityServerError, IdentityServerUnreachable) as e:
            raise identity_error(e) from None
        if mxid is not None:
            await self.membership.update_membership(sender, room_id, mxid, "invite")
            return
        state = await self._state(room_id, _ROOM_INFO + [("m.room.member", sender)])

        def content_of(key: tuple[str, str], field: str) -> Any:
            event = state.get(key)
            value = event.content.get(field) if event is not None else None
            return value if isinstance(value, str) else ""

        params = {
            "medium": request.medium,
            "address": request.address,
            "room_id": room_id,
            "sender": sender,
            "room_alias": content_of(("m.room.canonical_alias", ""), "alias"),
            "room_avatar_url": content_of(("m.room.avatar", ""), "url"),
            "room_join_rules": content_of(("m.room.join_rules", ""), "join_rule"),
            "room_name": content_of(("m.room.name", ""), "name"),
            "sender_display_name": content_of(("m.room.member", sender), "displayname")
            or sender,
            "sender_avatar_url": content_of(("m.room.member", sender), "avatar_url"),
        }
        room_type = content_of(("m.room.create", ""), "type")
        if room_type:
            params["room_type"] = room_type
        try:
            answer = await self.identity.store_invite(request.id_server,
                                                      request.id_access_token, params)
        except (IdentityServerError, IdentityServerUnreachable) as e:
            raise identity_error(e) from None
        token, public_key = answer.get("token"), answer.get("public_key")
        if not isinstance(token, str) or not token or not isinstance(public_key, str):
            raise MatrixError(502, Codes.UNKNOWN, "The identity server's answer is malformed")
        fallback = {"public_key": public_key,
                    "key_validity_url": f"https://{request.id_server}"
                                        "/_matrix/identity/v2/pubkey/isvalid"}
        public_keys = answer.get("public_keys")
        if not isinstance(public_keys, list) or not all(
                isinstance(k, dict) and isinstance(k.get("public_key"), str)
                for k in public_keys):
            public_keys = [fallback]
        display_name = answer.get("display_name")
        content = {
            "display_name": display_name if isinstance(display_name, str) else "",
            "public_keys": public_keys,
            # for clients and servers that read only the single key
            "key_validity_url": fallback["key_validity_url"],
            "public_key": public_key,
        }
        await self.event_creator.send(sender, room_id, THIRD_PARTY_INVITE, content,
                                      state_key=token)

    # -- 2. exchanging -------------------------------------------------------------

    async def exchange(self, sender: str, target: str, room_id: str,
                       signed: dict[str, Any]) -> None:
        """Turn the third-party invite that ``signed`` answers into an invite
        of ``target`` (here, or by the inviter's server)."""
        signed = parse_signed(signed)
        if not is_valid_user_id(sender) or not is_valid_user_id(target):
            raise invalid_param("sender and invitee must be user IDs")
        room = await self.stores.rooms.get_room(room_id)
        if room is not None and await self._joined_here(room.room_nid):
            # in the room: we auth and send the invite ourselves, also for an
            # inviter of another server (the spec lets the invitee's server
            # send it; its signature stands in for the inviter's server's,
            # as Synapse does). The inviter's server hears of it from us.
            event_id = await self._exchange_here(sender, target, room_id, signed)
            if not self.ctx.is_mine(sender):
                await self._send_for(sender, room_id, event_id)
            return
        event_dict = {"type": "m.room.member", "room_id": room_id, "sender": sender,
                      "state_key": target,
                      "content": {"membership": "invite",
                                  "third_party_invite": {"signed": signed}}}
        destinations = [server_name_of(sender)]
        if ":" in room_id:
            destinations.append(room_id.split(":", 1)[1])
        last: Exception | None = None
        for destination in dict.fromkeys(destinations):
            if destination == self.ctx.hostname:
                continue
            try:
                await self.federation_client.put_json(
                    destination, f"{FEDERATION_V1}/exchange_third_party_invite/"
                                 f"{urllib.parse.quote(room_id, safe='')}", event_dict)
                return
            except Exception as e:  # FederationError, RequestFailed
                logger.info("exchange_third_party_invite via %s failed: %s", destination, e)
                last = e
        if last is None:
            raise forbidden("The inviter's server is not in the room")
        raise MatrixError(502, Codes.UNKNOWN, "Failed to forward third party invite")

    async def on_exchange(self, room_id: str, event: Any) -> None:
        """``PUT /exchange_third_party_invite/{roomId}``: a server not in the
        room asks us to issue the invite on its user's behalf."""
        if not isinstance(event, dict) or event.get("room_id") != room_id:
            raise MatrixError(400, Codes.INVALID_PARAM, "room_id does not match the path")
        sender, target = event.get("sender"), event.get("state_key")
        content = event.get("content")
        tpi = content.get("third_party_invite") if isinstance(content, dict) else None
        if not isinstance(sender, str) or not isinstance(target, str) or \
                not isinstance(tpi, dict) or not is_valid_user_id(target):
            raise MatrixError(400, Codes.BAD_JSON, "Not a third-party invite member event")
        if not self.ctx.is_mine(sender):
            raise forbidden("The inviter is not a user of this server")
        if await self.stores.rooms.get_room(room_id) is None:
            raise not_found("Unknown room")
        await self._exchange_here(sender, target, room_id, parse_signed(tpi.get("signed")))

    async def _joined_here(self, room_nid: int) -> bool:
        members = await self.stores.rooms.get_members(room_nid)
        return any(self.ctx.is_mine(m) for m in members)

    async def _send_for(self, sender: str, room_id: str, event_id: str) -> None:
        """Queue the invite we made for ``sender`` (a user of another server)
        to every server in the room, theirs included."""
        event = await self.stores.events.get_event(event_id)
        pos = await self.stores.events.get_event_position(event_id)
        if event is None or pos is None or pos.stream_ordering is None:
            return
        self.federation_sender.notify_new_events(
            room_id, [(event, pos.stream_ordering)], on_behalf_of=server_name_of(sender),
            to_origin_too=True)

    async def _exchange_here(self, sender: str, target: str, room_id: str,
                             signed: dict[str, Any]) -> str:
        token = signed["token"]
        state = await self._state(room_id, [(THIRD_PARTY_INVITE, token)])
        invite = state.get((THIRD_PARTY_INVITE, token))
        if invite is None:
            raise forbidden("Could not find invite")
        await self._check_key_validity(signed, invite.content)
        display_name = invite.content.get("display_name")
        content = {"membership": "invite",
                   "third_party_invite": {"display_name": display_name, "signed": signed}}
        return await self.event_creator.send(sender, room_id, "m.room.member", content,
                                             state_key=target)

    async def _check_key_validity(self, signed: dict[str, Any],
                                  invite_content: dict[str, Any]) -> None:
        """403 unless a key of the invite verifies ``signed`` and its identity
        server still vouches for it; 502 if that cannot be asked."""
        keys: list[dict[str, Any]] = []
        public_keys = invite_content.get("public_keys")
        if isinstance(public_keys, list):
            keys.extend(k for k in public_keys if isinstance(k, dict))
        if isinstance(invite_content.get("public_key"), str):
            keys.append({"public_key": invite_content["public_key"],
                         "key_validity_url": invite_content.get("key_validity_url")})
        for key in keys:
            public_key = key.get("public_key")
            if not isinstance(public_key, str) or not signed_by_key(signed, public_key):
                continue
            url = key.get("key_validity_url")
            if not isinstance(url, str):
                return
            try:
                valid = await self.identity.key_is_valid(url, public_key)
            except (IdentityServerError, IdentityServerUnreachable):
                raise MatrixError(502, Codes.UNKNOWN,
                                  "Third party certificate could not be checked") from None
            if not valid:
                raise forbidden("Third party certificate was invalid")
            return
        raise forbidden("No key of the third-party invite verifies the signature")
