"""Shutting down and deleting a room (Synapse's ``DELETE /_synapse/admin/v1|v2/rooms``
and ``POST /_synapse/admin/v1/shutdown_room``).

A deletion is a row in ``room_deletions`` before anything is done, and moves
through its steps, each safe to run again:

1. ``shutting_down``: block the room if asked (no local user may join it or be
   invited, here or over federation); make the replacement room if
   ``new_room_user_id`` names one of our users (its ID is saved at once, so a
   resumed run does not make a second), with the notice message; every local
   user joined, invited or knocking leaves (as themselves, as on Synapse),
   forgets the room and joins the replacement; the room's local aliases point
   at the replacement (or are deleted), and it leaves the directory.
2. ``purging`` (if ``purge``, the default): every row about the room goes in
   one transaction (``storage/admin_rooms.py purge_room_txn``), so a crash
   leaves the room whole or gone, never half; then the unreferenced state is
   collected and the caches forget the room.
3. ``complete`` (or ``failed`` with the error).

The server resumes every unfinished row at start (``resume``): a deletion cut
by a crash or a restart finishes. One deletion per room runs at a time.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.creation import CreateRoomRequest
from homeserver.storage.admin_rooms import RoomDeletion

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.rooms.creation import RoomCreation
    from homeserver.rooms.creator import EventCreator
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

DEFAULT_ROOM_NAME = "Content Violation Notification"
DEFAULT_MESSAGE = ("Sharing illegal content on this server is not permitted and rooms in "
                   "violation will be blocked.")
UNFINISHED = ("scheduled", "shutting_down", "purging")


@dataclass(frozen=True)
class DeletionParams:
    """A validated DELETE /rooms body."""

    new_room_user_id: str | None = None
    room_name: str = DEFAULT_ROOM_NAME
    message: str = DEFAULT_MESSAGE
    block: bool = False
    purge: bool = True
    force_purge: bool = False


def empty_result() -> dict[str, Any]:
    return {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [],
            "new_room_id": None}


class RoomDeleter:
    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 membership: "MembershipHandler", room_creation: "RoomCreation",
                 event_creator: "EventCreator") -> None:
        self.ctx = ctx
        self.stores = stores
        self.membership = membership
        self.room_creation = room_creation
        self.event_creator = event_creator
        # rooms a deletion runs on in this process
        self._running: set[str] = set()

    async def start(self, admin: str, room_id: str, params: DeletionParams) -> RoomDeletion:
        """Record the deletion (status ``scheduled``); the caller runs it."""
        if not room_id.startswith("!"):
            raise MatrixError(400, Codes.INVALID_PARAM, f"{room_id} is not a legal room ID")
        if params.new_room_user_id is not None:
            if not self.ctx.is_mine(params.new_room_user_id):
                raise MatrixError(400, Codes.INVALID_PARAM, "User must be our own: "
                                  + params.new_room_user_id)
            if await self.stores.users.get_user(params.new_room_user_id) is None:
                raise not_found("new_room_user_id does not exist")
        if await self.stores.rooms.get_room(room_id) is None and not params.block:
            raise not_found("Unknown room id")
        if room_id in self._running or any(
                d.status in UNFINISHED
                for d in await self.stores.admin_rooms.get_deletions_of_room(room_id)):
            raise MatrixError(400, Codes.UNKNOWN,
                              f"History purge already in progress for {room_id}")
        deletion = RoomDeletion(secrets.token_urlsafe(12), room_id, admin, asdict(params),
                                "scheduled", None, empty_result())
        await self.stores.admin_rooms.add_deletion(deletion, self.ctx.now_ms())
        log_admin_action(admin, "delete_room", room_id, delete_id=deletion.delete_id,
                         block=params.block, purge=params.purge,
                         new_room_user_id=params.new_room_user_id)
        return deletion

    async def run(self, deletion: RoomDeletion) -> dict[str, Any]:
        """Run (or resume) a deletion to its end; its shutdown result.
        Raises what made it fail, after recording ``failed``."""
        room_id = deletion.room_id
        self._running.add(room_id)
        params = DeletionParams(**deletion.params)
        result = dict(deletion.result)
        try:
            if deletion.status in ("scheduled", "shutting_down"):
                await self.stores.admin_rooms.update_deletion(deletion.delete_id,
                                                              "shutting_down", result)
                await self._shut_down(deletion, params, result)
            if params.purge:
                await self.stores.admin_rooms.update_deletion(deletion.delete_id, "purging",
                                                              result)
                await self._purge(room_id)
            await self.stores.admin_rooms.update_deletion(deletion.delete_id, "complete",
                                                          result)
            logger.info("room %s deleted (%s)", room_id, deletion.delete_id)
            return result
        except Exception as e:
            logger.exception("deleting room %s failed", room_id)
            await self.stores.admin_rooms.update_deletion(deletion.delete_id, "failed",
                                                          result, str(e))
            raise
        finally:
            self._running.discard(room_id)

    async def resume(self) -> None:
        """Finish the deletions a stop or crash cut short (at start)."""
        for deletion in await self.stores.admin_rooms.get_unfinished_deletions():
            logger.info("resuming the deletion of %s (%s, was %s)", deletion.room_id,
                        deletion.delete_id, deletion.status)
            try:
                await self.run(deletion)
            except Exception:
                pass  # recorded as failed, logged by run

    async def _shut_down(self, deletion: RoomDeletion, params: DeletionParams,
                         result: dict[str, Any]) -> None:
        room_id = deletion.room_id
        if params.block:
            await self.stores.admin_rooms.block_room(room_id, deletion.requester,
                                                     self.ctx.now_ms())
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return
        new_room_id = result.get("new_room_id")
        if params.new_room_user_id is not None and new_room_id is None:
            new_room_id = await self._make_notice_room(params)
            result["new_room_id"] = new_room_id
            await self.stores.admin_rooms.update_deletion(deletion.delete_id, "shutting_down",
                                                          result)
        kicked, failed = set(result["kicked_users"]), set(result["failed_to_kick_users"])
        for user_id, _ in await self.stores.admin_rooms.get_local_users_in_room(
                room.room_nid, self.ctx.hostname):
            try:
                await self.membership.update_membership(user_id, room_id, user_id, "leave")
                await self.stores.rooms.forget(user_id, room.room_nid)
                if new_room_id is not None:
                    await self.membership.update_membership(user_id, new_room_id, user_id,
                                                            "join")
                kicked.add(user_id)
            except Exception:
                logger.exception("could not remove %s from %s", user_id, room_id)
                failed.add(user_id)
        result["kicked_users"] = sorted(kicked)
        result["failed_to_kick_users"] = sorted(failed - kicked)
        aliases = await self.stores.directory.get_aliases_for_room(room.room_nid)
        result["local_aliases"] = sorted(set(result["local_aliases"]) | set(aliases))
        if new_room_id is not None:
            new_room = await self.stores.rooms.get_room(new_room_id)
            assert new_room is not None
            await self.stores.directory.move_aliases(room.room_nid, new_room.room_nid)
        else:
            for alias in aliases:
                await self.stores.directory.delete_alias(alias)
        await self.stores.directory.set_room_public(room.room_nid, False, self.ctx.now_ms())
        await self.stores.admin_rooms.update_deletion(deletion.delete_id, "shutting_down",
                                                      result)

    async def _make_notice_room(self, params: DeletionParams) -> str:
        creator = params.new_room_user_id
        assert creator is not None
        version = KNOWN_ROOM_VERSIONS[self.ctx.config.default_room_version]
        room_id = await self.room_creation.create_room(creator, CreateRoomRequest(
            room_version=version, preset="public_chat", name=params.room_name,
            power_level_content_override={"users_default": -10}))
        await self.event_creator.send(creator, room_id, "m.room.message",
                                      {"msgtype": "m.text", "body": params.message})
        return room_id

    async def _purge(self, room_id: str) -> None:
        await self.stores.admin_rooms.purge_room(room_id)
        self.stores.rooms.forget_room_info(room_id)
        self.stores.events.cache.clear()
        await self.stores.state.garbage_collect()

    # -- status ----------------------------------------------------------------

    async def status(self, delete_id: str) -> RoomDeletion:
        deletion = await self.stores.admin_rooms.get_deletion(delete_id)
        if deletion is None:
            raise not_found(f"delete id '{delete_id}' not found")
        return deletion

    async def statuses_of_room(self, room_id: str) -> list[RoomDeletion]:
        found = await self.stores.admin_rooms.get_deletions_of_room(room_id)
        if not found:
            raise not_found(f"No delete task for room_id '{room_id}' found")
        return found


def status_body(deletion: RoomDeletion) -> dict[str, Any]:
    body: dict[str, Any] = {"delete_id": deletion.delete_id, "status": deletion.status,
                            "shutdown_room": deletion.result}
    if deletion.error is not None:
        body["error"] = deletion.error
    return body
