"""The admin's list of long-running tasks (Synapse's
``GET /_synapse/admin/v1/scheduled_tasks``), gathered from where each kind
lives: room deletions (``room_deletion.py``, in the database, action
``shutdown_and_purge_room``), history purges (``purge_history.py``,
``purge_history``) and the redaction of a user's events
(``user_redaction.py``, ``redact_all_events``), the last two kept in memory
for a day. Statuses are Synapse's: scheduled, active, complete, failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homeserver.admin.purge_history import HistoryPurger
    from homeserver.admin.user_redaction import UserRedactor
    from homeserver.storage.admin_rooms import AdminRoomStore

_DELETION_STATUS = {"scheduled": "scheduled", "shutting_down": "active", "purging": "active",
                    "complete": "complete", "failed": "failed"}
_REDACTION_STATUS = {"scheduled": "scheduled", "active": "active", "completed": "complete",
                     "failed": "failed"}


@dataclass(frozen=True)
class TaskQuery:
    action_name: str | None = None
    resource_id: str | None = None
    status: str | None = None
    max_timestamp: int | None = None


class ScheduledTasks:
    def __init__(self, rooms: "AdminRoomStore", purger: "HistoryPurger",
                 redactor: "UserRedactor") -> None:
        self.rooms = rooms
        self.purger = purger
        self.redactor = redactor

    async def list(self, q: TaskQuery) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        for deletion, created in await self.rooms.get_deletions_with_times():
            tasks.append({"id": deletion.delete_id, "action": "shutdown_and_purge_room",
                          "status": _DELETION_STATUS.get(deletion.status, deletion.status),
                          "timestamp_ms": created, "resource_id": deletion.room_id,
                          "result": deletion.result, "error": deletion.error})
        for purge_id, (status, error, room_id, at) in self.purger.tasks().items():
            tasks.append({"id": purge_id, "action": "purge_history", "status": status,
                          "timestamp_ms": at, "resource_id": room_id, "result": None,
                          "error": error})
        for redact_id, job in self.redactor.jobs().items():
            failed = job.status == "failed"
            tasks.append({"id": redact_id, "action": "redact_all_events",
                          "status": _REDACTION_STATUS.get(job.status, job.status),
                          "timestamp_ms": job.finished_ms or job.started_ms,
                          "resource_id": job.user_id,
                          "result": {"failed_redactions": job.failed_redactions},
                          "error": job.failed_redactions.get("") if failed else None})
        return [t for t in tasks
                if (q.action_name is None or t["action"] == q.action_name)
                and (q.resource_id is None or t["resource_id"] == q.resource_id)
                and (q.status is None or t["status"] == q.status)
                and (q.max_timestamp is None or t["timestamp_ms"] < q.max_timestamp)]
