"""The Redis connections of replication, on txredisapi (Synapse's client too).

Two kinds: a command connection (PUBLISH, SET, GET), which txredisapi
reconnects by itself, and a subscriber connection that tells its owner when
it is subscribed and when it is lost, so the owner can catch up on what it
missed in between (``follower.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.endpoints import HostnameEndpoint

from homeserver.config import RedisConfig

logger = logging.getLogger(__name__)

# reconnect quickly: a reader misses writes until it is back
RECONNECT_INITIAL_S = 0.2
RECONNECT_MAX_S = 5.0


def channel_name(server_name: str) -> str:
    """The pub/sub channel of one deployment (several may share one Redis)."""
    return f"homeserver/{server_name}/replication"


def position_key(server_name: str, writer: str = "main") -> str:
    """The key holding a stream writer's last published position message."""
    if writer == "main":
        return f"homeserver/{server_name}/position"
    return f"homeserver/{server_name}/position/{writer}"


def command_connection(config: RedisConfig) -> Any:
    """A lazily connected, self-reconnecting connection for commands."""
    return txredisapi.lazyConnection(config.host, config.port, dbid=config.dbid or None,
                                     password=config.password, reconnect=True,
                                     convertNumbers=False)


class _Subscriber(txredisapi.SubscriberProtocol):
    """One subscriber connection: subscribes on connect, hands messages on."""

    def connectionMade(self) -> Any:  # noqa: N802 - Twisted's name
        d = super().connectionMade()  # AUTH and SELECT first
        factory: SubscriberFactory = self.factory  # type: ignore[assignment]
        d.addCallback(lambda _: self.execute_command("CLIENT", "SETNAME", factory.client_name))
        d.addCallback(lambda _: self.subscribe(factory.channel))
        d.addCallback(lambda _: factory.on_subscribed())
        d.addErrback(lambda f: logger.warning("Redis subscribe failed: %s", f.getErrorMessage()))
        return d

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:  # noqa: N802
        factory: SubscriberFactory = self.factory  # type: ignore[assignment]
        factory.on_message(message)

    def connectionLost(self, why: Any) -> None:  # noqa: N802
        factory: SubscriberFactory = self.factory  # type: ignore[assignment]
        super().connectionLost(why)
        factory.on_lost()


class SubscriberFactory(txredisapi.SubscriberFactory):
    """Keeps one subscription to ``channel`` open, reconnecting when lost."""

    protocol = _Subscriber
    initialDelay = RECONNECT_INITIAL_S
    maxDelay = RECONNECT_MAX_S

    def __init__(self, config: RedisConfig, channel: str, client_name: str,
                 on_subscribed: Callable[[], None], on_message: Callable[[str], None],
                 on_lost: Callable[[], None]) -> None:
        super().__init__(isLazy=True)
        self.password = config.password
        self.dbid = config.dbid or None
        self.convertNumbers = False
        self.channel = channel
        self.client_name = client_name
        self.on_subscribed = on_subscribed
        self.on_message = on_message
        self.on_lost = on_lost
        self._config = config

    def start(self, reactor: Any) -> None:
        self.startConnecting(HostnameEndpoint(reactor, self._config.host, self._config.port,
                                              timeout=5))
