"""One timer for the earliest of many deadlines stored elsewhere.

Self-destructing messages (``rooms/ephemeral.py``) and delayed events
(``rooms/delayed_events.py``) keep their deadlines in the database and need
to wake once, at the earliest: ``schedule(at_ms)`` moves the timer earlier
(never later: a later deadline waits for the round the earlier one starts,
which schedules the next from the database); ``run`` is called when it
fires, and is expected to call ``schedule`` with the next deadline when done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homeserver.context import ServerContext


class DeadlineTimer:
    def __init__(self, ctx: "ServerContext", run: Callable[[], Any]) -> None:
        self.ctx = ctx
        self._run = run
        self._timer: Any = None
        self._timer_at: int | None = None
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._timer_at = None

    def schedule(self, at_ms: int | None) -> None:
        """Fire at ``at_ms`` (a ms timestamp) unless set to fire sooner."""
        if at_ms is None or not self.running:
            return
        active = self._timer is not None and self._timer.active()
        if active and self._timer_at is not None and self._timer_at <= at_ms:
            return
        if active:
            self._timer.cancel()
        self._timer_at = at_ms
        delay = max(0, at_ms - self.ctx.now_ms()) / 1000
        self._timer = self.ctx.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        self._run()
