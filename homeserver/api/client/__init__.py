"""The client-server API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.http.router import Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer


def register_client_routes(hs: "HomeServer", router: Router) -> None:
    from homeserver.api.client import (
        account,
        account_data,
        devices,
        directory,
        filters,
        login,
        membership,
        openid,
        presence,
        profile,
        receipts,
        register,
        relations,
        reporting,
        rooms,
        search,
        spaces,
        sync,
        tags,
        to_device,
        typing,
        upgrade,
        versions,
        voip,
    )

    for module in (versions, register, login, account, devices, profile, account_data,
                   filters, rooms, membership, directory, upgrade, sync, typing, receipts,
                   presence, to_device, openid, relations, search, spaces, reporting, voip,
                   tags):
        module.register_routes(hs, router)
