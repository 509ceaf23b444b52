"""The 3PIDs of accounts: validating an e-mail address, adding it to an
account, binding it on an identity server and undoing all that.

Validation (client-server API, "Adding Account Administrative Contact
Information" and the ``requestToken`` endpoints): ``request_email_token``
opens a session (``sid``) for the client's secret and address and mails a
link holding a fresh token; following the link (``submit_token``) marks the
session validated. A client may then add the address to its account
(``add_threepid``) or register with it (the ``m.login.email.identity`` UIA
stage, ``validated_session``). A repeated request with the same secret and
address and a ``send_attempt`` no higher than the last one is answered with
the same ``sid`` and sends nothing, as the spec asks.

Bindings: ``bind`` asks the identity server the client names to bind the
address (validated there, by the identity server's own session) to the user
and remembers on which server; ``unbind`` (and ``delete``, which also takes
the address off the account, and ``deactivate``) asks each server that holds
a binding to drop it. The result is ``success`` when every server did, else
``no-support``, as the spec's ``id_server_unbind_result`` says.
"""

from __future__ import annotations

import logging
import re
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, invalid_param
from homeserver.identity.client import (
    IdentityServerError,
    IdentityServerUnreachable,
    check_id_server,
)
from homeserver.storage.threepids import Threepid, ValidationSession

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.identity.client import IdentityServerClient
    from homeserver.identity.mailer import Mailer
    from homeserver.storage.threepids import ThreepidStore

logger = logging.getLogger(__name__)

CLIENT_SECRET = re.compile(r"[0-9a-zA-Z.=_\-]{1,255}")
MEDIA = ("email", "msisdn")
# where a validation e-mail's link points (relative to public_baseurl)
SUBMIT_PATHS = {
    "registration": "_matrix/client/unstable/registration/email/submit_token",
    "add_threepid": "_matrix/client/unstable/add_threepid/email/submit_token",
}


def check_client_secret(client_secret: str) -> None:
    if not CLIENT_SECRET.fullmatch(client_secret):
        raise invalid_param("Invalid client_secret")


def canonicalise_email(address: str) -> str:
    """Lower-case the address (as Synapse does); 400 if it is no address."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise invalid_param("Unable to parse email address")
    return local.casefold() + "@" + domain.lower()


def identity_error(e: Exception) -> MatrixError:
    """The client's error for a failed identity-server request."""
    if isinstance(e, IdentityServerError):
        body = e.body if isinstance(e.body, dict) else {}
        errcode = body.get("errcode")
        if not isinstance(errcode, str):
            errcode = Codes.UNKNOWN
        error = body.get("error")
        if not isinstance(error, str):
            error = f"The identity server answered {e.code}"
        if 400 <= e.code < 500:
            return MatrixError(400, errcode, error)
        return MatrixError(502, errcode, error)
    return MatrixError(502, Codes.UNKNOWN, "The identity server could not be reached")


