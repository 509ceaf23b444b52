"""A reader process's view of the global stream (docs/scale-out.md).

The main process writes every position; a reader writes none. Its
"persisted up to" is what the main process last published: every write at
or below it has committed and its record has reached this process (or this
process caught up from the database after missing some). Positions are
never allocated here: a reader that tried would break that promise, so it
fails loudly instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Txn
from homeserver.storage.streams import StreamTracker

# how long a request carrying a token another process handed out waits for
# this process to reach it (replication lags by milliseconds normally)
CATCH_UP_TIMEOUT_S = 10.0


class ReaderStreamTracker(StreamTracker):
    """Positions as the main process publishes them."""

    def __init__(self, clock: object,
                 allocated: Callable[[], Awaitable[int]]) -> None:
        super().__init__()
        self._clock = clock
        # the highest position handed out, read from the database
        self._allocated = allocated

    def allocate(self, txn: Txn) -> int:
        raise RuntimeError("a reader process writes nothing on the global stream")

    def allocate_many(self, txn: Txn, count: int) -> list[int]:
        raise RuntimeError("a reader process writes nothing on the global stream")

    def saw(self, position: int) -> None:
        """A record at ``position`` arrived: it exists (tokens up to it are ours)."""
        self._max = max(self._max, position)

    def advance(self, upto: int) -> bool:
        """The main process is persisted up to ``upto``; True if that moved us."""
        if upto <= self._persisted:
            return False
        self._persisted = upto
        self._max = max(self._max, upto)
        self._wake_readers(upto)
        return True

    async def wait_for(self, position: int) -> None:
        if position <= self._persisted:
            return
        if position > self._max and position > await self._allocated():
            return  # never handed out by anyone: the token is refused at once
        await self._wait_persisted(position, self._clock, CATCH_UP_TIMEOUT_S)
        if position > self._persisted:
            # answering from here would go back behind the client's token
            raise MatrixError(503, Codes.UNKNOWN,
                              "This server process is catching up; retry in a moment")
