"""The end-to-end encryption stages of `homeserver import-synapse`: device,
one-time and fallback keys, cross-signing keys and signatures, key backups."""

from __future__ import annotations

from typing import Any

from homeserver.storage import synapse_import as rows
from homeserver.storage.cross_signing import CrossSigningStore
from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.synapse_import.common import StageContext, chunks, dump_json, load_json


def e2e_keys(ctx: StageContext, name: str) -> None:
    """Device keys, one-time keys and fallback keys of our users' devices."""
    src = ctx.src
    device_keys = [r for r in src.rows(
        "SELECT user_id, device_id, key_json FROM e2e_device_keys_json") if ctx.local(r[0])]
    otks = [r for r in src.rows(
        "SELECT user_id, device_id, algorithm, key_id, key_json FROM e2e_one_time_keys_json")
        if ctx.local(r[0])]
    fallback = [r for r in src.rows(
        "SELECT user_id, device_id, algorithm, key_id, key_json, used"
        " FROM e2e_fallback_keys_json") if ctx.local(r[0])] \
        if src.has_table("e2e_fallback_keys_json") else []
    advance = ctx.progress.stage(name, len(device_keys) + len(otks) + len(fallback))

    def txn_fn(txn: Txn) -> int:
        users = set()
        for user_id, device_id, key_json in device_keys:
            rows.insert_device_keys_txn(txn, user_id, device_id, dump_json(load_json(key_json)))
            users.add(user_id)
        advance(len(device_keys))
        for part in chunks(otks, 500):
            rows.insert_one_time_keys_txn(
                txn, [(u, d, a, k, dump_json(load_json(j))) for u, d, a, k, j in part])
            advance(len(part))
        for user_id, device_id, alg, key_id, key_json, used in fallback:
            rows.insert_fallback_key_txn(txn, user_id, device_id, alg, key_id,
                                         dump_json(load_json(key_json)), bool(used))
        advance(len(fallback))
        for user_id in sorted(users):
            DeviceStore.mark_device_list_changed_txn(txn, user_id)
        return len(device_keys) + len(otks) + len(fallback)
    ctx.commit(name, txn_fn)


def cross_signing(ctx: StageContext, name: str) -> None:
    """The newest cross-signing key of each type per user, and the signatures."""
    src = ctx.src
    keys: dict[tuple[str, str], dict[str, Any]] = {}
    for user_id, key_type, keydata in src.rows(
            "SELECT user_id, keytype, keydata FROM e2e_cross_signing_keys"
            " ORDER BY stream_id"):
        if ctx.local(user_id):
            keys[(str(user_id), str(key_type))] = load_json(keydata)
    signatures = src.rows("SELECT user_id, key_id, target_user_id, target_device_id,"
                          " signature FROM e2e_cross_signing_signatures")
    advance = ctx.progress.stage(name, len(keys) + len(signatures))

    def txn_fn(txn: Txn) -> int:
        count = 0
        for (user_id, key_type), key in sorted(keys.items()):
            public = [v for v in (key.get("keys") or {}).values() if isinstance(v, str)]
            if len(public) != 1:
                ctx.report.skipped.append(f"{key_type} key of {user_id}: not one key")
                continue
            position = DeviceStore.mark_device_list_changed_txn(txn, user_id)
            CrossSigningStore.set_key_txn(txn, user_id, key_type, public[0], key, position)
            count += 1
        CrossSigningStore.add_signatures_txn(txn, [
            (str(a), str(b), str(c), str(d), str(e)) for a, b, c, d, e in signatures])
        advance(len(keys) + len(signatures))
        return count + len(signatures)
    ctx.commit(name, txn_fn)


def key_backups(ctx: StageContext, name: str) -> None:
    """Server-side key backups (versions and their encrypted room keys)."""
    src = ctx.src
    etag = "etag" if src.has_column("e2e_room_keys_versions", "etag") else "0"
    versions = src.rows("SELECT user_id, version, algorithm, auth_data, deleted,"
                        f" {etag} FROM e2e_room_keys_versions")
    room_keys = src.rows("SELECT user_id, version, room_id, session_id,"
                         " first_message_index, forwarded_count, is_verified, session_data"
                         " FROM e2e_room_keys")
    advance = ctx.progress.stage(name, len(versions) + len(room_keys))

    def txn_fn(txn: Txn) -> int:
        for user_id, version, alg, auth_data, deleted, tag in versions:
            rows.insert_backup_version_txn(txn, user_id, int(version), alg,
                                           dump_json(load_json(auth_data)), int(tag or 0),
                                           int(deleted or 0))
        for part in chunks(room_keys, 500):
            rows.insert_room_keys_txn(txn, [
                (u, int(v), r, s, int(f or 0), int(c or 0), int(bool(iv)),
                 dump_json(load_json(d))) for u, v, r, s, f, c, iv, d in part])
        advance(len(versions) + len(room_keys))
        return len(versions) + len(room_keys)
    ctx.commit(name, txn_fn)