class Threepids:
    def __init__(self, ctx: "ServerContext", store: "ThreepidStore",
                 identity: "IdentityServerClient", mailer: "Mailer") -> None:
        self.ctx = ctx
        self.store = store
        self.identity = identity
        self.mailer = mailer

    # -- the account's addresses ------------------------------------------------

    async def get_threepids(self, user_id: str) -> list[Threepid]:
        return await self.store.get_threepids(user_id)

    async def user_for_threepid(self, medium: str, address: str) -> str | None:
        if medium == "email":
            try:
                address = canonicalise_email(address)
            except MatrixError:
                return None
        return await self.store.get_user_by_threepid(medium, address)

    async def add_threepid(self, user_id: str, session: ValidationSession) -> None:
        assert session.validated_at is not None
        if not await self.store.add_threepid(user_id, session.medium, session.address,
                                             session.validated_at, self.ctx.now_ms()):
            raise MatrixError(400, Codes.THREEPID_IN_USE,
                              "Third-party identifier is already in use")

    async def add_validated(self, user_id: str, medium: str, address: str,
                            validated_at: int) -> None:
        """Attach an address validated during registration (already ours to
        give: a taken address is logged and skipped, as the account exists)."""
        if not await self.store.add_threepid(user_id, medium, address, validated_at,
                                             self.ctx.now_ms()):
            logger.info("%s registered with %s, which another account holds", user_id, medium)

    async def delete(self, user_id: str, medium: str, address: str,
                     id_server: str | None) -> str:
        """Take the address off the account, unbinding it first."""
        result = await self.unbind(user_id, medium, address, id_server)
        await self.store.delete_threepid(user_id, medium, address)
        return result

    async def deactivate(self, user_id: str, id_server: str | None) -> str:
        """Unbind every address of a deactivated account and forget them."""
        ok = True
        bound = {(m, a) for m, a, _ in await self.store.get_bindings(user_id)}
        for t in await self.store.get_threepids(user_id):
            bound.add((t.medium, t.address))
        for medium, address in sorted(bound):
            try:
                ok = await self.unbind(user_id, medium, address, id_server) == "success" and ok
            except MatrixError as e:
                logger.info("unbinding %s of deactivated %s failed: %s", medium, user_id, e)
                ok = False
        await self.store.delete_all_threepids(user_id)
        return "success" if ok and bound else "no-support"

    # -- identity servers ------------------------------------------------------

    async def bind(self, user_id: str, id_server: str, id_access_token: str, sid: str,
                   client_secret: str) -> None:
        check_client_secret(client_secret)
        if not check_id_server(id_server):
            raise invalid_param("id_server is not a valid server name")
        try:
            answer = await self.identity.bind(id_server, id_access_token, sid, client_secret,
                                              user_id)
        except (IdentityServerError, IdentityServerUnreachable) as e:
            raise identity_error(e) from None
        medium, address = answer.get("medium"), answer.get("address")
        if not isinstance(medium, str) or not isinstance(address, str):
            raise MatrixError(502, Codes.UNKNOWN, "The identity server's answer is malformed")
        await self.store.add_binding(user_id, medium, address, id_server)

    async def unbind(self, user_id: str, medium: str, address: str,
                     id_server: str | None) -> str:
        """Ask the identity server given (else each one we bound the address
        on) to drop the binding; ``success`` or ``no-support``."""
        if id_server is not None:
            if not check_id_server(id_server):
                raise invalid_param("id_server is not a valid server name")
            servers = [id_server]
        else:
            servers = await self.store.get_binding_servers(user_id, medium, address)
        if not servers:
            return "no-support"
        ok = True
        for server in servers:
            try:
                await self.identity.unbind(server, user_id, medium, address)
            except IdentityServerError as e:
                if e.code not in (400, 404, 501):
                    raise identity_error(e) from None
                # the server does not hold it (or cannot unbind): nothing to undo there
                ok = False
            except IdentityServerUnreachable as e:
                raise identity_error(e) from None
            await self.store.remove_binding(user_id, medium, address, server)
        return "success" if ok else "no-support"

    # -- e-mail validation -----------------------------------------------------

    def email_enabled(self) -> bool:
        return self.mailer.enabled

    async def request_email_token(self, purpose: str, email: str, client_secret: str,
                                  send_attempt: int, next_link: str | None) -> str:
        """Mail a validation link for ``email``; the session ID."""
        check_client_secret(client_secret)
        if not self.mailer.enabled:
            raise MatrixError(400, Codes.THREEPID_DENIED,
                              "Email-based validation is not enabled on this server")
        if next_link is not None and not next_link.startswith(("https://", "http://")):
            raise invalid_param("next_link must be an http(s) URL")
        if await self.store.get_user_by_threepid("email", email) is not None:
            raise MatrixError(400, Codes.THREEPID_IN_USE, "Email is already in use")
        existing = await self.store.get_session_by_secret(client_secret, "email", email)
        if existing is not None and send_attempt <= existing.last_send_attempt:
            return existing.session_id
        session_id = existing.session_id if existing is not None else secrets.token_urlsafe(24)
        token = secrets.token_urlsafe(32)
        lifetime = self.ctx.config.email["validation_token_lifetime"]
        await self.store.upsert_session(session_id, "email", email, client_secret,
                                        send_attempt, token, self.ctx.now_ms() + lifetime,
                                        next_link)
        query = urllib.parse.urlencode({"token": token, "client_secret": client_secret,
                                        "sid": session_id})
        link = f"{self.ctx.config.public_baseurl}{SUBMIT_PATHS[purpose]}?{query}"
        app = self.ctx.config.email["app_name"]
        text = (f"Hello,\n\nYou (or someone else) asked to use this e-mail address with "
                f"{app} on {self.ctx.hostname}. To confirm, open this link:\n\n{link}\n\n"
                f"If this was not you, ignore this e-mail.\n")
        try:
            await self.mailer.send(email, f"[{app}] Validate your email", text)
        except Exception as e:
            logger.warning("validation e-mail to %s not sent: %s", email, e)
            raise MatrixError(500, Codes.UNKNOWN, "The validation e-mail could not be sent") \
                from None
        return session_id

    async def submit_token(self, session_id: str, client_secret: str, token: str) -> str | None:
        """Validate the session; its next_link. 400 for a wrong or stale token."""
        check_client_secret(client_secret)
        result = await self.store.validate_session(session_id, client_secret, token,
                                                   self.ctx.now_ms())
        if result is False:
            raise MatrixError(400, Codes.UNKNOWN, "Validation token not found or has expired")
        return result if isinstance(result, str) else None

    async def validated_session(self, sid: Any, client_secret: Any) -> ValidationSession:
        """The validated session named by a client's 3PID credentials."""
        if not isinstance(sid, str) or not isinstance(client_secret, str):
            raise MatrixError(400, Codes.MISSING_PARAM, "sid and client_secret are required")
        check_client_secret(client_secret)
        session = await self.store.get_session(sid, client_secret)
        if session is None or session.validated_at is None:
            raise MatrixError(400, Codes.THREEPID_AUTH_FAILED,
                              "No validated 3pid session found")
        return session
