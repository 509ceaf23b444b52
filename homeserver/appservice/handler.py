"""What the rest of the server asks of the application services: whether a
user or alias in a namespace exists (asked of the service before answering
404), third-party protocol lookups, the services' own room lists, ping."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.appservice.client import AppServiceClient
    from homeserver.appservice.interest import Interest
    from homeserver.appservice.registration import ApplicationService, AppServices
    from homeserver.context import ServerContext
    from homeserver.storage import Stores
    from homeserver.storage.directory import PublishedRoom

logger = logging.getLogger(__name__)


class AppServiceHandler:
    def __init__(self, ctx: "ServerContext", stores: "Stores", services: "AppServices",
                 client: "AppServiceClient", interest: "Interest | None" = None) -> None:
        self.ctx = ctx
        self.stores = stores
        self.services = services
        self.client = client
        # the push side's cached room verdicts, which aliases feed
        self.interest = interest

    def aliases_changed(self) -> None:
        """An alias of ours was created, moved or deleted."""
        if self.interest is not None:
            self.interest.aliases_changed()

    async def register_senders(self) -> None:
        """Each service's own user exists from the start (it joins rooms and
        is invited without registering)."""
        for service in self.services.services:
            def txn_fn(txn: Any, user_id: str = service.sender) -> None:
                if UserStore.get_user_txn(txn, user_id) is None:
                    UserStore.create_user_txn(txn, user_id, None, self.ctx.now_ms())
            try:
                await self.stores.users.db.run_interaction("appservice_sender", txn_fn)
            except UserExists:
                pass

    # -- "does this exist?" asked of the services -------------------------------

    async def ask_for_user(self, user_id: str) -> bool:
        """True when a service whose namespace holds the (local, unknown)
        ``user_id`` says it has it now (it registers it before answering)."""
        if not self.services or not self.ctx.is_mine(user_id):
            return False
        for service in self.services.interested_in_user(user_id):
            if service.url and await self.client.query_user(service, user_id):
                return True
        return False

    async def ask_for_alias(self, alias: str) -> bool:
        """True when a service whose namespace holds ``alias`` says it made it."""
        if not self.services:
            return False
        for service in self.services.interested_in_alias(alias):
            if service.url and await self.client.query_alias(service, alias):
                return True
        return False

    # -- third-party lookups ------------------------------------------------------

    async def get_protocols(self, only: str | None = None) -> dict[str, dict[str, Any]]:
        """Every protocol the services answer for, their metadata merged: the
        first service's fields, every service's instances."""
        wanted: dict[str, list["ApplicationService"]] = {}
        for service in self.services.services:
            if not service.url:
                continue
            for protocol in service.protocols:
                if only is None or protocol == only:
                    wanted.setdefault(protocol, []).append(service)
        calls = [(p, s) for p, services in wanted.items() for s in services]
        answers = await defer.gatherResults(
            [defer.ensureDeferred(self.client.get_protocol(s, p)) for p, s in calls])
        out: dict[str, dict[str, Any]] = {}
        for (protocol, service), info in zip(calls, answers, strict=True):
            if info is None:
                continue
            instances = info.get("instances")
            instances = [dict(i) for i in instances if isinstance(i, dict)] \
                if isinstance(instances, list) else []
            for instance in instances:
                network_id = instance.get("network_id")
                if isinstance(network_id, str):
                    instance["instance_id"] = f"{service.id}|{network_id}"
            if protocol not in out:
                out[protocol] = {**info, "instances": instances}
            else:
                out[protocol]["instances"].extend(instances)
        return out

    async def query_3pe(self, kind: str, protocol: str | None,
                        fields: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Third-party users or locations: every answering service's matches."""
        if protocol is not None:
            services = self.services.with_protocol(protocol)
        else:
            services = [s for s in self.services.services if s.url]
        answers = await defer.gatherResults(
            [defer.ensureDeferred(self.client.query_3pe(s, kind, protocol, fields))
             for s in services])
        results: list[dict[str, Any]] = []
        for answer in answers:
            results.extend(answer)
        return results

    # -- the services' own room lists ------------------------------------------------

    async def set_listed(self, service: "ApplicationService | None", network_id: str,
                         room_id: str, visibility: str) -> None:
        """PUT/DELETE /directory/list/appservice/{networkId}/{roomId}"""
        if service is None:
            raise forbidden("Only application services can change their room lists")
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        await self.stores.appservice.set_room_listed(service.id, network_id, room.room_nid,
                                                     visibility == "public")

    async def listed_rooms(self, instance_id: str | None) -> list["PublishedRoom"]:
        """Rooms of one network's list (``"{serviceId}|{networkId}"``), or of
        every list (None)."""
        if instance_id is None:
            return await self.stores.appservice.get_listed_rooms(None, None)
        service_id, sep, network_id = instance_id.partition("|")
        if not sep or self.services.by_id(service_id) is None:
            raise MatrixError(400, Codes.INVALID_PARAM, "Unknown third_party_instance_id")
        return await self.stores.appservice.get_listed_rooms(service_id, network_id)

    # -- ping -------------------------------------------------------------------------

    async def ping(self, service: "ApplicationService | None", service_id: str,
                   transaction_id: str | None) -> int:
        if service is None or service.id != service_id:
            raise forbidden("The access token does not belong to this application service")
        if not service.url:
            raise MatrixError(400, "M_URL_NOT_SET", "The application service has no URL")
        return await self.client.ping(service, transaction_id)
