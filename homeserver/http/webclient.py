"""The web client's files (``webclient/dist``, built by Vite), served at ``/``.

Only GET and HEAD of paths outside the server's own namespaces reach here:
``/_matrix``, ``/_synapse``, ``/.well-known`` and ``/health`` always belong
to the API (``is_web_client_path``), whether or not a file of that name
exists in the bundle.

How a path is answered:

- A file of the bundle: its bytes, its content type from a fixed table (the
  platform's mimetypes database differs between machines, and a module
  script served as text/plain does not run), and a cache policy. Vite names
  everything under ``assets/`` by its content hash, so those are cached for
  a year as ``immutable``; anything else (``index.html``, ``favicon.svg``)
  is revalidated on every load (``no-cache`` with an ETag), so a new build
  is picked up at the next reload.
- A path that names no file, is not under ``assets/`` and does not end in
  an extension of the table below (``/login``, ``/room/!abc:example.org``):
  ``index.html``, since those are the client's own routes.
- Anything else (``/assets/app-old.js``, ``/missing.png``): 404, so a stale
  asset never comes back as HTML.

A path is decoded once, split on ``/``, and refused (404) if a segment is
empty-dot, ``..``, starts with a dot, or holds a backslash or NUL; the file
found is then checked to lie under the bundle directory after symlinks are
resolved. Files are read once and kept in memory (keyed by size and mtime,
so a rebuild is noticed without a restart), with a gzip copy of the text
types for clients that accept it.

HTML responses carry a Content-Security-Policy that lets only the bundle's
own scripts run (``'wasm-unsafe-eval'`` for the Rust crypto's WebAssembly),
so even a sanitiser slip in message rendering cannot run a script.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from twisted.web.server import Request

logger = logging.getLogger(__name__)

# Paths the API owns: never answered from the bundle.
_RESERVED_PREFIXES = (b"/_matrix", b"/_synapse", b"/.well-known")
_RESERVED_EXACT = (b"/health",)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
_COMPRESSIBLE = (".html", ".js", ".mjs", ".css", ".json", ".map", ".svg", ".wasm", ".txt",
                 ".webmanifest")
_DEFAULT_TYPE = "application/octet-stream"

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'")

NOT_BUILT_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Web client not built</title>"
    b"<h1>The web client is not built</h1>"
    b"<p>This homeserver serves a web client at <code>/</code>, but its files are missing. "
    b"Build them with Node.js 20.19 or newer: <code>make webclient</code> "
    b"(or <code>cd webclient &amp;&amp; npm ci &amp;&amp; npm run build</code>), "
    b"then reload this page. The Matrix API works without it.</p>\n")

# A file larger than this is read from disk on each request instead of being
# kept in memory (the bundle's largest, the crypto WebAssembly, is ~5 MB).
_MAX_CACHED_FILE = 16 * 1024 * 1024


def is_web_client_path(path: bytes) -> bool:
    """Whether ``path`` (the raw request path) may be answered by the client."""
    if path in _RESERVED_EXACT:
        return False
    for prefix in _RESERVED_PREFIXES:
        if path == prefix or path.startswith(prefix + b"/"):
            return False
    return path.startswith(b"/")


def default_bundle_path() -> str:
    """``webclient/dist`` of the source tree this package runs from."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "webclient", "dist"))


@dataclass(frozen=True)
class _File:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str
    stamp: tuple[int, int]  # (size, mtime_ns) it was read at


