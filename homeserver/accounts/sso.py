"""Single sign-on: a browser goes to the identity provider and comes back
signed in, and the client logs in with the login token it is handed.

The walk (docs/sso.md has it with the config keys):

1. ``GET /login/sso/redirect[/{idpId}]?redirectUrl=`` (``start``): the
   client's redirect URL is checked; a sign-in session is stored (the
   SHA-256 of a random secret names it, the secret goes to the browser in an
   HttpOnly cookie scoped to the callback path) with the ``state``, ``nonce``
   and PKCE verifier; the browser goes to the provider.
2. The provider sends the browser to ``/_synapse/client/oidc/callback``
   (``callback``): the cookie's session is taken (deleted: a replayed
   callback finds nothing), the ``state`` must equal the session's, the code
   is exchanged and the ID token checked (``accounts/oidc.py``, nonce
   included), then ``attribute_requirements`` are checked.
3. The user: the subject already linked to an account (``user_external_ids``)
   signs in to it; else the ``localpart_template`` proposes a username; a
   free one is registered and linked in one transaction; an existing account
   of that name is linked only with ``allow_existing_users``; with no usable
   name, a taken one or ``confirm_localpart``, the browser is sent to the
   username picker (a second session, its own cookie), which registers and
   links once the user picks a free, valid name.
4. ``_complete``: a login token (two minutes, single use,
   ``accounts/login_tokens.py``; it remembers the provider's session, the ID
   token's ``sid``, so that the provider's back-channel logout can end the
   device it makes) is added to the client's redirect URL. A URL
   under ``sso.client_whitelist`` (or our own login fallback) is redirected
   to straight away; any other gets a confirmation page first, so a link
   crafted by someone else cannot silently hand them the user's session.

CAS (``cas_ticket``) takes the same steps 3 and 4 (without the picker: a CAS
user of an existing account's name is that account, as on Synapse).
``m.login.sso`` in user-interactive auth (``uia_fallback``) sends the user
to a provider they are linked to and records whom it vouched for.

Failures the user should see (wrong state, expired session, provider down,
not allowed) raise ``SsoError``, rendered as an error page; nothing is
created unless the account and its link are both written.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from homeserver.accounts.cas import CasClient, CasError
from homeserver.accounts.identifiers import MAX_USER_ID_LENGTH, is_valid_localpart
from homeserver.accounts.login_tokens import SSO_LOGIN_TOKEN_LIFETIME_MS
from homeserver.accounts.oidc import OidcClient, OidcError, unverified_issuer
from homeserver.accounts.sso_config import CAS_IDP_ID, render
from homeserver.accounts.uia import SESSION_LIFETIME_MS as UIA_SESSION_LIFETIME_MS
from homeserver.errors import Codes, MatrixError, missing_param
from homeserver.storage.database import Txn
from homeserver.storage.sso import SsoSession, SsoStore
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.accounts.login_tokens import LoginTokens
    from homeserver.accounts.sso_config import CasProvider, OidcProvider, SsoConfig
    from homeserver.accounts.uia import UiAuth
    from homeserver.context import ServerContext
    from homeserver.identity.threepids import Threepids
    from homeserver.storage.database import Database

logger = logging.getLogger(__name__)

OIDC_KIND = "oidc"
USERNAME_KIND = "username"
OIDC_COOKIE = "oidc_session"
OIDC_COOKIE_PATH = "/_synapse/client/oidc"
USERNAME_COOKIE = "username_mapping_session"
USERNAME_COOKIE_PATH = "/_synapse/client/pick_username"
PICK_USERNAME_PATH = "_synapse/client/pick_username/account"
# a sign-in left at the provider this long is forgotten (Synapse: one hour)
OIDC_SESSION_LIFETIME_MS = 3_600_000
USERNAME_SESSION_LIFETIME_MS = 15 * 60_000
# schemes a redirect URL may not have: they would run in our page's origin
_FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob"})
_NOT_IN_LOCALPART = re.compile(r"[^a-z0-9._=/+-]")


class SsoError(Exception):
    """A sign-in that cannot go on: shown to the user as an error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Cookie:
    name: str
    value: str
    path: str
    max_age_s: int


