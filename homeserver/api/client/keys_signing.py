"""Cross-signing endpoints: /keys/device_signing/upload and /keys/signatures/upload.

Uploading cross-signing keys needs user-interactive auth, except (MSC3967,
as Synapse does) for a user's first master key, when there is nothing yet to
protect, and for a retry that uploads exactly the keys already stored.
Malformed or badly signed keys are refused before the password is asked.
The checks themselves are in e2e/cross_signing.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.api.client.ui_auth import validate_user_via_ui_auth
from homeserver.e2e import cross_signing
from homeserver.http.request import HttpRequest
from homeserver.http.router import Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"


def register_routes(hs: "HomeServer", router: Router) -> None:
    store = hs.stores.cross_signing

    async def upload_device_signing(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/keys/device_signing/upload"""
        assert req.requester is not None
        user_id = req.user_id
        body = {k: v for k, v in req.json(allow_empty=True).items() if k != "auth"}
        stored = await store.get_user_keys(user_id)
        cross_signing.check_upload(user_id, body, stored)
        if "master" in stored:
            if await cross_signing.upload_is_replay(hs, user_id, body):
                return 200, {}
            body = await validate_user_via_ui_auth(
                hs.ui_auth, req, req.requester, "add a device signing key to your account")
        await cross_signing.upload_signing_keys(hs, user_id, body)
        return 200, {}

    async def upload_signatures(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/client/v3/keys/signatures/upload"""
        failures = await cross_signing.upload_signatures(hs, req.user_id, req.json())
        return 200, {"failures": failures}

    router.add("POST", f"{CLIENT_V3}/keys/device_signing/upload", upload_device_signing)
    router.add("POST", f"{CLIENT_V3}/keys/signatures/upload", upload_signatures)
