"""Copy a Synapse server (its database and media store) into our database.

The walk, stage by stage (docs/migrating-from-synapse.md has the operator's
view and the list of what is not carried over):

1. Checks, before anything is written: Synapse is not running (its
   database must hold still), the two server names are the same (events
   and user IDs name the server; a different name would be another
   server), Synapse's password pepper is unset (its hashes cannot be
   checked without it), and our database is fresh: no account, room,
   event, alias or media, unless it holds the markers of an earlier,
   interrupted import of the same server, which is then resumed.
2. The signing key: Synapse's key file replaces ours (ours is kept beside it
   as ``<path>.before-import``), so the events we sign from now on carry the
   key other servers already know for this name.
3. Stages (functions of a ``StageContext``, by area: ``accounts``, ``e2e``,
   ``directory``, ``media``), each ONE transaction with its marker row in
   ``synapse_import_stages``: it is stored whole or not at all, and a rerun
   skips it. The import makes that table itself (no migration: the server
   never reads it). The rooms (``rooms.py``) commit room by room, and
   inside a room N events at a time, with a progress marker.
4. The check: counts, a sample of events, every room's current state and
   forward extremities, against Synapse's.

Rooms go through the federation persistence path
(``FederationEventStore.persist_federated_txn``; runs of plain messages
through ``EventStore.persist_messages_txn``), the paths our server uses
for events: rows, DAG edges, auth-chain index, snapshot of the state after
the event, forward extremities and the persist hooks (relations, full-text
search, user directory) are written by the same code as for any event;
``rooms.py`` says how the state before each event is found. The events are
not re-checked against the auth rules: Synapse accepted them, and its
rejections (``rejections``) and soft failures
(``internal_metadata.soft_failed``) are kept as they were.

Not one byte is sent to another server: the import builds the stores and
nothing else (no federation sender, no pushers, no notifier).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from homeserver.config import Config
from homeserver.storage import Stores
from homeserver.storage import synapse_import as rows
from homeserver.storage.database import Database
from homeserver.storage.migrations import prepare_database_blocking
from homeserver.storage.relations import index_relation_txn
from homeserver.storage.search import index_batch_txn, index_event_txn
from homeserver.storage.streams import StreamTracker
from homeserver.storage.user_directory import member_joined_txn
from homeserver.synapse_import import accounts, directory, e2e, media, rooms
from homeserver.synapse_import.common import (
    ImportReport,
    Progress,
    StageContext,
    SynapseImportError,
    load_json,
)
from homeserver.synapse_import.rooms import CHUNK, RoomImporter
from homeserver.synapse_import.source import (
    SourceError,
    SynapseSource,
    listening,
    read_synapse_config,
    running_pid,
)

logger = logging.getLogger(__name__)


# Synapse tables the import carries over (reported by --dry-run and the check)
CARRIED = (
    "users", "profiles", "devices", "access_tokens", "refresh_tokens", "rooms",
    "events", "current_state_events", "room_aliases", "receipts_linearized",
    "account_data", "room_account_data", "local_media_repository",
    "registration_tokens", "e2e_device_keys_json", "e2e_one_time_keys_json",
    "e2e_fallback_keys_json", "e2e_cross_signing_keys", "e2e_cross_signing_signatures",
    "e2e_room_keys_versions", "e2e_room_keys", "push_rules", "push_rules_enable", "pushers",
    "erased_users", "blocked_rooms", "local_current_membership", "user_threepids",
)


class SynapseImporter:
    def __init__(self, synapse_config_path: str, config: Config, *,
                 progress: Progress | None = None,
                 events_per_transaction: int = CHUNK) -> None:
        try:
            self.syn_config = read_synapse_config(synapse_config_path)
        except SourceError as e:
            raise SynapseImportError(str(e)) from None
        self.config = config
        self.progress = progress or Progress(enabled=False)
        self.report = ImportReport()
        self.events_per_transaction = events_per_transaction
        self.server_name = config.server_name
        self.source: SynapseSource | None = None
        self.db: Database | None = None

    # -- set-up ------------------------------------------------------------

    def check_stopped(self) -> None:
        """Synapse must not run: its database must hold still while it is copied."""
        pid = running_pid(self.syn_config)
        if pid is not None:
            raise SynapseImportError(
                f"Synapse is running (pid {pid}, from {self.syn_config.pid_file}): stop it"
                " first, so that its database holds still while it is copied")
        found = listening(self.syn_config)
        if found is not None:
            raise SynapseImportError(
                f"Synapse is running (something answers on {found[0]}:{found[1]}, a listener"
                " of its config): stop it first, so that its database holds still while it"
                " is copied (--synapse-stopped if that is something else)")

    def check_names(self) -> None:
        if self.syn_config.server_name != self.config.server_name:
            raise SynapseImportError(
                f"server_name differs: Synapse's is {self.syn_config.server_name!r}, ours"
                f" {self.config.server_name!r}; user IDs, room aliases and the events'"
                " signatures name the server, so the import needs the same server_name")
        if self.syn_config.pepper:
            raise SynapseImportError(
                "Synapse's password_config.pepper is set: its password hashes cannot be"
                " checked without it, and this server has no pepper; refusing to import"
                " accounts nobody could log in to")

    def open(self, *, dry_run: bool = False, synapse_stopped: bool = False) -> None:
        """Check, and connect to both databases (a dry run: only to Synapse's,
        so nothing of ours is touched, not even the schema)."""
        if not synapse_stopped:
            self.check_stopped()
        self.check_names()
        try:
            self.source = SynapseSource(self.syn_config)
        except SourceError as e:
            raise SynapseImportError(str(e)) from None
        if dry_run:
            return
        db_conf = self.config.database
        self.db = Database(db_conf.engine, db_conf.args)
        self.db.stream_tracker = StreamTracker()
        prepare_database_blocking(self.db)
        self.stores = Stores(self.db, state_cache_size=0)
        # the persist hooks a timeline event gets on our server, less push
        # actions: history imported is not news to anyone
        hooks = self.stores.events.persist_hooks
        hooks.add(index_relation_txn)
        hooks.add(index_event_txn, index_batch_txn)
        hooks.add(member_joined_txn)
        self.db.run_txn_blocking("import_stages_table", rows.ensure_stages_table_txn)
        self.done = self.db.run_txn_blocking("import_done_stages", rows.done_stages_txn)
        self.notes = self.db.run_txn_blocking("import_notes", rows.notes_txn)
        if not self.done:
            busy = self.db.run_txn_blocking("import_fresh", rows.non_empty_tables_txn)
            if busy:
                raise SynapseImportError(
                    "our database is not fresh (it has rows in " + ", ".join(busy)
                    + "); import into a new, empty database")

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        if self.db is not None:
            self.db.close()

    @property
    def src(self) -> SynapseSource:
        assert self.source is not None
        return self.source

    @property
    def dbx(self) -> Database:
        assert self.db is not None
        return self.db

    # -- the whole run -------------------------------------------------------

    def dry_run(self) -> dict[str, int]:
        """What would be imported: Synapse's row count per carried table."""
        return {t: self.src.count(t) for t in CARRIED}

    def run(self) -> ImportReport:
        self.import_signing_key()
        ctx = StageContext(self.src, self.dbx, self.stores, self.config, self.syn_config,
                           self.progress, self.report)
        before_rooms: list[tuple[str, Callable[[StageContext, str], None]]] = [
            ("users", accounts.users),
            ("threepids", accounts.threepids),
            ("devices", accounts.devices),
            ("access_tokens", accounts.access_tokens),
            ("account_data", accounts.account_data),
            ("push_rules", accounts.push_rules),
            ("registration_tokens", accounts.registration_tokens),
            ("e2e_keys", e2e.e2e_keys),
            ("cross_signing", e2e.cross_signing),
            ("key_backups", e2e.key_backups),
        ]
        for name, fn in before_rooms:
            self._run_stage(ctx, name, fn)
        RoomImporter(self.src, self.dbx, self.stores, self.progress, self.report,
                     self.done, self.events_per_transaction).run()
        # after the rooms: these point at rooms and events
        for name, fn in [("remote_invites", rooms.remote_invites),
                         ("aliases", directory.aliases),
                         ("room_directory", directory.room_directory),
                         ("blocked_rooms", directory.blocked_rooms),
                         ("receipts", directory.receipts),
                         ("pushers", accounts.pushers),
                         ("media", media.media)]:
            self._run_stage(ctx, name, fn)
        return self.report

    def _run_stage(self, ctx: StageContext, name: str,
                   fn: Callable[[StageContext, str], None]) -> None:
        if name in self.done:
            self.progress.skip(name, self.done[name])
            self.report.counts[name] = self.done[name]
            self.report.skipped += self.notes.get(name, [])
            return
        fn(ctx, name)
        self.src.end_snapshot()

    # -- signing key -----------------------------------------------------------

    def import_signing_key(self) -> None:
        """Synapse's signing key becomes ours (the old file kept aside)."""
        from signedjson.key import read_signing_keys

        src = self.syn_config.signing_key_path
        try:
            with open(src, encoding="ascii") as f:
                text = f.read()
            if not read_signing_keys(text.splitlines()):
                raise ValueError
        except (OSError, ValueError) as e:
            raise SynapseImportError(f"cannot read Synapse's signing key {src}: {e}") from None
        if not self.config.signing_key_path:
            raise SynapseImportError("our config has no signing_key_path to put Synapse's key in")
        dest = os.path.join(self.config.config_dir, self.config.signing_key_path)
        if os.path.exists(dest):
            with open(dest, encoding="ascii") as f:
                if f.read() == text:
                    return
            os.replace(dest, dest + ".before-import")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)

    # -- the check afterwards ---------------------------------------------------------

    def verify(self, sample: int = 50) -> list[str]:
        """Differences between the two databases: per-table counts that
        should match, and a sample of events compared by ID and content."""
        problems: list[str] = []
        src = self.src
        pairs = [("users", "users"), ("rooms", "rooms"), ("room_aliases", "room_aliases")]
        ours = self.dbx.run_txn_blocking("import_check_counts", rows.table_counts_txn,
                                         [o for _, o in pairs] + ["events"])
        for theirs, our in pairs:
            n = src.count(theirs)
            if n != ours[our]:
                problems.append(f"{our}: Synapse has {n}, we have {ours[our]}")
        skipped_rooms = sum(1 for s in self.report.skipped if s.startswith("room "))
        if src.count("events") != ours["events"] and not skipped_rooms:
            problems.append(f"events: Synapse has {src.count('events')},"
                            f" we have {ours['events']}")
        for event_id, text in src.rows(
                "SELECT event_id, json FROM event_json ORDER BY event_id LIMIT ?", (sample,)):
            pdu = load_json(text)
            pdu.pop("unsigned", None)
            held = self.dbx.run_txn_blocking(
                "import_check_event", lambda txn, e=event_id: txn.select_value(
                    "SELECT json FROM events WHERE event_id = ?", (e,)))
            if held is None:
                problems.append(f"event {event_id}: missing")
                continue
            mine = load_json(held)
            mine.pop("unsigned", None)
            if mine.get("content") != pdu.get("content") or \
                    mine.get("hashes") != pdu.get("hashes"):
                problems.append(f"event {event_id}: content differs")
        problems += self._compare_rooms()
        return problems

    def _compare_rooms(self) -> list[str]:
        """Each room's current state and forward extremities, ours against
        Synapse's (differences would show as wrong state to clients, or as
        a broken DAG to other servers)."""
        src = self.src
        theirs_state: dict[str, set[str]] = {}
        for room_id, event_id in src.iter_rows(
                "SELECT room_id, event_id FROM current_state_events"):
            theirs_state.setdefault(str(room_id), set()).add(str(event_id))
        theirs_ext: dict[str, set[str]] = {}
        for room_id, event_id in src.rows(
                "SELECT room_id, event_id FROM event_forward_extremities"):
            theirs_ext.setdefault(str(room_id), set()).add(str(event_id))
        ours_state, ours_ext = self.dbx.run_txn_blocking("import_check_rooms",
                                                         rows.room_heads_txn)
        problems = []
        for room_id, state in theirs_state.items():
            if ours_state.get(room_id, set()) != state:
                problems.append(f"room {room_id}: current state differs")
        for room_id, ext in theirs_ext.items():
            if room_id in ours_state and ours_ext.get(room_id, set()) != ext:
                problems.append(f"room {room_id}: forward extremities differ")
        return problems

