"""Password hashing with bcrypt, off the reactor thread (it is slow on purpose).

Synapse hashes with bcrypt too (``$2b$``), but of the password normalised to
Unicode NFKC; a hash carried over by `homeserver import-synapse` is
therefore also checked against the NFKC form, so a password with, say, a
ligature or a full-width letter still logs in after the move.
"""

from __future__ import annotations

import unicodedata

import bcrypt
from twisted.internet import threads

# bcrypt only reads the first 72 bytes; longer passwords are refused at the
# edge rather than silently truncated.
MAX_PASSWORD_BYTES = 72


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def _check(password: str, stored: str) -> bool:
    try:
        if bcrypt.checkpw(password.encode("utf-8"), stored.encode("ascii")):
            return True
        normalised = unicodedata.normalize("NFKC", password)
        return normalised != password and bcrypt.checkpw(normalised.encode("utf-8"),
                                                         stored.encode("ascii"))
    except ValueError:
        return False


async def hash_password(password: str, rounds: int) -> str:
    return await threads.deferToThread(_hash, password, rounds)


async def check_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    return await threads.deferToThread(_check, password, stored)
