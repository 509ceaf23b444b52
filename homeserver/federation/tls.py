"""TLS for federation: the listener's certificate and outbound verification.

Inbound: a listener with ``tls: true`` serves ``tls_certificate_path`` (a PEM
chain: the leaf first, then any intermediates, which are sent along so peers
can build the path) with ``tls_private_key_path``. Relative paths are
relative to the config file's directory, like every other path in the config.

Outbound: peers are verified the way the spec requires (server-server-api.md
"TLS"): a certificate valid for the name discovery chose (the server name or
the delegated name), signed by a CA we trust. We trust the platform's roots
plus the operator's ``federation_custom_ca_list`` (a private CA, or the test
CA). ``federation_verify_certificates: false`` turns verification off for
setups that cannot have real certificates; we never default to that.

Both sides require TLS 1.2 or later.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet._sslverify import (  # Twisted's helpers for chained trust roots
    IOpenSSLTrustRoot,
    OpenSSLCertificateAuthorities,
    platformTrust,
)
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from homeserver.config import Config, ConfigError

logger = logging.getLogger(__name__)

_PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"


def _config_path(config: Config, path: str) -> str:
    return os.path.join(config.config_dir, path)


def _read(path: str, what: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read the {what} {path}: {e.strerror}") from None


def split_pem_certificates(data: bytes) -> list[bytes]:
    """The PEM blocks of every certificate in ``data``, in order."""
    out = []
    for part in data.split(_PEM_CERT_BEGIN)[1:]:
        out.append(_PEM_CERT_BEGIN + part.split(b"-----END CERTIFICATE-----")[0]
                   + b"-----END CERTIFICATE-----\n")
    return out


def server_tls_options(config: Config) -> ssl.CertificateOptions:
    """The context factory of a TLS listener (reactor.listenSSL)."""
    cert_path = config.tls_certificate_path
    key_path = config.tls_private_key_path
    if not cert_path or not key_path:
        raise ConfigError("a listener has tls: true but tls_certificate_path and "
                          "tls_private_key_path are not both set")
    cert_path = _config_path(config, cert_path)
    key_path = _config_path(config, key_path)
    chain_pem = _read(cert_path, "certificate", "tls_certificate_path")
    key_pem = _read(key_path, "private key", "tls_private_key_path")
    blocks = split_pem_certificates(chain_pem)
    if not blocks:
        raise ConfigError(f"tls_certificate_path: no PEM certificate in {cert_path}")
    try:
        certs = [crypto.load_certificate(crypto.FILETYPE_PEM, b) for b in blocks]
    except crypto.Error:
        raise ConfigError(f"tls_certificate_path: {cert_path} is not a valid PEM "
                          "certificate chain") from None
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
    except crypto.Error:
        raise ConfigError(f"tls_private_key_path: {key_path} is not a valid PEM private "
                          "key (it must not be encrypted)") from None
    try:
        return ssl.CertificateOptions(
            privateKey=key, certificate=certs[0], extraCertChain=certs[1:],
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
    except (SSL.Error, ValueError) as e:
        raise ConfigError(f"tls_private_key_path: the key does not match the "
                          f"certificate ({e})") from None


def load_ca_certificates(config: Config) -> list[ssl.Certificate]:
    """The extra CAs of ``federation_custom_ca_list``."""
    out = []
    for path in config.federation_custom_ca_list or []:
        full = _config_path(config, path)
        data = _read(full, "CA certificate", "federation_custom_ca_list")
        blocks = split_pem_certificates(data)
        if not blocks:
            raise ConfigError(f"federation_custom_ca_list: no PEM certificate in {full}")
        for block in blocks:
            try:
                out.append(ssl.Certificate.loadPEM(block))
            except (crypto.Error, ValueError):
                raise ConfigError(f"federation_custom_ca_list: {full} holds an invalid "
                                  "certificate") from None
    return out


@implementer(IOpenSSLTrustRoot)
class _CombinedTrust:
    """The platform's roots and some extra CAs together."""

    def __init__(self, extra: list[ssl.Certificate]) -> None:
        self._platform = platformTrust()
        self._extra = OpenSSLCertificateAuthorities([c.original for c in extra])

    def _addCACertsToContext(self, context: SSL.Context) -> None:  # noqa: N802 (Twisted API)
        self._platform._addCACertsToContext(context)
        self._extra._addCACertsToContext(context)


@implementer(IOpenSSLClientConnectionCreator)
class _NoVerification:
    """Client connections that do not check the certificate (opted-out by config)."""

    def __init__(self) -> None:
        self._options = ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:  # noqa: N802
        context = self._options.getContext()
        connection = SSL.Connection(context, None)
        connection.set_app_data(tls_protocol)
        return connection


class ClientTLSPolicy:
    """Builds the client TLS options of each outbound connection."""

    def __init__(self, config: Config) -> None:
        self.verify = bool(config.federation_verify_certificates)
        self._trust: Any = _CombinedTrust(load_ca_certificates(config)) if self.verify else None
        if not self.verify:
            logger.warning("federation_verify_certificates is false: outbound federation "
                           "does not check TLS certificates")

    def creator_for(self, tls_name: str) -> Any:
        """TLS for a connection to a server that must present a certificate for
        ``tls_name`` (also sent as SNI)."""
        if not self.verify:
            return _NoVerification()
        return ssl.optionsForClientTLS(
            hostname=tls_name, trustRoot=self._trust,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2})
