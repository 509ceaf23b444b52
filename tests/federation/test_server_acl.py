"""Which servers an ``m.room.server_acl`` lets take part (pure): the spec's globs,
where only ``*`` and ``?`` are wildcards, matched case-insensitively on the host."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.federation.event_handler import server_acl_allows
from tests.rooms.helpers import ALICE, make_event


def acl(**content: Any) -> Any:
    return make_event(KNOWN_ROOM_VERSIONS["10"], "m.room.server_acl", ALICE, content,
                      room_id="!r:a.test", state_key="")


@pytest.mark.parametrize(("content", "server", "allowed"), [
    # a character class is literal text, not a class (fnmatch made it one)
    ({"allow": ["*"], "deny": ["[a-z]*.evil.com"]}, "b.evil.com", True),
    ({"allow": ["*"], "deny": ["[a-z]*.evil.com"]}, "[a-z]x.evil.com", False),
    ({"allow": ["[!x]ood.com"]}, "good.com", False),
    # the spec's wildcards
    ({"allow": ["*"], "deny": ["*.evil.com"]}, "matrix.evil.com", False),
    ({"allow": ["*"], "deny": ["*.evil.com"]}, "evil.com", True),
    ({"allow": ["*"], "deny": ["evil?.com"]}, "evil1.com:8448", False),
    ({"allow": ["*"], "deny": ["evil?.com"]}, "evil.com", True),
    ({"allow": ["*.good.com"]}, "a.good.com", True),
    ({"allow": ["*.good.com"]}, "a.bad.com", False),
    # case-insensitive, and the port is not part of the name
    ({"allow": ["*"], "deny": ["EVIL.com"]}, "evil.COM:443", False),
    ({"allow": ["good.com"]}, "GOOD.com:8448", True),
    # nothing allowed unless listed; deny wins
    ({}, "good.com", False),
    ({"allow": ["*"], "deny": ["*"]}, "good.com", False),
    # IP literals
    ({"allow": ["*"], "allow_ip_literals": False}, "127.0.0.1:8448", False),
    ({"allow": ["*"], "allow_ip_literals": False}, "[::1]:8448", False),
    ({"allow": ["*"]}, "127.0.0.1", True),
])
def test_acl_patterns_are_the_specs_globs(content: dict[str, Any], server: str,
                                          allowed: bool) -> None:
    assert server_acl_allows(acl(**content), server) is allowed


def test_a_pattern_written_to_backtrack_is_judged_at_once() -> None:
    content = {"allow": ["*"], "deny": ["*a" * 25 + "*b"]}
    assert server_acl_allows(acl(**content), "a" * 250 + ".com") is True


def test_no_acl_allows_everyone() -> None:
    assert server_acl_allows(None, "anyone.example") is True
