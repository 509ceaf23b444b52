"""Profiles: a user's display name and avatar URL.

Anyone may read a local user's profile without logging in (as Synapse does
unless told otherwise); only the user, or a server admin, may change it.
The profile of a user of another server is asked of their server
(/_matrix/federation/v1/query/profile) and kept for ``REMOTE_PROFILE_TTL_MS``,
so a client rendering a member list does not make one request per render;
their server's 404 is ours, an unreachable server is 502.

A deactivated account's profile reads as empty, as on Synapse (which wipes
it at deactivation): the whole profile is 404, a single field is absent.
An empty string clears a field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import parse_user_id
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.federation.edus import query_remote
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, Endpoint, Router
from homeserver.storage.profiles import Profile

if TYPE_CHECKING:
    from homeserver.appservice.handler import AppServiceHandler
    from homeserver.context import ServerContext
    from homeserver.federation.client import FederationClient
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.server import HomeServer
    from homeserver.storage import Stores

CLIENT_V3 = "/_matrix/client/v3"

# Synapse's limits.
MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000


# How long a remote profile is reused, and how many are kept.
REMOTE_PROFILE_TTL_MS = 30_000
REMOTE_PROFILE_CACHE_SIZE = 10_000


def parse_field(body: dict[str, Any], field: str) -> str | None:
    """The new value of a profile field from a PUT body; None clears it."""
    if field not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing key '{field}'")
    value = body[field]
    if not isinstance(value, str):
        # null included: the spec lets servers refuse it, and Synapse does
        raise invalid_param(f"'{field}' must be a string")
    if field == "displayname":
        if len(value) > MAX_DISPLAYNAME_LEN:
            raise invalid_param(f"Displayname is too long (max {MAX_DISPLAYNAME_LEN})")
        value = value.strip()
    else:
        # any string, as Synapse stores it (clients and bridges set
        # http(s) URLs); only its length is bounded
        if len(value) > MAX_AVATAR_URL_LEN:
            raise invalid_param(f"Avatar URL is too long (max {MAX_AVATAR_URL_LEN})")
    return value or None


def profile_fields(profile: Profile) -> dict[str, str]:
    """What a reader sees: set fields only, nothing of a deactivated account."""
    if profile.deactivated:
        return {}
    fields = {"displayname": profile.displayname, "avatar_url": profile.avatar_url}
    return {k: v for k, v in fields.items() if v is not None}


def check_user_id(user_id: str) -> None:
    if parse_user_id(user_id) is None:
        raise invalid_param("Invalid user id")


class Profiles:
    """What the profile endpoints use: the profile, user and user directory
    stores, the membership handler (a new name or avatar goes out as member
    events), and the cache of remote users' profiles."""

    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 membership: "MembershipHandler",
                 federation_client: "FederationClient") -> None:
        self.ctx = ctx
        self.stores = stores
        self.membership = membership
        # remote users' profiles are asked of their servers
        self.federation_client = federation_client
        # user ID -> (expiry, fields) of remote profiles, oldest first
        self.remote_cache: dict[str, tuple[int, dict[str, str]]] = {}
        # unknown users of application services' namespaces are asked of them
        self.app_services: "AppServiceHandler | None" = None

    async def read_remote_profile(self, user_id: str) -> dict[str, str]:
        now = self.ctx.now_ms()
        cached = self.remote_cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        server = user_id.partition(":")[2]
        answer = await query_remote(self.federation_client, server,
                                    "/_matrix/federation/v1/query/profile", {"user_id": user_id})
        # only well-formed fields of what the other server says reach the client
        fields = {k: v for k, v in answer.items()
                  if k in ("displayname", "avatar_url") and isinstance(v, str)
                  and len(v) <= MAX_AVATAR_URL_LEN}
        self.remote_cache.pop(user_id, None)
        if len(self.remote_cache) >= REMOTE_PROFILE_CACHE_SIZE:
            del self.remote_cache[next(iter(self.remote_cache))]
        self.remote_cache[user_id] = (now + REMOTE_PROFILE_TTL_MS, fields)
        return fields

    async def read_profile(self, user_id: str) -> dict[str, str]:
        check_user_id(user_id)
        if not self.ctx.is_mine(user_id):
            return await self.read_remote_profile(user_id)
        profile = await self.stores.profiles.get_profile(user_id)
        if profile is None and self.app_services is not None and \
                await self.app_services.ask_for_user(user_id):
            # a user of an application service's namespace, made on being asked
            profile = await self.stores.profiles.get_profile(user_id)
        if profile is None:
            raise not_found("Profile was not found")
        return profile_fields(profile)

    async def check_may_set(self, req: HttpRequest, target: str, field: str) -> None:
        check_user_id(target)
        if target == req.user_id:
            return
        requester = await self.stores.users.get_user(req.user_id)
        if requester is None or not requester.admin:
            raise forbidden(f"Cannot set another user's {field}")
        if not self.ctx.is_mine(target):
            raise forbidden("User is not hosted on this homeserver")
        if await self.stores.profiles.get_profile(target) is None:
            raise not_found("Profile was not found")

    async def changed(self, user_id: str) -> None:
        """Tell the user's rooms, and keep the user directory current for users
        in no room too (those in rooms are updated through their new member
        events)."""
        await self.membership.profile_changed(user_id)
        profile = await self.stores.profiles.get_profile(user_id)
        if profile is not None:
            await self.stores.user_directory.update_profile(user_id, profile.displayname,
                                                            profile.avatar_url)


async def get_profile(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/profile/{userId}"""
    fields = await profiles.read_profile(req.params["userId"])
    if not fields:
        raise not_found("Profile was not found")
    return 200, fields


async def get_displayname(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/profile/{userId}/displayname"""
    fields = await profiles.read_profile(req.params["userId"])
    return 200, {k: v for k, v in fields.items() if k == "displayname"}


async def get_avatar_url(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/profile/{userId}/avatar_url"""
    fields = await profiles.read_profile(req.params["userId"])
    return 200, {k: v for k, v in fields.items() if k == "avatar_url"}


async def put_displayname(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/profile/{userId}/displayname"""
    target = req.params["userId"]
    await profiles.check_may_set(req, target, "displayname")
    await profiles.stores.profiles.set_displayname(target,
                                                   parse_field(req.json(), "displayname"))
    await profiles.changed(target)
    return 200, {}


async def put_avatar_url(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/profile/{userId}/avatar_url"""
    target = req.params["userId"]
    await profiles.check_may_set(req, target, "avatar_url")
    await profiles.stores.profiles.set_avatar_url(target, parse_field(req.json(), "avatar_url"))
    await profiles.changed(target)
    return 200, {}


_PROFILE = f"{CLIENT_V3}/profile/{{userId}}"
ENDPOINTS = (
    Endpoint("GET", _PROFILE, get_profile, auth=AUTH_NONE),
    Endpoint("GET", f"{_PROFILE}/displayname", get_displayname, auth=AUTH_NONE),
    Endpoint("GET", f"{_PROFILE}/avatar_url", get_avatar_url, auth=AUTH_NONE),
    # Guests may name themselves, as on Synapse.
    Endpoint("PUT", f"{_PROFILE}/displayname", put_displayname, allow_guest=True),
    Endpoint("PUT", f"{_PROFILE}/avatar_url", put_avatar_url),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    profiles = Profiles(hs.ctx, hs.stores, hs.membership, hs.federation_client)
    profiles.app_services = hs.appservice_handler
    router.add_endpoints(profiles, ENDPOINTS)
