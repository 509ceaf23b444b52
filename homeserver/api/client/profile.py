"""Profiles: a user's display name, avatar URL and extended fields.

Anyone may read a local user's profile without logging in (as Synapse does
unless told otherwise); only the user, or a server admin, may change it.
The profile of a user of another server is asked of their server
(/_matrix/federation/v1/query/profile) and kept for ``REMOTE_PROFILE_TTL_MS``,
so a client rendering a member list does not make one request per render;
their server's 404 is ours, an unreachable server is 502.

A deactivated account's profile reads as empty, as on Synapse (which wipes
it at deactivation): the whole profile is 404, a single field is absent.
An empty string clears a field.

Extended profiles (Matrix 1.16, MSC4133; also at the unstable
``uk.tcpip.msc4133`` prefix): ``GET/PUT/DELETE /profile/{userId}/{keyName}``
for ``m.tz`` and any namespaced key (``com.example.pronouns``), any JSON
value but null, keys up to 255 bytes, the whole profile under 64 KiB
(``M_KEY_TOO_LARGE`` / ``M_PROFILE_TOO_LARGE``). Extended fields are read
with the whole profile, here and over federation; only the display name and
avatar go out in member events.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import parse_user_id
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.federation.edus import query_remote
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_NONE, Endpoint, Router
from homeserver.storage.profiles import Profile, ProfileTooLarge

if TYPE_CHECKING:
    from homeserver.appservice.handler import AppServiceHandler
    from homeserver.context import ServerContext
    from homeserver.federation.client import FederationClient
    from homeserver.rooms.membership import MembershipHandler
    from homeserver.server import HomeServer
    from homeserver.storage import Stores

CLIENT_V3 = "/_matrix/client/v3"
MSC4133 = "/_matrix/client/unstable/uk.tcpip.msc4133"

# Synapse's limits.
MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000
# the spec's bound on a profile key, in bytes
MAX_KEY_BYTES = 255
CLASSIC_FIELDS = ("displayname", "avatar_url")
# the spec's keyName grammar: the classic fields, m.tz, or a namespaced key
# (fixed pattern, linear: segments are separated by dots)
_KEY_NAME = re.compile(r"avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")


def check_key_name(key: str) -> None:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(400, Codes.KEY_TOO_LARGE,
                          f"Profile keys are at most {MAX_KEY_BYTES} bytes")
    if _KEY_NAME.fullmatch(key) is None:
        raise invalid_param(f"Invalid profile key {key!r}")


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


def profile_fields(profile: Profile) -> dict[str, Any]:
    """What a reader sees: set fields only, nothing of a deactivated account."""
    if profile.deactivated:
        return {}
    return profile.all_fields()


def remote_fields(answer: dict[str, Any]) -> dict[str, Any]:
    """The well-formed fields of another server's profile answer."""
    out: dict[str, Any] = {}
    for key, value in answer.items():
        if not isinstance(key, str) or value is None or _KEY_NAME.fullmatch(key) is None:
            continue
        if key in CLASSIC_FIELDS or key == "m.tz":
            if not isinstance(value, str) or len(value) > MAX_AVATAR_URL_LEN:
                continue
        out[key] = value
    return out


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
        self.remote_cache: dict[str, tuple[int, dict[str, Any]]] = {}
        # unknown users of application services' namespaces are asked of them
        self.app_services: "AppServiceHandler | None" = None

    async def read_remote_profile(self, user_id: str) -> dict[str, Any]:
        now = self.ctx.now_ms()
        cached = self.remote_cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        server = user_id.partition(":")[2]
        answer = await query_remote(self.federation_client, server,
                                    "/_matrix/federation/v1/query/profile", {"user_id": user_id})
        # only well-formed fields of what the other server says reach the client
        fields = remote_fields(answer)
        self.remote_cache.pop(user_id, None)
        if len(self.remote_cache) >= REMOTE_PROFILE_CACHE_SIZE:
            del self.remote_cache[next(iter(self.remote_cache))]
        self.remote_cache[user_id] = (now + REMOTE_PROFILE_TTL_MS, fields)
        return fields

    async def read_profile(self, user_id: str) -> dict[str, Any]:
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
            moderation = self.membership.user_moderation
            if moderation is not None:
                moderation.refuse_if_suspended(target, "Updating profile")
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


