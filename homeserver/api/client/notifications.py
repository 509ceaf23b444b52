"""GET /notifications: the events that notified the user, newest first.

Rows come from ``event_push_actions`` (written when each event was
persisted, ``storage/push_rules.py``) with ``notify = 1``; ``only=highlight``
keeps the highlighted ones. ``read`` says whether the user's read receipt in
the room is at or after the event. ``from`` / ``next_token`` are the stream
position of the last notification of the previous page (the page continues
below it).

``profile_tag`` (the spec: "the profile tag of the rule that matched") is
always present and null: rules carry no profile tag here, and, as on
Synapse, clients and SyTest expect the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import invalid_param
from homeserver.http.parse import query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.rooms.client_format import client_event

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.server import HomeServer
    from homeserver.storage import Stores

CLIENT_V3 = "/_matrix/client/v3"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class Notifications:
    """What the endpoint uses: the clock (event ages) and the push action,
    event and receipt stores."""

    ctx: "ServerContext"
    stores: "Stores"


def _before(req: HttpRequest) -> int | None:
    """The ``from`` token: the stream position the page continues below."""
    from_text = query_str(req.args, "from", None)
    if not from_text:
        return None
    try:
        return int(from_text)
    except ValueError:
        raise invalid_param("Invalid 'from' token") from None


async def get_notifications(n: Notifications, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/notifications"""
    limit = query_int(req.args, "limit", DEFAULT_LIMIT)
    if limit < 0:
        raise invalid_param("'limit' must not be negative")
    limit = min(limit, MAX_LIMIT)
    before = _before(req)
    only = query_str(req.args, "only", None)
    stores = n.stores
    rows = await stores.push_rules.get_notifications(
        req.user_id, before, limit, only_highlight=only == "highlight")
    events = await stores.events.get_events([r.event_id for r in rows])
    reads = await stores.receipts.get_own_receipt_positions(
        req.user_id, list({r.room_id for r in rows}))
    now = n.ctx.now_ms()
    notifications = []
    for row in rows:
        event = events.get(row.event_id)
        if event is None:
            continue
        notifications.append({
            "actions": row.actions,
            "event": client_event(event, row.room_id, now),
            "profile_tag": None,
            "read": row.stream_ordering <= reads.get(row.room_id, 0),
            "room_id": row.room_id,
            "ts": row.ts,
        })
    body: dict[str, Any] = {"notifications": notifications}
    if rows and len(rows) == limit:
        body["next_token"] = str(rows[-1].stream_ordering)
    return 200, body


ENDPOINTS = (Endpoint("GET", f"{CLIENT_V3}/notifications", get_notifications),)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Notifications(hs.ctx, hs.stores), ENDPOINTS)
