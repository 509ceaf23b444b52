"""The write hub: the one place the rest of the server hears about commits.

Storage must tell the server what it wrote (to wake /sync readers, feed the
federation sender and the pushers, drop stale caches) without importing any
of it. It does so through one ``WriteHub`` per Database: after every
transaction that commits with something to tell, ``storage/database.py``
builds ONE frozen ``Committed`` record of it and hands it to the hub, which
delivers it to its subscribers. Who subscribes, and in what order, is
decided in one place, ``HomeServer._subscribe_after_write`` (server.py);
services never subscribe themselves.

Three moments, three kinds of subscription:

- ``subscribe(f)``: ``f(committed)`` on the database thread, right after the
  commit and before the stream tracker hears that the transaction ended.
  For bookkeeping that must be done before any reader can be woken (the
  sync fast path's recent activity); subscribers run in subscription order,
  must be quick, and must not touch the reactor except through
  ``callFromThread``.
- ``on_persisted(f)``: ``f(upto)`` on the reactor whenever the global
  stream's "persisted up to" position advances (``storage/streams.py``):
  the moment a reader can see everything below it.
- typed named hooks, on the reactor, once per committed transaction that
  made such a change, before that transaction's positions count as
  finished: ``on_device_list_changed(f)`` (``f(user_id, stream_pos)``) and
  ``on_tokens_changed(f)`` (``f()``).

A subscriber that raises is logged and does not stop the others: the
transaction has committed, so a listener must never make it look failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# who a write at a stream position concerns: (room ID, user ID) as
# storage/streams.py describes
Scope = tuple[str | None, str | None]


@dataclass(frozen=True)
class Committed:
    """What one committed transaction wrote, as far as the server cares."""

    # the global stream positions it took, in allocation order
    positions: Sequence[int]
    # (event, stream position) of the timeline events it persisted
    events: Sequence[tuple[Any, int]]
    # stream position -> who the write there concerns (no entry: anybody)
    scopes: Mapping[int, Sequence[Scope]]
    # (user ID, stream position) of each device-list change
    device_list_changes: Sequence[tuple[str, int]] = ()
    # some access token was deleted or changed
    tokens_changed: bool = False
    # (position, room, user, receipt type, thread ("" unthreaded), event ID,
    # data) of each receipt written
    receipts: Sequence[tuple[int, str, str, str, str, str, Mapping[str, Any]]] = ()

    @property
    def event_ids(self) -> list[str]:
        return [event.event_id for event, _ in self.events]


CommitListener = Callable[[Committed], None]
PersistedListener = Callable[[int], None]
DeviceListListener = Callable[[str, int], None]
TokensListener = Callable[[], None]


class WriteHub:
    """Subscribers to committed writes, in the order they subscribed."""

    def __init__(self) -> None:
        self._committed: list[CommitListener] = []
        self._persisted: list[PersistedListener] = []
        self._device_lists: list[DeviceListListener] = []
        self._tokens: list[TokensListener] = []

    # -- subscribing (server.py, at construction) ------------------------------

    def subscribe(self, listener: CommitListener) -> None:
        """``listener(committed)`` on the database thread after each commit."""
        self._committed.append(listener)

    def on_persisted(self, listener: PersistedListener) -> None:
        """``listener(upto)`` on the reactor whenever persisted_upto advances."""
        self._persisted.append(listener)

    def on_device_list_changed(self, listener: DeviceListListener) -> None:
        """``listener(user_id, stream_pos)`` on the reactor per device-list change."""
        self._device_lists.append(listener)

    def on_tokens_changed(self, listener: TokensListener) -> None:
        """``listener()`` on the reactor after a transaction changed access tokens."""
        self._tokens.append(listener)

    # -- delivering (storage/database.py) ------------------------------------

    def committed_txn(self, committed: Committed) -> None:
        """On the database thread, right after the commit."""
        for listener in self._committed:
            _call(listener, committed)

    def has_named(self, committed: Committed) -> bool:
        """Whether ``after_commit`` has anything to deliver for ``committed``."""
        return bool(committed.tokens_changed and self._tokens) or bool(
            committed.device_list_changes and self._device_lists)

    def after_commit(self, committed: Committed) -> None:
        """On the reactor: the typed named hooks of one committed transaction."""
        if committed.tokens_changed:
            for tokens_listener in self._tokens:
                _call(tokens_listener)
        for user_id, stream_pos in committed.device_list_changes:
            for device_listener in self._device_lists:
                _call(device_listener, user_id, stream_pos)

    def persisted(self, upto: int) -> None:
        """On the reactor: the stream is persisted up to ``upto`` now."""
        for listener in list(self._persisted):
            _call(listener, upto)


def _call(listener: Callable[..., None], *args: Any) -> None:
    try:
        listener(*args)
    except Exception:  # committed: a listener must not make it look failed
        logger.exception("after-write listener %r failed", listener)
