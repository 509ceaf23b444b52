"""Sending e-mail through the operator's SMTP server (Synapse's ``email:``
keys: ``smtp_host``, ``smtp_port``, ``smtp_user``/``smtp_pass``,
``require_transport_security``, ``enable_tls``, ``notif_from``).

The SMTP server is the operator's, not a place a user chose, so it is not
behind the outbound IP guard. Without ``notif_from`` no mail is sent and the
e-mail features answer that they are disabled.
"""

from __future__ import annotations

import email.utils
import io
import logging
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

if TYPE_CHECKING:
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

TIMEOUT_S = 30


class Mailer:
    def __init__(self, ctx: "ServerContext") -> None:
        self.ctx = ctx
        self.config: dict[str, Any] = ctx.config.email

    @property
    def enabled(self) -> bool:
        return bool(self.config.get("notif_from"))

    async def send(self, to: str, subject: str, text: str) -> None:
        """Send one plain-text message to ``to``; raises if the server refuses it."""
        config = self.config
        sender = config["notif_from"]
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(domain=self.ctx.hostname.split(":")[0])
        msg.set_content(text)
        envelope_from = email.utils.parseaddr(sender)[1] or sender
        done: defer.Deferred[Any] = defer.Deferred()
        user, password = config.get("smtp_user"), config.get("smtp_pass")
        host, port = config["smtp_host"], config["smtp_port"]
        from twisted.internet.ssl import optionsForClientTLS  # with the first e-mail
        from twisted.mail.smtp import ESMTPSenderFactory

        factory = ESMTPSenderFactory(
            user.encode("utf-8") if user else None,
            password.encode("utf-8") if password else None,
            envelope_from, to, io.BytesIO(msg.as_bytes()), done,
            retries=0, timeout=TIMEOUT_S,
            contextFactory=optionsForClientTLS(host) if config["enable_tls"] else None,
            heloFallback=True,
            requireAuthentication=bool(user),
            requireTransportSecurity=config["require_transport_security"])
        self.ctx.reactor.connectTCP(host, port, factory, timeout=TIMEOUT_S)
        await done
        logger.info("sent e-mail to %s", to)
