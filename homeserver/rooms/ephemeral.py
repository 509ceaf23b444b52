"""Self-destructing messages (MSC2228, Synapse's ``enable_ephemeral_messages``).

A message whose content has ``org.matrix.self_destruct_after`` (a timestamp
in ms) loses its content at that time, for everyone: the stored event is
pruned to what a redaction keeps (``storage/event_expiry.py``); no
redaction event is sent. Off unless ``enable_ephemeral_messages`` is set.

One timer, for the earliest expiry: set at start from the table, moved
earlier when a committed event expires sooner (``on_commit``, from the
write hub), and after each round of expiries set for the next one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from homeserver.deadline_timer import DeadlineTimer
from homeserver.storage.event_expiry import expiry_of

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.storage.event_expiry import EventExpiryStore
    from homeserver.storage.events import EventStore
    from homeserver.storage.hub import Committed

logger = logging.getLogger(__name__)

# expiries handled in one round
BATCH = 100


class EventExpirer:
    def __init__(self, ctx: "ServerContext", store: "EventExpiryStore",
                 events: "EventStore") -> None:
        self.ctx = ctx
        self.store = store
        self.events = events
        self.timer = DeadlineTimer(ctx, lambda: ctx.run_in_background(self._expire_due()))

    async def start(self) -> None:
        self.timer.start()
        self.timer.schedule(await self.store.get_next_expiry())

    def stop(self) -> None:
        self.timer.stop()

    def on_commit(self, committed: "Committed") -> None:
        """The write hub, on the database thread."""
        expiries = [e for e in (expiry_of(event) for event, _ in committed.events)
                    if e is not None]
        if expiries:
            self.ctx.reactor.callFromThread(self.timer.schedule, min(expiries))

    async def _expire_due(self) -> None:
        try:
            while self.timer.running:
                due = await self.store.get_due(self.ctx.now_ms(), BATCH)
                for event_id in due:
                    await self.store.expire(event_id)
                    self.events.cache.invalidate(event_id)
                    logger.debug("expired self-destructing event %s", event_id)
                if len(due) < BATCH:
                    break
        except Exception:
            logger.exception("expiring self-destructing events failed")
        self.timer.schedule(await self.store.get_next_expiry())
