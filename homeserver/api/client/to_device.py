"""Send-to-device messaging: PUT /sendToDevice.

The body maps user IDs to device IDs (or ``"*"``: every device of the user)
to message contents. Messages for local users go to the recipients' device
inboxes, read by /sync (``storage/to_device.py``). Messages for users of
other servers are queued in ``device_federation_outbox``, one
``m.direct_to_device`` EDU per destination, for the federation sender to
deliver (``federation/sender.py``).

The transaction ID makes the request idempotent per user and device (or
access token, for a token without a device): a retry stores nothing again
and answers 200 as the first time did.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import parse_user_id
from homeserver.errors import Codes, MatrixError, bad_json, invalid_param
from homeserver.http.parse import get_object
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.rooms.access import txn_scope

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.sender import FederationSender
    from homeserver.server import HomeServer
    from homeserver.storage.to_device import ToDeviceStore
    from homeserver.sync.notifier import Notifier

CLIENT_V3 = "/_matrix/client/v3"

# Per message content (Synapse's limit on a to-device EDU); the body as a
# whole may carry many (room keys for every device of a large room).
MAX_CONTENT_BYTES = 65_536
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_TYPE_BYTES = 255
MAX_TXN_ID_BYTES = 255

Messages = dict[str, dict[str, dict[str, Any]]]


def parse_messages(body: dict[str, Any]) -> Messages:
    """The ``messages`` of a /sendToDevice body, with every level type-checked."""
    messages = get_object(body, "messages")
    for user_id, by_device in messages.items():
        if parse_user_id(user_id) is None:
            raise invalid_param(f"Invalid user ID: {user_id!r}")
        if not isinstance(by_device, dict):
            raise bad_json(f"messages for {user_id} must be an object")
        for device_id, content in by_device.items():
            if "\x00" in device_id:
                # the body may hold NUL (content is free-form), an ID may not
                raise invalid_param(f"Invalid device ID: {device_id!r}")
            if not isinstance(content, dict):
                raise bad_json(f"message for {user_id}'s device {device_id!r} must be an object")
            size = len(json.dumps(content, ensure_ascii=False, separators=(",", ":"))
                       .encode("utf-8", "surrogatepass"))
            if size > MAX_CONTENT_BYTES:
                raise MatrixError(413, Codes.TOO_LARGE,
                                  f"Message content may not be larger than "
                                  f"{MAX_CONTENT_BYTES} bytes")
    return messages


def check_path_param(name: str, value: str, max_bytes: int) -> None:
    if not value:
        raise invalid_param(f"Invalid {name}")
    if len(value.encode("utf-8")) > max_bytes:
        raise invalid_param(f"{name} may not be longer than {max_bytes} bytes")


@dataclass(frozen=True)
class ToDevice:
    """What the endpoint uses: the inbox/outbox store, the notifier that
    wakes local recipients' syncs, and the federation sender for the rest."""

    ctx: "ServerContext"
    store: "ToDeviceStore"
    notifier: "Notifier"
    federation_sender: "FederationSender"


def split_recipients(ctx: "ServerContext", sender: str, event_type: str,
                     messages: Messages) -> tuple[Messages, dict[str, dict[str, Any]]]:
    """(messages for local users, one ``m.direct_to_device`` EDU per other server)."""
    local: Messages = {}
    remote: dict[str, dict[str, Any]] = {}
    for user_id, by_device in messages.items():
        if not by_device:
            continue
        if ctx.is_mine(user_id):
            local[user_id] = by_device
            continue
        _, destination = parse_user_id(user_id) or ("", "")
        edu = remote.setdefault(destination, {
            "sender": sender, "type": event_type,
            "message_id": secrets.token_urlsafe(12), "messages": {}})
        edu["messages"][user_id] = by_device
    return local, remote


async def put_send_to_device(to_device: ToDevice, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}"""
    event_type, txn_id = req.params["eventType"], req.params["txnId"]
    check_path_param("event type", event_type, MAX_TYPE_BYTES)
    check_path_param("transaction ID", txn_id, MAX_TXN_ID_BYTES)
    messages = parse_messages(req.json(allow_nul=True))
    assert req.requester is not None
    sender = req.user_id
    local, remote = split_recipients(to_device.ctx, sender, event_type, messages)
    stored = await to_device.store.add_messages(sender, event_type, local, remote,
                                                (sender, txn_scope(req.requester), txn_id),
                                                to_device.ctx.now_ms())
    if stored is not None:
        stream_pos, recipients = stored
        if recipients:
            to_device.notifier.notify_users(recipients, stream_pos)
        for destination in remote:
            to_device.federation_sender.on_new_to_device(destination)
    return 200, {}


ENDPOINTS = (
    Endpoint("PUT", f"{CLIENT_V3}/sendToDevice/{{eventType}}/{{txnId}}", put_send_to_device,
             allow_guest=True, max_body=MAX_BODY_BYTES),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(ToDevice(hs.ctx, hs.stores.to_device, hs.notifier,
                                  hs.federation_sender), ENDPOINTS)
