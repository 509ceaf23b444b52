"""Bounded in-memory LRU caches: one bounded by a count, one by a total weight.

``LruCache`` keeps at most ``max_size`` entries and forgets the least
recently used first (the event cache: every event counts as one). It counts
invalidations in ``generation``, so that a reader which started before one
can tell that what it read may be stale (a redacted event read just before
the redaction was persisted) and not cache it.

``WeightedLruCache`` keeps values whose sizes differ (a state block of 3
entries, another of 60) under one bound on what they hold together: each
value weighs ``weigh(value)`` and the cache forgets its least recently used
entries until the total is within ``max_weight``. A value heavier than the
whole bound is not kept at all; ``max_weight`` 0 disables the cache.

Both are thread-safe: stores consult them both on the reactor and inside
transactions running on the database's threads. They are the one LRU of
``homeserver/storage``; a store needing a bounded map uses one of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A map of at most ``max_size`` entries (at least one), least recently
    used out first."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max(1, max_size)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        # bumped by every invalidation: a reader that started before one
        # must not cache what it read
        self.generation = 0
        # lookups that found / did not find their key (the metrics)
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def merge(self, key: K, value: V) -> None:
        """Put ``value``, or, for dict values, update what is held with it."""
        with self._lock:
            old = self._data.get(key)
            if isinstance(old, dict) and isinstance(value, dict) and old:
                value = {**old, **value}  # type: ignore[assignment]
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._data.pop(key, None)
            self.generation += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.generation += 1

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)


class WeightedLruCache(Generic[K, V]):
    def __init__(self, max_weight: int, weigh: Callable[[V], int]) -> None:
        self.max_weight = max(0, max_weight)
        self._weigh = weigh
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.weight = 0
        # lookups that found / did not find their key (the metrics)
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self.hits += 1
            self._data.move_to_end(key)
            return item[0]

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """Those of ``keys`` that are cached (one lock for all of them)."""
        out: dict[K, V] = {}
        asked = 0
        with self._lock:
            data = self._data
            for key in keys:
                asked += 1
                item = data.get(key)
                if item is not None:
                    data.move_to_end(key)
                    out[key] = item[0]
            self.hits += len(out)
            self.misses += asked - len(out)
        return out

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            if weight > self.max_weight:
                return
            self._data[key] = (value, weight)
            self.weight += weight
            while self.weight > self.max_weight:
                _, (_, dropped) = self._data.popitem(last=False)
                self.weight -= dropped

    def invalidate_many(self, keys: Iterable[K]) -> None:
        with self._lock:
            for key in keys:
                old = self._data.pop(key, None)
                if old is not None:
                    self.weight -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.weight = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)
