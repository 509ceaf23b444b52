"""The content filter: words, regular expressions, link and mention limits.

Pure: ``ContentFilter.check(content, room_words)`` takes a message's content
(or a room name's or topic's text, through ``filtered_content``)
and the words a room adds (its ``org.homeserver.content_filter`` state
event) and returns why the message breaks a rule, or None. Words are matched
as whole words, case-insensitively, by splitting the text (never by a regex
built from them: a room's words come from users). Patterns are the
operator's own regular expressions from config, searched in the body and the
formatted body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ROOM_RULES_EVENT = "org.homeserver.content_filter"
MAX_ROOM_WORDS = 1000

_WORD_SPLIT = re.compile(r"[^\w'-]+")
_LINK = re.compile(r"https?://|www\.", re.IGNORECASE)
_USER_ID = re.compile(r"@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-\[\]:]+")


def _texts(content: dict[str, Any]) -> list[str]:
    out = []
    for key in ("body", "formatted_body"):
        value = content.get(key)
        if isinstance(value, str):
            out.append(value)
    new = content.get("m.new_content")
    if isinstance(new, dict):
        out.extend(_texts(new))
    return out


# state events whose text the filter reads, and the key holding it
STATE_TEXT_KEYS = {"m.room.name": "name", "m.room.topic": "topic"}


def filtered_content(event_type: str, state_key: str | None,
                     content: dict[str, Any]) -> dict[str, Any] | None:
    """What of an event the filter reads, as a message's content: an
    ``m.room.message`` as it is; a room's name or topic as its ``body``;
    None for anything else."""
    if state_key is None:
        return content if event_type == "m.room.message" else None
    key = STATE_TEXT_KEYS.get(event_type)
    if key is None or state_key != "":
        return None
    value = content.get(key)
    return {"body": value} if isinstance(value, str) else None


def room_words(rules_content: Any) -> frozenset[str]:
    """The words a room's ``org.homeserver.content_filter`` event adds."""
    if not isinstance(rules_content, dict):
        return frozenset()
    words = rules_content.get("words")
    if not isinstance(words, list):
        return frozenset()
    return frozenset(w.lower() for w in words[:MAX_ROOM_WORDS]
                     if isinstance(w, str) and 0 < len(w) <= 100)


@dataclass(frozen=True)
class ContentFilter:
    words: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    max_links: int | None = None
    max_mentions: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ContentFilter":
        return cls(words=frozenset(w.lower() for w in config.get("words") or []),
                   patterns=tuple(re.compile(p, re.IGNORECASE)
                                  for p in config.get("patterns") or []),
                   max_links=config.get("max_links"),
                   max_mentions=config.get("max_mentions"))

    def check(self, content: dict[str, Any],
              extra_words: Iterable[str] = ()) -> str | None:
        """Why ``content`` breaks a rule (a reason for the sender), or None."""
        texts = _texts(content)
        words = self.words | frozenset(extra_words)
        if words:
            for text in texts:
                for token in _WORD_SPLIT.split(text.lower()):
                    if token.strip("'-") in words:
                        return "This message contains a word not allowed here"
        for pattern in self.patterns:
            if any(pattern.search(text) for text in texts):
                return "This message matches a pattern not allowed here"
        body = texts[0] if texts else ""
        if self.max_links is not None and len(_LINK.findall(body)) > self.max_links:
            return f"Too many links in one message (at most {self.max_links})"
        if self.max_mentions is not None:
            mentions = content.get("m.mentions")
            named = mentions.get("user_ids") if isinstance(mentions, dict) else None
            count = max(len(named) if isinstance(named, list) else 0,
                        len(set(_USER_ID.findall(body))))
            if count > self.max_mentions:
                return f"Too many mentions in one message (at most {self.max_mentions})"
        return None
