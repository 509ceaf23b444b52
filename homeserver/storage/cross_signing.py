"""Cross-signing keys and the signatures users upload for each other's keys.

``e2e_cross_signing_keys`` holds each user's current master, self-signing and
user-signing key as the JSON object it was uploaded as (with the signatures it
came with). ``e2e_cross_signing_signatures`` holds the signatures uploaded
later through /keys/signatures/upload, one row per (signer key, target key):
they are merged into the target key object when it is served, so a re-upload
of device keys or a new signature never rewrites someone else's JSON.

A target is addressed as (user ID, "device ID"), where the device ID of a
cross-signing key is its public key, as in Synapse and in the spec's
signatures/upload body.

Every key change takes a position on the global stream (the row's
``stream_id``); the caller marks the user's device list changed in the same
transaction so /sync and /keys/changes report it.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database, Txn

KEY_TYPES = ("master", "self_signing", "user_signing")

# (signer user ID, signer key ID, target user ID, target device ID, signature)
SignatureRow = tuple[str, str, str, str, str]


class CrossSigningStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def set_key_txn(txn: Txn, user_id: str, key_type: str, public_key: str,
                    key: dict[str, Any], stream_id: int) -> None:
        """Store (or replace) one of ``user_id``'s cross-signing keys."""
        txn.execute(
            "INSERT INTO e2e_cross_signing_keys"
            " (user_id, key_type, public_key, key_json, stream_id) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = excluded.public_key,"
            " key_json = excluded.key_json, stream_id = excluded.stream_id",
            (user_id, key_type, public_key, json.dumps(key), stream_id))

    @staticmethod
    def get_keys_txn(txn: Txn, user_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """user ID -> key type -> key object (as stored, without the
        separately uploaded signatures)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        if not user_ids:
            return out
        marks = ", ".join("?" for _ in user_ids)
        rows = txn.select_all(
            f"SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys"
            f" WHERE user_id IN ({marks})", list(user_ids))
        for user_id, key_type, key_json in rows:
            out.setdefault(user_id, {})[key_type] = json.loads(key_json)
        return out

    async def get_keys(self, user_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        return await self.db.run_interaction("get_cross_signing_keys", self.get_keys_txn,
                                             list(user_ids))

    async def get_user_keys(self, user_id: str) -> dict[str, dict[str, Any]]:
        return (await self.get_keys([user_id])).get(user_id, {})

    @staticmethod
    def add_signatures_txn(txn: Txn, rows: list[SignatureRow]) -> None:
        """Store signatures; a newer signature by the same key replaces the old."""
        for signer, key_id, target_user, target_device, signature in rows:
            txn.execute(
                "INSERT INTO e2e_cross_signing_signatures"
                " (user_id, key_id, target_user_id, target_device_id, signature)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (target_user_id, target_device_id, user_id, key_id)"
                " DO UPDATE SET signature = excluded.signature",
                (signer, key_id, target_user, target_device, signature))

    @staticmethod
    def get_signatures_txn(txn: Txn, target_user_ids: list[str]) -> list[SignatureRow]:
        """Every stored signature of any key of ``target_user_ids``."""
        if not target_user_ids:
            return []
        marks = ", ".join("?" for _ in target_user_ids)
        rows = txn.select_all(
            f"SELECT user_id, key_id, target_user_id, target_device_id, signature"
            f" FROM e2e_cross_signing_signatures WHERE target_user_id IN ({marks})",
            list(target_user_ids))
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def get_signatures(self, target_user_ids: list[str]) -> list[SignatureRow]:
        return await self.db.run_interaction("get_cross_signing_signatures",
                                             self.get_signatures_txn, list(target_user_ids))

    @staticmethod
    def delete_signatures_of_key_txn(txn: Txn, target_user_id: str,
                                     target_device_id: str) -> None:
        """Forget the signatures of a key that was replaced."""
        txn.execute("DELETE FROM e2e_cross_signing_signatures"
                    " WHERE target_user_id = ? AND target_device_id = ?",
                    (target_user_id, target_device_id))

    @staticmethod
    def get_device_keys_txn(txn: Txn, user_id: str,
                            device_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The device keys (as uploaded, table of storage/e2e_keys.py) of
        existing devices of a local user: device ID -> key object. Read here
        so that signature checks need no more than this store."""
        if not device_ids:
            return {}
        marks = ", ".join("?" for _ in device_ids)
        rows = txn.select_all(
            f"SELECT k.device_id, k.key_json FROM e2e_device_keys k"
            f" JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
            f" WHERE k.user_id = ? AND k.device_id IN ({marks})",
            [user_id, *device_ids])
        return {device_id: json.loads(key_json) for device_id, key_json in rows}

    async def get_device_keys(self, user_id: str,
                              device_ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self.db.run_interaction("get_device_keys_for_signing",
                                             self.get_device_keys_txn, user_id,
                                             list(device_ids))
