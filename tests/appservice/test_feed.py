"""The queues' events in memory (appservice/feed.py): pure, no reactor."""

from __future__ import annotations

from typing import Any

from homeserver.appservice.feed import EventFeed


def ev(name: str) -> Any:
    return name  # the feed keeps whatever it is handed


def test_nothing_is_read_from_memory_before_the_start() -> None:
    feed = EventFeed()
    feed.add([(ev("a"), 5)])
    assert feed.read(4, 10, 100) is None
    feed.start(3)
    assert feed.read(3, 10, 100) == [(5, "a")]


def test_commits_landing_out_of_order_are_read_in_stream_order() -> None:
    feed = EventFeed()
    feed.start(10)
    feed.add([(ev("c"), 13)])
    feed.add([(ev("a"), 11), (ev("b"), 12)])
    feed.add([(ev("d"), 14)])
    assert feed.read(10, 14, 100) == [(11, "a"), (12, "b"), (13, "c"), (14, "d")]
    # only what is persisted, at most the limit, after the position
    assert feed.read(10, 12, 100) == [(11, "a"), (12, "b")]
    assert feed.read(11, 14, 2) == [(12, "b"), (13, "c")]


def test_what_every_queue_is_past_leaves_memory() -> None:
    feed = EventFeed()
    feed.start(0)
    feed.add([(ev(str(i)), i) for i in range(1, 6)])
    feed.trim(3)
    assert len(feed) == 2
    assert feed.read(3, 5, 100) == [(4, "4"), (5, "5")]
    # a queue behind that point reads the database
    assert feed.read(2, 5, 100) is None


def test_past_its_size_the_oldest_go_and_queues_behind_read_the_database() -> None:
    feed = EventFeed(max_entries=3)
    feed.start(0)
    feed.add([(ev(str(i)), i) for i in range(1, 6)])
    assert len(feed) == 3
    assert feed.read(0, 5, 100) is None
    assert feed.read(2, 5, 100) == [(3, "3"), (4, "4"), (5, "5")]


def test_dropped_before_the_start_is_not_claimed_after_it() -> None:
    feed = EventFeed(max_entries=2)
    feed.add([(ev(str(i)), i) for i in range(10, 14)])
    feed.start(5)
    assert feed.read(5, 13, 100) is None
    assert feed.read(11, 13, 100) == [(12, "12"), (13, "13")]


def test_positions_at_or_below_the_start_are_not_kept() -> None:
    feed = EventFeed()
    feed.start(7)
    feed.add([(ev("old"), 6), (ev("new"), 8)])
    assert feed.read(7, 8, 100) == [(8, "new")]
    assert len(feed) == 1
