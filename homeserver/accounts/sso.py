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
   ``accounts/login_tokens.py``) is added to the client's redirect URL. A URL
   under ``sso.client_whitelist`` (or our own login fallback) is redirected
   to straight away; any other gets a confirmation page first, so a link
   crafted by someone else cannot silently hand them the user's session.

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

from homeserver.accounts.identifiers import MAX_USER_ID_LENGTH, is_valid_localpart
from homeserver.accounts.login_tokens import SSO_LOGIN_TOKEN_LIFETIME_MS
from homeserver.accounts.oidc import OidcClient, OidcError
from homeserver.accounts.sso_config import render
from homeserver.errors import Codes, MatrixError, missing_param
from homeserver.storage.database import Txn
from homeserver.storage.sso import SsoSession, SsoStore
from homeserver.storage.users import UserExists, UserStore

if TYPE_CHECKING:
    from homeserver.accounts.login_tokens import LoginTokens
    from homeserver.accounts.sso_config import OidcProvider, SsoConfig
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

    providers: tuple["OidcProvider", ...]
    redirect_url: str


@dataclass(frozen=True)
class UsernameForm:
    """The username picker, with what the provider suggested and why the
    last choice was refused."""

    idp_name: str
    suggestion: str
    display_name: str | None
    error: str | None = None


SsoAnswer = Redirect | ConfirmRedirect | ChooseProvider | UsernameForm


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
                 users: UserStore, login_tokens: "LoginTokens",
                 threepids: "Threepids | None" = None,
                 context_factory: Any = None) -> None:
        self.ctx = ctx
        # registering and linking is one transaction over two stores
        self.db = db
        self.store = store
        self.users = users
        self.login_tokens = login_tokens
        # addresses from email_template are added to new accounts
        self.threepids = threepids
        self.config: "SsoConfig" = ctx.config.sso_config
        self.clients = {p.idp_id: OidcClient(ctx, p, context_factory)
                        for p in self.config.providers}

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
            if len(self.config.providers) != 1:
                return ChooseProvider(self.config.providers, redirect_url)
            idp_id = self.config.providers[0].idp_id
        client = self.clients.get(idp_id)
        if client is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown identity provider")
        try:
            request = await client.authorization_request()
        except OidcError as e:
            raise SsoError(502, str(e)) from None
        secret = secrets.token_urlsafe(32)
        data = {"state": request.state, "nonce": request.nonce,
                "code_verifier": request.code_verifier}
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
        return await self._signed_in(client.provider, claims, session.client_redirect_url)

    # -- 3. which user ----------------------------------------------------------------

    async def _signed_in(self, provider: "OidcProvider", claims: dict[str, Any],
                         redirect_url: str) -> SsoAnswer:
        for requirement in provider.attribute_requirements:
            if not requirement.satisfied_by(claims):
                raise SsoError(403, "You are not authorised to sign in here")
        subject = provider.subject(claims)
        if subject is None:
            raise SsoError(400, "The identity provider did not say who you are")
        linked = await self.store.get_user_by_external_id(provider.idp_id, subject)
        if linked is not None:
            return await self._complete(linked, redirect_url, provider.idp_id)
        localpart = ""
        if provider.localpart_template is not None:
            localpart = map_to_localpart(render(provider.localpart_template, claims))
        display_name = None
        if provider.display_name_template is not None:
            display_name = render(provider.display_name_template, claims) or None
        email = render(provider.email_template, claims) if provider.email_template else ""
        attributes = {"subject": subject, "display_name": display_name, "email": email,
                      "suggestion": localpart}
        usable = bool(localpart) and self._valid_localpart(localpart)
        if usable and not provider.confirm_localpart:
            user_id = f"@{localpart}:{self.ctx.hostname}"
            existing = await self.users.get_user_case_insensitive(user_id)
            if existing and provider.allow_existing_users:
                owner = user_id if user_id in existing else existing[0]
                await self.db.run_interaction("sso_link", _link_txn, owner, provider.idp_id,
                                              subject, None)
                return await self._complete(owner, redirect_url, provider.idp_id)
            if not existing and provider.enable_registration:
                try:
                    await self.db.run_interaction(
                        "sso_register", _register_txn, self.ctx.now_ms(), user_id,
                        display_name, provider.idp_id, subject, None)
                except UserExists:
                    pass  # taken meanwhile: the user picks another
                else:
                    await self._add_email(user_id, email)
                    return await self._complete(user_id, redirect_url, provider.idp_id)
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
        provider = self.config.provider(session.idp_id)
        return UsernameForm(provider.idp_name if provider is not None else session.idp_id,
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
        answer = await self._complete(user_id, session.client_redirect_url, session.idp_id)
        forget = Cookie(USERNAME_COOKIE, "", USERNAME_COOKIE_PATH, 0)
        if isinstance(answer, Redirect):
            return Redirect(answer.url, forget)
        if isinstance(answer, ConfirmRedirect):
            return ConfirmRedirect(answer.url, answer.user_id, answer.client_host, forget)
        return answer

    # -- 4. back to the client ------------------------------------------------------------

    def is_whitelisted(self, redirect_url: str) -> bool:
        fallback = f"{self.ctx.config.public_baseurl}_matrix/static/client/login/"
        return any(redirect_url.startswith(prefix)
                   for prefix in (*self.config.client_whitelist, fallback))

    async def _complete(self, user_id: str, redirect_url: str,
                        idp_id: str) -> Redirect | ConfirmRedirect:
        info = await self.users.get_user(user_id)
        if info is None or info.deactivated:
            raise SsoError(403, "This account has been deactivated")
        token = await self.login_tokens.issue(user_id, SSO_LOGIN_TOKEN_LIFETIME_MS, idp_id)
        url = with_login_token(redirect_url, token)
        logger.info("SSO: %s signed in through %s", user_id, idp_id)
        if self.is_whitelisted(redirect_url):
            return Redirect(url)
        parts = urlsplit(redirect_url)
        return ConfirmRedirect(url, user_id, parts.netloc or parts.scheme)
