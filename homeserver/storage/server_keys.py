"""Other servers' verify keys, as fetched from them or through notaries.

A row per (server name, key ID): the public key (unpadded base64), how long
it counts (``valid_until_ts`` of the response for a current key, the
``expired_ts`` of an old one), when we fetched it, and the whole signed key
response it came in, which we serve again when another server uses us as a
notary. A response lists several keys, so several rows share one
``key_json``.

A newer answer replaces a row only if it is valid at least as long as the
one we hold: a notary's stale cached copy must not shorten a key we fetched
from its owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class StoredKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int
    fetched_ts: int
    key_json: str


_COLUMNS = "server_name, key_id, verify_key, valid_until_ts, fetched_ts, key_json"

_UPSERT = (
    "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts, fetched_ts,"
    " key_json) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,"
    " valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts,"
    " key_json = excluded.key_json"
    " WHERE server_keys.valid_until_ts <= excluded.valid_until_ts")


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_keys(self, server_name: str,
                       key_ids: Sequence[str] | None = None) -> list[StoredKey]:
        """The stored keys of ``server_name`` (only ``key_ids`` when given)."""
        if key_ids is not None and not key_ids:
            return []
        if key_ids is None:
            rows = await self.db.execute(
                "get_server_keys",
                f"SELECT {_COLUMNS} FROM server_keys WHERE server_name = ?", (server_name,))
        else:
            marks = ", ".join("?" for _ in key_ids)
            rows = await self.db.execute(
                "get_server_keys",
                f"SELECT {_COLUMNS} FROM server_keys WHERE server_name = ?"
                f" AND key_id IN ({marks})", (server_name, *key_ids))
        return [StoredKey(*row) for row in rows]

    @staticmethod
    def _store_keys_txn(txn: Txn, rows: list[tuple[str, str, str, int, int, str]]) -> None:
        txn.execute_many(_UPSERT, rows)

    async def store_keys(self, keys: Iterable[StoredKey]) -> None:
        """Insert or refresh keys (a row valid for longer is kept)."""
        rows = [(k.server_name, k.key_id, k.verify_key, k.valid_until_ts, k.fetched_ts,
                 k.key_json) for k in keys]
        if rows:
            await self.db.run_interaction("store_server_keys", self._store_keys_txn, rows)
