"""The in-memory event cache: bounded, least recently used out first."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.cache import LruCache


def event(n: int) -> Event:
    return Event(f"$e{n}", KNOWN_ROOM_VERSIONS["12"], {"type": "m.room.message"})


def test_cache_keeps_at_most_its_size() -> None:
    cache: LruCache[str, Event] = LruCache(3)
    for n in range(10):
        cache.put(f"$e{n}", event(n))
    assert len(cache) == 3
    assert cache.get("$e0") is None
    assert cache.get("$e9") == event(9)


def test_reading_an_entry_keeps_it() -> None:
    cache: LruCache[str, Event] = LruCache(2)
    cache.put("$e1", event(1))
    cache.put("$e2", event(2))
    assert cache.get("$e1") is not None
    cache.put("$e3", event(3))
    assert cache.get("$e1") is not None
    assert cache.get("$e2") is None


@pytest_twisted.ensureDeferred
async def test_event_cache_size_is_synapses_scaled_by_the_cache_factor(
        make_server: Any) -> None:
    default = await make_server()
    assert default.hs.stores.events.cache.max_size == 5120  # 10K x 0.5
    bigger = await make_server(event_cache_size="2K", caches={"global_factor": 2.0})
    assert bigger.hs.stores.events.cache.max_size == 4096
