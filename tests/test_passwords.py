"""Password checks: our own hashes, and Synapse's (bcrypt of the NFKC form)."""

from __future__ import annotations

import unicodedata

import bcrypt

from homeserver.accounts.passwords import _check, _hash


def test_our_hash_checks_the_password_and_nothing_else() -> None:
    stored = _hash("correct horse", 4)
    assert _check("correct horse", stored)
    assert not _check("correct horse ", stored)


def test_synapse_hash_of_the_nfkc_form_accepts_the_password_as_typed() -> None:
    typed = "ﬁsh ＡＢＣ"  # a ligature and full-width letters
    # what Synapse stores: bcrypt of the NFKC-normalised password
    stored = bcrypt.hashpw(unicodedata.normalize("NFKC", typed).encode(),
                           bcrypt.gensalt(4)).decode()
    assert _check(typed, stored)
    assert _check("fish ABC", stored)
    assert not _check("fish abc", stored)


def test_a_stored_value_that_is_no_bcrypt_hash_never_matches() -> None:
    assert not _check("anything", "not-a-hash")
