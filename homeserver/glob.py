"""Glob matching in linear-ish time, for patterns that users and peers write. Pure.

Three parts of the spec match strings against globs that someone else wrote:
filter ``types`` / ``not_types`` (only ``*`` is special), push rule patterns
(``*`` and ``?``, case-insensitive, ``content.body`` matched by words) and
server ACLs (``*`` and ``?``, case-insensitive, the appendix's "Glob-style
matching"). Compiling such a glob into a regular expression hands the
pattern's author a backtracking engine: ``*************x`` against a long
type froze the server for half a minute (issue 14). So there is no regex
here, and no recursion.

The idea: split the pattern at its ``*``s into segments. Every segment has a
fixed length (``?`` is one character), so a whole-value match is: the first
segment at the start, the last at the end, and the ones between placed
left to right, each at the *leftmost* place it fits after the one before.
Leftmost is always safe: a later placement only leaves less room for the
rest. That is one left-to-right scan of the value per segment, at most
O(len(pattern) * len(value)) character comparisons, most of them done by
``str.find`` in C, and no backtracking over earlier segments.

Word mode (push rules on ``content.body``): the glob must match a substring
whose start is the start of the value or follows a non-word character, and
whose end is the end of the value or precedes one; a word character is
``[A-Za-z0-9_]``. That is Synapse's ``(^|\\W)glob(\\W|$)``. The earliest
valid start for the first segment is always the best (the same argument),
so it is: find that start, place the middle segments greedily, then look for
any place for the last segment that ends at a boundary. Still one scan per
segment.

Case folding maps each character to its lower case when that is one
character, so positions in the folded value are positions in the original
and word boundaries are judged on the original characters.

``glob_problem`` is the check the API edges use to refuse absurd patterns
(too long, too many ``*``) before they are stored; the matcher does not
rely on it, so rules and filters stored before the caps existed are safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def fold(text: str) -> str:
    """``text`` in lower case, one character for one (a character whose lower
    case is longer, such as ``İ``, stays as it is), so indexes still line up."""
    low = text.lower()
    if len(low) == len(text):  # no character grew, so each became exactly one
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _starts_word(value: str, pos: int) -> bool:
    return pos == 0 or value[pos - 1] not in _WORD_CHARS


def _ends_word(value: str, pos: int) -> bool:
    return pos == len(value) or value[pos] not in _WORD_CHARS


@dataclass(frozen=True)
class _Segment:
    """A run of the pattern between ``*``s: literal text, ``?`` one character."""

    text: str
    # the first run of literal characters and where it sits, to let str.find
    # skip ahead; None when the segment has no ``?`` (find does it all) or is
    # nothing but ``?``
    anchor: str | None
    anchor_at: int
    wild: bool

    def at(self, value: str, pos: int) -> bool:
        """Whether the segment matches ``value`` at ``pos``."""
        if not self.wild:
            return value.startswith(self.text, pos)
        if pos + len(self.text) > len(value):
            return False
        for i, ch in enumerate(self.text):
            if ch != "?" and value[pos + i] != ch:
                return False
        return True

    def find(self, value: str, start: int, steps: list[int] | None) -> int:
        """The leftmost position >= ``start`` where the segment matches; -1 if none."""
        if steps is not None:
            steps[0] += 1
        if not self.wild:
            return value.find(self.text, start)
        last = len(value) - len(self.text)
        if self.anchor is None:  # only ``?``s: any place with room
            return start if start <= last else -1
        pos = start
        while pos <= last:
            hit = value.find(self.anchor, pos + self.anchor_at)
            if hit < 0:
                return -1
            pos = hit - self.anchor_at
            if pos > last:
                return -1
            if steps is not None:
                steps[0] += 1
            if self.at(value, pos):
                return pos
            pos += 1
        return -1


def _segment(text: str, question_mark: bool) -> _Segment:
    if not question_mark or "?" not in text:
        return _Segment(text, None, 0, False)
    i = 0
    while i < len(text) and text[i] == "?":
        i += 1
    if i == len(text):
        return _Segment(text, None, 0, True)
    j = i
    while j < len(text) and text[j] != "?":
        j += 1
    return _Segment(text, text[i:j], i, True)


class Glob:
    """A compiled glob: ``*`` any run of characters (also none); ``?`` exactly
    one character when ``question_mark``; everything else itself."""

    __slots__ = ("pattern", "ignore_case", "_segments", "_literal")

    def __init__(self, pattern: str, *, question_mark: bool = True,
                 ignore_case: bool = False) -> None:
        self.pattern = pattern
        self.ignore_case = ignore_case
        text = fold(pattern) if ignore_case else pattern
        parts = text.split("*")
        # empty runs between stars (``**``) say nothing more than one star;
        # the first and last stay, empty or not: they are anchored
        if len(parts) > 2:
            parts = [parts[0], *(p for p in parts[1:-1] if p), parts[-1]]
        self._segments = tuple(_segment(p, question_mark) for p in parts)
        # no wildcard at all: the caller's fast path is a comparison or find
        only = self._segments[0]
        self._literal: str | None = only.text if len(parts) == 1 and not only.wild else None

    def matches(self, value: str, *, words: bool = False,
                steps: list[int] | None = None) -> bool:
        """Whether the glob matches the whole of ``value`` or (``words``) a
        substring of it bounded by word boundaries. ``steps``, when given,
        counts segment placements tried (for tests of the cost)."""
        folded = fold(value) if self.ignore_case else value
        literal = self._literal
        if literal is not None and not words:
            return folded == literal
        segments = self._segments
        if len(segments) == 1:
            return _find_word(segments[0], folded, value, steps) if words else (
                len(folded) == len(segments[0].text) and segments[0].at(folded, 0))
        first, last = segments[0], segments[-1]
        if words:
            pos = first.find(folded, 0, steps)
            while pos >= 0 and not _starts_word(value, pos):
                pos = first.find(folded, pos + 1, steps)
            if pos < 0:
                return False
        elif first.at(folded, 0):
            pos = 0
        else:
            return False
        pos += len(first.text)
        for middle in segments[1:-1]:
            pos = middle.find(folded, pos, steps)
            if pos < 0:
                return False
            pos += len(middle.text)
        if not words:
            end = len(folded) - len(last.text)
            return end >= pos and last.at(folded, end)
        if not last.text:  # the star before it runs to the end of the value
            return True
        pos = last.find(folded, pos, steps)
        while pos >= 0:
            if _ends_word(value, pos + len(last.text)):
                return True
            pos = last.find(folded, pos + 1, steps)
        return False


def _find_word(segment: _Segment, folded: str, value: str, steps: list[int] | None) -> bool:
    """Whether a star-free segment occurs in ``folded`` as a word (boundaries
    judged on ``value``, the same length)."""
    size = len(segment.text)
    pos = segment.find(folded, 0, steps)
    while pos >= 0:
        if _starts_word(value, pos) and _ends_word(value, pos + size):
            return True
        pos = segment.find(folded, pos + 1, steps)
    return False


@lru_cache(maxsize=4096)
def compile_glob(pattern: str, question_mark: bool = True, ignore_case: bool = False) -> Glob:
    """The compiled ``Glob``, shared (patterns repeat: every user's default
    push rules, the same filter on every sync)."""
    return Glob(pattern, question_mark=question_mark, ignore_case=ignore_case)


def glob_matches(pattern: str, value: str, *, question_mark: bool = True,
                 ignore_case: bool = False, words: bool = False) -> bool:
    """Whether ``pattern`` matches ``value`` (see ``Glob.matches``)."""
    return compile_glob(pattern, question_mark, ignore_case).matches(value, words=words)


def contains_word(needle: str, value: str, *, ignore_case: bool = True) -> bool:
    """Whether ``needle``, taken literally (no wildcards), occurs in ``value``
    as a word: at a boundary on both sides, as push rules' display-name
    mentions ask."""
    if ignore_case:
        needle, folded = fold(needle), fold(value)
    else:
        folded = value
    return _find_word(_Segment(needle, None, 0, False), folded, value, None)


def glob_problem(pattern: str, *, max_length: int, max_stars: int) -> str | None:
    """Why an API edge should refuse ``pattern``; None if it may be used."""
    if len(pattern) > max_length:
        return f"is longer than {max_length} characters"
    if pattern.count("*") > max_stars:
        return f"has more than {max_stars} '*'"
    return None
