"""Access and refresh tokens, stored only as SHA-256 hashes."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class AccessTokenInfo:
    token_id: int
    user_id: str
    device_id: str | None
    valid_until_ms: int | None
    refresh_token_id: int | None
    used: bool
    is_guest: bool


@dataclass(frozen=True)
class RefreshTokenInfo:
    token_id: int
    user_id: str
    device_id: str
    expiry_ts: int | None
    ultimate_session_expiry_ts: int | None
    next_token_id: int | None
    has_next_access_token_been_used: bool
    # the successor was itself exchanged: this token's line has moved on
    has_next_refresh_token_been_refreshed: bool = False


# access tokens kept in memory (each is a few hundred bytes)
ACCESS_TOKEN_CACHE_SIZE = 50_000


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # token hash -> its row; cleared (and the generation bumped) once a
        # transaction that deletes or changes tokens has committed, so a
        # logged-out token stops working as soon as the logout is answered
        self._cache: dict[str, AccessTokenInfo] = {}
        self._generation = 0

    def tokens_changed(self) -> None:
        """An access token was deleted or changed: forget every cached one
        (on the write hub's tokens hook, HomeServer._subscribe_after_write)."""
        self._generation += 1
        self._cache.clear()

    async def get_access_token(self, token_hash: str) -> AccessTokenInfo | None:
        """The token's row, from the cache when it was read since the last
        change to any token (every request looks its token up)."""
        cached = self._cache.get(token_hash)
        if cached is not None:
            return cached
        generation = self._generation
        info = await self._read_access_token(token_hash)
        if info is not None and generation == self._generation:
            if len(self._cache) >= ACCESS_TOKEN_CACHE_SIZE:
                self._cache.clear()
            self._cache[token_hash] = info
        return info

    async def _read_access_token(self, token_hash: str) -> AccessTokenInfo | None:
        def txn_fn(txn: Txn) -> AccessTokenInfo | None:
            row = txn.select_one(
                "SELECT t.id, t.user_id, t.device_id, t.valid_until_ms, t.refresh_token_id,"
                " t.used, u.is_guest FROM access_tokens t JOIN users u ON u.user_id = t.user_id"
                " WHERE t.token_hash = ?", (token_hash,))
            if row is None:
                return None
            return AccessTokenInfo(row[0], row[1], row[2], row[3], row[4], bool(row[5]),
                                   bool(row[6]))
        return await self.db.run_interaction("get_access_token", txn_fn)

    @staticmethod
    def add_access_token_txn(txn: Txn, token_hash: str, user_id: str, device_id: str | None,
                             valid_until_ms: int | None, refresh_token_id: int | None,
                             now_ms: int) -> None:
        txn.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, valid_until_ms,"
            " refresh_token_id, used, created_ts) VALUES (?, ?, ?, ?, ?, 0, ?)",
            (token_hash, user_id, device_id, valid_until_ms, refresh_token_id, now_ms))

    @staticmethod
    def add_refresh_token_txn(txn: Txn, token_hash: str, user_id: str, device_id: str,
                              expiry_ts: int | None, ultimate_session_expiry_ts: int | None,
                              now_ms: int) -> int:
        txn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, expiry_ts,"
            " ultimate_session_expiry_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?)",
            (token_hash, user_id, device_id, expiry_ts, ultimate_session_expiry_ts, now_ms))
        return int(txn.select_value("SELECT id FROM refresh_tokens WHERE token_hash = ?",
                                    (token_hash,)))

    async def add_access_token(self, token_hash: str, user_id: str, device_id: str | None,
                               valid_until_ms: int | None, now_ms: int) -> None:
        await self.db.run_interaction("add_access_token", self.add_access_token_txn, token_hash,
                                      user_id, device_id, valid_until_ms, None, now_ms)

    async def mark_access_token_used(self, token_id: int, refresh_token_id: int) -> None:
        """The new pair is in use: the refresh token that produced it can go."""
        def txn_fn(txn: Txn) -> None:
            txn.note_tokens_changed()
            txn.execute("UPDATE access_tokens SET used = 1 WHERE id = ?", (token_id,))
            txn.execute("DELETE FROM access_tokens WHERE refresh_token_id IN"
                        " (SELECT id FROM refresh_tokens WHERE next_token_id = ?)",
                        (refresh_token_id,))
            txn.execute("DELETE FROM refresh_tokens WHERE next_token_id = ?",
                        (refresh_token_id,))
        await self.db.run_interaction("mark_access_token_used", txn_fn)

    @staticmethod
    def get_refresh_token_txn(txn: Txn, token_hash: str) -> RefreshTokenInfo | None:
        row = txn.select_one(
            "SELECT r.id, r.user_id, r.device_id, r.expiry_ts, r.ultimate_session_expiry_ts,"
            " r.next_token_id, (SELECT MAX(a.used) FROM access_tokens a"
            "   WHERE a.refresh_token_id = r.next_token_id),"
            " (SELECT n.next_token_id FROM refresh_tokens n WHERE n.id = r.next_token_id)"
            " FROM refresh_tokens r WHERE r.token_hash = ?", (token_hash,))
        if row is None:
            return None
        return RefreshTokenInfo(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]),
                                row[7] is not None)

    @staticmethod
    def replace_refresh_token_txn(txn: Txn, old_id: int, new_id: int) -> None:
        """Make ``new_id`` the successor of ``old_id``.

        A successor the old token already had (the client never received that
        response and refreshed again) is deleted with its access tokens.
        """
        previous = txn.select_value("SELECT next_token_id FROM refresh_tokens WHERE id = ?",
                                    (old_id,))
        if previous is not None:
            txn.note_tokens_changed()
            txn.execute("DELETE FROM access_tokens WHERE refresh_token_id = ?", (previous,))
            txn.execute("DELETE FROM refresh_tokens WHERE id = ?", (previous,))
        txn.execute("UPDATE refresh_tokens SET next_token_id = ? WHERE id = ?",
                    (new_id, old_id))

    async def delete_access_token(self, token_id: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.note_tokens_changed()
            txn.execute("DELETE FROM access_tokens WHERE id = ?", (token_id,))
        await self.db.run_interaction("delete_access_token", txn_fn)

    @staticmethod
    def delete_tokens_for_device_txn(txn: Txn, user_id: str, device_id: str) -> None:
        txn.note_tokens_changed()
        txn.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id))
        txn.execute("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id))

    @staticmethod
    def delete_all_tokens_txn(txn: Txn, user_id: str, except_device_id: str | None = None) -> None:
        txn.note_tokens_changed()
        if except_device_id is None:
            txn.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
        else:
            txn.execute("DELETE FROM access_tokens WHERE user_id = ? AND"
                        " (device_id IS NULL OR device_id <> ?)", (user_id, except_device_id))
            txn.execute("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id <> ?",
                        (user_id, except_device_id))
