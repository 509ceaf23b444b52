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
        appservice,
        delayed_events,
        devices,
        directory,
        events,
        filters,
        keys,
        keys_signing,
        login,
        membership,
        notifications,
        oauth,
        openid,
        presence,
        profile,
        pushers,
        pushrules,
        receipts,
        register,
        relations,
        reporting,
        room_keys,
        rooms,
        search,
        sliding_sync,
        spaces,
        sso,
        sync,
        tags,
        threepids,
        to_device,
        typing,
        upgrade,
        versions,
        voip,
    )

    for module in (versions, register, login, account, devices, profile, account_data,
                   filters, rooms, membership, directory, upgrade, sync, typing, receipts,
                   presence, to_device, openid, relations, search, spaces, reporting, voip,
                   tags, keys, keys_signing, room_keys, pushrules, notifications, pushers,
                   threepids, events, appservice, sliding_sync, delayed_events, sso, oauth):
        module.register_routes(hs, router)