@dataclass(frozen=True)
class Redirect:
    """Send the browser to ``url`` (setting or clearing a cookie)."""

    url: str
    cookie: Cookie | None = None


@dataclass(frozen=True)
class ConfirmRedirect:
    """Ask the user before handing their login token to ``url``."""

    url: str
    user_id: str
    client_host: str
    cookie: Cookie | None = None


@dataclass(frozen=True)
class ChooseProvider:
    """Several providers and none named: let the user choose."""

    providers: tuple["OidcProvider | CasProvider", ...]
    redirect_url: str


@dataclass(frozen=True)
class ConfirmIdentity:
    """The UIA fallback page: prove who you are at ``idp_name`` (``url``)
    before ``description`` goes ahead."""

    idp_name: str
    url: str
    description: str
    cookie: Cookie | None = None


@dataclass(frozen=True)
class IdentityConfirmed:
    """The UIA stage is done: the page tells the client (``onAuthDone``)."""


@dataclass(frozen=True)
class UsernameForm:
    """The username picker, with what the provider suggested and why the
    last choice was refused."""

    idp_name: str
    suggestion: str
    display_name: str | None
    error: str | None = None


SsoAnswer = Redirect | ConfirmRedirect | ChooseProvider | UsernameForm | ConfirmIdentity | \
    IdentityConfirmed


def map_to_localpart(name: str) -> str:
    """A username from the provider as a valid localpart: lower case, other
    characters written as ``=xx`` (their UTF-8 bytes in hex), as Synapse maps
    them; a leading ``_`` (reserved for bridges) escaped too."""
    lowered = name.lower()
    out = _NOT_IN_LOCALPART.sub(
        lambda m: "".join(f"={b:02x}" for b in m.group(0).encode("utf-8")), lowered)
    if out.startswith("_"):
        out = "=5f" + out[1:]
    return out


