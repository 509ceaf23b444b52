"""The rows `homeserver import-synapse` writes that no other store writes the
same way (docs/migrating-from-synapse.md; the reading side is
``homeserver/synapse_import``).

Where a store already has the write (an account, a device, a token, account
data, a receipt, a timeline event with its state), the import calls it; this
module holds the import's bookkeeping (``synapse_import_stages``), the
freshness check, and the bulk rows of tables whose Synapse shape maps one to
one onto ours.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Txn

# Tables that hold what a server has once anyone used it: a target database
# with a row in any of them is not fresh.
_DATA_TABLES = ("users", "rooms", "events", "local_media", "room_aliases")


# The import's own bookkeeping: which stages (and rooms, "room:<room_id>")
# have committed, each written in the transaction of its stage. Made by the
# import rather than by a migration: the server never reads it, and a
# database that was never an import target never has it.
_STAGES_TABLE = (
    "CREATE TABLE IF NOT EXISTS synapse_import_stages ("
    " stage TEXT NOT NULL PRIMARY KEY,"
    " item_count BIGINT NOT NULL,"
    " completed_ts BIGINT NOT NULL)")


# what a stage left out, and why: shown again when a rerun skips the stage
_NOTES_TABLE = (
    "CREATE TABLE IF NOT EXISTS synapse_import_notes ("
    " stage TEXT NOT NULL,"
    " note TEXT NOT NULL)")


def ensure_stages_table_txn(txn: Txn) -> None:
    txn.execute(_STAGES_TABLE)
    txn.execute(_NOTES_TABLE)


def add_notes_txn(txn: Txn, stage: str, notes: list[str]) -> None:
    txn.execute_many("INSERT INTO synapse_import_notes (stage, note) VALUES (?, ?)",
                     [(stage, n) for n in notes])


def notes_txn(txn: Txn) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for stage, note in txn.select_all("SELECT stage, note FROM synapse_import_notes"):
        out.setdefault(str(stage), []).append(str(note))
    return out


def done_stages_txn(txn: Txn) -> dict[str, int]:
    return {str(s): int(c) for s, c in txn.select_all(
        "SELECT stage, item_count FROM synapse_import_stages")}


def mark_done_txn(txn: Txn, stage: str, count: int, now_ms: int) -> None:
    txn.execute("INSERT INTO synapse_import_stages (stage, item_count, completed_ts)"
                " VALUES (?, ?, ?)", (stage, count, now_ms))


def set_progress_txn(txn: Txn, stage: str, count: int, now_ms: int) -> None:
    """How far a stage that commits in parts has got (a room's events)."""
    txn.execute("INSERT INTO synapse_import_stages (stage, item_count, completed_ts)"
                " VALUES (?, ?, ?) ON CONFLICT (stage) DO UPDATE SET"
                " item_count = excluded.item_count, completed_ts = excluded.completed_ts",
                (stage, count, now_ms))


def clear_progress_txn(txn: Txn, stage: str) -> None:
    txn.execute("DELETE FROM synapse_import_stages WHERE stage = ?", (stage,))


def non_empty_tables_txn(txn: Txn) -> list[str]:
    """The data tables that hold rows (a fresh database has none)."""
    return [t for t in _DATA_TABLES
            # t is one of the constants above
            if txn.select_one(f"SELECT 1 FROM {t} LIMIT 1") is not None]


def table_counts_txn(txn: Txn, tables: list[str]) -> dict[str, int]:
    return {t: int(txn.select_value(f"SELECT COUNT(*) FROM {t}")) for t in tables}


def room_heads_txn(txn: Txn) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per room ID: the event IDs of its current state, and of its forward
    extremities (the import's check compares them with Synapse's)."""
    state: dict[str, set[str]] = {}
    for room_id, event_id in txn.select_all(
            "SELECT r.room_id, e.event_id FROM current_state cs"
            " JOIN rooms r ON r.room_nid = cs.room_nid"
            " JOIN events e ON e.event_nid = cs.event_nid"):
        state.setdefault(str(room_id), set()).add(str(event_id))
    extremities: dict[str, set[str]] = {}
    for room_id, event_id in txn.select_all(
            "SELECT r.room_id, e.event_id FROM forward_extremities fx"
            " JOIN rooms r ON r.room_nid = fx.room_nid"
            " JOIN events e ON e.event_nid = fx.event_nid"):
        extremities.setdefault(str(room_id), set()).add(str(event_id))
    return state, extremities


def insert_user_txn(txn: Txn, user_id: str, password_hash: str | None, creation_ts: int,
                    admin: bool, is_guest: bool, deactivated: bool,
                    user_type: str | None) -> None:
    txn.execute(
        "INSERT INTO users (user_id, password_hash, creation_ts, admin, is_guest,"
        " deactivated, user_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, password_hash, creation_ts, int(admin), int(is_guest), int(deactivated),
         user_type))


def upsert_profile_txn(txn: Txn, user_id: str, displayname: str | None,
                       avatar_url: str | None) -> None:
    txn.execute("INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname,"
                " avatar_url = excluded.avatar_url", (user_id, displayname, avatar_url))


def insert_device_txn(txn: Txn, user_id: str, device_id: str, display_name: str | None,
                      last_seen_ts: int | None, ip: str | None, user_agent: str | None) -> None:
    txn.execute(
        "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip,"
        " last_seen_user_agent) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id, device_id) DO NOTHING",
        (user_id, device_id, display_name, last_seen_ts, ip, user_agent))


def insert_refresh_token_txn(txn: Txn, token_hash: str, user_id: str, device_id: str,
                             expiry_ts: int | None, ultimate_ts: int | None,
                             now_ms: int) -> int:
    return int(txn.select_value(
        "INSERT INTO refresh_tokens (token_hash, user_id, device_id, expiry_ts,"
        " ultimate_session_expiry_ts, next_token_id, created_ts)"
        " VALUES (?, ?, ?, ?, ?, NULL, ?) RETURNING id",
        (token_hash, user_id, device_id, expiry_ts, ultimate_ts, now_ms)))


def set_next_refresh_token_txn(txn: Txn, token_id: int, next_id: int) -> None:
    txn.execute("UPDATE refresh_tokens SET next_token_id = ? WHERE id = ?", (next_id, token_id))


def insert_access_token_txn(txn: Txn, token_hash: str, user_id: str, device_id: str | None,
                            valid_until_ms: int | None, refresh_token_id: int | None,
                            used: bool, created_ts: int) -> None:
    txn.execute(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, valid_until_ms,"
        " refresh_token_id, used, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (token_hash) DO NOTHING",
        (token_hash, user_id, device_id, valid_until_ms, refresh_token_id, int(used),
         created_ts))


def insert_alias_txn(txn: Txn, alias: str, room_nid: int, creator: str, now_ms: int) -> None:
    txn.execute("INSERT INTO room_aliases (room_alias, room_nid, creator, created_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (room_alias) DO NOTHING",
                (alias, room_nid, creator, now_ms))


def publish_room_txn(txn: Txn, room_nid: int, now_ms: int) -> None:
    txn.execute("INSERT INTO room_directory (room_nid, published_ts) VALUES (?, ?)"
                " ON CONFLICT (room_nid) DO NOTHING", (room_nid, now_ms))


def room_nids_txn(txn: Txn) -> dict[str, int]:
    return {str(r): int(n) for r, n in txn.select_all("SELECT room_id, room_nid FROM rooms")}


def insert_local_media_txn(txn: Txn, row: tuple[Any, ...]) -> None:
    """``row``: media_id, user_id, created_ts, uploaded_ts, media_type,
    media_length, upload_name, authenticated."""
    txn.execute(
        "INSERT INTO local_media (media_id, user_id, created_ts, expires_ts, uploaded_ts,"
        " media_type, media_length, upload_name, authenticated)"
        " VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?) ON CONFLICT (media_id) DO NOTHING", row)


def insert_registration_token_txn(txn: Txn, token: str, uses_allowed: int | None,
                                  pending: int, completed: int,
                                  expiry_time: int | None) -> None:
    txn.execute("INSERT INTO registration_tokens (token, uses_allowed, pending, completed,"
                " expiry_time) VALUES (?, ?, ?, ?, ?) ON CONFLICT (token) DO NOTHING",
                (token, uses_allowed, pending, completed, expiry_time))


def insert_push_rule_txn(txn: Txn, user_id: str, kind: str, rule_id: str, priority: int,
                         conditions: Any, pattern: str | None, actions: Any) -> None:
    txn.execute(
        "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern,"
        " actions, enabled) VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
        " ON CONFLICT (user_id, kind, rule_id) DO NOTHING",
        (user_id, kind, rule_id, priority, json.dumps(conditions), pattern,
         json.dumps(actions)))


def enable_push_rule_txn(txn: Txn, user_id: str, kind: str, rule_id: str,
                         enabled: bool) -> None:
    txn.execute("UPDATE push_rules SET enabled = ? WHERE user_id = ? AND kind = ?"
                " AND rule_id = ?", (int(enabled), user_id, kind, rule_id))


def set_default_rule_txn(txn: Txn, user_id: str, kind: str, rule_id: str,
                         enabled: bool | None, actions: Any) -> None:
    """What the user changed of a server-default rule (None: unchanged)."""
    txn.execute(
        "INSERT INTO push_rules_defaults (user_id, kind, rule_id, enabled, actions)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
        " enabled = COALESCE(excluded.enabled, push_rules_defaults.enabled),"
        " actions = COALESCE(excluded.actions, push_rules_defaults.actions)",
        (user_id, kind, rule_id, None if enabled is None else int(enabled),
         None if actions is None else json.dumps(actions)))


def insert_pusher_txn(txn: Txn, row: tuple[Any, ...]) -> None:
    """``row``: user_id, device_id, kind, app_id, pushkey, app_display_name,
    device_display_name, profile_tag, lang, data (JSON text), pushkey_ts,
    last_stream_ordering."""
    txn.execute(
        "INSERT INTO pushers (user_id, device_id, kind, app_id, pushkey, app_display_name,"
        " device_display_name, profile_tag, lang, data, pushkey_ts, last_stream_ordering,"
        " failing_since_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
        " ON CONFLICT (user_id, app_id, pushkey) DO NOTHING", row)


def insert_device_keys_txn(txn: Txn, user_id: str, device_id: str, key_json: str) -> None:
    txn.execute("INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO NOTHING", (user_id, device_id, key_json))


def insert_one_time_keys_txn(txn: Txn, keys: list[tuple[str, str, str, str, str]]) -> None:
    txn.execute_many(
        "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, algorithm, key_id)"
        " DO NOTHING", keys)


def insert_fallback_key_txn(txn: Txn, user_id: str, device_id: str, algorithm: str,
                            key_id: str, key_json: str, used: bool) -> None:
    txn.execute("INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id,"
                " key_json, used) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id, algorithm) DO NOTHING",
                (user_id, device_id, algorithm, key_id, key_json, int(used)))


def insert_backup_version_txn(txn: Txn, user_id: str, version: int, algorithm: str,
                              auth_data: str, etag: int, deleted: int) -> None:
    txn.execute("INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data,"
                " etag, deleted) VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, version, algorithm, auth_data, etag, deleted))


def insert_room_keys_txn(txn: Txn, keys: list[tuple[Any, ...]]) -> None:
    """``keys``: user_id, version, room_id, session_id, first_message_index,
    forwarded_count, is_verified, session_data."""
    txn.execute_many(
        "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id,"
        " first_message_index, forwarded_count, is_verified, session_data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", keys)


def block_room_txn(txn: Txn, room_id: str, user_id: str, now_ms: int) -> None:
    txn.execute("INSERT INTO blocked_rooms (room_id, user_id, created_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (room_id) DO NOTHING", (room_id, user_id, now_ms))


def insert_threepid_txn(txn: Txn, user_id: str, medium: str, address: str,
                        validated_at: int, added_at: int) -> None:
    txn.execute("INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (medium, address) DO NOTHING",
                (medium, address, user_id, validated_at, added_at))


def insert_threepid_id_server_txn(txn: Txn, user_id: str, medium: str, address: str,
                                  id_server: str) -> None:
    txn.execute("INSERT INTO user_threepid_id_server (user_id, medium, address, id_server)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (user_id, medium, address, id_server))
