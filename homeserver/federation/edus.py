"""EDUs (ephemeral data units) to and from other servers, and the helper for
the client API's queries of other servers.

Inbound (``EduHandler.on_edu``, called by PUT /send for each EDU of a
transaction): every field is checked, and an EDU (or one entry of it) that
is malformed, names a user of another server than the origin, or a user not
joined to the room is dropped with a log line. Nothing here raises to the
transaction: one bad EDU must not fail the PDUs that came with it.

A string that a column would hold (a room ID, a device ID, a user ID) with
NUL in it (``events.identifiers.is_storable_text``) makes its EDU (or entry)
malformed: PostgreSQL cannot hold it, so a lookup or insert would fail
there, and SQLite would keep what PostgreSQL cannot. A device's display
name, which only names it, loses its NULs instead, as a status message does.

- ``m.typing``: the remote user's typing goes into the ``TypingManager``
  with ``REMOTE_TYPING_TIMEOUT_MS``: the EDU carries no timeout, and the
  origin re-sends while its user keeps typing;
- ``m.receipt``: stored through ``ReceiptStore`` like a local receipt, so
  /sync shows it (``m.read`` only: the other types are never federated);
- ``m.presence``: stored in the ``presence`` table for the users who share
  a room with a local user (``PresenceHandler.on_remote_presence``); dropped
  when ``presence.federation`` (or presence) is off;
- ``m.direct_to_device``: stored in the local recipients' device inboxes,
  once per (origin, message_id) (the to-device transaction-ID table);
- ``m.device_list_update``: recorded as a device list change of the user,
  so local users who share a room see them in /sync ``device_lists.changed``
  and re-query their keys; the device details update our cache of the
  user's device list (``e2e/keys.py``: applied, or a resync on a gap).
- ``m.signing_key_update``: the user's new master and self-signing keys,
  checked (well formed, self-signing key signed by the master key) and
  stored by ``e2e/cross_signing.py``, for users sharing a room with a local
  user; the device list is marked changed so room mates re-query.

Outbound (``send_typing``, ``send_receipt``, ``send_presence``): the EDU is
handed to the federation sender for every other server with a user joined
to the room (or, for presence, to any room the user is in), with a key so a
newer EDU of the same kind replaces one still queued.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_room_id, parse_user_id
from homeserver.errors import Codes, MatrixError
from homeserver.events.identifiers import is_storable_text
from homeserver.federation.client import FederationError, QueryArgs, RequestFailed
from homeserver.storage.devices import DeviceStore

if TYPE_CHECKING:
    from homeserver.appservice.scheduler import AppServiceScheduler
    from homeserver.context import ServerContext
    from homeserver.e2e.cross_signing import CrossSigning
    from homeserver.e2e.keys import E2eKeyHandler
    from homeserver.edu.presence import PresenceHandler
    from homeserver.edu.typing import TypingManager
    from homeserver.federation.client import FederationClient
    from homeserver.federation.event_handler import FederationEventHandler
    from homeserver.federation.sender import FederationSender
    from homeserver.storage import Stores
    from homeserver.storage.database import Database
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

# How long a remote user types without the origin saying so again (the m.typing
# EDU has no timeout; Synapse's senders re-send well within this).
REMOTE_TYPING_TIMEOUT_MS = 30_000

# Receipt types that cross servers: private receipts never leave their server.
FEDERATED_RECEIPT_TYPES = ("m.read",)

# Bounds on what one EDU may make us do.
MAX_PRESENCE_PUSH = 1000
MAX_EVENT_ID_BYTES = 255
MAX_TO_DEVICE_TYPE_BYTES = 255
MAX_MESSAGE_ID_BYTES = 255

# The timeout of a client's query of another server (profile, alias, directory).
QUERY_TIMEOUT_MS = 30_000


class BadEdu(Exception):
    """An EDU (or a part of one) that is dropped."""


def server_of(user_id: Any) -> str | None:
    """The server part of a valid user ID, else None."""
    parsed = parse_user_id(user_id) if isinstance(user_id, str) else None
    return parsed[1] if parsed is not None else None


def _require(condition: bool, why: str) -> None:
    if not condition:
        raise BadEdu(why)


def _storable(text: str) -> str:
    """``text`` less what no column holds (NUL, lone surrogates)."""
    return text.replace("\x00", "").encode("utf-8", "ignore").decode("utf-8")


def _is_short_str(value: Any, max_bytes: int) -> bool:
    return (isinstance(value, str) and bool(value)
            and len(value.encode("utf-8", "surrogatepass")) <= max_bytes
            and "\x00" not in value)


async def query_remote(client: "FederationClient", destination: str, path: str,
                       args: QueryArgs | None = None, body: Any = None) -> Any:
    """GET (or POST, with ``body``) a federation query for the client API.

    The answer must be a JSON object. Failures become what the client sees:
    the remote's 4xx error as it gave it (404 M_NOT_FOUND for "no such
    thing"), 502 M_UNKNOWN when the server cannot be reached or answers
    garbage, as Synapse does.
    """
    try:
        if body is None:
            result = await client.get_json(destination, path, args,
                                           timeout_ms=QUERY_TIMEOUT_MS)
        else:
            result = await client.post_json(destination, path, body, args=args,
                                            timeout_ms=QUERY_TIMEOUT_MS)
    except FederationError as e:
        if 400 <= e.code < 500 and e.code != 401:
            errcode = e.errcode if isinstance(e.errcode, str) and e.errcode.startswith("M_") \
                else (Codes.NOT_FOUND if e.code == 404 else Codes.UNKNOWN)
            message = e.body.get("error") if isinstance(e.body, dict) else None
            raise MatrixError(e.code, errcode, message if isinstance(message, str)
                              else f"{destination} answered {e.code}") from None
        logger.info("query %s of %s failed: %s", path, destination, e)
        raise MatrixError(502, Codes.UNKNOWN,
                          f"Failed to query {destination}: {e.code}") from None
    except RequestFailed as e:
        logger.info("query %s of %s failed: %s", path, destination, e)
        raise MatrixError(502, Codes.UNKNOWN, f"Failed to reach {destination}") from None
    if not isinstance(result, dict):
        raise MatrixError(502, Codes.UNKNOWN, f"{destination} sent a malformed answer")
    return result


class EduHandler:
    # the device-list cache of remote users, and the checks and storage of
    # their cross-signing keys; both send through our sender, so are built
    # after us: set by HomeServer._wire_late
    e2e_keys: "E2eKeyHandler"
    cross_signing: "CrossSigning"
    # application services with receive_ephemeral hear of remote receipts:
    # set by HomeServer._wire_late (None: no services)
    app_services: "AppServiceScheduler | None" = None

    def __init__(self, ctx: "ServerContext", db: "Database", stores: "Stores",
                 event_handler: "FederationEventHandler", sender: "FederationSender",
                 typing: "TypingManager", presence: "PresenceHandler",
                 notifier: "Notifier") -> None:
        self.ctx = ctx
        # runs the device store's transaction that marks a device list changed
        self.db = db
        self.stores = stores
        self.event_handler = event_handler
        self.sender = sender
        self.typing = typing
        self.presence = presence
        self.notifier = notifier
        self._handlers = {
            "m.typing": self._on_typing,
            "m.receipt": self._on_receipt,
            "m.presence": self._on_presence,
            "m.direct_to_device": self._on_direct_to_device,
            "m.device_list_update": self._on_device_list_update,
            "m.signing_key_update": self._on_signing_key_update,
        }

    # -- inbound ---------------------------------------------------------------

    async def on_edu(self, origin: str, edu_type: str, content: Any) -> None:
        """One EDU of a transaction from ``origin``; never raises."""
        handler = self._handlers.get(edu_type)
        if handler is None:
            logger.debug("ignoring EDU of unknown type %r from %s", edu_type, origin)
            return
        try:
            _require(isinstance(content, dict), "content is not an object")
            await handler(origin, content)
        except BadEdu as e:
            logger.info("dropping %s EDU from %s: %s", edu_type, origin, e)
        except MatrixError as e:
            logger.info("dropping %s EDU from %s: %s", edu_type, origin, e.msg)
        except Exception:
            logger.exception("failed to handle %s EDU from %s", edu_type, origin)

    async def _joined_room_nid(self, user_id: str, room_id: str) -> int:
        """The NID of ``room_id`` if ``user_id`` is joined to it (else BadEdu)."""
        _require(is_valid_room_id(room_id) and is_storable_text(room_id),
                 f"invalid room_id {room_id!r}")
        room = await self.stores.rooms.get_room(room_id)
        _require(room is not None, f"unknown room {room_id!r}")
        assert room is not None
        membership = await self.stores.rooms.get_membership(user_id, room.room_nid)
        _require(membership is not None and membership.membership == "join",
                 f"{user_id} is not joined to {room_id}")
        # the room's server ACL applies to EDUs as to PDUs
        _require(await self.event_handler.origin_allowed(
            room, user_id.partition(":")[2]), f"server ACL of {room_id} denies the sender")
        return room.room_nid

    async def _on_typing(self, origin: str, content: dict[str, Any]) -> None:
        room_id, user_id, typing = (content.get("room_id"), content.get("user_id"),
                                    content.get("typing"))
        _require(isinstance(room_id, str), "room_id is not a string")
        _require(server_of(user_id) == origin, f"user_id {user_id!r} is not of {origin}")
        _require(isinstance(typing, bool), "typing is not a boolean")
        assert isinstance(room_id, str) and isinstance(user_id, str)
        await self._joined_room_nid(user_id, room_id)
        self.typing.set_remote_typing(user_id, room_id, bool(typing),
                                      REMOTE_TYPING_TIMEOUT_MS)

    async def _on_receipt(self, origin: str, content: dict[str, Any]) -> None:
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict):
                logger.info("dropping receipts of %r from %s: not an object", room_id, origin)
                continue
            for receipt_type, by_user in by_type.items():
                if receipt_type not in FEDERATED_RECEIPT_TYPES or not isinstance(by_user, dict):
                    logger.info("dropping %r receipts in %r from %s", receipt_type, room_id,
                                origin)
                    continue
                for user_id, receipt in by_user.items():
                    try:
                        await self._on_one_receipt(origin, room_id, receipt_type, user_id,
                                                   receipt)
                    except BadEdu as e:
                        logger.info("dropping receipt of %r in %r from %s: %s", user_id,
                                    room_id, origin, e)

    async def _on_one_receipt(self, origin: str, room_id: str, receipt_type: str,
                              user_id: str, receipt: Any) -> None:
        from homeserver.edu.receipts import MAX_THREAD_ID_BYTES

        _require(server_of(user_id) == origin, f"not a user of {origin}")
        _require(isinstance(receipt, dict), "receipt is not an object")
        event_ids = receipt.get("event_ids")
        data = receipt.get("data")
        _require(isinstance(event_ids, list) and bool(event_ids)
                 and all(_is_short_str(e, MAX_EVENT_ID_BYTES) and e.startswith("$")
                         for e in event_ids), "event_ids is not a list of event IDs")
        _require(isinstance(data, dict), "data is not an object")
        assert isinstance(event_ids, list) and isinstance(data, dict)
        ts = data.get("ts")
        _require(isinstance(ts, int) and not isinstance(ts, bool), "data.ts is not an integer")
        thread_id = data.get("thread_id")
        _require(thread_id is None or _is_short_str(thread_id, MAX_THREAD_ID_BYTES),
                 "data.thread_id is not a valid thread ID")
        await self._joined_room_nid(user_id, room_id)
        event_id = await self._latest_event(event_ids)
        # The data is stored as sent (less thread_id, which has its column),
        # as clients expect whatever the origin put there.
        stored = {k: v for k, v in data.items() if k != "thread_id"}
        stream_pos = await self.stores.receipts.upsert_receipt(
            room_id, user_id, receipt_type, thread_id, event_id, stored)
        if stream_pos is not None:
            self.notifier.notify_room(room_id, stream_pos)
            if self.app_services is not None:
                self.app_services.on_receipt(room_id, receipt_type, user_id, event_id, stored)

    async def _latest_event(self, event_ids: list[str]) -> str:
        """Of the events a receipt names, the one furthest in our stream (the
        first when we know none of them)."""
        if len(event_ids) == 1:
            return event_ids[0]
        best, best_pos = event_ids[0], -1
        for event_id in dict.fromkeys(event_ids[:10]):
            position = await self.stores.events.get_event_position(event_id)
            if position is not None and position.stream_ordering is not None \
                    and position.stream_ordering > best_pos:
                best, best_pos = event_id, position.stream_ordering
        return best

    async def _on_presence(self, origin: str, content: dict[str, Any]) -> None:
        if not self.ctx.config.presence["federation"] or not self.presence.enabled:
            return
        push = content.get("push")
        _require(isinstance(push, list), "push is not a list")
        assert isinstance(push, list)
        for update in push[:MAX_PRESENCE_PUSH]:
            try:
                await self._on_one_presence(origin, update)
            except BadEdu as e:
                logger.info("dropping presence update from %s: %s", origin, e)

    async def _on_one_presence(self, origin: str, update: Any) -> None:
        from homeserver.edu.presence import PRESENCE_STATES

        _require(isinstance(update, dict), "update is not an object")
        user_id = update.get("user_id")
        _require(server_of(user_id) == origin, f"user_id {user_id!r} is not of {origin}")
        presence = update.get("presence")
        _require(presence in PRESENCE_STATES, "invalid presence")
        status_msg = update.get("status_msg")
        _require(status_msg is None or isinstance(status_msg, str), "invalid status_msg")
        if isinstance(status_msg, str):
            # as long as a local user may set it; NUL cannot be stored
            status_msg = status_msg[:1024].replace("\x00", "") or None
        last_active_ago = update.get("last_active_ago", 0)
        _require(isinstance(last_active_ago, int) and not isinstance(last_active_ago, bool)
                 and last_active_ago >= 0, "invalid last_active_ago")
        currently_active = update.get("currently_active", False)
        _require(isinstance(currently_active, bool), "invalid currently_active")
        assert isinstance(user_id, str) and isinstance(presence, str)
        await self.presence.on_remote_presence(
            user_id, presence, status_msg, last_active_ago, bool(currently_active))

    async def _on_direct_to_device(self, origin: str, content: dict[str, Any]) -> None:
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        _require(server_of(sender) == origin, f"sender {sender!r} is not of {origin}")
        _require(_is_short_str(event_type, MAX_TO_DEVICE_TYPE_BYTES), "invalid type")
        _require(_is_short_str(message_id, MAX_MESSAGE_ID_BYTES), "invalid message_id")
        _require(isinstance(messages, dict), "messages is not an object")
        assert isinstance(sender, str) and isinstance(event_type, str)
        assert isinstance(message_id, str) and isinstance(messages, dict)
        local: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, by_device in messages.items():
            if not self.ctx.is_mine(user_id) or server_of(user_id) is None:
                logger.info("dropping to-device message from %s for %r: not our user",
                            origin, user_id)
                continue
            if not isinstance(by_device, dict):
                continue
            wanted = {device_id: body for device_id, body in by_device.items()
                      if isinstance(device_id, str) and isinstance(body, dict)
                      and is_storable_text(device_id)}
            if len(wanted) < len(by_device):
                logger.info("dropping to-device messages from %s for %s: malformed"
                            " device IDs or bodies", origin, user_id)
            if wanted:
                local[user_id] = wanted
        if not local:
            return
        # (origin, scope, message_id): a retried transaction stores nothing twice
        stored = await self.stores.to_device.add_messages(
            sender, event_type, local, {}, (origin, "federation", message_id),
            self.ctx.now_ms())
        if stored is None:
            logger.debug("duplicate to-device message %s from %s", message_id, origin)
            return
        stream_pos, recipients = stored
        if recipients:
            self.notifier.notify_users(recipients, stream_pos)

    async def _on_device_list_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id = content.get("user_id")
        _require(server_of(user_id) == origin, f"user_id {user_id!r} is not of {origin}")
        device_id = content.get("device_id")
        _require(isinstance(device_id, str) and is_storable_text(device_id),
                 f"invalid device_id {device_id!r}")
        assert isinstance(user_id, str)
        name = content.get("device_display_name")
        if isinstance(name, str) and not is_storable_text(name):
            content = {**content, "device_display_name": _storable(name) or None}
        # Only users someone here can see: anything else would let any server
        # fill the table. The change wakes the room mates' /sync.
        mates = await self.stores.rooms.get_room_mates(user_id)
        if not any(self.ctx.is_mine(u) for u in mates):
            logger.debug("ignoring device list update of %s: shares no room with us", user_id)
            return
        # the cache of the user's devices first (resync on a gap), so clients
        # woken by the change read the new keys
        await self.e2e_keys.on_remote_update(origin, content)
        await self.db.run_interaction("remote_device_list_changed",
                                      DeviceStore.mark_device_list_changed_txn, user_id)

    async def _on_signing_key_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id = content.get("user_id")
        _require(server_of(user_id) == origin, f"user_id {user_id!r} is not of {origin}")
        # the remote user's new master / self-signing keys (e2e/cross_signing.py
        # checks them, and stores them only for users sharing a room with us)
        await self.cross_signing.on_signing_key_update(origin, content)

    # -- outbound --------------------------------------------------------------

    async def remote_servers_in_room(self, room_id: str) -> set[str]:
        """The other servers with a user joined to the room."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return set()
        return self._remote_servers(await self.stores.rooms.get_members(room.room_nid))

    def _remote_servers(self, user_ids: Iterable[str]) -> set[str]:
        servers = {user_id.partition(":")[2] for user_id in user_ids}
        servers.discard(self.ctx.hostname)
        servers.discard("")
        return servers

    def send_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """A local user started or stopped typing: tell the room's other servers."""
        content = {"room_id": room_id, "user_id": user_id, "typing": typing}
        self.ctx.run_in_background(
            self._send_to_room(room_id, "m.typing", content, ("typing", room_id, user_id)))

    def send_receipt(self, room_id: str, receipt_type: str, user_id: str, event_id: str,
                     data: dict[str, Any]) -> None:
        """A local user's receipt moved (``data``: ts, thread_id): tell the room's
        other servers (public receipt types only)."""
        if receipt_type not in FEDERATED_RECEIPT_TYPES:
            return
        content = {room_id: {receipt_type: {user_id: {"event_ids": [event_id],
                                                      "data": data}}}}
        # keyed by thread too: receipts of two threads are both current
        key = ("receipt", room_id, receipt_type, user_id, data.get("thread_id"))
        self.ctx.run_in_background(self._send_to_room(room_id, "m.receipt", content, key))

    async def _send_to_room(self, room_id: str, edu_type: str, content: dict[str, Any],
                            key: Any) -> None:
        for destination in sorted(await self.remote_servers_in_room(room_id)):
            self.sender.send_edu(destination, edu_type, content, key)

    def send_presence(self, user_id: str, room_mates: Iterable[str],
                      content: dict[str, Any]) -> None:
        """A local user's presence changed (``content``: the m.presence event
        content): tell the servers of ``room_mates`` (the users sharing a room
        with them), unless presence over federation is off."""
        if not self.ctx.config.presence["federation"] or not self.ctx.is_mine(user_id):
            return
        update = {"user_id": user_id, "last_active_ago": 0, **content}
        for destination in sorted(self._remote_servers(room_mates)):
            self.sender.send_edu(destination, "m.presence", {"push": [update]},
                                 ("presence", user_id))
