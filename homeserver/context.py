"""What every service of one server process shares: who we are and what time it is.

``ServerContext`` is the narrow alternative to handing a service the whole
``HomeServer``: the server's name, its config, the clock and reactor, the
signing key, and a place to run work in the background whose failures are
logged rather than lost. It imports nothing of the server's services, so a
module can depend on it without joining the import graph's circle through
``server.py``. ``server.py`` builds one and passes it to the services that
need it, next to the stores and collaborators each one uses.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

if TYPE_CHECKING:
    from homeserver.config import Config

logger = logging.getLogger(__name__)


class ServerContext:
    """The server's identity, clock and background runner.

    ``clock`` is anything with ``seconds()`` and ``callLater()``: the reactor in
    production, a ``twisted.internet.task.Clock`` in tests that move time on
    command. ``epoch`` names this run of the process (in-memory stream
    positions, such as typing, belong to one run).
    """

    def __init__(self, config: "Config", reactor: Any, clock: Any, signing_key: Any,
                 epoch: str) -> None:
        self.config = config
        self.hostname: str = config.server_name
        self.reactor = reactor
        self.clock = clock
        self.signing_key = signing_key
        self.epoch = epoch
        self.background: set[defer.Deferred[Any]] = set()

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def is_mine(self, user_id: str) -> bool:
        return user_id.endswith(":" + self.hostname)

    def run_in_background(self, coro: Coroutine[Any, Any, Any]) -> "defer.Deferred[Any]":
        """Run ``coro`` without awaiting it; failures are logged, never lost."""
        d = defer.ensureDeferred(coro)
        self.background.add(d)

        def done(result: Any) -> None:
            self.background.discard(d)
            if isinstance(result, Exception) or hasattr(result, "getTracebackObject"):
                logger.error("background task failed: %s", result)
        d.addBoth(done)
        return d
