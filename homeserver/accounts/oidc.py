"""Talking to an OpenID Connect provider: discovery, the authorization URL,
the code exchange, the ID token and userinfo.

One ``OidcClient`` per configured provider (``accounts/sso_config.py``
``OidcProvider``). The browser-facing steps and what the answer means for
accounts are ``accounts/sso.py``; this module only speaks OAuth 2.0 and
OpenID Connect:

- Metadata: ``{issuer}/.well-known/openid-configuration`` when ``discover``
  is on (its ``issuer`` must equal the configured one unless
  ``skip_verification``), with explicitly configured endpoints taking
  precedence; fetched once and kept.
- The authorization code flow with PKCE (S256; ``pkce_method``: ``auto``
  uses it when the provider advertises S256, ``always``, ``never``), a
  ``state`` bound to the browser's cookie and a ``nonce`` bound to the ID
  token (both checked by ``sso.py`` and here).
- The token endpoint is called with the client's credentials
  (``client_auth_method``: HTTP Basic, in the form, or none).
- The ID token is checked with joserfc against the provider's JWKS (fetched
  again once when a token names a key we have not seen, for key rotation):
  signature with the allowed algorithms only, ``iss``, ``aud`` containing our
  client ID, ``exp``, ``iat``, and ``nonce``.
- userinfo (with the access token) when ``user_profile_method`` says so or
  the scopes are not OpenID's; its ``sub`` must match the ID token's.

Every request goes through the outbound guard (``http/outbound.py``:
``ip_range_blacklist`` minus ``ip_range_whitelist``), with a timeout and a
size limit; a provider that is down, slow or answers nonsense raises
``OidcError`` with a message for the user's error page, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlencode

from twisted.internet import defer
from twisted.web.http_headers import Headers

from homeserver.federation.discovery import read_body
from homeserver.http.outbound import IPFilter, guarded_agent, https_policy

if TYPE_CHECKING:
    from joserfc.jwk import KeySet

    from homeserver.accounts.sso_config import OidcProvider
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0
MAX_ANSWER_BYTES = 1024 * 1024
# clock difference allowed with the provider when checking exp and iat
LEEWAY_S = 120


class OidcError(Exception):
    """The sign-in cannot go on; ``str()`` is safe to show the user."""


@dataclass(frozen=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None
    jwks_uri: str | None
    code_challenge_methods: tuple[str, ...]


@dataclass(frozen=True)
class AuthRequest:
    """What the browser is sent to, and what must be kept to check the answer."""

    url: str
    state: str
    nonce: str
    code_verifier: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class OidcClient:
    """The relying party of one provider."""

    def __init__(self, ctx: "ServerContext", provider: "OidcProvider",
                 context_factory: Any = None) -> None:
        self.ctx = ctx
        self.provider = provider
        self._agent = guarded_agent(ctx.reactor, IPFilter.from_config(ctx.config),
                                    connect_timeout_s=TIMEOUT_S,
                                    context_factory=context_factory
                                    if context_factory is not None
                                    else https_policy(ctx.config))
        self._metadata: Metadata | None = None
        self._jwks: KeySet | None = None

    @property
    def redirect_uri(self) -> str:
        return f"{self.ctx.config.public_baseurl}_synapse/client/oidc/callback"

    # -- HTTP ----------------------------------------------------------------------

    async def _request(self, method: str, url: str, *, form: dict[str, str] | None = None,
                       headers: dict[str, str] | None = None) -> dict[str, Any]:
        hdrs = Headers({b"User-Agent": [b"homeserver"], b"Accept": [b"application/json"]})
        for name, value in (headers or {}).items():
            hdrs.addRawHeader(name.encode("ascii"), value.encode("utf-8"))
        producer: Any = None
        if form is not None:
            hdrs.addRawHeader(b"Content-Type", b"application/x-www-form-urlencoded")
            from twisted.web.client import FileBodyProducer

            producer = FileBodyProducer(BytesIO(urlencode(form).encode("utf-8")))

        async def send() -> tuple[int, bytes]:
            response = await self._agent.request(method.encode("ascii"), url.encode("utf-8"),
                                                 hdrs, producer)
            return response.code, await read_body(response, MAX_ANSWER_BYTES)

        d = defer.ensureDeferred(send())
        d.addTimeout(TIMEOUT_S, self.ctx.reactor)
        try:
            code, raw = await d
        except Exception as e:
            logger.warning("OIDC %s: %s %s failed: %s", self.provider.idp_id, method,
                           url.split("?")[0], e)
            raise OidcError("The identity provider could not be reached") from None
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            logger.warning("OIDC %s: %s %s answered %d without a JSON object",
                           self.provider.idp_id, method, url.split("?")[0], code)
            raise OidcError("The identity provider gave an unexpected answer")
        if not 200 <= code < 300:
            logger.warning("OIDC %s: %s %s answered %d: %s", self.provider.idp_id, method,
                           url.split("?")[0], code, parsed.get("error"))
            raise OidcError(f"The identity provider refused: {parsed.get('error', code)}")
        return parsed

    # -- metadata and keys -------------------------------------------------------------

    async def metadata(self) -> Metadata:
        if self._metadata is not None:
            return self._metadata
        p = self.provider
        found: dict[str, Any] = {}
        if p.discover:
            url = p.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await self._request("GET", url)
            if not p.skip_verification and found.get("issuer") != p.issuer:
                raise OidcError("The identity provider's metadata names another issuer")

        def pick(name: str) -> str | None:
            value = getattr(p, name) or found.get(name)
            return value if isinstance(value, str) and value else None

        authorization, token = pick("authorization_endpoint"), pick("token_endpoint")
        if authorization is None or token is None:
            raise OidcError("The identity provider's metadata lacks its endpoints")
        methods = found.get("code_challenge_methods_supported")
        meta = Metadata(
            issuer=p.issuer, authorization_endpoint=authorization, token_endpoint=token,
            userinfo_endpoint=pick("userinfo_endpoint"), jwks_uri=pick("jwks_uri"),
            code_challenge_methods=tuple(m for m in methods if isinstance(m, str))
            if isinstance(methods, list) else ())
        for endpoint in (meta.authorization_endpoint, meta.token_endpoint,
                         meta.userinfo_endpoint, meta.jwks_uri):
            if endpoint is not None and not p.skip_verification and not endpoint.startswith("https://"):
                raise OidcError("The identity provider's endpoints must use https")
        self._metadata = meta
        return meta

    async def _keys(self, refresh: bool = False) -> KeySet:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        if self._jwks is not None and not refresh:
            return self._jwks
        meta = await self.metadata()
        if meta.jwks_uri is None:
            raise OidcError("The identity provider publishes no signing keys")
        answer = await self._request("GET", meta.jwks_uri)
        try:
            self._jwks = KeySet.import_key_set(answer)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise OidcError("The identity provider's signing keys are unreadable") from None
        return self._jwks

    # -- the flow ------------------------------------------------------------------

    async def authorization_request(self) -> AuthRequest:
        """A fresh authorization URL with its state, nonce and PKCE verifier."""
        p = self.provider
        meta = await self.metadata()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        params = {"response_type": "code", "client_id": p.client_id,
                  "redirect_uri": self.redirect_uri, "scope": " ".join(p.scopes),
                  "state": state, "nonce": nonce}
        verifier = None
        if p.pkce_method == "always" or (p.pkce_method == "auto"
                                         and "S256" in meta.code_challenge_methods):
            verifier = secrets.token_urlsafe(48)
            params["code_challenge"] = _b64(hashlib.sha256(verifier.encode("ascii")).digest())
            params["code_challenge_method"] = "S256"
        params.update(p.additional_authorization_parameters)
        sep = "&" if "?" in meta.authorization_endpoint else "?"
        return AuthRequest(f"{meta.authorization_endpoint}{sep}{urlencode(params)}", state,
                           nonce, verifier)

    async def exchange_code(self, code: str, nonce: str,
                            code_verifier: str | None) -> dict[str, Any]:
        """The user's claims: the checked ID token's, and userinfo's when asked for."""
        p = self.provider
        meta = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        headers = {}
        if p.client_auth_method == "client_secret_basic":
            assert p.client_secret is not None
            # RFC 6749 2.3.1: each part form-encoded before Basic
            pair = f"{_form(p.client_id)}:{_form(p.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = p.client_id
            if p.client_auth_method == "client_secret_post":
                assert p.client_secret is not None
                form["client_secret"] = p.client_secret
        tokens = await self._request("POST", meta.token_endpoint, form=form, headers=headers)
        access_token = tokens.get("access_token")
        if not isinstance(access_token, str):
            raise OidcError("The identity provider gave no access token")
        claims: dict[str, Any] = {}
        if p.uses_openid:
            id_token = tokens.get("id_token")
            if not isinstance(id_token, str):
                raise OidcError("The identity provider gave no ID token")
            claims = await self.check_id_token(id_token, nonce)
        if p.user_profile_method == "userinfo_endpoint" or not p.uses_openid:
            if meta.userinfo_endpoint is None:
                raise OidcError("The identity provider has no userinfo endpoint")
            info = await self._request("GET", meta.userinfo_endpoint,
                                       headers={"Authorization": f"Bearer {access_token}"})
            if "sub" in claims and info.get("sub") != claims["sub"]:
                raise OidcError("The identity provider's userinfo is for another user")
            claims = {**claims, **info}
        return claims

    async def check_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError

        p = self.provider
        meta = await self.metadata()
        keys = await self._keys()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=list(p.id_token_algorithms))
            except InvalidKeyIdError:
                # a key we have not seen: the provider may have rotated its keys
                token = jwt.decode(id_token, await self._keys(refresh=True),
                                   algorithms=list(p.id_token_algorithms))
            jwt.JWTClaimsRegistry(
                now=self.ctx.now_ms() // 1000, leeway=LEEWAY_S,
                iss={"essential": True, "value": meta.issuer},
                aud={"essential": True, "value": p.client_id},
                exp={"essential": True}, iat={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as e:
            logger.warning("OIDC %s: ID token refused: %s", p.idp_id, e)
            raise OidcError("The identity provider's ID token is not valid") from None
        claims = dict(token.claims)
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != p.client_id:
            raise OidcError("The identity provider's ID token is for another client")
        return claims

    async def check_logout_token(self, logout_token: str) -> dict[str, Any]:
        """A back-channel logout token's claims (OpenID Connect Back-Channel
        Logout 1.0, 2.6): signed by the provider, ``iss``, ``aud``, ``iat``,
        the logout event, no ``nonce``, and a ``sid`` (we log out sessions,
        as Synapse does)."""
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError

        p = self.provider
        meta = await self.metadata()
        try:
            try:
                token = jwt.decode(logout_token, await self._keys(),
                                   algorithms=list(p.id_token_algorithms))
            except InvalidKeyIdError:
                token = jwt.decode(logout_token, await self._keys(refresh=True),
                                   algorithms=list(p.id_token_algorithms))
            jwt.JWTClaimsRegistry(
                now=self.ctx.now_ms() // 1000, leeway=LEEWAY_S,
                iss={"essential": True, "value": meta.issuer},
                aud={"essential": True, "value": p.client_id},
                iat={"essential": True}, sid={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as e:
            logger.warning("OIDC %s: logout token refused: %s", p.idp_id, e)
            raise OidcError("The logout token is not valid") from None
        claims = dict(token.claims)
        events = claims.get("events")
        if not isinstance(events, dict) or BACKCHANNEL_LOGOUT_EVENT not in events:
            raise OidcError("The logout token has no logout event")
        if "nonce" in claims:
            raise OidcError("A logout token may not have a nonce")
        if not isinstance(claims.get("sid"), str):
            raise OidcError("The logout token names no session")
        return claims


BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` a JWT claims, unchecked: only to choose whose keys check it."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    return iss if isinstance(iss, str) else None


def _form(value: str) -> str:
    return quote_plus(value)