async def get_field(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/profile/{userId}/{keyName}"""
    key = req.params["keyName"]
    check_key_name(key)
    fields = await profiles.read_profile(req.params["userId"])
    if key not in fields:
        raise not_found(f"The user has no {key}")
    return 200, {key: fields[key]}


async def put_field(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/profile/{userId}/{keyName}"""
    key = req.params["keyName"]
    check_key_name(key)
    target = req.params["userId"]
    await profiles.check_may_set(req, target, key)
    body = req.json()
    if key not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing key '{key}'")
    value = body[key]
    if value is None:
        raise invalid_param(f"'{key}' cannot be null: DELETE the field to remove it")
    if key == "m.tz" and not isinstance(value, str):
        raise invalid_param("'m.tz' must be a string")
    await set_extended(profiles, target, key, value)
    return 200, {}


async def delete_field(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/profile/{userId}/{keyName}"""
    return await delete_named(profiles, req, req.params["keyName"])


async def delete_displayname(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/profile/{userId}/displayname"""
    return await delete_named(profiles, req, "displayname")


async def delete_avatar_url(profiles: Profiles, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/profile/{userId}/avatar_url"""
    return await delete_named(profiles, req, "avatar_url")


async def delete_named(profiles: Profiles, req: HttpRequest, key: str) -> tuple[int, Any]:
    check_key_name(key)
    target = req.params["userId"]
    await profiles.check_may_set(req, target, key)
    if key == "displayname":
        await profiles.stores.profiles.set_displayname(target, None)
        await profiles.changed(target)
    elif key == "avatar_url":
        await profiles.stores.profiles.set_avatar_url(target, None)
        await profiles.changed(target)
    else:
        await set_extended(profiles, target, key, None)
    return 200, {}


async def set_extended(profiles: Profiles, user_id: str, key: str, value: Any) -> None:
    try:
        await profiles.stores.profiles.set_extended_field(user_id, key, value)
    except ProfileTooLarge:
        raise MatrixError(400, Codes.PROFILE_TOO_LARGE,
                          "The profile would be larger than 64 KiB") from None


_PROFILE = f"{CLIENT_V3}/profile/{{userId}}"
_UNSTABLE_PROFILE = f"{MSC4133}/profile/{{userId}}"
ENDPOINTS = (
    Endpoint("GET", _PROFILE, get_profile, auth=AUTH_NONE),
    Endpoint("GET", f"{_PROFILE}/displayname", get_displayname, auth=AUTH_NONE),
    Endpoint("GET", f"{_PROFILE}/avatar_url", get_avatar_url, auth=AUTH_NONE),
    # Guests may name themselves, as on Synapse.
    Endpoint("PUT", f"{_PROFILE}/displayname", put_displayname, allow_guest=True),
    Endpoint("PUT", f"{_PROFILE}/avatar_url", put_avatar_url),
    Endpoint("DELETE", f"{_PROFILE}/displayname", delete_displayname),
    Endpoint("DELETE", f"{_PROFILE}/avatar_url", delete_avatar_url),
    Endpoint("GET", f"{_PROFILE}/{{keyName}}", get_field, auth=AUTH_NONE),
    Endpoint("PUT", f"{_PROFILE}/{{keyName}}", put_field),
    Endpoint("DELETE", f"{_PROFILE}/{{keyName}}", delete_field),
    Endpoint("GET", f"{_UNSTABLE_PROFILE}/{{keyName}}", get_field, auth=AUTH_NONE),
    Endpoint("PUT", f"{_UNSTABLE_PROFILE}/{{keyName}}", put_field),
    Endpoint("DELETE", f"{_UNSTABLE_PROFILE}/{{keyName}}", delete_field),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    profiles = Profiles(hs.ctx, hs.stores, hs.membership, hs.federation_client)
    profiles.app_services = hs.appservice_handler
    router.add_endpoints(profiles, ENDPOINTS)
