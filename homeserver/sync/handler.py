"""/sync: what changed for a user between two tokens, long-polling.

A response covers the global stream range (since, until]: ``until`` is the
stream's "persisted up to" position when the request is served (so no write
below it is still in flight), lowered when a device has more to-device
messages than one response carries: everything in the response stops at the
same position, and the next sync continues from there with no gap and no
duplicate.

This module is the orchestration; the work is done by:

- ``sync/fast_path.py``: a woken incremental sync answered from memory
  (``sync/memory.py``) when all that happened is plain messages from others;
- ``sync/room_builder.py``: everything else, read from the database, room by
  room;
- ``sync/encoder.py``: the response's shape, shared by both so they cannot
  drift apart.

Long-polling (``sync``): build; when the response is empty, wait on the
notifier (``sync/notifier.py``) until something is written for the user or
the timeout passes, then build again. The notifier counter is read before
building, so a write that lands while building still wakes the wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.http.request import Requester
from homeserver.storage.e2e_keys import KeyCounts
from homeserver.sync.encoder import is_empty, sync_body
from homeserver.sync.tokens import StreamToken, parse_sync_token, token_position

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.edu.presence import PresenceHandler
    from homeserver.edu.typing import TypingManager
    from homeserver.storage.streams import StreamTracker
    from homeserver.sync.fast_path import FastPath
    from homeserver.sync.filter import SyncFilter
    from homeserver.sync.notifier import Notifier
    from homeserver.sync.room_builder import RoomBuilder

logger = logging.getLogger(__name__)

# the longest a request may wait
MAX_TIMEOUT_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class SyncParams:
    since: str | None
    timeout_ms: int
    full_state: bool
    filter: "SyncFilter"
    # "online", "unavailable" or "offline" (None: online)
    set_presence: str | None


class SyncHandler:
    """Tokens and long-polling; each build goes to the fast path when it can
    answer, else to the full builder."""

    def __init__(self, ctx: "ServerContext", stream_tracker: "StreamTracker",
                 typing: "TypingManager", presence: "PresenceHandler", notifier: "Notifier",
                 builder: "RoomBuilder", fast: "FastPath") -> None:
        self.ctx = ctx
        self.stream_tracker = stream_tracker
        self.typing = typing
        self.presence = presence
        self.notifier = notifier
        self.builder = builder
        self.fast = fast
        # answer woken incremental syncs from memory when possible; off only
        # to check that both ways answer alike
        self.fast_path = True
        self.fast_answers = 0  # how many responses it gave (tests, metrics)

    def current_token(self) -> StreamToken:
        return StreamToken(self.stream_tracker.persisted_upto,
                           self.typing.current_position(), self.ctx.epoch)

    def parse_since(self, text: str) -> StreamToken:
        return parse_sync_token(text, current=self.current_token(),
                                max_global=self.stream_tracker.max_allocated)

    # -- long-polling -------------------------------------------------------

    async def sync(self, requester: Requester, params: SyncParams) -> dict[str, Any]:
        """The /sync response body (``next_batch`` included); waits up to
        ``params.timeout_ms`` for something new when there is nothing yet."""
        user_id = requester.user_id
        since = None
        if params.since is not None:
            # with several processes, another may have handed the token out
            # a moment before this one heard of its position (docs/scale-out.md)
            await self.stream_tracker.wait_for(token_position(params.since))
            since = self.parse_since(params.since)
        # read-your-writes for every user: a write answered before this
        # request arrived (another user's message, say) is in the response,
        # even while an earlier write (presence, a receipt) still holds
        # "persisted up to" below it; bounded, like /messages' wait
        await self.stream_tracker.known_writes_ended(self.ctx.clock)
        await self.presence.user_syncing(user_id, params.set_presence)
        try:
            return await self._long_poll(requester, since, params)
        finally:
            self.presence.sync_ended(user_id, params.set_presence)

    async def _long_poll(self, requester: Requester, since: StreamToken | None,
                         params: SyncParams) -> dict[str, Any]:
        user_id = requester.user_id
        timeout = min(max(params.timeout_ms, 0), MAX_TIMEOUT_MS)
        if since is None or params.full_state or timeout == 0:
            return await self._build(requester, since, params)
        counts = await self.builder.key_counts(requester)
        clock = self.ctx.clock
        deadline = clock.seconds() + timeout / 1000
        while True:
            counter = self.notifier.counter(user_id)
            if self._nothing_since(since):
                body = self._empty(since, counts)
            else:
                body = await self._build(requester, since, params)
                if not is_empty(body):
                    return body
            remaining = deadline - clock.seconds()
            if remaining <= 0:
                return body
            woken = await self.notifier.wait(
                user_id, counter, int(remaining * 1000),
                presence=not params.filter.presence.blocks_all())
            if not woken:
                return body

    def _nothing_since(self, since: StreamToken) -> bool:
        now = self.current_token()
        return now.global_pos == since.global_pos and now.typing_pos == since.typing_pos

    def _empty(self, token: StreamToken, counts: KeyCounts) -> dict[str, Any]:
        return sync_body(str(token), {}, {}, {}, {}, [], [], [], set(), set(), counts)

    async def _build(self, requester: Requester, since: StreamToken | None,
                     params: SyncParams) -> dict[str, Any]:
        """From memory when the fast path can, else from the database."""
        until = self.current_token()
        if since is not None and not params.full_state and self.fast_path:
            body = self.fast.answer(requester.user_id, requester.device_id, since, until,
                                    params.filter)
            if body is not None:
                self.fast_answers += 1
                return body
        return await self.builder.build(requester, since, until, params)
