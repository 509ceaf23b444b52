"""The content filter's rules, on plain message contents (no server)."""

from __future__ import annotations

import pytest

from homeserver.moderation.content_filter import ContentFilter, room_words

WORDS = ContentFilter.from_config({"words": ["Spam", "scam"]})


@pytest.mark.parametrize("body", ["buy SPAM now", "spam", "it's a scam!", "(spam)"])
def test_a_listed_word_is_caught_whole_and_in_any_case(body: str) -> None:
    assert WORDS.check({"msgtype": "m.text", "body": body}) is not None


@pytest.mark.parametrize("body", ["spammer", "scampi on toast", "hello", ""])
def test_words_that_merely_contain_a_listed_word_pass(body: str) -> None:
    assert WORDS.check({"msgtype": "m.text", "body": body}) is None


def test_the_formatted_body_and_an_edits_new_content_are_read() -> None:
    assert WORDS.check({"body": "fine", "formatted_body": "<b>spam</b>"}) is not None
    edit = {"body": "* fine", "m.new_content": {"body": "scam"}}
    assert WORDS.check(edit) is not None


def test_a_rooms_words_add_to_the_servers() -> None:
    extra = room_words({"words": ["Lobster", 42, "x" * 101]})
    assert extra == frozenset({"lobster"})
    assert WORDS.check({"body": "LOBSTER time"}, extra) is not None
    assert WORDS.check({"body": "LOBSTER time"}) is None
    assert room_words("not a dict") == frozenset()


def test_patterns_are_the_operators_regular_expressions() -> None:
    f = ContentFilter.from_config({"patterns": [r"free\s+crypto"]})
    assert f.check({"body": "Get FREE   crypto today"}) is not None
    assert f.check({"body": "crypto is not free"}) is None


def test_links_and_mentions_over_the_limit_are_caught() -> None:
    f = ContentFilter.from_config({"max_links": 1, "max_mentions": 2})
    assert f.check({"body": "see https://a.example"}) is None
    assert f.check({"body": "https://a.example and www.b.example"}) is not None
    assert f.check({"body": "@a:x.org @b:x.org"}) is None
    assert f.check({"body": "@a:x.org @b:x.org @c:x.org"}) is not None
    named = {"body": "hi all", "m.mentions": {"user_ids": ["@a:x", "@b:x", "@c:x"]}}
    assert f.check(named) is not None


def test_nothing_configured_passes_everything() -> None:
    assert ContentFilter().check({"body": "anything https://x @a:b"}) is None
