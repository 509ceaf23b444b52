"""``org.matrix.login.jwt``: log in with a JSON Web Token (Synapse's ``jwt_config``).

A trusted service (the organisation's own app backend) signs a JWT whose
subject claim is the user's localpart (or full user ID on this server); the
client sends it as ``token`` in ``POST /login``. The token is checked with
joserfc (never by hand): signature with the configured ``secret`` (an HMAC
secret, or a PEM public key for the RSA, EC and EdDSA algorithms) and only
the configured ``algorithm``; ``exp`` and ``nbf`` when present; ``iss`` when
``issuer`` is set; ``aud`` against ``audiences`` when set, and refused when
the token names an audience but none is configured (as Synapse). The first
login of a subject creates the account, its display name from
``display_name_claim`` when set. Every failure is 403 M_FORBIDDEN.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_localpart
from homeserver.errors import Codes, MatrixError, forbidden

if TYPE_CHECKING:
    from homeserver.accounts.login import Logins
    from homeserver.accounts.registration import Registrations
    from homeserver.accounts.sso_config import JwtLogin
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

LOGIN_TYPE_JWT = "org.matrix.login.jwt"

_KEY_TYPES = {"HS": "oct", "RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class JwtLogins:
    """Checks JWTs and finds (or creates) the user each names."""

    def __init__(self, ctx: "ServerContext", settings: "JwtLogin", logins: "Logins",
                 registrations: "Registrations") -> None:
        self.ctx = ctx
        self.settings = settings
        self.logins = logins
        self.registrations = registrations
        # joserfc (and cryptography) load only when JWT login is configured
        from joserfc.jwk import import_key

        key_type = _KEY_TYPES[settings.algorithm[:2]]
        self._key: Any = import_key(settings.secret, key_type)  # type: ignore[call-overload]

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims once it is checked; 403 M_FORBIDDEN otherwise."""
        from joserfc import jwt
        from joserfc.errors import JoseError

        s = self.settings
        try:
            decoded = jwt.decode(token, self._key, algorithms=[s.algorithm])
            options: dict[str, Any] = {"exp": {"essential": False},
                                       "nbf": {"essential": False}}
            if s.issuer is not None:
                options["iss"] = {"essential": True, "value": s.issuer}
            if s.audiences:
                options["aud"] = {"essential": True, "values": list(s.audiences)}
            jwt.JWTClaimsRegistry(now=self.ctx.now_ms() // 1000, **options).validate(
                decoded.claims)
        except (JoseError, ValueError) as e:
            raise forbidden(f"JWT validation failed: {e}") from None
        claims = dict(decoded.claims)
        if not s.audiences and "aud" in claims:
            raise forbidden("JWT validation failed: the token names an audience")
        return claims

    async def check(self, token: str) -> str:
        """The user ``token`` logs in, created on its first login."""
        claims = self.claims(token)
        subject = claims.get(self.settings.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise forbidden("Invalid JWT")
        hostname = self.ctx.hostname
        localpart = subject
        if subject.startswith("@"):
            if not subject.endswith(f":{hostname}"):
                raise forbidden("Invalid JWT: the subject is not a user of this server")
            localpart = subject[1:-len(hostname) - 1]
        if not is_valid_localpart(localpart.lower()):
            raise forbidden("Invalid JWT: the subject is not a valid username")
        localpart = localpart.lower()
        user_id = await self.logins.find_local_user(f"@{localpart}:{hostname}")
        if user_id is not None:
            info = await self.logins.users.get_user(user_id)
            if info is not None and info.deactivated:
                raise MatrixError(403, Codes.USER_DEACTIVATED,
                                  "This account has been deactivated")
            return user_id
        display_name = None
        if self.settings.display_name_claim is not None:
            value = claims.get(self.settings.display_name_claim)
            display_name = value if isinstance(value, str) and value else None
        from homeserver.accounts.registration import NewAccount
        try:
            registered = await self.registrations.create_account(
                NewAccount(localpart, None, displayname=display_name), None)
        except MatrixError as e:
            if e.errcode != Codes.USER_IN_USE:
                raise
            # a concurrent first login made it: log in to that account
            found = await self.logins.find_local_user(f"@{localpart}:{hostname}")
            if found is None:
                raise
            return found
        logger.info("JWT login created %s", registered.user_id)
        return registered.user_id
