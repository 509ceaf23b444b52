"""The retention jobs: purging expired messages (``retention.purge_jobs``)
and old media (``media_retention``) on a schedule.

Each purge job runs every ``interval``: it takes the rooms whose policy's
``max_lifetime`` (``rooms/retention.py``; the default policy's for rooms
without one) is in its range (shortest exclusive, longest inclusive, as on
Synapse), and for each purges the messages older than the lifetime brought
within ``allowed_lifetime_min`` .. ``allowed_lifetime_max``, with the admin
API's purge (``admin/purge_history.py``: one transaction per room, local
events too, the room's latest event always kept). A room whose history an
admin is purging is left for the next run.

Media retention runs every hour (Synapse's period): cached remote media not
used for ``remote_media_lifetime`` is forgotten, local media not used for
``local_media_lifetime`` deleted (protected, quarantined media and avatars
stay, as on Synapse).

Restarts: when each job last ran is in ``retention_job_runs``; a job is due
``interval`` after its last run (after the server first started with it), so
a server restarted more often than a job's interval still runs it, and one
that was down when it was due runs it at start. A run cut by a crash is
repeated whole: each room's purge is all or nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeserver.deadline_timer import DeadlineTimer
from homeserver.rooms.retention import PurgeJob, RetentionConfig

if TYPE_CHECKING:
    from homeserver.admin.media import AdminMedia
    from homeserver.admin.purge_history import HistoryPurger
    from homeserver.context import ServerContext
    from homeserver.storage.retention import RetentionStore

logger = logging.getLogger(__name__)

MEDIA_JOB = "media"
MEDIA_INTERVAL_MS = 3_600_000


class RetentionJobs:
    def __init__(self, ctx: "ServerContext", store: "RetentionStore",
                 config: RetentionConfig, purger: "HistoryPurger", media: "AdminMedia",
                 local_media_lifetime: int | None,
                 remote_media_lifetime: int | None) -> None:
        self.ctx = ctx
        self.store = store
        self.config = config
        self.purger = purger
        self.media = media
        self.local_media_lifetime = local_media_lifetime
        self.remote_media_lifetime = remote_media_lifetime
        # job key -> (interval, what a run does)
        self._jobs: dict[str, tuple[int, Any]] = {}
        if config.enabled:
            for job in config.purge_jobs:
                self._jobs[job.key] = (job.interval, self._purge_runner(job))
        if local_media_lifetime is not None or remote_media_lifetime is not None:
            self._jobs[MEDIA_JOB] = (MEDIA_INTERVAL_MS, self.purge_media)
        self._timers: dict[str, DeadlineTimer] = {}

    @property
    def active(self) -> bool:
        return bool(self._jobs)

    def place_media_job(self, here: bool) -> None:
        """With a media worker running media's background jobs
        (``media_instance_running_background_jobs``): on that process the
        media job alone, elsewhere every job but it."""
        self._jobs = {k: v for k, v in self._jobs.items() if (k == MEDIA_JOB) == here}

    async def start(self) -> None:
        last = await self.store.last_runs()
        now = self.ctx.now_ms()
        for key, (interval, _) in self._jobs.items():
            if key not in last:
                await self.store.set_last_run(key, now)
            timer = DeadlineTimer(self.ctx, self._firer(key))
            timer.start()
            self._timers[key] = timer
            timer.schedule(last.get(key, now) + interval)

    def _firer(self, key: str) -> Callable[[], None]:
        def fire() -> None:
            self.ctx.run_in_background(self._run(key))
        return fire

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.stop()
        self._timers.clear()

    async def _run(self, key: str) -> None:
        interval, run = self._jobs[key]
        try:
            await run()
        except Exception:
            logger.exception("retention job %s failed", key)
        now = self.ctx.now_ms()
        await self.store.set_last_run(key, now)
        timer = self._timers.get(key)
        if timer is not None:
            timer.schedule(now + interval)

    def _purge_runner(self, job: PurgeJob) -> Any:
        async def run() -> None:
            await self.purge_rooms(job)
        return run

    async def purge_rooms(self, job: PurgeJob) -> int:
        """One run of a purge job; the number of messages deleted."""
        deleted = 0
        for room_id, room_nid, content in await self.store.all_policy_contents():
            policy = self.config.room_policy(content)
            if policy.max_lifetime is None or not job.covers(policy.max_lifetime):
                continue
            lifetime = self.config.purge_lifetime(policy)
            assert lifetime is not None
            count = await self.purger.purge_expired(room_id, room_nid,
                                                    self.ctx.now_ms() - lifetime)
            if count is None:
                logger.info("retention: %s skipped, an admin purge is running", room_id)
                continue
            if count:
                logger.info("retention: purged %d expired events of %s", count, room_id)
            deleted += count
        return deleted

    async def purge_media(self) -> None:
        now = self.ctx.now_ms()
        if self.remote_media_lifetime is not None:
            count = await self.media.purge_remote_before(now - self.remote_media_lifetime)
            logger.info("media retention: forgot %d cached remote files", count)
        if self.local_media_lifetime is not None:
            deleted = await self.media.delete_local_before(
                now - self.local_media_lifetime, keep_profiles=True, keep_quarantined=True)
            logger.info("media retention: deleted %d local files", len(deleted))
