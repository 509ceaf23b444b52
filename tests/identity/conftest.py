"""A homeserver that may talk to a fake identity server (``fake_identity_server.py``)
and whose validation e-mails land in a list instead of an SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest_twisted

from tests.federation.ca import make_test_ca
from tests.harness import TestServer, start_server, stop_server
from tests.identity.fake_identity_server import FakeIdentityServer


@dataclass
class Outbox:
    """Stands in for the SMTP mailer: keeps what would have been sent."""

    enabled: bool = True
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def send(self, to: str, subject: str, text: str) -> None:
        self.sent.append((to, subject, text))


IDENTITY_CONFIG: dict[str, Any] = {
    # the identity server calls /_matrix/federation/v1/3pid/onbind
    "listeners": [{"port": 0, "bind_addresses": ["127.0.0.1"],
                   "resources": [{"names": ["client", "federation"]}]}],
    "use_insecure_ssl_client_just_for_testing_do_not_use": True,
    "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
    "email": {"smtp_host": "localhost", "smtp_port": 2525,
              "notif_from": "Test Server <noreply@test.local>"},
}


@pytest_twisted.async_yield_fixture
async def identity_server(tmp_path: Any) -> AsyncIterator[FakeIdentityServer]:
    ids = FakeIdentityServer()
    ids.listen(make_test_ca(str(tmp_path / "ca")))
    yield ids
    await ids.port.stopListening()


@pytest_twisted.async_yield_fixture
async def hs(engine: str, tmp_path: Any) -> AsyncIterator[TestServer]:
    """A homeserver set up for identity servers, its mailer an ``Outbox``."""
    path = tmp_path / "hs"
    path.mkdir()
    srv = await start_server(engine, str(path), **IDENTITY_CONFIG)
    srv.hs.threepids.mailer = Outbox()  # type: ignore[assignment]
    yield srv
    await stop_server(srv)
