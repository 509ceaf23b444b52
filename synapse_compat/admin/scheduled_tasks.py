"""GET /_synapse/admin/v1/scheduled_tasks. The use case:
``homeserver/admin/scheduled_tasks.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.admin.scheduled_tasks import TaskQuery
from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint

if TYPE_CHECKING:
    from homeserver.admin.scheduled_tasks import ScheduledTasks

V1 = "/_synapse/admin/v1"
STATUSES = ("scheduled", "active", "complete", "cancelled", "failed")


async def get_scheduled_tasks(tasks: "ScheduledTasks", req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/scheduled_tasks"""
    status = query_str(req.args, "status", None) or query_str(req.args, "job_status", None)
    if status is not None and status not in STATUSES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Unknown status: " + status)
    query = TaskQuery(action_name=query_str(req.args, "action_name", None),
                      resource_id=query_str(req.args, "resource_id", None),
                      status=status, max_timestamp=query_int(req.args, "max_timestamp", None))
    return 200, {"scheduled_tasks": await tasks.list(query)}


ENDPOINTS = (
    Endpoint("GET", f"{V1}/scheduled_tasks", get_scheduled_tasks, auth=AUTH_ADMIN),
)
