"""The ``m.login.recaptcha`` stage of user-interactive auth: asking the
captcha provider whether the response a client solved is good.

Configured with Synapse's keys: ``recaptcha_private_key`` (the secret sent
to the provider; without it the stage is not available),
``recaptcha_public_key`` (given to clients in the 401's ``params``),
``recaptcha_siteverify_api`` (Google's endpoint unless set) and
``enable_registration_captcha`` (registration requires the stage). As on
Synapse, a configured stage may be completed in a session even when no flow
needs it.

The provider is asked with a form POST (``secret``, ``response``) and
answers JSON whose ``success`` is true for a good response. The request goes
through the outbound guard (``http/outbound.py``, ``ip_range_blacklist``
minus ``ip_range_whitelist``, as push gateways do); any failure to get a
clear yes is a no.
"""

from __future__ import annotations

import json
import logging
from io import BytesIO
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.web.http_headers import Headers

from homeserver.federation.discovery import read_body
from homeserver.http.outbound import IPFilter, guarded_agent

if TYPE_CHECKING:
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

DEFAULT_SITEVERIFY_API = "https://www.recaptcha.net/recaptcha/api/siteverify"
TIMEOUT_S = 30.0
MAX_ANSWER_BYTES = 64 * 1024


class CaptchaVerifier:
    """Asks the configured provider about a captcha response."""

    def __init__(self, ctx: "ServerContext", *, context_factory: Any = None) -> None:
        self.ctx = ctx
        config = ctx.config
        self.secret: str | None = config.recaptcha_private_key
        self.public_key: str | None = config.recaptcha_public_key
        self.url: str = config.recaptcha_siteverify_api or DEFAULT_SITEVERIFY_API
        self._context_factory = context_factory

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    async def verify(self, response: str, client_ip: str | None = None) -> bool:
        """Whether the provider says ``response`` is a solved captcha."""
        if not self.secret:
            return False
        form = {"secret": self.secret, "response": response}
        if client_ip:
            form["remoteip"] = client_ip
        agent = guarded_agent(self.ctx.reactor, IPFilter.from_config(self.ctx.config),
                              connect_timeout_s=TIMEOUT_S,
                              context_factory=self._context_factory)
        headers = Headers({b"Content-Type": [b"application/x-www-form-urlencoded"],
                           b"User-Agent": [b"homeserver"]})
        from twisted.web.client import FileBodyProducer

        try:
            # (Twisted's stubs do not see FileBodyProducer as an IBodyProducer)
            body_producer: Any = FileBodyProducer(BytesIO(urlencode(form).encode("ascii")))
            d = agent.request(b"POST", self.url.encode("ascii"), headers, body_producer)
            d.addTimeout(TIMEOUT_S, self.ctx.reactor)
            answer = await d
            body = await defer.ensureDeferred(read_body(answer, MAX_ANSWER_BYTES))
            data = json.loads(body)
        except Exception as e:  # a provider we cannot ask says no
            logger.warning("captcha verification at %s failed: %s", self.url, e)
            return False
        return isinstance(data, dict) and data.get("success") is True
