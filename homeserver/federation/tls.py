"""TLS for federation: the listener's certificate, outbound verification. (being written)"""

from __future__ import annotations

from typing import Any

from homeserver.config import Config


def server_tls_options(config: Config) -> Any:
    raise NotImplementedError
