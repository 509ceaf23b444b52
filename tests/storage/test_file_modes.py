"""What the server writes to disk is its owner's alone: the SQLite database
with its -wal and -shm (password hashes, tokens, every message) and the media
store (private rooms' pictures) give other accounts on the host nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted

from tests.harness import start_server, stop_server
from tests.media.test_media import V1, media_id, png, upload


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give a service (files 0644, directories 0755)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def media_tree(base: str) -> tuple[dict[str, int], dict[str, int]]:
    """(directory -> mode, file -> mode) of everything under ``base``, itself included."""
    dirs, files = {base: mode(base)}, {}
    for root, dirnames, filenames in os.walk(base):
        for d in dirnames:
            dirs[os.path.join(root, d)] = mode(os.path.join(root, d))
        for f in filenames:
            files[os.path.join(root, f)] = mode(os.path.join(root, f))
    return dirs, files


@pytest_twisted.ensureDeferred
async def test_uploaded_media_and_its_thumbnails_are_private(server: Any) -> None:
    alice = await server.register("alice")
    resp = await upload(alice, png(), filename="cat.png")
    assert resp.code == 200, resp.body
    thumb = await alice.get(f"{V1}/thumbnail/test.local/{media_id(resp.body['content_uri'])}",
                            params={"width": "32", "height": "32", "method": "scale"})
    assert thumb.code == 200
    dirs, files = media_tree(server.hs.media_repository.base_dir)
    assert any("local_content" in f for f in files)
    assert any("local_thumbnails" in f for f in files), files
    assert {d: m for d, m in dirs.items() if m != 0o700} == {}
    assert {f: m for f, m in files.items() if m != 0o600} == {}


@pytest_twisted.ensureDeferred
async def test_sqlite_database_and_its_wal_are_private(tmp_path: Any) -> None:
    srv = await start_server("sqlite", str(tmp_path))
    try:
        alice = await srv.register("alice")
        assert (await upload(alice, b"hello", "text/plain")).code == 200
        db = srv.hs.config.database.args["database"]
        for name in (db, db + "-wal", db + "-shm"):
            assert mode(name) == 0o600, name
    finally:
        await stop_server(srv)


@pytest_twisted.ensureDeferred
async def test_files_an_older_version_left_open_are_closed_at_start(tmp_path: Any) -> None:
    db = str(tmp_path / "hs.db")
    media = tmp_path / "media_store"
    # as SQLite and makedirs made them before
    fd = os.open(db, os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    (media / "local_content" / "ab").mkdir(parents=True, mode=0o755)
    media.chmod(0o755)
    srv = await start_server("sqlite", str(tmp_path), media_store_path=str(media))
    try:
        assert mode(db) == 0o600
        assert mode(str(media)) == 0o700
    finally:
        await stop_server(srv)
