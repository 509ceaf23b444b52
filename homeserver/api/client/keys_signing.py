"""Cross-signing endpoints: /keys/device_signing/upload and /keys/signatures/upload.

Uploading cross-signing keys needs user-interactive auth, except (MSC3967,
as Synapse does) for a user's first master key, when there is nothing yet to
protect, for a retry that uploads exactly the keys already stored, and for
ten minutes after a server admin allowed it (Synapse's
``_allow_cross_signing_replacement_without_uia`` admin endpoint).
Malformed or badly signed keys are refused before the password is asked.
The checks themselves are in e2e/cross_signing.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.api.client.ui_auth import body_without_auth, validate_user_via_ui_auth
from homeserver.e2e.cross_signing import check_upload
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.accounts.uia import UiAuth
    from homeserver.e2e.cross_signing import CrossSigning
    from homeserver.server import HomeServer
    from homeserver.storage.cross_signing import CrossSigningStore

CLIENT_V3 = "/_matrix/client/v3"
CLIENT_UNSTABLE = "/_matrix/client/unstable"


@dataclass(frozen=True)
class KeysSigningApi:
    """What the cross-signing endpoints use."""

    cross_signing: "CrossSigning"
    store: "CrossSigningStore"
    ui_auth: "UiAuth"
    # an admin let the user replace their keys without UIA for a while
    # (admin/users.py allow_cross_signing_replacement)
    replace_without_uia: Callable[[str], bool] = lambda user_id: False


async def upload_device_signing(api: KeysSigningApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/keys/device_signing/upload"""
    assert req.requester is not None
    user_id = req.user_id
    body = body_without_auth(req)
    stored = await api.store.get_user_keys(user_id)
    check_upload(user_id, body, stored)
    if "master" in stored:
        if await api.cross_signing.upload_is_replay(user_id, body):
            return 200, {}
        if api.replace_without_uia(user_id):
            await api.cross_signing.upload_signing_keys(user_id, body)
            return 200, {}
        body = await validate_user_via_ui_auth(
            api.ui_auth, req, req.requester, "add a device signing key to your account")
    await api.cross_signing.upload_signing_keys(user_id, body)
    return 200, {}


async def upload_signatures(api: KeysSigningApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/keys/signatures/upload"""
    failures = await api.cross_signing.upload_signatures(req.user_id, req.json())
    return 200, {"failures": failures}


# The unstable prefix is where cross-signing was first served (MSC1756);
# Synapse still answers there, and older clients (and SyTest) use it.
ENDPOINTS = tuple(
    Endpoint("POST", f"{prefix}/keys/{path}", function)
    for prefix in (CLIENT_V3, CLIENT_UNSTABLE)
    for path, function in (("device_signing/upload", upload_device_signing),
                           ("signatures/upload", upload_signatures)))


def register_routes(hs: "HomeServer", router: Router) -> None:
    api = KeysSigningApi(hs.cross_signing, hs.stores.cross_signing, hs.ui_auth,
                         hs.admin_users.may_replace_cross_signing_without_uia)
    router.add_endpoints(api, ENDPOINTS)
