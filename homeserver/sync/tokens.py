"""Sync tokens: where a client is in the streams, opaque to it.

A token is ``s<global>_<typing>_<epoch>``:

- ``global``: the position on the global stream (``storage/streams.py``) up
  to which the client has everything persisted: events, receipts, account
  data, to-device messages, presence, device-list changes;
- ``typing``: the position of the in-memory typing stream (``edu/typing.py``);
- ``epoch``: which run of the server the typing position belongs to. Typing
  lives in memory, so after a restart an old typing position means nothing:
  a token of another epoch gets the current typing state in full, which is
  what a client needs anyway.

The global position survives restarts (it is in the database), so a client
that comes back after a restart resumes where it was. Pagination tokens
(``/messages``, ``prev_batch``) are ``s<global>``; a sync token is accepted
wherever a pagination token is, as the spec asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from homeserver.errors import invalid_param

_SYNC_TOKEN = re.compile(r"s([0-9]{1,18})_([0-9]{1,18})_([0-9a-z]{1,12})")
# negative positions: history fetched with /backfill sits below zero
_PAGINATION_TOKEN = re.compile(r"s(-?[0-9]{1,18})")
# A next_batch Synapse handed out (``s<room>_<presence>_<typing>_...``, one
# part per stream): a client logged in before its server moved here with
# `homeserver import-synapse` still holds one. It names no position of ours,
# so it counts as the start of our stream: the client gets an incremental
# sync holding everything (limited timelines, the whole state) instead of an
# error it would retry for ever (docs/migrating-from-synapse.md).
_SYNAPSE_SYNC_TOKEN = re.compile(r"s[0-9]{1,18}(_[0-9]{1,18}){5,15}")
# a sliding sync ``pos`` (sync/sliding.py): a connection position, then a sync token
_SLIDING_POS = re.compile(r"[0-9]{1,18}_s([0-9]{1,18})_[0-9]{1,18}_[0-9a-z]{1,12}")


@dataclass(frozen=True)
class StreamToken:
    global_pos: int
    typing_pos: int
    epoch: str

    def __str__(self) -> str:
        return f"s{self.global_pos}_{self.typing_pos}_{self.epoch}"


def parse_sync_token(text: str, *, current: StreamToken, max_global: int) -> StreamToken:
    """A client's ``since`` token; a malformed or forged one is M_INVALID_PARAM.

    A pagination token (``s<global>``) is taken as a sync token without typing.
    A position beyond what the server has handed out cannot have come from us.
    A Synapse sync token is the start of the stream.
    """
    if _SYNAPSE_SYNC_TOKEN.fullmatch(text):
        return StreamToken(0, 0, current.epoch)
    m = _SYNC_TOKEN.fullmatch(text)
    if m is not None:
        token = StreamToken(int(m.group(1)), int(m.group(2)), m.group(3))
    else:
        m = _PAGINATION_TOKEN.fullmatch(text)
        if m is None:
            raise invalid_param(f"Invalid since token {text!r}")
        token = StreamToken(int(m.group(1)), 0, "")
    if token.global_pos > max_global:
        raise invalid_param("Invalid since token: it is from the future")
    if token.epoch == current.epoch and token.typing_pos > current.typing_pos:
        raise invalid_param("Invalid since token: it is from the future")
    if token.epoch != current.epoch:
        token = StreamToken(token.global_pos, 0, current.epoch)
    return token


def token_position(text: str) -> int:
    """The global position a sync token names, 0 if it names none (it is
    checked properly by ``parse_sync_token``)."""
    m = _SYNC_TOKEN.fullmatch(text)
    return int(m.group(1)) if m is not None else 0


def parse_pagination_token(text: str) -> int:
    """The global position of a pagination token, of a sync token, or of a
    sliding sync ``pos`` (MSC4186 lets clients page from it)."""
    m = (_PAGINATION_TOKEN.fullmatch(text) or _SYNC_TOKEN.fullmatch(text)
         or _SLIDING_POS.fullmatch(text))
    if m is None:
        raise invalid_param(f"Invalid pagination token {text!r}")
    return int(m.group(1))


def pagination_token(pos: int) -> str:
    return f"s{pos}"

