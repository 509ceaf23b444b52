"""The spec's OAuth 2.0 API with this server as the authorization server
(client-server API "OAuth 2.0 API", MSC3861), behind ``oauth_api.enabled``.

What a client (Element X) does, and where it lands here:

1. ``GET /_matrix/client/v1/auth_metadata``: the endpoints below.
2. Dynamic client registration (RFC 7591, ``register_client``): the spec's
   metadata rules (``client_uri`` https; ``web`` redirect URIs https under
   the client URI's host; ``native`` ones a private scheme in the client
   host's reverse-DNS, or ``http`` on loopback without a port, any port then
   accepted; never a fragment); public clients only
   (``token_endpoint_auth_method: none``), so PKCE is what binds the code.
3. The authorization code grant with PKCE (S256 required). The request is
   checked (``check_authorization``): an unknown client or a redirect URI it
   did not register is an error page, never a redirect; anything else wrong
   goes back to the client as ``error=``. The scope must hold
   ``urn:matrix:client:api:*`` and one ``urn:matrix:client:device:<id>``
   (the MSC2967 unstable names too). The user signs in on our page with
   their password, or through a configured SSO provider (whose login token
   comes back to us); then a code (ten minutes, single use, SHA-256 stored)
   goes to the redirect URI with the state, in the query or the fragment.
4. The token endpoint: ``authorization_code`` (the code, the same client
   and redirect URI, the PKCE verifier) makes the device named by the scope
   and a refreshable access token, exactly as a password login does, so it
   works on every endpoint; ``refresh_token`` is our ``/refresh``.
5. The device authorization grant (RFC 8628, QR / TV-style login): the
   device gets a ``device_code`` and a ``user_code``; the user opens
   ``verification_uri`` elsewhere, signs in on the same page as in 3, and
   approves; the device's polling of the token endpoint then gets its
   tokens (``authorization_pending`` and ``slow_down`` before).
6. Revocation (RFC 7009): an access or refresh token ends its device's
   session; unknown tokens are answered 200 as the RFC asks.

Errors at the token and registration endpoints are RFC 6749/7591 JSON
(``{"error": ...}``, 400/401), not Matrix errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from homeserver.accounts.sessions import login_txn
from homeserver.errors import Codes, MatrixError
from homeserver.http.auth import hash_token
from homeserver.storage.oauth import AuthorizationCode, DeviceGrant

if TYPE_CHECKING:
    from homeserver.accounts.login import Logins
    from homeserver.context import ServerContext
    from homeserver.storage.database import Database
    from homeserver.storage.oauth import OAuthStore

SCOPE_API = ("urn:matrix:client:api:*", "urn:matrix:org.matrix.msc2967.client:api:*")
SCOPE_DEVICE = ("urn:matrix:client:device:", "urn:matrix:org.matrix.msc2967.client:device:")
CODE_LIFETIME_MS = 10 * 60_000
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_CODE_LIFETIME_MS = 10 * 60_000
# how often a device may poll (RFC 8628 3.2 interval), in seconds
DEVICE_POLL_INTERVAL_S = 5
# no vowels (no words) and nothing that reads like another character
_USER_CODE_CHARS = "BCDFGHJKLMNPQRSTVWXZ"
OAUTH_PATH = "_synapse/client/oauth2"
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_DEVICE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                             "0123456789-._~")


class OAuthError(Exception):
    """An RFC 6749 error: ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class BadAuthorizationRequest(Exception):
    """The client or its redirect URI cannot be trusted: show an error page."""


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    client_name: str
    redirect_uri: str
    state: str | None
    scope: str
    device_id: str
    code_challenge: str
    response_mode: str

    def to_data(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "AuthorizationRequest":
        return cls(**data)


def parse_scope(scope: str) -> tuple[str, str]:
    """The scope (normalised) and the device it names; OAuthError invalid_scope."""
    scopes = scope.split()
    devices = [s.split(":")[-1] for s in scopes if s.startswith(SCOPE_DEVICE)]
    if not any(s in SCOPE_API for s in scopes) or len(devices) != 1:
        raise OAuthError("invalid_scope", "The scope must grant the client-server API and "
                                          "name one device")
    device_id = devices[0]
    if not 1 <= len(device_id) <= 255 or not set(device_id) <= _DEVICE_ID_CHARS:
        raise OAuthError("invalid_scope", "Not a valid device ID")
    return " ".join(scopes), device_id


def _host_suffix(host: str, base: str) -> bool:
    return host == base or host.endswith("." + base)


def _valid_redirect_uri(uri: Any, client_host: str, application_type: str) -> bool:
    if not isinstance(uri, str) or "#" in uri:
        return False
    parts = urlsplit(uri)
    if parts.scheme == "https":
        return parts.username is None and parts.password is None and \
            _host_suffix(parts.hostname or "", client_host)
    if application_type != "native":
        return False
    if parts.scheme == "http":
        return parts.netloc in _LOOPBACK_HOSTS and parts.port is None
    # a private-use scheme: the client host in reverse-DNS, no authority
    reversed_host = ".".join(reversed(client_host.split(".")))
    return (parts.scheme == reversed_host or parts.scheme.startswith(reversed_host + ".")) \
        and not uri[len(parts.scheme) + 1:].startswith("//")


def _redirect_matches(registered: list[str], given: str) -> bool:
    if given in registered:
        return True
    parts = urlsplit(given)
    # RFC 8252 7.3: a loopback redirect may use any port
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"):
        netloc = parts.netloc.rsplit(":", 1)[0] if parts.port is not None else parts.netloc
        return urlunsplit(parts._replace(netloc=netloc)) in registered
    return False


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


class OAuthServer:
    def __init__(self, ctx: "ServerContext", db: "Database", store: "OAuthStore",
                 logins: "Logins") -> None:
        self.ctx = ctx
        # a token grant logs in as password login does: one transaction
        self.db = db
        self.store = store
        self.logins = logins

    @property
    def base(self) -> str:
        return f"{self.ctx.config.public_baseurl}{OAUTH_PATH}"

    def metadata(self) -> dict[str, Any]:
        """The server metadata (RFC 8414 fields the spec asks for)."""
        base = self.base
        return {
            "issuer": self.ctx.config.public_baseurl,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "registration_endpoint": f"{base}/register",
            "revocation_endpoint": f"{base}/revoke",
            "device_authorization_endpoint": f"{base}/device",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["urn:matrix:client:api:*"],
        }

    # -- registration ----------------------------------------------------------------

    async def register_client(self, metadata: dict[str, Any]) -> dict[str, Any]:
        client_uri = metadata.get("client_uri")
        parts = urlsplit(client_uri) if isinstance(client_uri, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname or \
                parts.username is not None or _is_ip(parts.hostname):
            raise OAuthError("invalid_client_metadata", "client_uri must be an https URL")
        application_type = metadata.get("application_type", "web")
        if application_type not in ("web", "native"):
            raise OAuthError("invalid_client_metadata", "unknown application_type")
        method = metadata.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise OAuthError("invalid_client_metadata",
                             "only public clients (token_endpoint_auth_method none)")
        redirect_uris = metadata.get("redirect_uris")
        if not isinstance(redirect_uris, list) or not redirect_uris or not all(
                _valid_redirect_uri(u, parts.hostname, application_type)
                for u in redirect_uris):
            raise OAuthError("invalid_redirect_uri",
                             "redirect_uris break the spec's rules for this client")
        grant_types = metadata.get("grant_types", ["authorization_code"])
        if not isinstance(grant_types, list) or not set(grant_types) <= {
                "authorization_code", "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code"}:
            raise OAuthError("invalid_client_metadata", "unsupported grant_types")
        for name in ("logo_uri", "tos_uri", "policy_uri"):
            value = metadata.get(name)
            if value is not None and (not isinstance(value, str) or not _host_suffix(
                    urlsplit(value).hostname or "", parts.hostname)):
                raise OAuthError("invalid_client_metadata",
                                 f"{name} must be under the client_uri's host")
        client_name = metadata.get("client_name")
        kept = {k: v for k, v in metadata.items() if isinstance(k, str) and len(k) < 100}
        kept.update({"application_type": application_type,
                     "token_endpoint_auth_method": "none",
                     "grant_types": grant_types, "response_types": ["code"]})
        if client_name is not None and not isinstance(client_name, str):
            raise OAuthError("invalid_client_metadata", "client_name must be a string")
        client_id = secrets.token_urlsafe(18)
        await self.store.add_client(client_id, kept, self.ctx.now_ms())
        return {"client_id": client_id,
                "client_id_issued_at": self.ctx.now_ms() // 1000, **kept}

    # -- authorization ---------------------------------------------------------------

    async def check_authorization(self, args: dict[str, str]) -> AuthorizationRequest:
        """The request, checked; BadAuthorizationRequest when the client or
        redirect URI is wrong (no redirect), OAuthError (to redirect) else."""
        client_id = args.get("client_id", "")
        client = await self.store.get_client(client_id) if client_id else None
        if client is None:
            raise BadAuthorizationRequest("Unknown client")
        redirect_uri = args.get("redirect_uri", "")
        if not _redirect_matches(client.get("redirect_uris", []), redirect_uri):
            raise BadAuthorizationRequest("This redirect URI is not the client's")
        if args.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "Only response_type=code")
        mode = args.get("response_mode", "query")
        if mode not in ("query", "fragment"):
            raise OAuthError("invalid_request", "Unknown response_mode")
        if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
            raise OAuthError("invalid_request", "PKCE with S256 is required")
        scope, device_id = parse_scope(args.get("scope", ""))
        return AuthorizationRequest(client_id, str(client.get("client_name") or client_id),
                                    redirect_uri, args.get("state"), scope,
                                    device_id, args["code_challenge"], mode)

    def error_redirect(self, redirect_uri: str, error: OAuthError, state: str | None,
                       mode: str = "query") -> str:
        params = {"error": error.error, "error_description": error.description}
        if state is not None:
            params["state"] = state
        return _with_params(redirect_uri, params, mode)

    async def grant(self, request: AuthorizationRequest, user_id: str) -> str:
        """The signed-in user allowed the request: the redirect with the code."""
        info = await self.logins.users.get_user(user_id)
        if info is None or info.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        code = secrets.token_urlsafe(32)
        now = self.ctx.now_ms()
        await self.store.add_code(code, AuthorizationCode(
            request.client_id, request.redirect_uri, request.code_challenge, user_id,
            request.device_id, request.scope), now + CODE_LIFETIME_MS, now)
        params = {"code": code}
        if request.state is not None:
            params["state"] = request.state
        return _with_params(request.redirect_uri, params, request.response_mode)

    # -- tokens ----------------------------------------------------------------------

    async def token(self, form: dict[str, str]) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        client_id = form.get("client_id", "")
        if not client_id or await self.store.get_client(client_id) is None:
            raise OAuthError("invalid_client", "Unknown client", 401)
        if grant_type == "authorization_code":
            return await self._code_grant(form, client_id)
        if grant_type == DEVICE_GRANT:
            return await self._device_code_grant(form, client_id)
        if grant_type == "refresh_token":
            try:
                refreshed = await self.logins.refresh_session(form.get("refresh_token", ""))
            except MatrixError:
                raise OAuthError("invalid_grant", "Unknown or used refresh token") from None
            return {"access_token": refreshed.access_token, "token_type": "Bearer",
                    "expires_in": refreshed.expires_in_ms // 1000,
                    "refresh_token": refreshed.refresh_token}
        raise OAuthError("unsupported_grant_type", "Unsupported grant_type")

    async def _code_grant(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        grant = await self.store.spend_code(form.get("code", ""), self.ctx.now_ms())
        if grant is None or grant.client_id != client_id or \
                grant.redirect_uri != form.get("redirect_uri"):
            raise OAuthError("invalid_grant", "Unknown, expired or used code")
        verifier = form.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(s256(verifier), grant.code_challenge):
            raise OAuthError("invalid_grant", "The code_verifier does not match")
        client = await self.store.get_client(client_id) or {}
        session = await self.db.run_interaction(
            "oauth_login", login_txn, self.ctx.config, self.ctx.now_ms(), grant.user_id,
            grant.device_id, client.get("client_name"), True)
        assert session.expires_in_ms is not None
        return {"access_token": session.access_token, "token_type": "Bearer",
                "expires_in": session.expires_in_ms // 1000,
                "refresh_token": session.refresh_token, "scope": grant.scope}

    # -- the device authorization grant (RFC 8628) -------------------------------------

    async def device_authorization(self, form: dict[str, str]) -> dict[str, Any]:
        """``POST .../device``: codes for a device without a browser."""
        client_id = form.get("client_id", "")
        client = await self.store.get_client(client_id) if client_id else None
        if client is None:
            raise OAuthError("invalid_client", "Unknown client", 401)
        if DEVICE_GRANT not in client.get("grant_types", []):
            raise OAuthError("unauthorized_client", "The client did not register this grant")
        scope, device_id = parse_scope(form.get("scope", ""))
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(_USER_CODE_CHARS) for _ in range(8))
        user_code = f"{user_code[:4]}-{user_code[4:]}"
        now = self.ctx.now_ms()
        await self.store.add_device_grant(device_code, DeviceGrant(
            user_code, client_id, scope, device_id, "pending", None,
            now + DEVICE_CODE_LIFETIME_MS), now)
        link = f"{self.base}/link"
        return {"device_code": device_code, "user_code": user_code,
                "verification_uri": link,
                "verification_uri_complete": f"{link}?{urlencode({'user_code': user_code})}",
                "expires_in": DEVICE_CODE_LIFETIME_MS // 1000,
                "interval": DEVICE_POLL_INTERVAL_S}

    async def pending_device_grant(self, user_code: str) -> tuple[DeviceGrant, str]:
        """The grant a user typed the code of, and its client's name."""
        grant = await self.store.get_device_grant_by_user_code(user_code.strip().upper())
        if grant is None or grant.status != "pending" or grant.expiry_ts <= self.ctx.now_ms():
            raise BadAuthorizationRequest("This code is unknown, used or expired")
        client = await self.store.get_client(grant.client_id) or {}
        return grant, str(client.get("client_name") or grant.client_id)

    async def approve_device(self, user_code: str, user_id: str) -> None:
        if not await self.store.approve_device_grant(user_code, user_id, self.ctx.now_ms()):
            raise BadAuthorizationRequest("This code is unknown, used or expired")

    async def _device_code_grant(self, form: dict[str, str],
                                 client_id: str) -> dict[str, Any]:
        device_code = form.get("device_code", "")
        now = self.ctx.now_ms()
        polled = await self.store.poll_device_grant(device_code, now) if device_code else None
        if polled is None or polled[0].client_id != client_id:
            raise OAuthError("invalid_grant", "Unknown device code")
        grant, last_poll = polled
        if grant.expiry_ts <= now:
            raise OAuthError("expired_token", "The device code has expired")
        if grant.status == "denied":
            raise OAuthError("access_denied", "The user said no")
        if grant.status == "pending":
            if now - last_poll < DEVICE_POLL_INTERVAL_S * 1000 // 2:
                raise OAuthError("slow_down", "Polling too often")
            raise OAuthError("authorization_pending", "The user has not approved yet")
        if grant.status != "approved" or grant.user_id is None or \
                not await self.store.spend_device_grant(device_code):
            raise OAuthError("invalid_grant", "This device code was already used")
        client = await self.store.get_client(client_id) or {}
        session = await self.db.run_interaction(
            "oauth_login", login_txn, self.ctx.config, now, grant.user_id, grant.device_id,
            client.get("client_name"), True)
        assert session.expires_in_ms is not None
        return {"access_token": session.access_token, "token_type": "Bearer",
                "expires_in": session.expires_in_ms // 1000,
                "refresh_token": session.refresh_token, "scope": grant.scope}

    async def revoke(self, form: dict[str, str]) -> None:
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "Missing token")
        await self.store.revoke(hash_token(token))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _with_params(uri: str, params: dict[str, str], mode: str) -> str:
    parts = urlsplit(uri)
    if mode == "fragment":
        return urlunsplit(parts._replace(fragment=urlencode(params)))
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))
