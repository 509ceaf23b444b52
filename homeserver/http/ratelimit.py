"""Leaky-bucket rate limits, as Synapse's rc_* settings describe them.

A bucket holds up to ``burst_count`` actions and drains at ``per_second``.
An action that would overflow it is refused with M_LIMIT_EXCEEDED and the
time until it would fit. Buckets live in memory, keyed by (limit, key); empty
ones are forgotten so the table stays small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from homeserver.config import RateLimit
from homeserver.errors import limit_exceeded


class SecondsClock(Protocol):
    def seconds(self) -> float: ...


class Ratelimiter:
    def __init__(self, clock: SecondsClock, name: str, limit: RateLimit) -> None:
        self._clock = clock
        self.name = name
        self.limit = limit
        # key -> (level, time the level was measured)
        self._buckets: dict[str, tuple[float, float]] = {}
        # keys never limited (the users of application services registered
        # with rate_limited: false); None: none
        self.exempt: Callable[[str], bool] | None = None

    def _level(self, key: str, now: float) -> float:
        level, then = self._buckets.get(key, (0.0, now))
        return max(0.0, level - (now - then) * self.limit.per_second)

    def can_do(self, key: str, n: float = 1.0) -> tuple[bool, int]:
        """Whether ``n`` more actions fit, and if not the wait in milliseconds."""
        now = self._clock.seconds()
        level = self._level(key, now)
        if level + n <= self.limit.burst_count:
            return True, 0
        if self.limit.per_second <= 0:
            return False, 3_600_000
        wait = (level + n - self.limit.burst_count) / self.limit.per_second
        return False, max(1, int(wait * 1000))

    def record(self, key: str, n: float = 1.0) -> None:
        now = self._clock.seconds()
        self._buckets[key] = (self._level(key, now) + n, now)
        if len(self._buckets) > 10_000:
            self._prune(now)

    def ratelimit(self, key: str, n: float = 1.0) -> None:
        """Count ``n`` actions for ``key`` or raise M_LIMIT_EXCEEDED."""
        if self.exempt is not None and self.exempt(key):
            return
        ok, wait_ms = self.can_do(key, n)
        if not ok:
            raise limit_exceeded(wait_ms)
        self.record(key, n)

    def check(self, key: str) -> None:
        """Raise M_LIMIT_EXCEEDED if one more action would not fit; count nothing."""
        if self.exempt is not None and self.exempt(key):
            return
        ok, wait_ms = self.can_do(key)
        if not ok:
            raise limit_exceeded(wait_ms)

    def _prune(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) <= 0]:
            del self._buckets[key]
