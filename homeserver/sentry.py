"""Error reports to Sentry (optional): Synapse's ``sentry:`` keys.

With ``sentry.dsn`` set, sentry-sdk (``pip install 'homeserver[sentry]'``)
sends every line logged at ERROR (a request that failed with a 500, a
background task that raised) with its traceback and the ID of the request it
happened in, tagged with the server name. Nothing personal is sent
(sentry-sdk's default): no request bodies, no access tokens, no IPs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.config import Config


class SentryUnavailable(Exception):
    pass


def setup_sentry(config: "Config") -> bool:
    """Start reporting if a DSN is configured; whether it is on."""
    settings = config.sentry or {}
    dsn = settings.get("dsn")
    if not dsn:
        return False
    try:
        import sentry_sdk
    except ImportError:
        raise SentryUnavailable("sentry.dsn is set but sentry-sdk is not installed "
                                "(pip install 'homeserver[sentry]')") from None
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = f"homeserver@{version('homeserver')}"
    except PackageNotFoundError:
        release = None
    # personal data stays out by sentry-sdk's default (no request bodies,
    # headers, cookies or IPs)
    from sentry_sdk.integrations.logging import LoggingIntegration

    # lines at INFO and up ride along as breadcrumbs; ERROR lines are events
    sentry_sdk.init(dsn=dsn, environment=settings.get("environment"), release=release,
                    integrations=[LoggingIntegration(level=logging.INFO,
                                                     event_level=logging.ERROR)])
    sentry_sdk.set_tag("matrix_server_name", config.server_name)
    return True