class WebClient:
    """The bundle directory and a cache of its files."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self._files: dict[str, _File] = {}

    @property
    def built(self) -> bool:
        return os.path.isfile(os.path.join(self.root, "index.html"))

    def log_state(self) -> None:
        if self.built:
            logger.info("serving the web client from %s at /", self.root)
        else:
            logger.warning(
                "web_client is enabled but %s has no index.html: the client is not built. "
                "Build it with Node.js 20.19+: `make webclient` (or `cd webclient && npm ci "
                "&& npm run build`); / answers with these instructions until then", self.root)

    def _resolve(self, path: bytes) -> tuple[str | None, bool]:
        """The file for ``path`` and whether it is a client route (the
        index.html fallback); ``(None, False)`` for a path not to serve."""
        raw = unquote_to_bytes(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, False
        segments = [s for s in text.split("/") if s]
        for seg in segments:
            if seg.startswith(".") or "\\" in seg or "\x00" in seg:
                return None, False
        if not segments:
            return os.path.join(self.root, "index.html"), True
        candidate = os.path.realpath(os.path.join(self.root, *segments))
        if candidate != self.root and not candidate.startswith(self.root + os.sep):
            return None, False
        if os.path.isfile(candidate):
            return candidate, False
        # a missing file of a kind the bundle holds is a 404 (a stale
        # asset must not come back as HTML); anything else is a client route,
        # which may well have dots in it (/room/!abc:example.org)
        if segments[0] == "assets" or os.path.splitext(segments[-1])[1].lower() in CONTENT_TYPES:
            return None, False
        return os.path.join(self.root, "index.html"), True

    def _load(self, filename: str) -> _File | None:
        try:
            st = os.stat(filename)
        except OSError:
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self._files.get(filename)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            with open(filename, "rb") as f:
                body = f.read()
        except OSError:
            return None
        ext = os.path.splitext(filename)[1].lower()
        gzipped = None
        if ext in _COMPRESSIBLE and len(body) > 1024:
            gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        entry = _File(body, gzipped, CONTENT_TYPES.get(ext, _DEFAULT_TYPE), etag, stamp)
        if len(body) <= _MAX_CACHED_FILE:
            self._files[filename] = entry
        return entry

    def render(self, request: Request) -> None:
        """Answer a GET or HEAD ``request`` for a web client path."""
        filename, is_route = self._resolve(request.path)
        if filename is None:
            _write(request, 404, b"Not found\n", "text/plain; charset=utf-8", REVALIDATE)
            return
        entry = self._load(filename)
        if entry is None:
            if is_route or filename == os.path.join(self.root, "index.html"):
                request.setHeader(b"Content-Security-Policy", CONTENT_SECURITY_POLICY.encode())
                _write(request, 404, NOT_BUILT_PAGE, CONTENT_TYPES[".html"], REVALIDATE)
            else:
                _write(request, 404, b"Not found\n", "text/plain; charset=utf-8", REVALIDATE)
            return
        rel = os.path.relpath(filename, self.root).replace(os.sep, "/")
        cache = IMMUTABLE if rel.startswith("assets/") else REVALIDATE
        request.setHeader(b"ETag", entry.etag.encode("ascii"))
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        if entry.content_type.startswith("text/html"):
            request.setHeader(b"Content-Security-Policy", CONTENT_SECURITY_POLICY.encode())
            request.setHeader(b"X-Frame-Options", b"DENY")
        if entry.gzipped is not None:
            request.setHeader(b"Vary", b"Accept-Encoding")
        if_none_match = request.getHeader(b"If-None-Match")
        if if_none_match is not None and entry.etag in if_none_match.decode("latin-1"):
            request.setResponseCode(304)
            request.setHeader(b"Cache-Control", cache.encode("ascii"))
            request.finish()
            return
        body = entry.body
        if entry.gzipped is not None and _accepts_gzip(request):
            body = entry.gzipped
            request.setHeader(b"Content-Encoding", b"gzip")
        _write(request, 200, body, entry.content_type, cache)


def _accepts_gzip(request: Request) -> bool:
    header = request.getHeader(b"Accept-Encoding")
    if not header:
        return False
    for part in header.decode("latin-1").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _write(request: Request, status: int, body: bytes, content_type: str, cache: str) -> None:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", content_type.encode("ascii"))
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    request.setHeader(b"Cache-Control", cache.encode("ascii"))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()
