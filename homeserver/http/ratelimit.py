"""Leaky-bucket rate limits, as Synapse's rc_* settings describe them.

A bucket holds up to ``burst_count`` actions and drains at ``per_second``.
An action that would overflow it is refused with M_LIMIT_EXCEEDED and the
time until it would fit. Buckets live in memory, keyed by (limit, key); empty
ones are forgotten so the table stays small. ``overrides`` gives a key (a user
ID) limits of its own (the admin API's override_ratelimit): a rate and burst
of 0 is no limit at all, as on Synapse.
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
        # a key's own limits, when it has some (None: none has)
        self.overrides: Callable[[str], RateLimit | None] | None = None

    def _limit_for(self, key: str) -> RateLimit:
        if self.overrides is not None:
            own = self.overrides(key)
            if own is not None:
                return own
        return self.limit

    def _exempt(self, key: str) -> bool:
        if self.exempt is not None and self.exempt(key):
            return True
        own = self.overrides(key) if self.overrides is not None else None
        return own is not None and own.per_second == 0 and own.burst_count == 0

    def _level(self, key: str, now: float) -> float:
        level, then = self._buckets.get(key, (0.0, now))
        return max(0.0, level - (now - then) * self._limit_for(key).per_second)

    def can_do(self, key: str, n: float = 1.0) -> tuple[bool, int]:
        """Whether ``n`` more actions fit, and if not the wait in milliseconds."""
        now = self._clock.seconds()
        level = self._level(key, now)
        limit = self._limit_for(key)
        if level + n <= limit.burst_count:
            return True, 0
        if limit.per_second <= 0:
            return False, 3_600_000
        wait = (level + n - limit.burst_count) / limit.per_second
        return False, max(1, int(wait * 1000))

    def record(self, key: str, n: float = 1.0) -> None:
        now = self._clock.seconds()
        self._buckets[key] = (self._level(key, now) + n, now)
        if len(self._buckets) > 10_000:
            self._prune(now)

    def ratelimit(self, key: str, n: float = 1.0) -> None:
        """Count ``n`` actions for ``key`` or raise M_LIMIT_EXCEEDED."""
        if self._exempt(key):
            return
        ok, wait_ms = self.can_do(key, n)
        if not ok:
            raise limit_exceeded(wait_ms)
        self.record(key, n)

    def check(self, key: str) -> None:
        """Raise M_LIMIT_EXCEEDED if one more action would not fit; count nothing."""
        if self._exempt(key):
            return
        ok, wait_ms = self.can_do(key)
        if not ok:
            raise limit_exceeded(wait_ms)

    def _prune(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) <= 0]:
            del self._buckets[key]
