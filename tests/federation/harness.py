"""Federating test servers: each its own port, database, signing key and certificate.

A server is ``localhost:P`` where P is its TLS federation port, so its name
resolves (the spec's "hostname with explicit port" rule) straight to that
port on loopback, and its certificate from the test CA (``tests/federation/ca.py``)
is valid for ``localhost``. Every server trusts the test CA through
``federation_custom_ca_list`` and whitelists loopback (the default
``ip_range_blacklist`` refuses it) so servers can reach each other.

Listeners: first a plain-HTTP client listener on an ephemeral port (so
``TestServer.base_url`` keeps working), then the TLS federation listener on P.

The signing key is a file in the server's directory, so ``restart()`` brings the
server back with the same key, database and ports: a peer sees the same server
come back after being down.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from typing import Any

from signedjson.key import generate_signing_key, write_signing_keys

from homeserver.server import HomeServer
from tests.federation.ca import TestCA
from tests.harness import TestServer, drop_postgres_database, make_config, stop_server

__all__ = ["start_federated_server", "restart", "take_down", "dispose", "server_name"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


def server_name(server: TestServer) -> str:
    """The Matrix server name of a test server (``localhost:P``)."""
    return str(server.hs.hostname)


def _write_signing_key(tmp_dir: str) -> str:
    path = os.path.join(tmp_dir, "signing.key")
    if not os.path.exists(path):
        with open(path, "w", encoding="ascii") as f:
            write_signing_keys(f, [generate_signing_key("a_" + os.urandom(3).hex())])
    return "signing.key"


def federation_config(engine: str, tmp_dir: str, ca: TestCA, **overrides: Any) -> Any:
    """The config of a federating test server (see the module docstring)."""
    os.makedirs(tmp_dir, exist_ok=True)
    port = overrides.pop("federation_port", None) or free_port()
    # "127.0.0.1" makes an IP-literal server name (the certificate covers both)
    name = f"{overrides.pop('federation_host', 'localhost')}:{port}"
    cert, key = ca.issue(f"server-{port}")
    data: dict[str, Any] = {
        "server_name": name,
        "listeners": [
            {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
            {"port": port, "bind_addresses": ["127.0.0.1"], "tls": True,
             "resources": [{"names": ["federation"]}]},
        ],
        "tls_certificate_path": cert,
        "tls_private_key_path": key,
        "federation_custom_ca_list": [ca.ca_cert_path],
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "signing_key_path": _write_signing_key(tmp_dir),
        # short enough that a test about an unreachable peer does not hang
        "federation": {"client_timeout": "20s"},
    }
    data.update(overrides)
    return make_config(engine, tmp_dir, **data)


def _track_connections(server: TestServer) -> None:
    """Remember every connection the server accepts, so ``take_down`` can cut
    them: stopping a listener leaves accepted (kept-alive) connections open,
    and a peer's pooled connection would still reach a server that is "down"."""
    conns: set[Any] = set()
    server.connections = conns  # type: ignore[attr-defined]
    for port in server.hs.ports:
        factory = port.factory
        build = factory.buildProtocol

        def build_protocol(addr: Any, build: Any = build) -> Any:
            proto = build(addr)
            if proto is not None:
                conns.add(proto)
                lost = proto.connectionLost

                def connection_lost(reason: Any, proto: Any = proto, lost: Any = lost) -> Any:
                    conns.discard(proto)
                    return lost(reason)
                proto.connectionLost = connection_lost
            return proto
        factory.buildProtocol = build_protocol


def _cut_connections(server: TestServer) -> None:
    for proto in list(getattr(server, "connections", ())):
        transport = getattr(proto, "transport", None) or getattr(
            getattr(proto, "_channel", None), "transport", None)
        if transport is not None:
            transport.abortConnection()


async def start_federated_server(engine: str, tmp_dir: str, ca: TestCA,
                                 clock: Any = None, **overrides: Any) -> TestServer:
    """A running federating server (``srv.server_name`` is its name)."""
    from twisted.internet import reactor

    config = federation_config(engine, tmp_dir, ca, **overrides)
    hs = HomeServer(config, reactor, clock=clock)
    await hs.setup()
    hs.listen()
    srv = TestServer(hs, engine)
    srv.server_name = str(hs.hostname)  # type: ignore[attr-defined]
    srv.running = True  # type: ignore[attr-defined]
    _track_connections(srv)
    return srv


async def take_down(server: TestServer) -> None:
    """Stop the server's homeserver but keep its database (a server that is
    down; ``restart`` brings it back)."""
    if getattr(server, "running", True):
        server.running = False  # type: ignore[attr-defined]
        _cut_connections(server)
        await server.hs.stop()
        _cut_connections(server)  # any accepted while stopping


async def restart(server: TestServer, clock: Any = None) -> TestServer:
    """Stop ``server``'s homeserver (unless it is down already) and start a new
    one on the same config, database, signing key and ports. ``server`` itself
    is updated (and returned), so clients and fixtures holding it follow.
    The database is kept: only ``stop_server`` drops it."""
    from twisted.internet import reactor

    old = server.hs
    await take_down(server)
    config = old.config
    # the client listener was on an ephemeral port: keep the one it had, so
    # clients made before the restart still reach the server
    client_port = int(server.base_url.rsplit(":", 1)[1])
    if config.listeners and config.listeners[0].port == 0:
        config.listeners = [replace(config.listeners[0], port=client_port),
                            *config.listeners[1:]]
    hs = HomeServer(config, reactor, clock=clock if clock is not None else old.clock)
    await hs.setup()
    hs.listen()
    server.hs = hs
    server.running = True  # type: ignore[attr-defined]
    _track_connections(server)
    return server


async def dispose(server: TestServer) -> None:
    """Stop the server if it runs and drop its database (test teardown)."""
    if getattr(server, "running", True):
        server.running = False  # type: ignore[attr-defined]
        await stop_server(server)
    elif server.engine == "postgres":
        drop_postgres_database(server.hs.config.database.args["database"])
