"""The shared glob matcher: the spec's semantics, and no pattern can make it slow."""

from __future__ import annotations

import random
import re

import pytest

from homeserver.glob import Glob, contains_word, fold, glob_matches, glob_problem


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    # the appendix: * is any run (also none), ? exactly one character
    ("m.room.*", "m.room.message", True),
    ("m.room.*", "m.room.", True),
    ("m.room.*", "m.room", False),
    ("*.message", "m.room.message", True),
    ("*", "", True),
    ("*", "anything at all", True),
    ("", "", True),
    ("", "x", False),
    ("a?c", "abc", True),
    ("a?c", "ac", False),
    ("a?c", "abbc", False),
    ("??", "ab", True),
    ("??", "a", False),
    ("*?", "", False),
    ("*?", "a", True),
    ("*a*", "banana", True),
    ("*x*", "banana", False),
    ("b*n*n*", "banana", True),
    ("b*n*n*n*", "banana", False),
    ("*na", "banana", True),
    ("*an", "banana", False),
    ("a*a", "a", False),  # the two ends may not overlap
    ("a*a", "aa", True),
    ("ab*ba", "aba", False),
    ("*??a", "bana", True),
    ("*?n?n?", "banana", True),
    ("m.room\nx", "m.room\nx", True),
    ("m.*", "m.\nnewline", True),
    # anything else is itself: no classes, no escapes
    ("[a-z].evil.com", "b.evil.com", False),
    ("[a-z].evil.com", "[a-z].evil.com", True),
    ("a\\*b", "a\\xb", True),
    ("a.b", "axb", False),
])
def test_whole_value_globs_follow_the_appendix(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value) is expected


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("m.room.messag?", "m.room.message", False),
    ("m.room.messag?", "m.room.messag?", True),
    ("m.*?", "m.room", False),
    ("m.*?", "m.x?", True),
])
def test_question_mark_is_literal_when_only_star_is_special(
        pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value, question_mark=False) is expected


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("Lunc?*", "LUNCH plans", True),
    ("*.EVIL.com", "matrix.evil.COM", True),
    ("straße", "STRASSE", False),  # one character for one: no full case folding
    ("ǅ", "ǆ", True),
    ("İ*", "İstanbul", True),  # a character whose lower case is longer stays itself
])
def test_case_insensitive_globs_fold_both_sides(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value, ignore_case=True) is expected


def test_case_sensitive_globs_do_not_fold() -> None:
    assert glob_matches("m.room.*", "M.ROOM.message") is False


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("cake*lie", "The cake is a lie", True),
    ("cake*lie", "The cake is a lie!", True),
    ("cake*lie", "The cake is a lieutenant", False),
    ("cake*lie", "The cakes is a lie", True),  # * may cross words
    ("cake*lie", "Thecake is a lie", False),
    ("foo", "foobar", False),
    ("foo", "a foo b", True),
    ("foo", "(foo)", True),
    ("foo", "foo_bar", False),  # _ is a word character
    ("foo", "foo-bar", True),
    ("foo", "Foo", True),
    ("foo", "foofoo foo", True),
    ("ex*ple", "An exciting triple-whammy", True),
    ("ex*ple", "counterexample", False),
    ("@room", "hey @room!", True),
    ("@room", "x@room", False),  # the character before must not be a word character
    ("b?r", "foo bar baz", True),
    ("b?r", "foo bear baz", False),
    ("*", "", True),
    ("*", "word", True),
    ("*ing", "nothing here", True),
    ("no*", "not now", True),
    ("", "", True),
    ("", "two  spaces", True),  # an empty match between two non-word characters
    ("", "word", False),
    ("a?", "ab ac", True),
    ("?b", "ab", True),
    ("a*b*c", "x a b c", True),
    ("a*b*c", "xa b c", False),
    ("a*b*c", "x a b cd", False),
    ("a*b*c", "a b cd c", True),
])
def test_word_mode_needs_a_boundary_at_both_ends(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value, ignore_case=True, words=True) is expected


