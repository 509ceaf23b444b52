"""The media stage of `homeserver import-synapse`."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from homeserver.storage import synapse_import as rows
from homeserver.storage.database import Txn
from homeserver.synapse_import.common import StageContext

_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{5,255}")


def media(ctx: StageContext, name: str) -> None:
    """Local media: its rows, and its files copied into our media store
    (same paths: both keep ``local_content/ab/cd/rest``). Remote media
    and thumbnails are left: they are fetched or made again on demand.

    A file missing from Synapse's media store is left out, unless our config
    has ``media_storage_providers`` (Synapse's S3 provider, say, configured
    the same): then its row is imported and the file is read from there."""
    url_cache = "url_cache IS NULL" if ctx.src.has_column(
        "local_media_repository", "url_cache") else "1 = 1"
    media = ctx.src.rows(
        "SELECT media_id, user_id, created_ts, media_type, media_length, upload_name,"
        f" authenticated, quarantined_by FROM local_media_repository WHERE {url_cache}")
    advance = ctx.progress.stage(name, len(media))
    src_dir = ctx.syn_config.media_store_path
    dest_dir = os.path.join(ctx.config.config_dir,
                            ctx.config.media_store_path or "media_store")
    providers = bool(ctx.config.media_storage_providers)
    todo: list[tuple[Any, ...]] = []
    for media_id, user_id, created, mtype, length, upload_name, auth, quarantined in media:
        advance(1)
        # the ID becomes a path: nothing but what Synapse's IDs are made of
        if not _MEDIA_ID.fullmatch(str(media_id)) or quarantined:
            ctx.report.skipped.append(f"media {media_id!r}: "
                                      + ("quarantined" if quarantined else "odd media ID"))
            continue
        rel = os.path.join("local_content", media_id[0:2], media_id[2:4], media_id[4:])
        source = os.path.join(src_dir, rel)
        if os.path.exists(source):
            target = os.path.join(dest_dir, rel)
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            # copy, not move: Synapse's store stays as it was (a way back)
            shutil.copyfile(source, target)
            os.chmod(target, 0o600)
            length = length or os.path.getsize(source)
        elif not providers:
            ctx.report.skipped.append(f"media {media_id}: no file in {src_dir}")
            continue
        todo.append((media_id, user_id, int(created or 0), int(created or 0), mtype,
                     int(length or 0), upload_name, int(bool(auth))))

    def txn_fn(txn: Txn) -> int:
        for row in todo:
            rows.insert_local_media_txn(txn, row)
        return len(todo)
    ctx.commit(name, txn_fn)
