"""Full-text search of messages: the ``event_search`` index and its queries.

What is indexed: ``content.body`` of ``m.room.message``, ``content.name`` of
``m.room.name`` and ``content.topic`` of ``m.room.topic`` (the spec's three
search keys), one row per event. The row is written by a persist hook
(``storage/event_hooks.py``) in the transaction that stores the event, for
local sends, events from other servers and backfilled history alike; a
redaction deletes its target's row in its own persist transaction, and an
event whose redaction arrived first is never indexed.

The engines differ only in the text index:

- PostgreSQL: a ``tsvector`` column (``to_tsvector('english', value)``, as
  Synapse) with a GIN index, queried with ``websearch_to_tsquery``: it
  accepts any input (quotes, ``or``, ``-word``, stray operators, the empty
  string) without a syntax error, and ranks with ``ts_rank_cd``.
- SQLite: an FTS5 table (Porter stemmer) whose rowid is the event NID. FTS5
  has a query syntax of its own that raises on bad input, so user input
  never reaches it as is: ``fts5_query`` parses it the way
  ``websearch_to_tsquery`` does (words, ``"phrases"``, ``or``, ``-word``) and
  writes every word as a quoted FTS5 string. Rank is ``-bm25``.

A search reads only rows of rooms the searcher is joined to, or was: up to
their leave (``_searchable_rooms_txn`` lists them first, in the same
transaction). History visibility and the rest of the filter are the
caller's (``rooms/search.py``), which reads pages in batches through
``search_batch``.

Cost at a million messages (``bench/search.py``): "recent" reads only the
page (the text index for rare words, ``event_search_stream`` backwards for
common ones); "rank" must score every match, so it scores the newest
``RANK_WINDOW`` matches only, and ``count`` stops at ``COUNT_CAP``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event
from homeserver.storage.database import Database, Txn
from homeserver.storage.event_hooks import MessageBatch
from homeserver.storage.sql import chunks, select_in_txn

logger = logging.getLogger(__name__)

# event type -> (search key, content field)
INDEXED = {
    "m.room.message": ("content.body", "body"),
    "m.room.name": ("content.name", "name"),
    "m.room.topic": ("content.topic", "topic"),
}
SEARCH_KEYS = tuple(key for key, _ in INDEXED.values())

# Text past this many characters is not indexed (a PDU is at most 64 KiB:
# this only bounds the work of one odd event).
MAX_INDEXED_CHARS = 65_536

# ``count`` stops counting here: counting every match of a common word costs
# more than the page itself (10% of a million messages: most of a second).
COUNT_CAP = 10_000


@dataclass(frozen=True)
class SearchHit:
    event_id: str
    room_id: str
    stream_ordering: int
    rank: float


@dataclass(frozen=True)
class SearchQuery:
    """What ``search_batch`` and ``count`` read (the parts SQL can filter)."""

    user_id: str
    term: str
    keys: tuple[str, ...] = SEARCH_KEYS
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()


# -- the FTS5 query builder (pure) ----------------------------------------------

# a quoted phrase (the closing quote optional, as websearch_to_tsquery
# allows), or a run of anything else
_CHUNK = re.compile(r'(-?)"([^"]*)"?|(\S+)')
# what unicode61 keeps as token characters: letters and digits
_WORD = re.compile(r"[^\W_]+")


def _fts5_string(words: list[str]) -> str:
    # inside an FTS5 string only '"' is special (doubled); words never hold one
    return '"' + " ".join(w.replace('"', '""') for w in words) + '"'


def fts5_query(term: str) -> str | None:
    """``term`` (user input) as an FTS5 MATCH expression that cannot fail to
    parse, with ``websearch_to_tsquery``'s reading: words (AND), ``"a
    phrase"``, ``or`` between two terms, ``-word`` to exclude. None when
    nothing searchable is left (the search finds nothing)."""
    groups: list[tuple[list[str], list[str]]] = [([], [])]
    for m in _CHUNK.finditer(term):
        negated, phrase, bare = m.group(1) == "-", m.group(2), m.group(3)
        if bare is not None:
            if bare.lower() == "or":
                if groups[-1][0]:
                    groups.append(([], []))
                continue
            negated = bare.startswith("-")
            words = _WORD.findall(bare)
        else:
            words = _WORD.findall(phrase)
        if not words:
            continue
        groups[-1][1 if negated else 0].append(_fts5_string(words))
    rendered = []
    for positive, negative in groups:
        if not positive:
            continue  # FTS5's NOT is binary: "-a" alone excludes from nothing
        text = "(" + " AND ".join(positive) + ")"
        rendered.append(text + "".join(f" NOT {n}" for n in negative))
    return " OR ".join(rendered) if rendered else None


def search_words(term: str) -> list[str]:
    """The words a client should highlight: those of ``term`` not excluded."""
    out: list[str] = []
    for m in _CHUNK.finditer(term):
        negated, phrase, bare = m.group(1) == "-", m.group(2), m.group(3)
        if bare is not None:
            if bare.lower() == "or" or bare.startswith("-"):
                continue
            words = _WORD.findall(bare)
        else:
            words = [] if negated else _WORD.findall(phrase)
        out.extend(w.lower() for w in words)
    return list(dict.fromkeys(out))


# -- the index ------------------------------------------------------------------


def _plain_topic(block: Any) -> str | None:
    """The text/plain body of an ``m.topic`` content block (the spec searches it too)."""
    representations = block.get("m.text") if isinstance(block, dict) else None
    if not isinstance(representations, list):
        return None
    for item in representations:
        if isinstance(item, dict) and item.get("mimetype", "text/plain") == "text/plain" \
                and isinstance(item.get("body"), str):
            return str(item["body"])
    return None


def _indexed_value(event: Event) -> tuple[str, str] | None:
    spec = INDEXED.get(event.type)
    if spec is None:
        return None
    key, field = spec
    value = event.content.get(field)
    if event.type == "m.room.topic" and not isinstance(value, str):
        value = _plain_topic(event.content.get("m.topic"))
    if not isinstance(value, str) or not value.strip():
        return None
    # PostgreSQL text cannot hold NUL; another server's event may
    return key, value[:MAX_INDEXED_CHARS].replace("\x00", " ")


def delete_event_txn(txn: Txn, event_nid: int) -> None:
    txn.execute("DELETE FROM event_search WHERE event_nid = ?", (event_nid,))
    if txn.engine == "sqlite":
        txn.execute("DELETE FROM event_search_fts WHERE rowid = ?", (event_nid,))


def index_event_txn(txn: Txn, event: Event, event_nid: int) -> None:
    """The persist hook: index a searchable event, or drop a redacted one."""
    if event.type == "m.room.redaction":
        if event.redacts is not None and event.rejected_reason is None:
            target = txn.select_value("SELECT event_nid FROM events WHERE event_id = ?",
                                      (event.redacts,))
            if target is not None:
                delete_event_txn(txn, int(target))
        return
    found = _indexed_value(event)
    if found is None or event.rejected_reason is not None:
        return
    key, value = found
    row = txn.select_one("SELECT room_nid, stream_ordering FROM events WHERE event_nid = ?",
                         (event_nid,))
    if row is None or row[1] is None:
        return  # not part of the timeline
    # its redaction came first (from another server, or by backfill)
    if txn.select_one("SELECT 1 FROM event_redactions WHERE redacts = ? LIMIT 1",
                      (event.event_id,)) is not None:
        return
    room_nid, stream = int(row[0]), int(row[1])
    if txn.engine == "postgres":
        txn.execute("INSERT INTO event_search (event_nid, room_nid, stream_ordering, sender,"
                    " key, vector) VALUES (?, ?, ?, ?, ?, to_tsvector('english', ?))"
                    " ON CONFLICT (event_nid) DO NOTHING",
                    (event_nid, room_nid, stream, event.sender, key, value))
        return
    txn.execute("INSERT INTO event_search (event_nid, room_nid, stream_ordering, sender, key)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_nid) DO NOTHING",
                (event_nid, room_nid, stream, event.sender, key))
    if txn.rowcount:
        txn.execute("INSERT INTO event_search_fts (rowid, value) VALUES (?, ?)",
                    (event_nid, value))


def index_batch_txn(txn: Txn, batches: Sequence[MessageBatch]) -> None:
    """The batch hook: index runs of plain messages (of several rooms) in
    one statement."""
    found = [(event, batch.room_nid, nid, stream, indexed)
             for batch in batches for event, nid, stream in batch.events
             if event.rejected_reason is None
             and (indexed := _indexed_value(event)) is not None]
    if not found:
        return
    ids = [f[0].event_id for f in found]
    # a redaction that came first (from another server, or by backfill)
    redacted = {str(r[0]) for r in select_in_txn(
        txn, "SELECT redacts FROM event_redactions WHERE redacts IN ({})", ids)}
    found = [f for f in found if f[0].event_id not in redacted]
    if not found:
        return
    if txn.engine == "postgres":
        for part in chunks(found, 200):
            params: list[Any] = []
            for event, room_nid, nid, stream, (key, value) in part:
                params += (nid, room_nid, stream, event.sender, key, value)
            txn.execute("INSERT INTO event_search (event_nid, room_nid, stream_ordering,"
                        " sender, key, vector) VALUES "
                        + ", ".join(["(?, ?, ?, ?, ?, to_tsvector('english', ?))"] * len(part))
                        + " ON CONFLICT (event_nid) DO NOTHING", params)
        return
    # SQLite runs in process: a statement per event costs no round trip
    for event, room_nid, nid, stream, (key, value) in found:
        txn.execute("INSERT INTO event_search (event_nid, room_nid, stream_ordering, sender,"
                    " key) VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_nid) DO NOTHING",
                    (nid, room_nid, stream, event.sender, key))
        if txn.rowcount:
            txn.execute("INSERT INTO event_search_fts (rowid, value) VALUES (?, ?)",
                        (nid, value))



# -- queries --------------------------------------------------------------------


@dataclass(frozen=True)
class _Rooms:
    """The rooms a search reads: joined ones whole, left ones up to the leave."""

    room_ids: dict[int, str]
    joined: tuple[int, ...]
    left: tuple[tuple[int, int], ...]  # (room NID, last stream position readable)


def _searchable_rooms_txn(txn: Txn, query: SearchQuery) -> _Rooms:
    rows = txn.select_all(
        "SELECT m.room_nid, r.room_id, m.membership, m.stream_ordering"
        " FROM room_memberships AS m JOIN rooms AS r ON r.room_nid = m.room_nid"
        " WHERE m.user_id = ? AND m.forgotten = 0 AND m.membership IN ('join', 'leave', 'ban')",
        (query.user_id,))
    wanted = set(query.rooms) if query.rooms is not None else None
    unwanted = set(query.not_rooms)
    room_ids: dict[int, str] = {}
    joined: list[int] = []
    left: list[tuple[int, int]] = []
    for nid, room_id, membership, stream in rows:
        if (wanted is not None and room_id not in wanted) or room_id in unwanted:
            continue
        room_ids[int(nid)] = str(room_id)
        if membership == "join":
            joined.append(int(nid))
        else:
            left.append((int(nid), int(stream)))
    return _Rooms(room_ids, tuple(joined), tuple(left))


def _in(column: str, values: Sequence[Any], params: list[Any], *, negate: bool = False
        ) -> str:
    # PostgreSQL refuses NUL in text: such a value matches nothing anyway
    values = [v.replace("\x00", "") if isinstance(v, str) else v for v in values]
    params.extend(values)
    marks = ",".join("?" * len(values))
    return f"{column} {'NOT IN' if negate else 'IN'} ({marks})"


def _conditions(query: SearchQuery, rooms: _Rooms, params: list[Any]) -> str | None:
    """The conditions on ``event_search AS s`` besides the text: the rooms
    (up to a leave), keys and senders; None when they admit nothing. The
    rooms are listed, not joined from ``room_memberships``: the planner then
    scans the text index once (not once per room), and for "recent" walks
    ``event_search_stream`` backwards when the words are common."""
    room_parts = []
    if rooms.joined:
        room_parts.append(_in("s.room_nid", rooms.joined, params))
    for nid, upto in rooms.left:
        room_parts.append("(s.room_nid = ? AND s.stream_ordering <= ?)")
        params += [nid, upto]
    if not room_parts or not query.keys or query.senders == ():
        return None
    sql = "(" + " OR ".join(room_parts) + ") AND " + _in("s.key", query.keys, params)
    if query.senders is not None:
        sql += " AND " + _in("s.sender", query.senders, params)
    if query.not_senders:
        sql += " AND " + _in("s.sender", query.not_senders, params, negate=True)
    return sql


# "rank" ranks the newest this many matches: ranking every match of a common
# word (10% of a million messages) costs most of a second, and past this
# many, relevance among them is mostly noise anyway.
RANK_WINDOW = 10_000


# events indexed per transaction by the history job
HISTORY_BATCH = 500
_SEARCHED_TYPES = ("m.room.message", "m.room.name", "m.room.topic")


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _index_history_batch_txn(self, txn: Txn) -> bool:
        """Index the next batch of events stored before search existed;
        False when there is nothing left."""
        row = txn.select_one("SELECT done_nid, target_nid FROM search_history_job"
                             " WHERE lock = 1")
        if row is None:
            return False
        done, target = int(row[0]), int(row[1])
        rows = txn.select_all(
            "SELECT ev.event_nid, ev.event_id, r.room_version, ev.json, ev.rejected_reason"
            " FROM events ev JOIN rooms r ON r.room_nid = ev.room_nid"
            " WHERE ev.event_nid > ? AND ev.event_nid <= ? AND ev.event_type IN (?, ?, ?)"
            " AND ev.stream_ordering IS NOT NULL ORDER BY ev.event_nid LIMIT ?",
            (done, target, *_SEARCHED_TYPES, HISTORY_BATCH))
        from homeserver.storage.events import EventStore
        for nid, event_id, version, text, rejected in rows:
            index_event_txn(txn, EventStore._event_from_row(event_id, version, text, rejected),
                            int(nid))
        if len(rows) < HISTORY_BATCH:
            txn.execute("DELETE FROM search_history_job WHERE lock = 1")
            return False
        txn.execute("UPDATE search_history_job SET done_nid = ? WHERE lock = 1",
                     (int(rows[-1][0]),))
        return True

    async def index_history(self, between: Callable[[], Awaitable[None]] | None = None) -> None:
        """The background job of migration 0020: index the messages, names
        and topics stored before full-text search existed, a batch per
        transaction, resuming after a restart where it stopped. ``between``
        is awaited before each batch (the admin API's pause)."""
        batches = 0
        while True:
            if between is not None:
                await between()
            if not await self.db.run_interaction("index_search_history",
                                                 self._index_history_batch_txn):
                break
            batches += 1
        if batches:
            logger.info("search: indexed the history stored before search existed")

    def _matching_sql(self, txn: Txn, query: SearchQuery, columns: str,
                      params: list[Any]) -> tuple[str, _Rooms] | None:
        """``SELECT columns FROM <matches> WHERE <conditions>`` (open-ended:
        the caller may add conditions); None when nothing can match. In
        ``columns``, ``RANK`` stands for the engine's rank expression."""
        rooms = _searchable_rooms_txn(txn, query)
        term = query.term.replace("\x00", " ")
        if self.db.engine == "postgres":
            params.append(term)
            conditions = _conditions(query, rooms, params)
            if conditions is None:
                return None
            return (f"SELECT {columns.replace('RANK', 'ts_rank_cd(s.vector, q)')}"
                    " FROM event_search AS s"
                    " CROSS JOIN websearch_to_tsquery('english', ?) AS q"
                    f" WHERE {conditions} AND s.vector @@ q", rooms)
        match = fts5_query(term)
        conditions = _conditions(query, rooms, params)
        if match is None or conditions is None:
            return None
        params.append(match)
        return (f"SELECT {columns.replace('RANK', '-bm25(event_search_fts)')}"
                " FROM event_search_fts AS f JOIN event_search AS s ON s.event_nid = f.rowid"
                f" WHERE {conditions} AND event_search_fts MATCH ?", rooms)

    def _search_batch_txn(self, txn: Txn, query: SearchQuery, order_by: str,
                          before_stream: int | None, offset: int, limit: int
                          ) -> list[SearchHit]:
        params: list[Any] = []
        columns = "s.event_nid, s.room_nid, s.stream_ordering, RANK AS rank"
        if order_by == "rank" and self.db.engine == "postgres":
            columns = "s.event_nid, s.room_nid, s.stream_ordering, s.vector, q"
        built = self._matching_sql(txn, query, columns, params)
        if built is None:
            return []
        sql, rooms = built
        if order_by == "recent":
            if before_stream is not None:
                sql += " AND s.stream_ordering < ?"
                params.append(before_stream)
            sql += " ORDER BY s.stream_ordering DESC LIMIT ?"
            params.append(limit)
        else:
            sql += " ORDER BY s.stream_ordering DESC LIMIT ?"
            params.append(RANK_WINDOW)
            rank = "ts_rank_cd(w.vector, w.q)" if self.db.engine == "postgres" else "w.rank"
            sql = (f"SELECT w.event_nid, w.room_nid, w.stream_ordering, {rank} AS rank"
                   f" FROM ({sql}) AS w ORDER BY rank DESC, w.stream_ordering DESC"
                   " LIMIT ? OFFSET ?")
            params += [limit, offset]
        rows = txn.select_all(sql, params)
        if not rows:
            return []
        event_ids = dict(txn.select_all(
            "SELECT event_nid, event_id FROM events WHERE event_nid IN"
            f" ({','.join('?' * len(rows))})", [r[0] for r in rows]))
        return [SearchHit(str(event_ids[nid]), rooms.room_ids[int(room_nid)], int(pos),
                          float(rank or 0.0))
                for nid, room_nid, pos, rank in rows if nid in event_ids]

    async def search_batch(self, query: SearchQuery, *, order_by: str,
                           before_stream: int | None = None, offset: int = 0,
                           limit: int) -> list[SearchHit]:
        """Up to ``limit`` matches, best first: ``order_by`` "recent" (newest
        first, positions below ``before_stream``) or "rank" (from ``offset``,
        among the newest ``RANK_WINDOW``)."""
        return await self.db.run_interaction("search_batch", self._search_batch_txn, query,
                                             order_by, before_stream, offset, limit)

    def _count_txn(self, txn: Txn, query: SearchQuery) -> int:
        params: list[Any] = []
        built = self._matching_sql(txn, query, "1", params)
        if built is None:
            return 0
        params.append(COUNT_CAP)
        return int(txn.select_value(f"SELECT COUNT(*) FROM ({built[0]} LIMIT ?) AS matches",
                                    params) or 0)

    async def count(self, query: SearchQuery) -> int:
        """How many events match, at most ``COUNT_CAP`` (before history
        visibility: the spec's "approximate count")."""
        return await self.db.run_interaction("search_count", self._count_txn, query)
