"""Admin use cases on media (Synapse's media admin API and a user's media).

- Quarantine marks local or cached remote media (``quarantined_by``, migration
  0036): the repository then answers 404 to every download and thumbnail of
  it, locally and over federation; the file stays on disk. By room it takes
  every mxc URI the room's events name (``url`` and ``info.thumbnail_url``, so
  not encrypted media); by user every local upload of theirs.
- Protection (``safe_from_quarantine``) keeps local media out of every
  quarantine, for sticker packs and other shared media.
- Deletion removes the rows first, then the files (local store only, as on
  Synapse); a crash between leaves orphan files, never a row without a file.
  By age it goes by the last access (or the upload when never accessed) and
  keeps protected media and, with ``keep_profiles``, avatars.
- Purging the remote cache forgets cached remote media last used before a
  time; a later download fetches it again. Quarantined remote media stays, so
  it stays blocked.

Every change is one line on the audit logger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.media.repository import MEDIA_ID_RE, SERVER_NAME_RE
from homeserver.storage.admin_media import MXC_RE, AdminMediaRow, AdminMediaStore

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.media.repository import MediaRepository
    from homeserver.storage import Stores

# a before_ts below this is seconds, not milliseconds (Synapse's check)
_YEAR_1970_MS = 30_000_000_000


QUARANTINE_CHANGES_PAGE = 100


def check_before_ts(before_ts: int) -> None:
    if before_ts < 0:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Query parameter before_ts must be a positive integer.")
    if before_ts < _YEAR_1970_MS:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Query parameter before_ts you provided is from the year 1970. "
                          "Double check that you are providing a timestamp in milliseconds.")


class AdminMedia:
    def __init__(self, ctx: "ServerContext", stores: "Stores", store: AdminMediaStore,
                 repo: "MediaRepository") -> None:
        self.ctx = ctx
        self.stores = stores
        self.store = store
        self.repo = repo

    def _check_ids(self, server_name: str, media_id: str) -> None:
        if not SERVER_NAME_RE.fullmatch(server_name) or not MEDIA_ID_RE.fullmatch(media_id):
            raise not_found("Unknown media")

    async def _require_local_user(self, user_id: str) -> None:
        if not self.ctx.is_mine(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only look up local users")
        if await self.stores.users.get_user(user_id) is None:
            raise not_found("Unknown user")

    # -- a user's media --

    async def user_media(self, user_id: str, start: int, limit: int, order_by: str,
                         backwards: bool) -> tuple[list[AdminMediaRow], int]:
        await self._require_local_user(user_id)
        return await self.store.user_media(user_id, start, limit, order_by, backwards)

    async def delete_user_media(self, admin: str, user_id: str, start: int, limit: int,
                                order_by: str, backwards: bool) -> list[str]:
        rows, _ = await self.user_media(user_id, start, limit, order_by, backwards)
        deleted = await self._delete_local([r.media_id for r in rows])
        log_admin_action(admin, "delete_user_media", user_id, count=len(deleted))
        return deleted

    # -- a room's media --

    async def _room_mxcs(self, room_id: str) -> tuple[list[str], list[tuple[str, str]]]:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        local: list[str] = []
        remote: list[tuple[str, str]] = []
        for uri in await self.store.room_media(room.room_nid):
            m = MXC_RE.match(uri)
            assert m is not None
            if m.group(1) == self.ctx.hostname:
                local.append(m.group(2))
            else:
                remote.append((m.group(1), m.group(2)))
        return local, remote

    async def room_media(self, room_id: str) -> dict[str, list[str]]:
        local, remote = await self._room_mxcs(room_id)
        return {"local": [f"mxc://{self.ctx.hostname}/{m}" for m in local],
                "remote": [f"mxc://{o}/{m}" for o, m in remote]}

    # -- quarantine and protection --

    async def quarantine(self, admin: str, server_name: str, media_id: str,
                         on: bool) -> None:
        self._check_ids(server_name, media_id)
        by = admin if on else None
        if server_name == self.ctx.hostname:
            await self.store.set_quarantine([media_id], [], by, self.ctx.hostname,
                                            self.ctx.now_ms())
        else:
            await self.store.set_quarantine([], [(server_name, media_id)], by,
                                            self.ctx.hostname, self.ctx.now_ms())
        log_admin_action(admin, "quarantine_media" if on else "unquarantine_media",
                         f"mxc://{server_name}/{media_id}")

    async def quarantine_room(self, admin: str, room_id: str) -> int:
        local, remote = await self._room_mxcs(room_id)
        count = await self.store.set_quarantine(local, remote, admin, self.ctx.hostname,
                                                self.ctx.now_ms())
        log_admin_action(admin, "quarantine_room_media", room_id, count=count)
        return count

    async def quarantine_user(self, admin: str, user_id: str) -> int:
        # Synapse answers for any user ID: no media, nothing quarantined
        count = await self.store.set_quarantine(
            await self.store.local_media_ids_of_user(user_id), [], admin, self.ctx.hostname,
            self.ctx.now_ms())
        log_admin_action(admin, "quarantine_user_media", user_id, count=count)
        return count

    async def quarantine_changes(self, after: int) -> tuple[list[dict[str, Any]], int]:
        """A page (100) of quarantines and releases after ``after``, oldest
        first, and where the next page starts."""
        rows = await self.store.quarantine_changes(after, QUARANTINE_CHANGES_PAGE)
        changes = [{"origin": origin, "media_id": media_id, "quarantined": on}
                   for _, origin, media_id, on in rows]
        return changes, rows[-1][0] if rows else after

    async def protect(self, admin: str, media_id: str, on: bool) -> None:
        if not MEDIA_ID_RE.fullmatch(media_id) or \
                not await self.store.set_protected(media_id, on):
            raise not_found("Unknown media")
        log_admin_action(admin, "protect_media" if on else "unprotect_media", media_id)

    async def media_info(self, server_name: str, media_id: str) -> dict[str, Any]:
        self._check_ids(server_name, media_id)
        info = await self.store.media_info(
            None if server_name == self.ctx.hostname else server_name, media_id)
        if info is None:
            raise not_found("Unknown media")
        if info["media_origin"] is None:
            info["media_origin"] = self.ctx.hostname
        return info

    # -- deletion --

    async def _delete_local(self, media_ids: list[str]) -> list[str]:
        if not media_ids:
            return []
        await self.store.delete_local_media(media_ids)
        for media_id in media_ids:
            await self.repo.delete_local_files(media_id)
        return media_ids

    async def delete_media(self, admin: str, server_name: str, media_id: str) -> list[str]:
        if server_name != self.ctx.hostname:
            raise MatrixError(400, Codes.UNKNOWN, "Can only delete local media")
        self._check_ids(server_name, media_id)
        if await self.repo.store.get_local_media(media_id) is None:
            raise not_found("Unknown media")
        deleted = await self._delete_local([media_id])
        log_admin_action(admin, "delete_media", f"mxc://{server_name}/{media_id}")
        return deleted

    async def delete_old_media(self, admin: str, before_ts: int, size_gt: int,
                               keep_profiles: bool) -> list[str]:
        check_before_ts(before_ts)
        if size_gt < 0:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "Query parameter size_gt must be a string representing a "
                              "positive integer.")
        deleted = await self.delete_local_before(before_ts, size_gt, keep_profiles)
        log_admin_action(admin, "delete_old_media", self.ctx.hostname, before_ts=before_ts,
                         size_gt=size_gt, keep_profiles=keep_profiles, count=len(deleted))
        return deleted

    async def purge_remote_cache(self, admin: str, before_ts: int) -> int:
        check_before_ts(before_ts)
        count = await self.purge_remote_before(before_ts)
        log_admin_action(admin, "purge_media_cache", "remote", before_ts=before_ts,
                         count=count)
        return count

    # -- also for media retention (admin/retention_jobs.py) --

    async def delete_local_before(self, before_ts: int, size_gt: int = 0,
                                  keep_profiles: bool = True,
                                  keep_quarantined: bool = False) -> list[str]:
        """Delete the local media last used before ``before_ts`` (protected
        media stays; avatars with ``keep_profiles``)."""
        await self.repo.flush_access_times()
        keep: set[str] = set()
        if keep_profiles:
            prefix = f"mxc://{self.ctx.hostname}/"
            keep = {u[len(prefix):] for u in await self.store.avatar_mxcs()
                    if u.startswith(prefix)}
        return await self._delete_local(await self.store.local_media_to_delete(
            before_ts, size_gt, keep, keep_quarantined))

    async def purge_remote_before(self, before_ts: int) -> int:
        """Forget the cached remote media last used before ``before_ts``."""
        await self.repo.flush_access_times()
        purged = await self.store.remote_media_to_purge(before_ts)
        for origin, media_id, file_id in purged:
            await self.store.delete_remote_media(origin, media_id)
            await self.repo.delete_remote_files(origin, file_id)
        return len(purged)
