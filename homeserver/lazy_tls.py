"""Load pyOpenSSL (and ``cryptography`` behind it) on first use of TLS, not at start.

Importing Twisted's reactor imports ``twisted.internet.tcp``, which mixes
STARTTLS support (``twisted.internet._newtls``) into every TCP connection
class, and that module imports ``twisted.protocols.tls`` and pyOpenSSL:
about 18 MiB of resident memory (mostly ``cryptography``'s Rust library)
in a server that may never speak TLS itself (a reverse proxy terminates it,
federation may be off).

``install()``, called before the reactor is imported, puts a stand-in for
``twisted.internet._newtls`` in ``sys.modules``. Its mixins only say
"no TLS yet"; the first ``startTLS()`` on a connection (STARTTLS to an SMTP
server) loads Twisted's module and moves that connection to a subclass of
its class with Twisted's ``ConnectionMixin`` in front, so from then on it
behaves exactly as Twisted's own connection would. Listeners and clients
that are TLS from the first byte (``listenSSL``, HTTPS endpoints) never go
through these mixins: they wrap the protocol in ``TLSMemoryBIOFactory`` and
load pyOpenSSL when they are built.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

NEWTLS = "twisted.internet._newtls"

_real: ModuleType | None = None
_tls_classes: dict[type, type] = {}


def _real_newtls() -> ModuleType:
    """Twisted's own ``_newtls``, loaded under a private name (ours holds its name)."""
    global _real
    if _real is None:
        import twisted.internet

        spec = importlib.machinery.PathFinder.find_spec(NEWTLS, list(twisted.internet.__path__))
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot find {NEWTLS}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _real = module
    return _real


def _with_tls(cls: type) -> type:
    tls_cls = _tls_classes.get(cls)
    if tls_cls is None:
        mixin = _real_newtls().ConnectionMixin
        tls_cls = type(cls.__name__, (mixin, cls), {"__module__": cls.__module__})
        _tls_classes[cls] = tls_cls
    return tls_cls


class ConnectionMixin:
    """No TLS on this connection yet; ``startTLS`` brings Twisted's mixin in."""

    TLS = False

    def startTLS(self, ctx: Any, normal: bool = True) -> None:  # noqa: N802 (Twisted's name)
        self.__class__ = _with_tls(type(self))
        self.startTLS(ctx, normal)


class ClientMixin:
    _tlsClientDefault = True


class ServerMixin:
    _tlsClientDefault = False


class _LazyModule(ModuleType):
    """Stands in ``sys.modules`` for a module until an attribute of it is read.

    Only missing attributes reach ``__getattr__``: the import system reads
    ``__spec__`` and ``__name__`` without loading anything (the standard
    library's ``LazyLoader`` loads on those too, so ``from p import m`` would
    load ``m`` at once on Python 3.11).
    """

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def _import_lazily(name: str) -> None:
    """Put ``name`` in ``sys.modules``, to be imported at its first attribute access."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    module = _LazyModule(name)
    module.__spec__ = spec
    sys.modules[name] = module


def install() -> bool:
    """Defer pyOpenSSL if the reactor is not imported yet; whether it did.

    Stands in for ``_newtls`` (see the module doc), and makes the two
    modules the reactor imports for ``listenSSL``/``connectSSL``
    (``twisted.protocols.tls``, ``twisted.internet.ssl``) load on first use.
    """
    if "twisted.internet.tcp" in sys.modules or NEWTLS in sys.modules:
        return False
    import twisted.internet
    import twisted.protocols  # noqa: F401 (the parents, before their lazy children)

    module = ModuleType(NEWTLS, __doc__)
    module.ConnectionMixin = ConnectionMixin  # type: ignore[attr-defined]
    module.ClientMixin = ClientMixin  # type: ignore[attr-defined]
    module.ServerMixin = ServerMixin  # type: ignore[attr-defined]
    sys.modules[NEWTLS] = module
    for name in ("twisted.protocols.tls", "twisted.internet.ssl"):
        if name not in sys.modules:
            _import_lazily(name)
    # HTTP/2 is only ever chosen by ALPN in a TLS handshake, and our listeners
    # offer no ALPN protocols: Twisted's HTTP/2 (and the h2 package) would be
    # dead weight. None here makes twisted.web.http see it as not installed.
    sys.modules.setdefault("twisted.web._http2", None)  # type: ignore[arg-type]
    return True
