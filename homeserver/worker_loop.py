"""One background worker per remote party, woken by new work, backing off on failure.

Pushers (one per push gateway registration) and application service queues
(one per service) share the same life: something new may be owed (``wake``),
so send it, in order, one request at a time; when the other side fails, wait
(exponentially longer each time) and try again; on shutdown, stop at once.
``WorkerLoop`` is that life; a subclass says what one round of work is
(``process``) and calls ``back_off`` when the other side failed.

The rules:
- at most one round runs at a time; a ``wake`` during a round makes the loop
  run another round when this one ends (nothing woken for is missed);
- while a backoff timer is set, ``wake`` does nothing: the timer decides when
  to look again (so a busy room does not hammer a gateway that is down);
- ``stop`` cancels the timer and the round in flight, and returns the
  round's Deferred so the caller can wait for it to unwind.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

if TYPE_CHECKING:
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)


class WorkerLoop:
    """Subclasses implement ``process`` and set ``backoff_on_error``."""

    # an unexpected exception in ``process`` backs off (True) or just ends
    # the round (False: the next wake tries again)
    backoff_on_error = True

    def __init__(self, ctx: "ServerContext") -> None:
        self.ctx = ctx
        self._stopped = False
        self._loop: defer.Deferred[Any] | None = None
        self._again = False
        self._timer: Any = None
        self._backoff_s = 0.0

    def describe(self) -> str:
        """Names the worker in log lines."""
        return type(self).__name__

    async def process(self) -> bool:
        """One round of work; True when there may be more right away."""
        raise NotImplementedError

    def backoff_limits(self) -> tuple[float, float]:
        """(first wait, longest wait) in seconds."""
        return (1.0, 300.0)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def wake(self) -> None:
        """There may be something new: start a round, or have the running one
        run again when done. While backing off, the timer decides."""
        if self._stopped or self._timer is not None:
            return
        if self._loop is not None:
            self._again = True
            return
        self._loop = self.ctx.run_in_background(self._run())

    def stop(self) -> "defer.Deferred[Any] | None":
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        loop = self._loop
        if loop is not None:
            loop.cancel()
        return loop

    def back_off(self) -> float:
        """The other side failed: look again after the next, longer wait
        (returned in seconds); ``wake`` is ignored until then."""
        if self._stopped:
            return 0.0
        first, longest = self.backoff_limits()
        self._backoff_s = min(longest, self._backoff_s * 2 or first)
        self._timer = self.ctx.clock.callLater(self._backoff_s, self._retry)
        return self._backoff_s

    def succeeded(self) -> None:
        """The other side answered: the next failure waits the first wait."""
        self._backoff_s = 0.0

    def _retry(self) -> None:
        self._timer = None
        self.wake()

    async def _run(self) -> None:
        try:
            again = True
            while again and not self._stopped and self._timer is None:
                self._again = False
                again = await self.process() or self._again
        except defer.CancelledError:
            pass
        except Exception:
            logger.exception("%s: failed", self.describe())
            if self.backoff_on_error:
                self.back_off()
        finally:
            self._loop = None
