"""Redacting a user's events (Synapse's ``POST /_synapse/admin/v1/user/{userId}/redact``).

In each named room (none named: every room the user is joined to) the user's
messages, encrypted messages and membership events, newest first up to
``limit`` per room, between ``after_ts`` and ``before_ts`` if given, are
redacted: by the user themselves when local (as Synapse puppets them), else
by the admin; ``use_admin`` makes the admin send them all (the admin needs
the redact level in those rooms). Events already redacted are skipped. A
redaction that fails (the sender may not redact there) is recorded with its
reason in ``failed_redactions``, and the rest go on.

The job runs in the background; its status (scheduled, active, completed,
failed) is kept in memory for a day, as on Synapse.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homeserver.admin.audit import log_admin_action
from homeserver.errors import MatrixError
from homeserver.rooms.redaction import redact_event

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.rooms.creator import EventCreator
    from homeserver.storage import Stores
    from homeserver.storage.user_moderation import UserModerationStore

logger = logging.getLogger(__name__)

STATUS_LIFETIME_MS = 24 * 3600 * 1000
REDACTED_TYPES = ("m.room.message", "m.room.encrypted", "m.room.member")


@dataclass(frozen=True)
class RedactRequest:
    user_id: str
    rooms: tuple[str, ...]
    reason: str | None = None
    limit: int = 1000
    use_admin: bool = False
    after_ts: int | None = None
    before_ts: int | None = None


@dataclass
class RedactJob:
    status: str = "scheduled"
    failed_redactions: dict[str, str] = field(default_factory=dict)
    finished_ms: int | None = None
    # whose events, and when it started (the admin's scheduled tasks list)
    user_id: str = ""
    started_ms: int = 0


class UserRedactor:
    def __init__(self, ctx: "ServerContext", stores: "Stores", store: "UserModerationStore",
                 event_creator: "EventCreator") -> None:
        self.ctx = ctx
        self.stores = stores
        self.store = store
        self.event_creator = event_creator
        self._jobs: dict[str, RedactJob] = {}

    def start(self, admin: str, request: RedactRequest) -> str:
        self._forget_old()
        redact_id = secrets.token_urlsafe(12)
        job = RedactJob(user_id=request.user_id, started_ms=self.ctx.now_ms())
        self._jobs[redact_id] = job
        log_admin_action(admin, "redact_user_events", request.user_id,
                         rooms=list(request.rooms), limit=request.limit,
                         use_admin=request.use_admin)
        self.ctx.run_in_background(self._run(admin, request, job))
        return redact_id

    def status(self, redact_id: str) -> RedactJob | None:
        return self._jobs.get(redact_id)

    def jobs(self) -> dict[str, RedactJob]:
        """Every job of the last day, by redact ID."""
        return dict(self._jobs)

    def _forget_old(self) -> None:
        now = self.ctx.now_ms()
        for key in [k for k, j in self._jobs.items()
                    if j.finished_ms is not None and now - j.finished_ms > STATUS_LIFETIME_MS]:
            del self._jobs[key]

    async def _run(self, admin: str, request: RedactRequest, job: RedactJob) -> None:
        job.status = "active"
        try:
            rooms = list(request.rooms) or await self.stores.rooms.get_rooms_for_user(
                request.user_id)
            sender = admin if request.use_admin or not self.ctx.is_mine(request.user_id) \
                else request.user_id
            for room_id in rooms:
                room = await self.stores.rooms.get_room(room_id)
                if room is None:
                    continue
                event_ids = await self.store.events_to_redact(
                    room.room_nid, request.user_id, REDACTED_TYPES, request.after_ts,
                    request.before_ts, request.limit)
                for event_id in event_ids:
                    try:
                        await redact_event(self.stores, self.event_creator, sender, room_id,
                                           event_id, reason=request.reason, txn_id=None)
                    except MatrixError as e:
                        job.failed_redactions[event_id] = e.msg
            job.status = "completed"
        except Exception as e:
            logger.exception("redacting the events of %s failed", request.user_id)
            job.status = "failed"
            job.failed_redactions.setdefault("", str(e))
        finally:
            job.finished_ms = self.ctx.now_ms()
