"""The media repository's tables (migration 0016): what each stored file is.

``local_media`` holds media uploaded here, including media IDs reserved by
``/_matrix/media/v1/create`` and not uploaded yet (``uploaded_ts`` NULL, void
after ``expires_ts``); ``remote_media`` the media of other servers cached
here; ``media_thumbnails`` the thumbnails made of either (origin ``''`` for
local media). The bytes themselves live in a storage provider
(``media/storage_providers.py``), never in the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True)
class LocalMedia:
    media_id: str
    user_id: str
    created_ts: int
    expires_ts: int | None
    uploaded_ts: int | None
    media_type: str | None
    media_length: int | None
    upload_name: str | None
    authenticated: bool
    # the admin who quarantined it (migration 0036): never served while set
    quarantined_by: str | None = None


@dataclass(frozen=True)
class RemoteMedia:
    origin: str
    media_id: str
    created_ts: int
    media_type: str
    media_length: int
    upload_name: str | None
    file_id: str
    authenticated: bool
    quarantined_by: str | None = None


@dataclass(frozen=True)
class Thumbnail:
    width: int
    height: int
    method: str
    media_type: str
    media_length: int


_LOCAL_COLUMNS = ("media_id, user_id, created_ts, expires_ts, uploaded_ts, media_type,"
                  " media_length, upload_name, authenticated")


def _local(row: tuple[object, ...]) -> LocalMedia:
    return LocalMedia(str(row[0]), str(row[1]), int(row[2]),  # type: ignore[call-overload]
                      row[3], row[4], row[5], row[6], row[7],  # type: ignore[arg-type]
                      bool(row[8]), row[9])  # type: ignore[arg-type]


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- local media --

    async def store_local_media(self, media: LocalMedia) -> None:
        """Record a finished upload (POST /upload: reserved and uploaded at once)."""
        await self.db.execute(
            "store_local_media",
            f"INSERT INTO local_media ({_LOCAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (media.media_id, media.user_id, media.created_ts, media.expires_ts,
             media.uploaded_ts, media.media_type, media.media_length, media.upload_name,
             int(media.authenticated)))

    async def reserve_local_media(self, media_id: str, user_id: str, now_ms: int,
                                  expires_ts: int, max_pending: int) -> bool:
        """Reserve ``media_id`` for a later upload; False when the user already
        holds ``max_pending`` unexpired reservations."""
        def txn_fn(txn: Txn) -> bool:
            # expired reservations are void: drop them while we are here
            txn.execute("DELETE FROM local_media WHERE uploaded_ts IS NULL AND expires_ts <= ?",
                        (now_ms,))
            pending = txn.select_value(
                "SELECT COUNT(*) FROM local_media WHERE user_id = ? AND uploaded_ts IS NULL",
                (user_id,))
            if int(pending) >= max_pending:
                return False
            txn.execute(f"INSERT INTO local_media ({_LOCAL_COLUMNS})"
                        " VALUES (?, ?, ?, ?, NULL, NULL, NULL, NULL, 0)",
                        (media_id, user_id, now_ms, expires_ts))
            return True
        return await self.db.run_interaction("reserve_local_media", txn_fn)

    async def complete_local_media(self, media_id: str, uploaded_ts: int, media_type: str,
                                   media_length: int, upload_name: str | None,
                                   authenticated: bool) -> bool:
        """Fill in a reserved media ID; False if it was uploaded meanwhile."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE local_media SET uploaded_ts = ?, media_type = ?,"
                        " media_length = ?, upload_name = ?, authenticated = ?, expires_ts = NULL"
                        " WHERE media_id = ? AND uploaded_ts IS NULL",
                        (uploaded_ts, media_type, media_length, upload_name,
                         int(authenticated), media_id))
            return txn.rowcount == 1
        return await self.db.run_interaction("complete_local_media", txn_fn)

    async def get_local_media(self, media_id: str) -> LocalMedia | None:
        rows = await self.db.execute(
            "get_local_media",
            f"SELECT {_LOCAL_COLUMNS}, quarantined_by FROM local_media WHERE media_id = ?",
            (media_id,))
        return _local(rows[0]) if rows else None

    # -- remote media --

    async def store_remote_media(self, media: RemoteMedia) -> None:
        await self.db.execute(
            "store_remote_media",
            "INSERT INTO remote_media (origin, media_id, created_ts, media_type, media_length,"
            " upload_name, file_id, authenticated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (origin, media_id) DO NOTHING",
            (media.origin, media.media_id, media.created_ts, media.media_type,
             media.media_length, media.upload_name, media.file_id, int(media.authenticated)))

    async def get_remote_media(self, origin: str, media_id: str) -> RemoteMedia | None:
        rows = await self.db.execute(
            "get_remote_media",
            "SELECT origin, media_id, created_ts, media_type, media_length, upload_name,"
            " file_id, authenticated, quarantined_by FROM remote_media"
            " WHERE origin = ? AND media_id = ?",
            (origin, media_id))
        if not rows:
            return None
        r = rows[0]
        return RemoteMedia(str(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]),
                           r[5], str(r[6]), bool(r[7]), r[8])  # type: ignore[arg-type]

    # -- thumbnails --

    async def store_thumbnail(self, origin: str, media_id: str, thumb: Thumbnail) -> None:
        await self.db.execute(
            "store_thumbnail",
            "INSERT INTO media_thumbnails (origin, media_id, width, height, method, media_type,"
            " media_length) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (origin, media_id, width, height, method, media_type) DO NOTHING",
            (origin, media_id, thumb.width, thumb.height, thumb.method, thumb.media_type,
             thumb.media_length))

    async def get_thumbnails(self, origin: str, media_id: str) -> list[Thumbnail]:
        rows = await self.db.execute(
            "get_thumbnails",
            "SELECT width, height, method, media_type, media_length FROM media_thumbnails"
            " WHERE origin = ? AND media_id = ?", (origin, media_id))
        return [Thumbnail(int(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]

    # -- access times (written in batches by the repository) --

    async def record_access(self, local: dict[str, int],
                            remote: dict[tuple[str, str], int]) -> None:
        def txn_fn(txn: Txn) -> None:
            if local:
                txn.execute_many("UPDATE local_media SET last_access_ts = ? WHERE media_id = ?",
                                 [(ts, mid) for mid, ts in local.items()])
            if remote:
                txn.execute_many("UPDATE remote_media SET last_access_ts = ?"
                                 " WHERE origin = ? AND media_id = ?",
                                 [(ts, o, mid) for (o, mid), ts in remote.items()])
        await self.db.run_interaction("record_media_access", txn_fn)
