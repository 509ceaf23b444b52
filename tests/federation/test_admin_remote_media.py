"""The media admin API on cached remote media: quarantine blocks it, purging
the cache forgets it (a later download fetches it again)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest_twisted

from tests.federation.test_media import png

V1 = "/_matrix/client/v1/media"
ADMIN = "/_synapse/admin/v1"


@pytest_twisted.ensureDeferred
async def test_remote_media_quarantined_then_purged_from_the_cache(federation: Any) -> None:
    hs1 = await federation()
    hs2 = await federation()
    alice = await hs1.register("alice")
    admin = await hs2.register("admin", admin=True)
    bob = await hs2.register("bob")
    data = png()
    up = await alice.post("/_matrix/media/v3/upload", raw=data,
                          headers={"Content-Type": "image/png"})
    origin, mid = up.body["content_uri"][len("mxc://"):].split("/")
    url = f"{V1}/download/{quote(origin)}/{mid}"
    assert (await bob.get(url)).code == 200

    blocked = await admin.post(f"{ADMIN}/media/quarantine/{quote(origin)}/{mid}", {})

    assert blocked.code == 200, blocked.body
    assert (await bob.get(url)).code == 404
    thumb = await bob.get(f"{V1}/thumbnail/{quote(origin)}/{mid}",
                          params={"width": "32", "height": "32"})
    assert thumb.code == 404
    info = await admin.get(f"{ADMIN}/media/{quote(origin)}/{mid}")
    assert info.body["media_info"]["quarantined_by"] == admin.user_id
    assert info.body["media_info"]["media_origin"] == origin
    # a quarantined copy stays cached, so it stays blocked
    future = hs2.hs.ctx.now_ms() + 60_000
    kept = await admin.post(f"{ADMIN}/purge_media_cache?before_ts={future}", {})
    assert kept.body == {"deleted": 0}

    await admin.post(f"{ADMIN}/media/unquarantine/{quote(origin)}/{mid}", {})
    assert (await bob.get(url)).code == 200
    purged = await admin.post(f"{ADMIN}/purge_media_cache?before_ts={future}", {})

    assert purged.code == 200, purged.body
    assert purged.body == {"deleted": 1}
    gone = await admin.get(f"{ADMIN}/media/{quote(origin)}/{mid}")
    assert gone.code == 404
    # fetched again from its origin on the next download
    again = await bob.get(url)
    assert (again.code, again.body) == (200, data)
    bad = await admin.post(f"{ADMIN}/purge_media_cache", {})
    assert (bad.code, bad.body["errcode"]) == (400, "M_MISSING_PARAM")
