"""Account data: a user's own JSON objects, global or per room, by type.

Only the user may read or write their account data. The types the server
manages itself (``m.fully_read``, written through /read_markers, and
``m.push_rules``, through /pushrules) are refused with 405 M_BAD_JSON, as
the spec asks, both globally and per room; they can still be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_room_id
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.push.rules import client_ruleset
from homeserver.rooms.ignored import check_ignore_list
from homeserver.storage.push_rules import PUSH_RULES_TYPE

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.storage.account_data import AccountDataStore
    from homeserver.storage.push_rules import PushRuleStore
    from homeserver.sync.notifier import Notifier

CLIENT_V3 = "/_matrix/client/v3"

SERVER_MANAGED_TYPES = {
    "m.fully_read": "Cannot set m.fully_read through this API."
                    " Use /rooms/{roomId}/read_markers",
    "m.push_rules": "Cannot set m.push_rules through this API. Use /pushrules",
}

# The spec caps event types at 255 bytes; it also keeps the (user, room, type)
# key well inside what a PostgreSQL index entry can hold.
MAX_TYPE_BYTES = 255


def check_type(data_type: str) -> None:
    if len(data_type.encode("utf-8")) > MAX_TYPE_BYTES:
        raise invalid_param(f"Account data type may not be longer than {MAX_TYPE_BYTES} bytes")


def check_settable(data_type: str) -> None:
    check_type(data_type)
    refusal = SERVER_MANAGED_TYPES.get(data_type)
    if refusal is not None:
        raise MatrixError(405, Codes.BAD_JSON, refusal)


@dataclass(frozen=True)
class AccountData:
    """What the account data endpoints use: the account data store, the
    push rule store for a default ``m.push_rules`` never written, and the
    notifier, which wakes the writer's waiting syncs (other devices, and the
    writer's own: clients such as matrix-js-sdk wait for the echo)."""

    store: "AccountDataStore"
    push_rules: "PushRuleStore"
    notifier: "Notifier"


def check_own(req: HttpRequest, verb: str) -> None:
    if req.params["userId"] != req.user_id:
        raise forbidden(f"Cannot {verb} account data for other users.")


def room_id_of(req: HttpRequest) -> str:
    room_id: str = req.params["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"{room_id} is not a valid room ID")
    return room_id


async def put_global(data: AccountData, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""
    check_own(req, "add")
    data_type = req.params["type"]
    check_settable(data_type)
    # free-form JSON, kept as JSON: a NUL in it is stored, as Synapse does
    content = req.json(allow_nul=True)
    check_ignore_list(req.user_id, data_type, content)
    stream_pos = await data.store.put_global_account_data(req.user_id, data_type, content)
    data.notifier.notify_users([req.user_id], stream_pos)
    return 200, {}


async def get_global(data: AccountData, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/user/{userId}/account_data/{type}"""
    check_own(req, "get")
    data_type = req.params["type"]
    content = await data.store.get_global_account_data(req.user_id, data_type)
    if content is None and data_type == PUSH_RULES_TYPE:
        # the default ruleset of a user who never changed a rule
        content = {"global": client_ruleset(await data.push_rules.get_ruleset(req.user_id))}
    if content is None:
        raise not_found("Account data not found")
    return 200, content


async def put_room(data: AccountData, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    check_own(req, "add")
    room_id = room_id_of(req)
    data_type = req.params["type"]
    check_settable(data_type)
    stream_pos = await data.store.put_room_account_data(req.user_id, room_id, data_type,
                                                        req.json(allow_nul=True))
    data.notifier.notify_users([req.user_id], stream_pos)
    return 200, {}


async def get_room(data: AccountData, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    check_own(req, "get")
    room_id = room_id_of(req)
    content = await data.store.get_room_account_data(req.user_id, room_id, req.params["type"])
    if content is None:
        raise not_found("Room account data not found")
    return 200, content


_USER = f"{CLIENT_V3}/user/{{userId}}"
ENDPOINTS = (
    Endpoint("PUT", f"{_USER}/account_data/{{type}}", put_global),
    Endpoint("GET", f"{_USER}/account_data/{{type}}", get_global),
    Endpoint("PUT", f"{_USER}/rooms/{{roomId}}/account_data/{{type}}", put_room),
    Endpoint("GET", f"{_USER}/rooms/{{roomId}}/account_data/{{type}}", get_room),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(AccountData(hs.stores.account_data, hs.stores.push_rules,
                                     hs.notifier), ENDPOINTS)
