"""Synapse's admin API (``/_synapse/admin/...``), one module per area.

Every route but the shared-secret registration (``register.py``, which
carries its own HMAC) is ``AUTH_ADMIN``: the router answers 401 without a
token and 403 M_FORBIDDEN to anyone who is not a server admin before an
endpoint runs. The use cases are in ``homeserver/admin/``; each change an
admin makes is logged on ``homeserver.admin.audit``. docs/admin.md lists the
endpoints served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.admin.moderation import Destinations, EventReports, RegistrationTokens
from homeserver.admin.room_tools import RoomTools
from homeserver.admin.scheduled_tasks import ScheduledTasks
from homeserver.admin.server_notices import ServerNotices
from homeserver.admin.user_redaction import UserRedactor
from homeserver.http.router import Router
from homeserver.storage.admin_stats import AdminStatsStore
from synapse_compat.admin import (
    background_updates,
    media,
    moderation,
    register,
    rooms,
    scheduled_tasks,
    server,
    statistics,
    user_moderation,
    users,
)
from synapse_compat.admin.register import RegistrationNonces, registration_mac

if TYPE_CHECKING:
    from homeserver.server import HomeServer

__all__ = ["RegistrationNonces", "register_admin_routes", "registration_mac"]


def register_admin_routes(hs: "HomeServer", router: Router) -> None:
    register.register_routes(hs, router)
    router.add_endpoints(None, server.ENDPOINTS)
    router.add_endpoints(background_updates.BackgroundUpdatesApi(hs.ctx, hs.background_updates),
                         background_updates.ENDPOINTS)
    router.add_endpoints(users.UsersApi(hs.admin_users), users.ENDPOINTS)
    router.add_endpoints(rooms.RoomsApi(hs.ctx, hs.admin_rooms, hs.room_deleter,
                                        hs.history_purger,
                                        RoomTools(hs.ctx, hs.stores, hs.event_creator,
                                                  hs.membership), hs.hierarchy),
                         rooms.ENDPOINTS)
    router.add_endpoints(moderation.ModerationApi(
        EventReports(hs.ctx, hs.stores), RegistrationTokens(hs.ctx, hs.stores),
        Destinations(hs.stores, hs.federation_sender), hs.ctx.hostname), moderation.ENDPOINTS)
    router.add_endpoints(media.MediaApi(hs.admin_media), media.ENDPOINTS)
    notices = ServerNotices(hs.ctx, hs.stores, hs.user_moderation.store, hs.room_creation,
                            hs.membership, hs.event_creator)
    redactor = UserRedactor(hs.ctx, hs.stores, hs.user_moderation.store, hs.event_creator)
    router.add_endpoints(ScheduledTasks(hs.stores.admin_rooms, hs.history_purger, redactor),
                         scheduled_tasks.ENDPOINTS)
    router.add_endpoints(user_moderation.UserModerationApi(hs.user_moderation, redactor,
                                                           notices),
                         user_moderation.ENDPOINTS)
    router.add_endpoints(statistics.StatisticsApi(AdminStatsStore(hs.db)), statistics.ENDPOINTS)
