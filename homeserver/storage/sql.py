"""SQL building blocks every store shares: bound-parameter lists and IN queries.

A query over a set of values (``WHERE event_id IN (?, ?, ...)``) binds one
parameter per value, and SQLite refuses a statement with more parameters
than its limit (32766 since 3.32, 999 before). ``select_in_txn`` runs such a
query in chunks well under that limit, on both engines alike, and returns
the rows of all the chunks concatenated, in chunk order. The stores used to
carry a copy each of ``placeholders`` and of the chunking loop; this is the
one copy.

A query whose result must be one set (an ORDER BY or a LIMIT across all the
values) cannot be split this way; such a query binds its values itself with
``placeholders``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from homeserver.storage.database import Database, Txn

T = TypeVar("T")

# values bound per chunk: far below SQLite's limit, leaving room for the
# other parameters of the statement, and small enough for the planner
DEFAULT_CHUNK = 500


def placeholders(n: int) -> str:
    """``?,?,...,?``: ``n`` bound parameters for an IN list or a VALUES row."""
    return ",".join("?" * n)


def chunks(items: Sequence[T], size: int = DEFAULT_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def select_in_txn(txn: Txn, sql: str, values: Iterable[Any], *,
                  before: Sequence[Any] = (), after: Sequence[Any] = (),
                  chunk: int = DEFAULT_CHUNK) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` run once per chunk of ``values``, concatenated.

    ``sql`` holds one ``{}`` where the chunk's placeholders go
    (``"SELECT ... WHERE event_id IN ({})"``); ``before`` and ``after`` are
    the parameters bound ahead of and behind the IN list. No values, no query.
    """
    items = values if isinstance(values, Sequence) else list(values)
    rows: list[tuple[Any, ...]] = []
    for part in chunks(items, chunk):
        rows.extend(txn.select_all(sql.format(placeholders(len(part))),
                                   [*before, *part, *after]))
    return rows


async def select_in(db: Database, desc: str, sql: str, values: Iterable[Any], *,
                    before: Sequence[Any] = (), after: Sequence[Any] = (),
                    chunk: int = DEFAULT_CHUNK) -> list[tuple[Any, ...]]:
    """``select_in_txn`` in a transaction of its own."""
    items = list(values)
    if not items:
        return []
    return await db.run_interaction(desc, lambda txn: select_in_txn(
        txn, sql, items, before=before, after=after, chunk=chunk))