def with_login_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.append(("loginToken", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _register_txn(txn: Txn, now: int, user_id: str, display_name: str | None, idp_id: str,
                  subject: str, picker_secret: str | None) -> None:
    """The account and its link, or neither; the picker's session is spent
    in the same transaction, so it can be used once."""
    if picker_secret is not None and not SsoStore.delete_session_txn(
            txn, picker_secret, USERNAME_KIND):
        raise SsoError(400, "This sign-in has expired or was already used; start again")
    UserStore.create_user_txn(txn, user_id, None, now, displayname=display_name)
    if not SsoStore.add_external_id_txn(txn, idp_id, subject, user_id):
        raise SsoError(409, "This identity is already linked to another account")


def _link_txn(txn: Txn, user_id: str, idp_id: str, subject: str,
              picker_secret: str | None) -> None:
    if picker_secret is not None and not SsoStore.delete_session_txn(
            txn, picker_secret, USERNAME_KIND):
        raise SsoError(400, "This sign-in has expired or was already used; start again")
    if not SsoStore.add_external_id_txn(txn, idp_id, subject, user_id):
        raise SsoError(409, "This identity is already linked to another account")


class SsoHandler:
    """The SSO walk of the module docstring, for every configured provider."""

    def __init__(self, ctx: "ServerContext", db: "Database", store: SsoStore,
                 users: UserStore, login_tokens: "LoginTokens", ui_auth: "UiAuth",
                 threepids: "Threepids | None" = None,
                 context_factory: Any = None) -> None:
        self.ctx = ctx
        # registering and linking is one transaction over two stores
        self.db = db
        self.store = store
        self.users = users
        self.login_tokens = login_tokens
        # m.login.sso in user-interactive auth: the stage is completed here
        self.ui_auth = ui_auth
        # addresses from email_template are added to new accounts
        self.threepids = threepids
        self.config: "SsoConfig" = ctx.config.sso_config
        self.clients = {p.idp_id: OidcClient(ctx, p, context_factory)
                        for p in self.config.providers}
        self.cas = CasClient(ctx, self.config.cas) if self.config.cas is not None else None

    # -- 1. to the provider ---------------------------------------------------------

    def check_redirect_url(self, redirect_url: str | None) -> str:
        if redirect_url is None:
            raise missing_param("redirectUrl")
        parts = urlsplit(redirect_url)
        if not parts.scheme or parts.scheme.lower() in _FORBIDDEN_SCHEMES or \
                any(c in redirect_url for c in "\r\n\x00"):
            raise MatrixError(400, Codes.INVALID_PARAM, "redirectUrl is not a usable URL")
        return redirect_url

    async def start(self, idp_id: str | None, redirect_url: str | None) -> SsoAnswer:
        """``GET /login/sso/redirect[/{idpId}]``: where the browser goes next."""
        redirect_url = self.check_redirect_url(redirect_url)
        if idp_id is None:
            providers = self.config.identity_providers
            if len(providers) != 1:
                return ChooseProvider(providers, redirect_url)
            idp_id = providers[0].idp_id
        if idp_id == CAS_IDP_ID and self.cas is not None:
            return Redirect(self.cas.login_url({"redirectUrl": redirect_url}))
        return await self._to_oidc_provider(idp_id, redirect_url, {})

    async def _to_oidc_provider(self, idp_id: str, redirect_url: str,
                                extra: dict[str, Any]) -> Redirect:
        client = self.clients.get(idp_id)
        if client is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown identity provider")
        try:
            request = await client.authorization_request()
        except OidcError as e:
            raise SsoError(502, str(e)) from None
        secret = secrets.token_urlsafe(32)
        data = {"state": request.state, "nonce": request.nonce,
                "code_verifier": request.code_verifier, **extra}
        await self.store.add_session(
            secret, SsoSession(OIDC_KIND, idp_id, redirect_url, data, self.ctx.now_ms()),
            OIDC_SESSION_LIFETIME_MS)
        return Redirect(request.url, Cookie(OIDC_COOKIE, secret, OIDC_COOKIE_PATH,
                                            OIDC_SESSION_LIFETIME_MS // 1000))

    # -- 2. back from the provider -----------------------------------------------------

    async def callback(self, secret: str | None, args: dict[str, str]) -> SsoAnswer:
        """``GET /_synapse/client/oidc/callback``."""
        if "error" in args:
            # the provider said no (the user cancelled, or was refused)
            detail = args.get("error_description") or args["error"]
            raise SsoError(400, f"The identity provider did not sign you in: {detail}")
        if not secret:
            raise SsoError(400, "No sign-in is in progress in this browser (missing "
                                "session cookie)")
        session = await self.store.take_session(secret, OIDC_KIND)
        if session is None or session.created_ts + OIDC_SESSION_LIFETIME_MS <= \
                self.ctx.now_ms():
            raise SsoError(400, "This sign-in has expired or was already used; start again")
        state = args.get("state", "")
        if not hmac.compare_digest(state.encode("utf-8"),
                                   str(session.data["state"]).encode("utf-8")):
            raise SsoError(400, "The sign-in does not match this browser's (state mismatch)")
        code = args.get("code")
        if not code:
            raise SsoError(400, "The identity provider sent no authorization code")
        client = self.clients.get(session.idp_id)
        if client is None:
            raise SsoError(400, "This identity provider is no longer configured")
        try:
            claims = await client.exchange_code(code, session.data["nonce"],
                                                session.data.get("code_verifier"))
        except OidcError as e:
            raise SsoError(502 if "reached" in str(e) else 400, str(e)) from None
        provider = client.provider
        uia_session = session.data.get("ui_auth_session")
        if isinstance(uia_session, str):
            self._check_requirements(provider.attribute_requirements, claims)
            subject = provider.subject(claims)
            if subject is None:
                raise SsoError(400, "The identity provider did not say who you are")
            return await self._confirm_identity(uia_session, provider.idp_id, subject)
        return await self._signed_in(provider, claims, session.client_redirect_url)

    @staticmethod
    def _check_requirements(requirements: Any, claims: dict[str, Any]) -> None:
        for requirement in requirements:
            if not requirement.satisfied_by(claims):
                raise SsoError(403, "You are not authorised to sign in here")

    # -- CAS ------------------------------------------------------------------------------

    async def cas_ticket(self, ticket: str | None, redirect_url: str | None,
                         uia_session: str | None) -> SsoAnswer:
        """``GET /login/cas/ticket``: the CAS server sent the browser back."""
        if self.cas is None:
            raise SsoError(404, "CAS is not enabled")
        if not ticket:
            raise SsoError(400, "The CAS server sent no ticket")
        if uia_session is not None:
            args = {"session": uia_session}
        else:
            args = {"redirectUrl": self.check_redirect_url(redirect_url)}
        try:
            cas_user = await self.cas.validate(ticket, args)
        except CasError as e:
            raise SsoError(502 if "reached" in str(e) else 400, str(e)) from None
        provider = self.cas.provider
        for name, required in provider.required_attributes.items():
            values = cas_user.attributes.get(name)
            if values is None or (required is not None and required not in values):
                raise SsoError(403, "You are not authorised to sign in here")
        if uia_session is not None:
            return await self._confirm_identity(uia_session, provider.idp_id,
                                                cas_user.username)
        assert redirect_url is not None
        linked = await self.store.get_user_by_external_id(provider.idp_id, cas_user.username)
        if linked is not None:
            return await self._complete(linked, redirect_url, provider.idp_id)
        localpart = map_to_localpart(cas_user.username)
        if not self._valid_localpart(localpart):
            raise SsoError(400, "Your CAS username cannot be a username here")
        user_id = f"@{localpart}:{self.ctx.hostname}"
        existing = await self.users.get_user_case_insensitive(user_id)
        if existing:
            # as Synapse: a CAS user of an existing account's name is its owner
            owner = user_id if user_id in existing else existing[0]
            await self.db.run_interaction("sso_link", _link_txn, owner, provider.idp_id,
                                          cas_user.username, None)
            return await self._complete(owner, redirect_url, provider.idp_id)
        if not provider.enable_registration:
            raise SsoError(403, "There is no account for you here, and CAS may not create one")
        display_name = None
        if provider.displayname_attribute is not None:
            names = cas_user.attributes.get(provider.displayname_attribute) or []
            display_name = names[0] if names and names[0] else None
        try:
            await self.db.run_interaction("sso_register", _register_txn, self.ctx.now_ms(),
                                          user_id, display_name, provider.idp_id,
                                          cas_user.username, None)
        except UserExists:
            raise SsoError(409, "This username was taken meanwhile; try again") from None
        return await self._complete(user_id, redirect_url, provider.idp_id)

    # -- m.login.sso in user-interactive auth ---------------------------------------------

    async def uia_fallback(self, session_id: str | None) -> ConfirmIdentity:
        """``GET /auth/m.login.sso/fallback/web?session=``: where to prove who you are."""
        if not session_id:
            raise SsoError(400, "Missing session")
        session = await self.ui_auth.sessions.get_session(session_id)
        if session is None or session.user_id is None or \
                session.creation_ts + UIA_SESSION_LIFETIME_MS <= self.ctx.now_ms():
            raise SsoError(400, "Unknown or expired authentication session")
        linked = [idp for idp, _ in await self.store.get_external_ids(session.user_id)]
        usable = [p.idp_id for p in self.config.identity_providers if p.idp_id in linked]
        if not usable:
            raise SsoError(400, "Your account is not linked to a configured identity provider")
        idp_id = usable[0]
        name = self.config.provider_name(idp_id)
        if idp_id == CAS_IDP_ID and self.cas is not None:
            return ConfirmIdentity(name, self.cas.login_url({"session": session_id}),
                                   session.description)
        redirect = await self._to_oidc_provider(idp_id, "", {"ui_auth_session": session_id})
        return ConfirmIdentity(name, redirect.url, session.description, redirect.cookie)

    async def _confirm_identity(self, uia_session: str, idp_id: str,
                                subject: str) -> IdentityConfirmed:
        # an identity linked to no one completes the stage as no one, and the
        # operation is then refused as another user's would be (Synapse)
        user_id = await self.store.get_user_by_external_id(idp_id, subject) or ""
        try:
            await self.ui_auth.complete_sso_stage(uia_session, user_id)
        except MatrixError:
            raise SsoError(400, "Unknown or expired authentication session") from None
        return IdentityConfirmed()

    # -- 3. which user ----------------------------------------------------------------

    async def _signed_in(self, provider: "OidcProvider", claims: dict[str, Any],
                         redirect_url: str) -> SsoAnswer:
        self._check_requirements(provider.attribute_requirements, claims)
        subject = provider.subject(claims)
        if subject is None:
            raise SsoError(400, "The identity provider did not say who you are")
        # the provider's session, for its back-channel logout
        sid = claims.get("sid") if isinstance(claims.get("sid"), str) else None
        linked = await self.store.get_user_by_external_id(provider.idp_id, subject)
        if linked is not None:
            return await self._complete(linked, redirect_url, provider.idp_id, sid)
        localpart = ""
        if provider.localpart_template is not None:
            localpart = map_to_localpart(render(provider.localpart_template, claims))
        display_name = None
        if provider.display_name_template is not None:
            display_name = render(provider.display_name_template, claims) or None
        email = render(provider.email_template, claims) if provider.email_template else ""
        attributes = {"subject": subject, "display_name": display_name, "email": email,
                      "suggestion": localpart, "sid": sid}
        usable = bool(localpart) and self._valid_localpart(localpart)
        if usable and not provider.confirm_localpart:
            user_id = f"@{localpart}:{self.ctx.hostname}"
            existing = await self.users.get_user_case_insensitive(user_id)
            if existing and provider.allow_existing_users:
                owner = user_id if user_id in existing else existing[0]
                await self.db.run_interaction("sso_link", _link_txn, owner, provider.idp_id,
                                              subject, None)
                return await self._complete(owner, redirect_url, provider.idp_id, sid)
            if not existing and provider.enable_registration:
                try:
                    await self.db.run_interaction(
                        "sso_register", _register_txn, self.ctx.now_ms(), user_id,
                        display_name, provider.idp_id, subject, None)
                except UserExists:
                    pass  # taken meanwhile: the user picks another
                else:
                    await self._add_email(user_id, email)
                    return await self._complete(user_id, redirect_url, provider.idp_id, sid)
        if not provider.enable_registration:
            raise SsoError(403, "There is no account for you here, and the identity "
                                "provider may not create one")
        secret = secrets.token_urlsafe(32)
        await self.store.add_session(
            secret, SsoSession(USERNAME_KIND, provider.idp_id, redirect_url, attributes,
                               self.ctx.now_ms()), USERNAME_SESSION_LIFETIME_MS)
        return Redirect(self.ctx.config.public_baseurl + PICK_USERNAME_PATH,
                        Cookie(USERNAME_COOKIE, secret, USERNAME_COOKIE_PATH,
                               USERNAME_SESSION_LIFETIME_MS // 1000))

    def _valid_localpart(self, localpart: str) -> bool:
        return is_valid_localpart(localpart) and not localpart.startswith("_") and \
            len(f"@{localpart}:{self.ctx.hostname}".encode()) <= MAX_USER_ID_LENGTH

    async def _add_email(self, user_id: str, email: str) -> None:
        if not email or self.threepids is None:
            return
        from homeserver.identity.threepids import canonicalise_email
        try:
            address = canonicalise_email(email)
        except MatrixError:
            logger.info("SSO: %s's e-mail address from the provider is not valid", user_id)
            return
        await self.threepids.add_validated(user_id, "email", address, self.ctx.now_ms())

    # -- the username picker --------------------------------------------------------------

    async def _username_session(self, secret: str | None) -> SsoSession:
        session = await self.store.get_session(secret, USERNAME_KIND) if secret else None
        if session is None or session.created_ts + USERNAME_SESSION_LIFETIME_MS <= \
                self.ctx.now_ms():
            raise SsoError(400, "This sign-in has expired or was already used; start again")
        return session

    def _form(self, session: SsoSession, error: str | None = None) -> UsernameForm:
        return UsernameForm(self.config.provider_name(session.idp_id),
                            str(session.data.get("suggestion") or ""),
                            session.data.get("display_name"), error)

    async def username_form(self, secret: str | None) -> UsernameForm:
        """``GET /_synapse/client/pick_username/account``."""
        return self._form(await self._username_session(secret))

    async def username_available(self, secret: str | None, username: str) -> bool:
        await self._username_session(secret)
        localpart = username.lower()
        return self._valid_localpart(localpart) and not \
            await self.users.get_user_case_insensitive(f"@{localpart}:{self.ctx.hostname}")

    async def submit_username(self, secret: str | None, username: str) -> SsoAnswer:
        """``POST /_synapse/client/pick_username/account``: register the chosen
        name, or the form again saying why not."""
        session = await self._username_session(secret)
        localpart = username.strip().lower()
        if not self._valid_localpart(localpart):
            return self._form(session, "Usernames may contain only a-z, 0-9, and . _ = - / +"
                                       " (not starting with _)")
        user_id = f"@{localpart}:{self.ctx.hostname}"
        subject = str(session.data["subject"])
        display_name = session.data.get("display_name")
        assert secret is not None
        try:
            await self.db.run_interaction("sso_register", _register_txn, self.ctx.now_ms(),
                                          user_id, display_name, session.idp_id, subject,
                                          secret)
        except UserExists:
            return self._form(session, f"The username {localpart} is taken")
        await self._add_email(user_id, str(session.data.get("email") or ""))
        sid = session.data.get("sid")
        answer = await self._complete(user_id, session.client_redirect_url, session.idp_id,
                                      sid if isinstance(sid, str) else None)
        forget = Cookie(USERNAME_COOKIE, "", USERNAME_COOKIE_PATH, 0)
        if isinstance(answer, Redirect):
            return Redirect(answer.url, forget)
        if isinstance(answer, ConfirmRedirect):
            return ConfirmRedirect(answer.url, answer.user_id, answer.client_host, forget)
        return answer

    # -- back-channel logout ----------------------------------------------------------------

    async def backchannel_logout(self, logout_token: str | None) -> int:
        """``POST /_synapse/client/oidc/backchannel_logout``: the provider ended
        a session; log out the devices it signed in. The number logged out;
        SsoError 400 for a token that does not check out."""
        if not logout_token:
            raise SsoError(400, "Missing logout_token")
        issuer = unverified_issuer(logout_token)
        clients = [c for c in self.clients.values()
                   if c.provider.backchannel_logout_enabled and c.provider.issuer == issuer]
        if not clients:
            raise SsoError(400, "No provider with back-channel logout has this issuer")
        failure = "The logout token is not valid"
        for client in clients:
            try:
                claims = await client.check_logout_token(logout_token)
            except OidcError as e:
                failure = str(e)
                continue
            provider = client.provider
            user_id = None
            sub = claims.get("sub")
            if not provider.backchannel_logout_ignore_sub and isinstance(sub, str):
                user_id = await self.store.get_user_by_external_id(provider.idp_id, sub)
                if user_id is None:
                    return 0
            out = await self.store.logout_provider_session(provider.idp_id, claims["sid"],
                                                           user_id)
            logger.info("SSO: %s ended a session: %d device(s) logged out", provider.idp_id,
                        len(out))
            return len(out)
        raise SsoError(400, failure)

    # -- 4. back to the client ------------------------------------------------------------

    def is_whitelisted(self, redirect_url: str) -> bool:
        base = self.ctx.config.public_baseurl
        fallback = f"{base}_matrix/static/client/login/"
        # our own OAuth 2.0 sign-in page, which has asked the user itself
        if redirect_url == f"{base}_synapse/client/oauth2/sso_return":
            return True
        # our own web client, served at the base URL (docs/web-client.md)
        if (self.ctx.config.web_client["enabled"]
                and redirect_url.split("#", 1)[0].split("?", 1)[0] == base):
            return True
        return any(redirect_url.startswith(prefix)
                   for prefix in (*self.config.client_whitelist, fallback))

    async def _complete(self, user_id: str, redirect_url: str, idp_id: str,
                        provider_session_id: str | None = None) -> Redirect | ConfirmRedirect:
        info = await self.users.get_user(user_id)
        if info is None or info.deactivated:
            raise SsoError(403, "This account has been deactivated")
        token = await self.login_tokens.issue(user_id, SSO_LOGIN_TOKEN_LIFETIME_MS, idp_id,
                                              provider_session_id)
        url = with_login_token(redirect_url, token)
        logger.info("SSO: %s signed in through %s", user_id, idp_id)
        if self.is_whitelisted(redirect_url):
            return Redirect(url)
        parts = urlsplit(redirect_url)
        return ConfirmRedirect(url, user_id, parts.netloc or parts.scheme)
