"""Copy a Synapse server (its database and media store) into our database.

The walk, stage by stage (docs/migrating-from-synapse.md has the operator's
view and the list of what is not carried over):

1. Checks, before anything is written: the two server names are the same
   (events and user IDs name the server; a different name would be another
   server), Synapse's password pepper is unset (its hashes cannot be checked
   without it), and our database is fresh: no account, room, event, alias or
   media, unless it holds the markers of an earlier, interrupted import of
   the same server, which is then resumed.
2. The signing key: Synapse's key file replaces ours (ours is kept beside it
   as ``<path>.before-import``), so the events we sign from now on carry the
   key other servers already know for this name.
3. Stages, each ONE transaction with its marker row in
   ``synapse_import_stages``: it is stored whole or not at all, and a rerun
   skips it. The rooms stage commits room by room (marker ``room:<id>``).
   The import makes that table itself (no migration: the server never
   reads it).

Rooms go through the federation persistence path
(``FederationEventStore.persist_federated_txn``), the one our server uses
for an event that another server authorised: rows, DAG edges, auth-chain
index, snapshot of the state after the event, forward extremities and the
persist hooks (relations, full-text search, user directory) are written by
the same code as for any event. Events go in Synapse's topological order
(depth, then stream order); outliers first. The state before an event is
our own snapshot after its prev event when it has one that we hold; across
a fork (several prev events) or a gap, it is Synapse's state group of the
event (which Synapse stores as the state after it), with the event's own
key put back to the value before it. The room's current state is Synapse's
``current_state_events``, set with the last accepted event, which also
writes the memberships. The events are not re-checked against the auth
rules: Synapse accepted them, and its rejections (``rejections``) and soft
failures (``internal_metadata.soft_failed``) are kept as they were.

Not one byte is sent to another server: the import builds the stores and
nothing else (no federation sender, no pushers, no notifier).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from homeserver.config import Config
from homeserver.http.auth import hash_token
from homeserver.push.rules import DEFAULT_KIND_OF
from homeserver.storage import Stores
from homeserver.storage import synapse_import as rows
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.cross_signing import CrossSigningStore
from homeserver.storage.database import Database, Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.migrations import prepare_database_blocking
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.relations import index_relation_txn
from homeserver.storage.search import index_batch_txn, index_event_txn
from homeserver.storage.streams import StreamTracker, current_stream_id_txn
from homeserver.storage.user_directory import member_joined_txn
from homeserver.synapse_import.rooms import CHUNK, RoomImporter
from homeserver.synapse_import.source import SourceError, SynapseSource, read_synapse_config

logger = logging.getLogger(__name__)


class SynapseImportError(Exception):
    """The import cannot go on; the message is for the operator."""


# Synapse tables the import carries over (reported by --dry-run and the check)
CARRIED = (
    "users", "profiles", "devices", "access_tokens", "refresh_tokens", "rooms",
    "events", "current_state_events", "room_aliases", "receipts_linearized",
    "account_data", "room_account_data", "local_media_repository",
    "registration_tokens", "e2e_device_keys_json", "e2e_one_time_keys_json",
    "e2e_fallback_keys_json", "e2e_cross_signing_keys", "e2e_cross_signing_signatures",
    "e2e_room_keys_versions", "e2e_room_keys", "push_rules", "push_rules_enable", "pushers",
)


class Progress:
    """What the import shows while it works: one bar per stage.

    ``rich`` draws the bars when it is installed and stderr is a terminal;
    otherwise one log line per stage (and per 10% of a long stage)."""

    def __init__(self, enabled: bool = True) -> None:
        self._rich: Any = None
        if enabled:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import (
                    Progress as RichProgress,
                )
                self._rich = RichProgress(TextColumn("{task.description:<24}"), BarColumn(),
                                          MofNCompleteColumn(), TimeElapsedColumn())
            except ImportError:
                self._rich = None

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.stop()

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        """Start a stage of ``total`` items; returns ``advance(n)``."""
        if self._rich is not None:
            task = self._rich.add_task(name, total=max(total, 1))
            if total == 0:
                self._rich.update(task, completed=1)

            def advance_rich(n: int) -> None:
                self._rich.advance(task, n)
            return advance_rich
        logger.info("%s: %d to import", name, total)
        done = [0, 0]

        def advance(n: int) -> None:
            done[0] += n
            tenth = done[0] * 10 // max(total, 1)
            if tenth > done[1]:
                done[1] = tenth
                logger.info("%s: %d of %d", name, done[0], total)
        return advance

    def skip(self, name: str, count: int) -> None:
        if self._rich is not None:
            self._rich.add_task(f"{name} (done before)", total=max(count, 1),
                                completed=max(count, 1))
        else:
            logger.info("%s: done in an earlier run (%d), skipped", name, count)


@dataclass
class ImportReport:
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    events_per_second: float = 0.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(text: Any) -> Any:
    if isinstance(text, (bytes, memoryview)):
        text = bytes(text).decode("utf-8")
    return json.loads(text) if isinstance(text, str) else text


def _dump(obj: Any) -> str:
    """JSON as our E2E stores keep it (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _split_rule_id(full: str) -> tuple[str, str] | None:
    """Synapse's ``global/<kind>/<rule id>`` as (kind, rule id)."""
    parts = full.split("/", 2)
    if len(parts) != 3 or parts[0] != "global" or parts[1] not in _PUSH_KINDS:
        return None
    return parts[1], parts[2]


_PUSH_KINDS = ("override", "content", "room", "sender", "underride")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


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

    def open(self) -> None:
        self.check_names()
        try:
            self.source = SynapseSource(self.syn_config)
        except SourceError as e:
            raise SynapseImportError(str(e)) from None
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
        stages: list[tuple[str, Callable[[str], None]]] = [
            ("users", self._stage_users),
            ("devices", self._stage_devices),
            ("access_tokens", self._stage_tokens),
            ("account_data", self._stage_account_data),
            ("push_rules", self._stage_push_rules),
            ("registration_tokens", self._stage_registration_tokens),
            ("e2e_keys", self._stage_e2e_keys),
            ("cross_signing", self._stage_cross_signing),
            ("key_backups", self._stage_key_backups),
        ]
        for name, fn in stages:
            self._run_stage(name, fn)
        self._stage_rooms()
        for name, fn in [("aliases", self._stage_aliases),
                         ("room_directory", self._stage_directory),
                         ("receipts", self._stage_receipts),
                         ("pushers", self._stage_pushers),
                         ("media", self._stage_media)]:
            self._run_stage(name, fn)
        return self.report

    def _run_stage(self, name: str, fn: Callable[[str], None]) -> None:
        if name in self.done:
            self.progress.skip(name, self.done[name])
            self.report.counts[name] = self.done[name]
            return
        fn(name)
        self.src.end_snapshot()

    def _commit_stage(self, name: str, txn_fn: Callable[[Txn], int]) -> None:
        def txn_all(txn: Txn) -> int:
            count = txn_fn(txn)
            rows.mark_done_txn(txn, name, count, _now_ms())
            return count
        self.report.counts[name] = self.dbx.run_txn_blocking(f"import {name}", txn_all)

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

    # -- accounts ----------------------------------------------------------------

    def _user_id(self, name: str) -> str:
        return name if name.startswith("@") else f"@{name}:{self.server_name}"

    def _stage_users(self, name: str) -> None:
        src = self.src
        users = src.rows("SELECT name, password_hash, creation_ts, admin, is_guest,"
                         " deactivated, user_type FROM users")
        full = "full_user_id" if src.has_column("profiles", "full_user_id") else None
        profiles = src.rows(f"SELECT user_id, {full or 'NULL'}, displayname, avatar_url"
                            " FROM profiles")
        advance = self.progress.stage(name, len(users) + len(profiles))

        def txn_fn(txn: Txn) -> int:
            for user_id, pw, created, admin, guest, deactivated, user_type in users:
                # Synapse counts creation_ts in seconds
                rows.insert_user_txn(txn, str(user_id), pw or None, int(created or 0) * 1000,
                                     bool(admin), bool(guest), bool(deactivated), user_type)
            advance(len(users))
            for localpart, full_id, displayname, avatar_url in profiles:
                rows.upsert_profile_txn(txn, full_id or self._user_id(str(localpart)),
                                        displayname, avatar_url)
            advance(len(profiles))
            return len(users)
        self._commit_stage(name, txn_fn)

    def _stage_devices(self, name: str) -> None:
        src = self.src
        hidden = "hidden" if src.has_column("devices", "hidden") else "0"
        # hidden devices are Synapse's own records of cross-signing keys
        devices = src.rows("SELECT user_id, device_id, display_name, last_seen, ip,"
                           f" user_agent FROM devices WHERE {hidden} IS NULL OR NOT {hidden}")
        advance = self.progress.stage(name, len(devices))

        def txn_fn(txn: Txn) -> int:
            for part in _chunks(devices, 500):
                for row in part:
                    rows.insert_device_txn(txn, *row)
                advance(len(part))
            return len(devices)
        self._commit_stage(name, txn_fn)

    def _stage_tokens(self, name: str) -> None:
        """Access and refresh tokens, stored as their hashes (Synapse keeps the
        tokens themselves): a client logged in to Synapse stays logged in."""
        src = self.src
        refresh = src.rows("SELECT id, user_id, device_id, token, next_token_id, expiry_ts,"
                           " ultimate_session_expiry_ts FROM refresh_tokens") \
            if src.has_table("refresh_tokens") else []
        puppets = "puppets_user_id" if src.has_column("access_tokens", "puppets_user_id") \
            else "NULL"
        used = "used" if src.has_column("access_tokens", "used") else "NULL"
        access = src.rows(f"SELECT user_id, device_id, token, valid_until_ms, {puppets},"
                          f" refresh_token_id, {used} FROM access_tokens")
        advance = self.progress.stage(name, len(access) + len(refresh))

        def txn_fn(txn: Txn) -> int:
            now = _now_ms()
            ids: dict[int, int] = {}
            for rid, user_id, device_id, token, _next, expiry, ultimate in refresh:
                ids[int(rid)] = rows.insert_refresh_token_txn(
                    txn, hash_token(token), user_id, device_id, expiry, ultimate, now)
            for rid, _u, _d, _t, next_id, _e, _x in refresh:
                if next_id is not None and int(next_id) in ids:
                    rows.set_next_refresh_token_txn(txn, ids[int(rid)], ids[int(next_id)])
            advance(len(refresh))
            count = 0
            for user_id, device_id, token, valid_until, puppet, rid, was_used in access:
                if puppet:
                    # an admin's token acting as another user: this server
                    # has no such tokens; the admin logs in again
                    self.report.skipped.append(f"puppet access token of {user_id}")
                    continue
                rows.insert_access_token_txn(
                    txn, hash_token(token), user_id, device_id, valid_until,
                    ids.get(int(rid)) if rid is not None else None, bool(was_used), now)
                count += 1
            advance(len(access))
            return count
        self._commit_stage(name, txn_fn)

    def _stage_account_data(self, name: str) -> None:
        src = self.src
        global_rows = src.rows("SELECT user_id, account_data_type, content FROM account_data")
        room_rows = src.rows("SELECT user_id, room_id, account_data_type, content"
                             " FROM room_account_data")
        advance = self.progress.stage(name, len(global_rows) + len(room_rows))

        def txn_fn(txn: Txn) -> int:
            for user_id, data_type, content in global_rows:
                AccountDataStore.put_account_data_txn(txn, user_id, "", data_type,
                                                      _json(content))
            for user_id, room_id, data_type, content in room_rows:
                AccountDataStore.put_account_data_txn(txn, user_id, room_id, data_type,
                                                      _json(content))
            advance(len(global_rows) + len(room_rows))
            return len(global_rows) + len(room_rows)
        self._commit_stage(name, txn_fn)

    def _stage_registration_tokens(self, name: str) -> None:
        tokens = self.src.rows("SELECT token, uses_allowed, pending, completed, expiry_time"
                               " FROM registration_tokens") \
            if self.src.has_table("registration_tokens") else []
        advance = self.progress.stage(name, len(tokens))

        def txn_fn(txn: Txn) -> int:
            for row in tokens:
                rows.insert_registration_token_txn(txn, *row)
            advance(len(tokens))
            return len(tokens)
        self._commit_stage(name, txn_fn)

    # -- push rules and pushers ------------------------------------------------

    def _stage_push_rules(self, name: str) -> None:
        """Synapse's rules (``push_rules``: rule IDs ``global/<kind>/<id>``,
        a priority class per kind, class -1 for changed actions of a
        server-default rule) and their switches (``push_rules_enable``)."""
        src = self.src
        rules = src.rows("SELECT user_name, rule_id, priority_class, priority, conditions,"
                         " actions FROM push_rules ORDER BY user_name, priority_class,"
                         " priority")
        enables = src.rows("SELECT user_name, rule_id, enabled FROM push_rules_enable")
        advance = self.progress.stage(name, len(rules) + len(enables))
        push_rules = self.stores.push_rules

        def txn_fn(txn: Txn) -> int:
            users: set[str] = set()
            count = 0
            for user, full_id, pclass, priority, conditions, actions in rules:
                parsed = _split_rule_id(str(full_id))
                if parsed is None:
                    continue
                kind, rule_id = parsed
                user_id = self._user_id(str(user))
                users.add(user_id)
                if int(pclass) == -1 or DEFAULT_KIND_OF.get(rule_id) == kind:
                    rows.set_default_rule_txn(txn, user_id, kind, rule_id, None,
                                              _json(actions))
                else:
                    conds = _json(conditions) or []
                    pattern = None
                    if kind == "content":
                        pattern = next((c.get("pattern") for c in conds
                                        if isinstance(c, dict) and "pattern" in c), "")
                    rows.insert_push_rule_txn(txn, user_id, kind, rule_id, int(priority),
                                              conds, pattern, _json(actions))
                count += 1
            for user, full_id, enabled in enables:
                parsed = _split_rule_id(str(full_id))
                if parsed is None or enabled is None:
                    continue
                kind, rule_id = parsed
                user_id = self._user_id(str(user))
                users.add(user_id)
                if DEFAULT_KIND_OF.get(rule_id) == kind:
                    rows.set_default_rule_txn(txn, user_id, kind, rule_id, bool(enabled), None)
                else:
                    rows.enable_push_rule_txn(txn, user_id, kind, rule_id, bool(enabled))
            for user_id in sorted(users):
                # a version token and the m.push_rules account data, as any change
                push_rules._changed_txn(txn, user_id)
            advance(len(rules) + len(enables))
            return count
        self._commit_stage(name, txn_fn)

    def _stage_pushers(self, name: str) -> None:
        """Pushers, starting from now: nothing imported is pushed again."""
        src = self.src
        device = "p.device_id" if src.has_column("pushers", "device_id") else "NULL"
        enabled = "p.enabled" if src.has_column("pushers", "enabled") else "NULL"
        pushers = src.rows(
            "SELECT p.user_name, COALESCE(" + device + ", t.device_id), p.kind, p.app_id,"
            " p.pushkey, p.app_display_name, p.device_display_name, p.profile_tag, p.lang,"
            " p.data, p.ts, " + enabled + " FROM pushers p"
            " LEFT JOIN access_tokens t ON t.id = p.access_token")
        advance = self.progress.stage(name, len(pushers))

        def txn_fn(txn: Txn) -> int:
            position = current_stream_id_txn(txn)
            count = 0
            for (user, device_id, kind, app_id, pushkey, app_name, device_name, tag, lang,
                 data, ts, on) in pushers:
                if on is not None and not on:
                    continue
                rows.insert_pusher_txn(txn, (
                    self._user_id(str(user)), device_id, kind, app_id, pushkey, app_name,
                    device_name, tag or None, lang or "en", json.dumps(_json(data) or {}),
                    int(ts or 0), position))
                count += 1
            advance(len(pushers))
            return count
        self._commit_stage(name, txn_fn)

    # -- end-to-end encryption -----------------------------------------------------

    def _local(self, user_id: Any) -> bool:
        return str(user_id).endswith(":" + self.server_name)

    def _stage_e2e_keys(self, name: str) -> None:
        """Device keys, one-time keys and fallback keys of our users' devices."""
        src = self.src
        device_keys = [r for r in src.rows(
            "SELECT user_id, device_id, key_json FROM e2e_device_keys_json") if self._local(r[0])]
        otks = [r for r in src.rows(
            "SELECT user_id, device_id, algorithm, key_id, key_json FROM e2e_one_time_keys_json")
            if self._local(r[0])]
        fallback = [r for r in src.rows(
            "SELECT user_id, device_id, algorithm, key_id, key_json, used"
            " FROM e2e_fallback_keys_json") if self._local(r[0])] \
            if src.has_table("e2e_fallback_keys_json") else []
        advance = self.progress.stage(name, len(device_keys) + len(otks) + len(fallback))

        def txn_fn(txn: Txn) -> int:
            users = set()
            for user_id, device_id, key_json in device_keys:
                rows.insert_device_keys_txn(txn, user_id, device_id, _dump(_json(key_json)))
                users.add(user_id)
            advance(len(device_keys))
            for part in _chunks(otks, 500):
                rows.insert_one_time_keys_txn(
                    txn, [(u, d, a, k, _dump(_json(j))) for u, d, a, k, j in part])
                advance(len(part))
            for user_id, device_id, alg, key_id, key_json, used in fallback:
                rows.insert_fallback_key_txn(txn, user_id, device_id, alg, key_id,
                                             _dump(_json(key_json)), bool(used))
            advance(len(fallback))
            for user_id in sorted(users):
                DeviceStore.mark_device_list_changed_txn(txn, user_id)
            return len(device_keys) + len(otks) + len(fallback)
        self._commit_stage(name, txn_fn)

    def _stage_cross_signing(self, name: str) -> None:
        """The newest cross-signing key of each type per user, and the signatures."""
        src = self.src
        keys: dict[tuple[str, str], dict[str, Any]] = {}
        for user_id, key_type, keydata in src.rows(
                "SELECT user_id, keytype, keydata FROM e2e_cross_signing_keys"
                " ORDER BY stream_id"):
            if self._local(user_id):
                keys[(str(user_id), str(key_type))] = _json(keydata)
        signatures = src.rows("SELECT user_id, key_id, target_user_id, target_device_id,"
                              " signature FROM e2e_cross_signing_signatures")
        advance = self.progress.stage(name, len(keys) + len(signatures))

        def txn_fn(txn: Txn) -> int:
            count = 0
            for (user_id, key_type), key in sorted(keys.items()):
                public = [v for v in (key.get("keys") or {}).values() if isinstance(v, str)]
                if len(public) != 1:
                    self.report.skipped.append(f"{key_type} key of {user_id}: not one key")
                    continue
                position = DeviceStore.mark_device_list_changed_txn(txn, user_id)
                CrossSigningStore.set_key_txn(txn, user_id, key_type, public[0], key, position)
                count += 1
            CrossSigningStore.add_signatures_txn(txn, [
                (str(a), str(b), str(c), str(d), str(e)) for a, b, c, d, e in signatures])
            advance(len(keys) + len(signatures))
            return count + len(signatures)
        self._commit_stage(name, txn_fn)

    def _stage_key_backups(self, name: str) -> None:
        """Server-side key backups (versions and their encrypted room keys)."""
        src = self.src
        etag = "etag" if src.has_column("e2e_room_keys_versions", "etag") else "0"
        versions = src.rows("SELECT user_id, version, algorithm, auth_data, deleted,"
                            f" {etag} FROM e2e_room_keys_versions")
        room_keys = src.rows("SELECT user_id, version, room_id, session_id,"
                             " first_message_index, forwarded_count, is_verified, session_data"
                             " FROM e2e_room_keys")
        advance = self.progress.stage(name, len(versions) + len(room_keys))

        def txn_fn(txn: Txn) -> int:
            for user_id, version, alg, auth_data, deleted, tag in versions:
                rows.insert_backup_version_txn(txn, user_id, int(version), alg,
                                               _dump(_json(auth_data)), int(tag or 0),
                                               int(deleted or 0))
            for part in _chunks(room_keys, 500):
                rows.insert_room_keys_txn(txn, [
                    (u, int(v), r, s, int(f or 0), int(c or 0), int(bool(iv)),
                     _dump(_json(d))) for u, v, r, s, f, c, iv, d in part])
            advance(len(versions) + len(room_keys))
            return len(versions) + len(room_keys)
        self._commit_stage(name, txn_fn)

    # -- rooms -------------------------------------------------------------------

    def _stage_rooms(self) -> None:
        RoomImporter(self.src, self.dbx, self.stores, self.progress, self.report,
                     self.done, self.events_per_transaction).run()

    # -- after the rooms -------------------------------------------------------------

    def _stage_aliases(self, name: str) -> None:
        aliases = self.src.rows("SELECT room_alias, room_id, creator FROM room_aliases")
        advance = self.progress.stage(name, len(aliases))

        def txn_fn(txn: Txn) -> int:
            nids = rows.room_nids_txn(txn)
            count = 0
            for alias, room_id, creator in aliases:
                if room_id not in nids:
                    self.report.skipped.append(f"alias {alias}: its room {room_id} was not"
                                               " imported")
                    continue
                rows.insert_alias_txn(txn, alias, nids[room_id], creator or "", _now_ms())
                count += 1
            advance(len(aliases))
            return count
        self._commit_stage(name, txn_fn)

    def _stage_directory(self, name: str) -> None:
        public = [str(r[0]) for r in self.src.rows("SELECT room_id FROM rooms WHERE is_public")]
        advance = self.progress.stage(name, len(public))

        def txn_fn(txn: Txn) -> int:
            nids = rows.room_nids_txn(txn)
            for room_id in public:
                if room_id in nids:
                    rows.publish_room_txn(txn, nids[room_id], _now_ms())
            advance(len(public))
            return len(public)
        self._commit_stage(name, txn_fn)

    def _stage_receipts(self, name: str) -> None:
        receipts = self.src.rows("SELECT room_id, receipt_type, user_id, event_id, thread_id,"
                                 " data FROM receipts_linearized ORDER BY stream_id")
        advance = self.progress.stage(name, len(receipts))

        def txn_fn(txn: Txn) -> int:
            for room_id, rtype, user_id, event_id, thread_id, data in receipts:
                ReceiptStore.upsert_receipt_txn(txn, room_id, user_id, rtype, thread_id,
                                                event_id, _json(data) or {})
            advance(len(receipts))
            return len(receipts)
        self._commit_stage(name, txn_fn)

    def _stage_media(self, name: str) -> None:
        """Local media: its rows, and its files copied into our media store
        (same paths: both keep ``local_content/ab/cd/rest``). Remote media
        and thumbnails are left: they are fetched or made again on demand."""
        url_cache = "url_cache IS NULL" if self.src.has_column(
            "local_media_repository", "url_cache") else "1 = 1"
        media = self.src.rows(
            "SELECT media_id, user_id, created_ts, media_type, media_length, upload_name,"
            f" authenticated, quarantined_by FROM local_media_repository WHERE {url_cache}")
        advance = self.progress.stage(name, len(media))
        src_dir = self.syn_config.media_store_path
        dest_dir = os.path.join(self.config.config_dir,
                                self.config.media_store_path or "media_store")
        todo: list[tuple[Any, ...]] = []
        for media_id, user_id, created, mtype, length, upload_name, auth, quarantined in media:
            rel = os.path.join("local_content", media_id[0:2], media_id[2:4], media_id[4:])
            source = os.path.join(src_dir, rel)
            if quarantined or not os.path.exists(source):
                self.report.skipped.append(
                    f"media {media_id}: " + ("quarantined" if quarantined else "no file"))
                advance(1)
                continue
            target = os.path.join(dest_dir, rel)
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            # copy, not move: Synapse's store stays as it was (a way back)
            shutil.copyfile(source, target)
            os.chmod(target, 0o600)
            todo.append((media_id, user_id, int(created or 0), int(created or 0), mtype,
                         int(length or os.path.getsize(source)), upload_name,
                         int(bool(auth))))
            advance(1)

        def txn_fn(txn: Txn) -> int:
            for row in todo:
                rows.insert_local_media_txn(txn, row)
            return len(todo)
        self._commit_stage(name, txn_fn)

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
            pdu = _json(text)
            pdu.pop("unsigned", None)
            held = self.dbx.run_txn_blocking(
                "import_check_event", lambda txn, e=event_id: txn.select_value(
                    "SELECT json FROM events WHERE event_id = ?", (e,)))
            if held is None:
                problems.append(f"event {event_id}: missing")
                continue
            mine = _json(held)
            mine.pop("unsigned", None)
            if mine.get("content") != pdu.get("content") or \
                    mine.get("hashes") != pdu.get("hashes"):
                problems.append(f"event {event_id}: content differs")
        return problems

