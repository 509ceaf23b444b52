"""The search index on a bare database (both engines), and the FTS5 query builder.

Events are stand-in rows of ``events`` and ``room_memberships``; the persist
hooks are called as the event stores call them.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.push.actions import PushActions
from homeserver.storage.database import Database, Txn
from homeserver.storage.event_hooks import PersistHooks
from homeserver.storage.push_rules import PushRuleStore
from homeserver.storage.relations import index_relation_txn
from homeserver.storage.search import (
    SearchQuery,
    SearchStore,
    fts5_query,
    index_batch_txn,
    index_event_txn,
    search_words,
)
from homeserver.storage.user_directory import UserDirectoryStore, member_joined_txn
from tests.storage.conftest import Databases, prepare

ROOM = "!room:test.local"
ALICE = "@alice:test.local"
BOB = "@bob:remote.example"
V10 = KNOWN_ROOM_VERSIONS["10"]


# -- the FTS5 query builder (pure) ------------------------------------------------


@pytest.mark.parametrize("term,expected", [
    ("fox", '("fox")'),
    ("quick fox", '("quick" AND "fox")'),
    ('"quick fox"', '("quick fox")'),
    ('"unclosed phrase', '("unclosed phrase")'),
    ("fox or dog", '("fox") OR ("dog")'),
    ("fox -dog", '("fox") NOT "dog"'),
    ('fox -"lazy dog"', '("fox") NOT "lazy dog"'),
    ("e-mail", '("e mail")'),
    ("NEAR(a b)", '("NEAR a" AND "b")'),
    ("fox*", '("fox")'),
    ("or fox or", '("fox")'),
    ("-dog", None),
    ("", None),
    ("  \" ' * ( ) : ^ ", None),
    ("中文 émoji", '("中文" AND "émoji")'),
])
def test_fts5_query_reads_input_like_websearch(term: str, expected: str | None) -> None:
    assert fts5_query(term) == expected


def test_search_words_leaves_out_operators_and_exclusions() -> None:
    assert search_words('Quick "brown fox" or -lazy dog') == ["quick", "brown", "fox", "dog"]


def test_fts5_query_never_fails_to_parse_random_input() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(value, tokenize = 'porter unicode61')")
    conn.execute("INSERT INTO t (value) VALUES ('the quick brown fox')")
    alphabet = 'ab "-*():^{}[]+~,.;\'\\%_?!&|<>\u0000é中🦊OR AND NOT NEAR or'
    rng = random.Random(7)
    for _ in range(3000):
        term = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        match = fts5_query(term)
        if match is not None:
            conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()


# -- the index --------------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def db(databases: Databases) -> AsyncIterator[Database]:
    db = databases.open()
    await prepare(db)
    yield db


def make_event(event_id: str, event_type: str, content: dict[str, Any], sender: str = ALICE,
               state_key: str | None = None, redacts: str | None = None) -> Event:
    body: dict[str, Any] = {"type": event_type, "content": content, "sender": sender,
                            "room_id": ROOM, "origin_server_ts": 0, "depth": 1}
    if state_key is not None:
        body["state_key"] = state_key
    if redacts is not None:
        body["redacts"] = redacts
    return Event(event_id, V10, body)


def persist_hooks(db: Database) -> PersistHooks:
    """The persist hooks as the HomeServer adds them (``_add_persist_hooks``)."""
    hooks = PersistHooks()
    actions = PushActions(PushRuleStore(db))
    hooks.add(actions.persist_hook_txn, actions.batch_hook_txn)
    hooks.add(index_relation_txn)
    hooks.add(index_event_txn, index_batch_txn)
    hooks.add(member_joined_txn)
    return hooks


async def persist(db: Database, *events: Event) -> None:
    """Stand-in rows for ``events`` at the next stream positions, with the hooks run."""
    hooks = persist_hooks(db)

    def txn_fn(txn: Txn) -> None:
        if txn.select_one("SELECT 1 FROM rooms WHERE room_nid = 1") is None:
            txn.execute("INSERT INTO rooms (room_id, room_version, created_ts)"
                        " VALUES (?, '10', 0)", (ROOM,))
        for event in events:
            pos = int(txn.select_value("SELECT COALESCE(MAX(stream_ordering), 0) + 1"
                                       " FROM events"))
            nid = int(txn.select_value(
                "INSERT INTO events (event_id, room_nid, stream_ordering, depth, event_type,"
                " sender, origin_server_ts, json) VALUES (?, 1, ?, 1, ?, ?, 0, '{}')"
                " RETURNING event_nid", (event.event_id, pos, event.type, event.sender)))
            if event.type == "m.room.redaction" and event.redacts is not None:
                txn.execute("INSERT INTO event_redactions (redacts, redaction_nid)"
                            " VALUES (?, ?)", (event.redacts, nid))
            hooks.run_txn(txn, event, nid)
    await db.run_interaction("persist", txn_fn)


async def set_membership(db: Database, user_id: str, membership: str) -> None:
    def txn_fn(txn: Txn) -> None:
        pos = int(txn.select_value("SELECT COALESCE(MAX(stream_ordering), 0) FROM events"))
        txn.execute("DELETE FROM room_memberships WHERE user_id = ?", (user_id,))
        txn.execute("INSERT INTO room_memberships (user_id, room_nid, membership, event_nid,"
                    " stream_ordering) VALUES (?, 1, ?, 0, ?)", (user_id, membership, pos))
    await db.run_interaction("membership", txn_fn)


async def ids(store: SearchStore, term: str, user_id: str = ALICE, **kw: Any) -> list[str]:
    hits = await store.search_batch(SearchQuery(user_id=user_id, term=term, **kw),
                                    order_by="recent", limit=100)
    return [h.event_id for h in hits]


@pytest_twisted.ensureDeferred
async def test_hook_indexes_the_three_keys_and_nothing_else(db: Database) -> None:
    await persist(db,
                  make_event("$msg", "m.room.message", {"msgtype": "m.text", "body": "hello"}),
                  make_event("$name", "m.room.name", {"name": "hello room"}, state_key=""),
                  make_event("$topic", "m.room.topic", {"topic": "hello topic"},
                             state_key=""),
                  make_event("$topic2", "m.room.topic", {"m.topic": {"m.text": [
                      {"mimetype": "text/html", "body": "<b>hello</b> html"},
                      {"body": "hello plain"}]}}, state_key=""),
                  make_event("$other", "m.custom", {"body": "hello custom"}),
                  make_event("$odd", "m.room.message", {"body": ["not", "text"]}),
                  make_event("$nul", "m.room.message", {"body": "hello\u0000there"}))
    await set_membership(db, ALICE, "join")
    store = SearchStore(db)

    assert sorted(await ids(store, "hello")) == ["$msg", "$name", "$nul", "$topic", "$topic2"]
    assert await ids(store, "hello", keys=("content.name",)) == ["$name"]
    assert await store.count(SearchQuery(user_id=ALICE, term="hello")) == 5
    assert await ids(store, "html") == []


@pytest_twisted.ensureDeferred
async def test_redaction_drops_the_row_even_when_it_came_first(db: Database) -> None:
    await set_membership(db, ALICE, "join")
    await persist(db, make_event("$a", "m.room.message", {"body": "alpha"}),
                  make_event("$r1", "m.room.redaction", {}, redacts="$a"),
                  make_event("$r2", "m.room.redaction", {}, redacts="$b"),
                  make_event("$b", "m.room.message", {"body": "alpha again"}))
    assert await ids(SearchStore(db), "alpha") == []


@pytest_twisted.ensureDeferred
async def test_reader_who_left_sees_rows_up_to_their_leave_only(db: Database) -> None:
    await persist(db, make_event("$1", "m.room.message", {"body": "note one"}))
    await set_membership(db, BOB, "leave")
    await persist(db, make_event("$2", "m.room.message", {"body": "note two"}))
    store = SearchStore(db)

    assert await ids(store, "note", user_id=BOB) == ["$1"]
    assert await ids(store, "note", user_id="@stranger:test.local") == []


@pytest_twisted.ensureDeferred
async def test_member_join_fills_the_user_directory(db: Database) -> None:
    await persist(db, make_event("$j", "m.room.member",
                                 {"membership": "join", "displayname": "Bob ÉLAN"},
                                 sender=BOB, state_key=BOB))
    await set_membership(db, BOB, "join")
    await set_membership(db, ALICE, "join")
    users = UserDirectoryStore(db)

    found = await users.search(ALICE, "élan", 10)
    assert [(u.user_id, u.display_name) for u in found] == [(BOB, "Bob ÉLAN")]
    assert await users.search(ALICE, "%", 10) == []


@pytest_twisted.ensureDeferred
async def test_directory_prefers_local_users_and_hides_deactivated_ones(db: Database) -> None:
    carol, dave = "@carol:test.local", "@dave:test.local"

    def add_local_users(txn: Txn) -> None:
        for user_id in (ALICE, carol, dave):
            txn.execute("INSERT INTO users (user_id, creation_ts) VALUES (?, 0)", (user_id,))
        txn.execute("UPDATE users SET deactivated = 1 WHERE user_id = ?", (dave,))
    await db.run_interaction("users", add_local_users)
    await persist(db, *[make_event(f"$j{i}", "m.room.member",
                                   {"membership": "join", "displayname": f"Member {name}"},
                                   sender=user_id, state_key=user_id)
                        for i, (user_id, name) in enumerate(
                            [(BOB, "A"), (carol, "B"), (dave, "C")])])
    for user_id in (ALICE, BOB, carol, dave):
        await set_membership(db, user_id, "join")
    users = UserDirectoryStore(db)

    plain = await users.search(ALICE, "member", 10)
    assert [u.user_id for u in plain] == [BOB, carol]
    local_first = await users.search(ALICE, "member", 10, prefer_local=True)
    assert [u.user_id for u in local_first] == [carol, BOB]
