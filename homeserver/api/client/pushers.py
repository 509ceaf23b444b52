"""Pushers: list them, and create, update or delete one (push.md, "Pushers").

A pusher belongs to the device of the access token that set it: deleting
the device (logout, DELETE /devices, deactivation) deletes its pushers.
Only ``http`` pushers are supported (email pushers need a mailer this
server does not have): any other kind is refused with a 400 rather than
stored and never run. ``data.url`` must be an http(s) URL whose path is
``/_matrix/push/v1/notify``, as the spec and Synapse require.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from homeserver.errors import Codes, MatrixError, invalid_param, missing_param
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.push.pushers import PusherPool
    from homeserver.server import HomeServer
    from homeserver.storage.pushers import PusherStore
    from homeserver.storage.streams import StreamTracker

CLIENT_V3 = "/_matrix/client/v3"
NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_PUSHKEY_BYTES = 512
MAX_APP_ID_CHARS = 64
# limits of our own on the free-text fields and the data object
MAX_TEXT_CHARS = 1024
MAX_DATA_BYTES = 4096


@dataclass(frozen=True)
class PusherRequest:
    """A validated POST /pushers/set body; ``kind`` None deletes."""
    kind: str | None
    app_id: str
    pushkey: str
    app_display_name: str = ""
    device_display_name: str = ""
    profile_tag: str | None = None
    lang: str = ""
    data: dict[str, Any] | None = None
    append: bool = False


def _text(body: dict[str, Any], name: str, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise missing_param(name)
        return None
    if not isinstance(value, str):
        raise invalid_param(f"'{name}' must be a string")
    if len(value) > MAX_TEXT_CHARS:
        raise invalid_param(f"'{name}' may not be longer than {MAX_TEXT_CHARS} characters")
    return value


def parse_pusher_request(body: dict[str, Any]) -> PusherRequest:
    """Check a /pushers/set body as pusher.yaml describes it."""
    if "kind" not in body:
        raise missing_param("kind")
    kind = body["kind"]
    if kind is not None and not isinstance(kind, str):
        raise invalid_param("'kind' must be a string or null")
    app_id = _text(body, "app_id", True) or ""
    pushkey = _text(body, "pushkey", True) or ""
    if not app_id or len(app_id) > MAX_APP_ID_CHARS:
        raise invalid_param(f"'app_id' must be 1 to {MAX_APP_ID_CHARS} characters")
    if not pushkey or len(pushkey.encode("utf-8")) > MAX_PUSHKEY_BYTES:
        raise invalid_param(f"'pushkey' must be 1 to {MAX_PUSHKEY_BYTES} bytes")
    append = body.get("append", False)
    if not isinstance(append, bool):
        raise invalid_param("'append' must be a boolean")
    if kind is None:
        return PusherRequest(None, app_id, pushkey)
    missing = [name for name in ("app_display_name", "device_display_name", "lang", "data")
               if body.get(name) is None]
    if missing:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameters: " + ", ".join(missing))
    if kind != "http":
        raise invalid_param(f"Unsupported pusher kind {kind!r}: only 'http' is supported")
    data = body["data"]
    if not isinstance(data, dict):
        raise invalid_param("'data' must be an object")
    url = data.get("url")
    if not isinstance(url, str):
        raise MatrixError(400, Codes.MISSING_PARAM, "'url' required in data for HTTP pusher")
    try:
        parts = urlsplit(url)
        valid_url = parts.scheme in ("http", "https") and bool(parts.hostname) \
            and parts.path == NOTIFY_PATH
    except ValueError:
        valid_url = False
    if not valid_url:
        raise invalid_param(f"'url' must be an http(s) URL with the path {NOTIFY_PATH}")
    fmt = data.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise invalid_param("'format' must be a string")
    if len(json.dumps(data)) > MAX_DATA_BYTES:
        raise MatrixError(400, Codes.TOO_LARGE, "'data' is too large")
    return PusherRequest(
        kind, app_id, pushkey,
        app_display_name=_text(body, "app_display_name", True) or "",
        device_display_name=_text(body, "device_display_name", True) or "",
        profile_tag=_text(body, "profile_tag", False),
        lang=_text(body, "lang", True) or "",
        data=data, append=append)


@dataclass(frozen=True)
class Pushers:
    """What the pusher endpoints use: the pusher store, the pool that runs
    them, the clock, and the stream position a new pusher starts from."""

    ctx: "ServerContext"
    store: "PusherStore"
    pool: "PusherPool"
    stream_tracker: "StreamTracker"


async def get_pushers(pushers: Pushers, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushers"""
    found = await pushers.store.get_pushers_for_user(req.user_id)
    return 200, {"pushers": [p.to_client() for p in found]}


async def set_pusher(pushers: Pushers, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/pushers/set"""
    assert req.requester is not None
    body = parse_pusher_request(req.json())
    store = pushers.store
    if body.kind is None:
        await store.delete_pusher(req.user_id, body.app_id, body.pushkey)
        pushers.pool.on_pusher_removed((req.user_id, body.app_id, body.pushkey))
        return 200, {}
    assert body.data is not None
    removed = await store.upsert_pusher(
        user_id=req.user_id, device_id=req.requester.device_id, kind=body.kind,
        app_id=body.app_id, pushkey=body.pushkey,
        app_display_name=body.app_display_name,
        device_display_name=body.device_display_name, profile_tag=body.profile_tag,
        lang=body.lang, data=body.data, now_ms=pushers.ctx.now_ms(),
        position=pushers.stream_tracker.persisted_upto, append=body.append)
    await pushers.pool.on_pusher_set(req.user_id, body.app_id, body.pushkey, removed)
    return 200, {}


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/pushers", get_pushers),
    Endpoint("POST", f"{CLIENT_V3}/pushers/set", set_pusher),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Pushers(hs.ctx, hs.stores.pushers, hs.pushers, hs.db.stream_tracker),
                         ENDPOINTS)
