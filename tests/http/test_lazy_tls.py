"""TLS still works when pyOpenSSL loads on first use (homeserver/lazy_tls.py).

``homeserver run`` defers pyOpenSSL (and ``cryptography``) until something
speaks TLS. The test process imported the reactor long ago, so each check
runs in a fresh interpreter that installs the deferral first, exactly as
``cli.cmd_run`` does, and then talks real TLS over loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.server import LocalServer
from tests.federation.ca import make_test_ca

ROOT = Path(__file__).resolve().parent.parent.parent

# Runs in a child interpreter; argv: cert, key, CA cert. Prints one JSON line.
_CHILD = r"""
import json, sys
from homeserver import lazy_tls
installed = lazy_tls.install()
from twisted.internet import defer, protocol, reactor, task
loaded_at_start = "OpenSSL" in sys.modules or "cryptography" in sys.modules
cert_path, key_path, ca_path = sys.argv[1:4]

def options():
    from twisted.internet import ssl
    server = ssl.PrivateCertificate.loadPEM(open(cert_path).read() + open(key_path).read())
    ca = ssl.Certificate.loadPEM(open(ca_path).read())
    return server.options(), ssl.optionsForClientTLS("localhost", trustRoot=ca)

class StartTlsServer(protocol.Protocol):
    # "STARTTLS" in clear, then everything else inside TLS, as SMTP does
    def dataReceived(self, data):
        if data == b"STARTTLS\n":
            self.transport.write(b"GO\n")
            self.transport.startTLS(self.factory.tls)
        else:
            self.transport.write(b"echo " + data)

class StartTlsClient(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"STARTTLS\n")
    def dataReceived(self, data):
        if data == b"GO\n":
            self.transport.startTLS(self.factory.tls)
            self.transport.write(b"secret\n")
        else:
            from twisted.internet.interfaces import ISSLTransport
            self.factory.done.callback((data, ISSLTransport.providedBy(self.transport)))

class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(b"echo " + data)

class Once(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"hello\n")
    def dataReceived(self, data):
        self.factory.done.callback(data)

async def main():
    server_tls, client_tls = options()
    out = {"installed": installed, "loaded_at_start": loaded_at_start}
    sf = protocol.Factory.forProtocol(StartTlsServer)
    sf.tls = server_tls
    port = reactor.listenTCP(0, sf, interface="127.0.0.1")
    cf = protocol.ClientFactory.forProtocol(StartTlsClient)
    cf.tls = client_tls
    cf.done = defer.Deferred()
    reactor.connectTCP("127.0.0.1", port.getHost().port, cf)
    data, secure = await cf.done
    out["starttls"] = [data.decode(), bool(secure)]
    ssl_port = reactor.listenSSL(0, protocol.Factory.forProtocol(Echo), server_tls,
                                 interface="127.0.0.1")
    of = protocol.ClientFactory.forProtocol(Once)
    of.done = defer.Deferred()
    reactor.connectSSL("127.0.0.1", ssl_port.getHost().port, of, client_tls)
    out["tls_from_start"] = (await of.done).decode()
    print(json.dumps(out))

task.react(lambda _: defer.ensureDeferred(main()))
"""


def _run_child(tmp_path: Path) -> dict[str, Any]:
    ca = make_test_ca(str(tmp_path))
    cert, key = ca.issue("server")
    proc = subprocess.run([sys.executable, "-c", _CHILD, cert, key, ca.ca_cert_path],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_starttls_and_tls_listeners_work_with_openssl_deferred(tmp_path: Path) -> None:
    result = _run_child(tmp_path)
    assert result["installed"] is True
    assert result["loaded_at_start"] is False
    # the clear-text connection moved into TLS (an SMTP server's STARTTLS)
    assert result["starttls"] == ["echo secret\n", True]
    # listenSSL / connectSSL: TLS from the first byte
    assert result["tls_from_start"] == "echo hello\n"


def test_idle_server_has_not_loaded_the_tls_stack() -> None:
    server = LocalServer("sqlite", idle_settle_s=0.5)
    target = server.start()
    try:
        assert target.pid is not None
        with open(f"/proc/{target.pid}/maps", encoding="ascii") as f:
            maps = f.read()
        # cryptography's Rust library is the bulk of what pyOpenSSL costs
        assert "cryptography" not in maps
        assert "_rust.abi3.so" not in maps
    finally:
        server.stop()
