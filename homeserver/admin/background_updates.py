"""Background updates (Synapse's ``/_synapse/admin/v1/background_updates``
API): what long database jobs are running, pausing them, starting one.

Our background updates are few: the indexing of the messages stored before
full-text search existed (migration 0020, run at start until done,
``event_search_history``), and the jobs an admin starts:
``regenerate_directory`` (the user directory rebuilt from the profiles and
room members) and ``populate_stats_process_rooms`` (accepted and done at
once: room statistics are computed per request here, there is nothing to
recalculate). ``enabled: false`` pauses them between batches until enabled
again; as on Synapse, the flag is not kept across restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError

if TYPE_CHECKING:
    from homeserver.storage.database import Database

logger = logging.getLogger(__name__)

JOBS = ("populate_stats_process_rooms", "regenerate_directory")


@dataclass
class _Running:
    name: str
    started: float
    items: int = 0


class BackgroundUpdates:
    def __init__(self, db: "Database") -> None:
        self.db = db
        self.enabled = True
        self._running: dict[str, _Running] = {}
        self._resume: list[defer.Deferred[None]] = []

    async def wait_if_paused(self) -> None:
        """Between two batches of an update: returns at once unless paused."""
        while not self.enabled:
            d: defer.Deferred[None] = defer.Deferred()
            self._resume.append(d)
            await d

    def set_enabled(self, admin: str, enabled: bool) -> None:
        self.enabled = enabled
        log_admin_action(admin, "background_updates_enabled", "server", enabled=enabled)
        if enabled:
            waiting, self._resume = self._resume, []
            for d in waiting:
                d.callback(None)

    def status(self) -> dict[str, Any]:
        updates = {}
        for running in self._running.values():
            elapsed_ms = (time.monotonic() - running.started) * 1000
            updates["master"] = {
                "name": running.name, "total_item_count": running.items,
                "total_duration_ms": elapsed_ms,
                "average_items_per_ms": running.items / elapsed_ms if elapsed_ms else 0.0}
        return {"enabled": self.enabled, "current_updates": updates}

    async def run(self, name: str, job: Callable[[Callable[[], Awaitable[None]]],
                                                 Awaitable[Any]]) -> None:
        """Run ``job`` (handed the pause point to await between batches) as
        the update ``name``."""
        running = _Running(name, time.monotonic())
        self._running[name] = running

        async def between_batches() -> None:
            running.items += 1
            await self.wait_if_paused()
        try:
            await job(between_batches)
        except Exception:
            logger.exception("background update %s failed", name)
        finally:
            self._running.pop(name, None)

    def start_job(self, admin: str, job_name: Any) -> Coroutine[Any, Any, None] | None:
        """The update an admin asked for, to run in the background (None:
        nothing to do)."""
        if job_name not in JOBS:
            raise MatrixError(400, Codes.UNKNOWN, "Invalid job_name")
        if job_name in self._running:
            raise MatrixError(400, Codes.UNKNOWN,
                              f"Job {job_name} is already in queue of background updates.")
        log_admin_action(admin, "start_background_update", job_name)
        if job_name == "populate_stats_process_rooms":
            return None
        return self.run(job_name, self._regenerate_directory)

    async def _regenerate_directory(self, between: Callable[[], Awaitable[None]]) -> None:
        from homeserver.storage.user_directory import UserDirectoryStore

        def txn_fn(txn: Any) -> None:
            txn.execute("DELETE FROM user_directory")
            UserDirectoryStore._add_missing_local_txn(txn)
            UserDirectoryStore._add_missing_members_txn(txn, None)
        await between()
        await self.db.run_interaction("regenerate_user_directory", txn_fn)