def test_a_display_name_is_matched_literally_as_a_word() -> None:
    assert contains_word("Alice *", "hi alice *, how are you")
    assert not contains_word("Alice *", "hi alice bob")
    assert not contains_word("ali", "hi alice")
    assert contains_word("ali?", "ali? ok")
    assert not contains_word("ali?", "alix ok")


def test_fold_keeps_every_position() -> None:
    for text in ("İstanbul", "ABC", "ǅx", "ß", "\u0130\u0130a"):
        assert len(fold(text)) == len(text)


def _reference(pattern: str, question_mark: bool, ignore_case: bool,
               words: bool) -> re.Pattern[str]:
    """The regexes the server used before (fine on tiny inputs)."""
    body = "".join(".*?" if c == "*" else "." if c == "?" and question_mark else re.escape(c)
                   for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    if words:
        return re.compile(f"(?:^|[^A-Za-z0-9_])(?:{body})(?:[^A-Za-z0-9_]|$)", flags)
    return re.compile(f"(?:{body})\\Z", flags)


def test_the_matcher_agrees_with_the_old_regexes_on_small_inputs() -> None:
    rng = random.Random(14)
    alphabet = "ab_ .A?*"
    for _ in range(4000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        value = "".join(rng.choice("ab_ .A?") for _ in range(rng.randint(0, 9)))
        question_mark, ignore_case, words = (rng.random() < 0.5 for _ in range(3))
        if words:
            ignore_case = True
        regex = _reference(pattern, question_mark, ignore_case, words)
        expected = (regex.search(value) if words else regex.match(value)) is not None
        got = glob_matches(pattern, value, question_mark=question_mark,
                           ignore_case=ignore_case, words=words)
        assert got is expected, (pattern, value, question_mark, ignore_case, words)


# -- patterns written to be slow ----------------------------------------------------


@pytest.mark.parametrize(("pattern", "value", "words", "expected"), [
    ("*" * 30 + "x", "a" * 5000, False, False),
    ("*" * 30 + "x", "a" * 5000, True, False),
    ("*a*a*a*a*b", "a" * 5000, False, False),
    ("*a*a*a*a*b", "a" * 5000, True, False),
    ("*a?a?a?a?b", "a" * 5000, False, False),
    ("?" * 40 + "b", "a" * 5000, True, False),
    ("a*" * 20 + "a", "a" * 5000, False, True),
    ("*a*a*a*a*b", "a" * 5000 + "b", False, True),
])
def test_pathological_patterns_cost_one_scan_per_segment(
        pattern: str, value: str, words: bool, expected: bool) -> None:
    """A backtracking regex takes (value length) ** (stars) steps on these;
    here every segment is placed once, apart from word mode's search for a
    boundary, which moves forward through the value."""
    glob = Glob(pattern, ignore_case=True)
    steps = [0]
    assert glob.matches(value, words=words, steps=steps) is expected
    segments = pattern.count("*") + 1
    bound = segments if not words else segments + 2 * (len(value) + 1)
    if "?" in pattern:  # a segment with ? tries each candidate place once
        bound += segments * (len(value) + 1)
    assert steps[0] <= bound


def test_the_cost_grows_linearly_with_the_value() -> None:
    glob = Glob("*a*a*a*a*b")
    costs = []
    for n in (1000, 2000, 4000):
        steps = [0]
        assert glob.matches("a" * n, words=True, steps=steps) is False
        costs.append(steps[0])
    assert costs[2] <= 2 * costs[1] + 10 and costs[1] <= 2 * costs[0] + 10


@pytest.mark.parametrize(("pattern", "problem"), [
    ("m.room.*", None),
    ("*" * 20, None),
    ("*" * 21, "has more than 20 '*'"),
    ("x" * 255, None),
    ("x" * 256, "is longer than 255 characters"),
])
def test_glob_problem_names_what_is_too_much(pattern: str, problem: str | None) -> None:
    assert glob_problem(pattern, max_length=255, max_stars=20) == problem
