"""How media goes out safely: Content-Disposition, sandboxing headers, multipart.

A file uploaded by one user is served from our origin to another user's
browser, so nothing we serve may run as a page of ours: a sandboxing
Content-Security-Policy, no MIME sniffing, and ``inline`` only for types a
browser shows without running code (Synapse's list); everything else is an
``attachment``. Filenames go in ``filename=`` when they are a plain token
and as RFC 5987 ``filename*=utf-8''...`` otherwise, so odd characters
(quotes, semicolons, non-ASCII, newlines) never break the header.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

# Synapse's INLINE_CONTENT_TYPES
INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")

# RFC 2616 token characters (what may stand unquoted after filename=)
_TOKEN_CHARS = frozenset("!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`"
                         "abcdefghijklmnopqrstuvwxyz|~")
# RFC 5987 attr-char minus ALPHA / DIGIT (quote() keeps those)
_ATTR_CHARS_SAFE = "!#$&+-.^_`|~"


def base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_inline(content_type: str) -> bool:
    return base_type(content_type) in INLINE_CONTENT_TYPES


def content_disposition(content_type: str, filename: str | None) -> str:
    """The Content-Disposition header for a file of this type and name."""
    disposition = "inline" if is_inline(content_type) else "attachment"
    if not filename:
        return disposition
    if all(c in _TOKEN_CHARS for c in filename) and "%" not in filename:
        return f"{disposition}; filename={filename}"
    return f"{disposition}; filename*=utf-8''{quote(filename, safe=_ATTR_CHARS_SAFE)}"


def served_content_type(content_type: str) -> str:
    """The Content-Type we send: text without a charset is declared UTF-8, as
    Synapse does, so browsers do not guess; the value is kept ASCII."""
    value = content_type.encode("ascii", "replace").decode("ascii")
    value = "".join(c for c in value if c.isprintable())
    if base_type(value).startswith("text/") and "charset" not in value.lower():
        value += "; charset=utf-8"
    return value or "application/octet-stream"


def media_headers(content_type: str, filename: str | None) -> dict[str, str]:
    """The headers every media response (download or thumbnail) carries."""
    return {
        "Content-Disposition": content_disposition(content_type, filename),
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        # media never changes under its ID
        "Cache-Control": "public,max-age=86400,s-maxage=86400",
    }


def build_multipart(content_type: str, filename: str | None,
                    data: bytes) -> tuple[str, bytes]:
    """The federation media answer: a JSON metadata part, then the file.
    Returns the multipart Content-Type (with its boundary) and the body."""
    boundary = secrets.token_hex(16)
    head = (f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
            f"--{boundary}\r\nContent-Type: {served_content_type(content_type)}\r\n"
            f"Content-Disposition: {content_disposition(content_type, filename)}\r\n\r\n")
    tail = f"\r\n--{boundary}--\r\n"
    return (f"multipart/mixed; boundary={boundary}",
            head.encode("ascii") + data + tail.encode("ascii"))


class MultipartError(Exception):
    pass


def parse_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body: (lower-cased headers, bytes) each."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary or not base_type(content_type).startswith("multipart/"):
        raise MultipartError("not a multipart body with a boundary")
    delimiter = b"\r\n--" + boundary.encode("ascii", "replace")
    chunks = (b"\r\n" + body).split(delimiter)
    parts: list[tuple[dict[str, str], bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        # rest of the delimiter line (transport padding), then headers
        _, _, rest = chunk.partition(b"\r\n")
        raw_headers, sep, content = rest.partition(b"\r\n\r\n")
        if not sep:
            if rest.startswith(b"\r\n"):
                raw_headers, content = b"", rest[2:]
            else:
                raise MultipartError("a part has no header section")
        headers: dict[str, str] = {}
        for line in raw_headers.split(b"\r\n"):
            if b":" in line:
                k, _, v = line.partition(b":")
                headers[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
        parts.append((headers, content))
    else:
        raise MultipartError("the multipart body has no close delimiter")
    return parts


def filename_from_disposition(value: str | None) -> str | None:
    """The filename a Content-Disposition header names (RFC 5987 first)."""
    if not value:
        return None
    from urllib.parse import unquote
    plain: str | None = None
    for param in value.split(";")[1:]:
        name, _, v = param.strip().partition("=")
        name = name.strip().lower()
        v = v.strip()
        if name == "filename*":
            charset, _, encoded = v.partition("''")
            if charset.lower() in ("utf-8", "utf8"):
                return unquote(encoded, encoding="utf-8", errors="replace")
        elif name == "filename":
            plain = v.strip('"')
    return plain
