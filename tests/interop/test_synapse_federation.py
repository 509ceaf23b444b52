"""Smoke tests against a real Synapse: it starts, and it and we trust each other's keys.

One Synapse (SQLite) serves the whole module (``synapse`` fixture); each test
that needs our side starts one of our federating servers (``ours``) on the
parametrised engine. Both present certificates from the same test CA and
both verify them: nothing here turns TLS checks off.

What each test proves, as a peer would see it:
- Synapse answers over TLS and makes users (the harness works);
- we fetch Synapse's server key, and it is signed by that key;
- Synapse, as a notary, fetches OUR server key over TLS, checks our
  self-signature, and serves it with its own signature added;
- profile and room-alias queries go both ways over signed requests (Synapse
  verifies our X-Matrix header with our key, and we verify its).
The room tests (joins, messages, EDUs, membership changes) are in
test_synapse_rooms.py.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pytest_twisted
from signedjson.key import decode_verify_key_bytes, encode_verify_key_base64
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from tests.federation.ca import TestCA
from tests.harness import TestServer
from tests.interop.synapse import (  # noqa: F401 (the *_fixture imports are fixtures)
    SynapseServer,
    interop_ca_fixture,
    ours_fixture,
    start_synapse,
    synapse_fixture,
    unique,
)


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def assert_self_signed(key_response: dict[str, Any], server_name: str) -> None:
    """``key_response`` (a /_matrix/key/v2/server body) is signed by one of its own keys."""
    assert key_response["server_name"] == server_name
    verify_keys = key_response["verify_keys"]
    assert verify_keys, key_response
    signed_by = key_response["signatures"][server_name]
    checked = 0
    for key_id, entry in verify_keys.items():
        if key_id in signed_by:
            verify_key = decode_verify_key_bytes(key_id, decode_base64(entry["key"]))
            verify_signed_json(key_response, server_name, verify_key)
            checked += 1
    assert checked, f"no signature by a listed key: {key_response}"


def our_key(server: TestServer) -> tuple[str, str]:
    """(key id, unpadded base64 public key) of our server's signing key."""
    key = server.hs.signing_key
    return f"ed25519:{key.version}", encode_verify_key_base64(key.verify_key)


@pytest_twisted.ensureDeferred
async def test_synapse_serves_clients_and_its_key_over_tls(synapse: SynapseServer) -> None:
    alice = await synapse.register(unique("alice"))
    whoami = await alice.get("/_matrix/client/v3/account/whoami")
    assert whoami.code == 200, whoami.body
    assert whoami.body["user_id"] == alice.user_id
    assert (alice.user_id or "").endswith(":" + synapse.server_name)

    keys = await synapse.client().get("/_matrix/key/v2/server", token=None)
    assert keys.code == 200, keys.body
    assert_self_signed(keys.body, synapse.server_name)


@pytest_twisted.ensureDeferred
async def test_synapse_runs_on_postgresql_too(tmp_path: Any, interop_ca: TestCA) -> None:
    # The other tests use Synapse on SQLite; this keeps the PostgreSQL path of
    # the harness (a fresh database, dropped on stop) working.
    from tests.harness import _admin_connection

    server = await start_synapse(str(tmp_path / "synapse-pg"), interop_ca, "postgres")
    database = server.pg_database
    try:
        bob = await server.register("bob")
        resp = await bob.get("/_matrix/client/v3/account/whoami")
        assert resp.code == 200 and resp.body["user_id"] == server.user_id("bob")
    finally:
        await server.stop()
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            assert cur.fetchone() is None, "stop() left the Synapse database behind"
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_we_fetch_synapse_server_key(synapse: SynapseServer, ours: TestServer) -> None:
    body = await ours.hs.federation_client.get_json(
        synapse.server_name, "/_matrix/key/v2/server", sign=False)
    assert_self_signed(body, synapse.server_name)
    direct = await synapse.client().get("/_matrix/key/v2/server", token=None)
    assert body["verify_keys"] == direct.body["verify_keys"]


@pytest_twisted.ensureDeferred
async def test_synapse_fetches_our_server_key_as_a_notary(synapse: SynapseServer,
                                                          ours: TestServer) -> None:
    # Asked for a key id it has not cached, Synapse's notary endpoint fetches
    # our /key/v2/server over TLS (checking our certificate against the test
    # CA), verifies our self-signature, and serves the keys counter-signed.
    # (Asked for "all keys" of a server, Synapse answers only from its cache.)
    our_name = str(ours.hs.hostname)
    key_id, public = our_key(ours)
    resp = await synapse.client().post("/_matrix/key/v2/query",
                                       {"server_keys": {our_name: {key_id: {
                                           "minimum_valid_until_ts": int(time.time() * 1000)}}}},
                                       token=None)
    assert resp.code == 200, resp.body
    responses = [r for r in resp.body["server_keys"] if r["server_name"] == our_name]
    assert responses, f"Synapse could not fetch our key: {resp.body}\n{synapse.log_tail(30)}"
    keys = responses[0]
    assert keys["verify_keys"][key_id]["key"] == public
    assert keys["valid_until_ts"] > 0
    verify_signed_json(keys, our_name,
                       decode_verify_key_bytes(key_id, decode_base64(public)))
    assert synapse.server_name in keys["signatures"], "Synapse did not notarise our key"


@pytest_twisted.ensureDeferred
async def test_synapse_user_reads_our_users_profile(synapse: SynapseServer,
                                                    ours: TestServer) -> None:
    # Synapse queries our /query/profile with an X-Matrix signed request: we
    # fetch its key to check it; it checks our answer came over TLS from us.
    alice = await ours.register("alice")
    resp = await alice.put(f"/_matrix/client/v3/profile/{q(alice.user_id or '')}/displayname",
                           {"displayname": "Alice of Ours"})
    assert resp.code == 200, resp.body
    bob = await synapse.register(unique("bob"))
    resp = await bob.get(f"/_matrix/client/v3/profile/{q(alice.user_id or '')}")
    assert resp.code == 200, f"{resp.code} {resp.body}\n{synapse.log_tail(30)}"
    assert resp.body.get("displayname") == "Alice of Ours"

    # a user we do not have: Synapse passes our 404 on
    nobody = f"@nobody:{ours.hs.hostname}"
    resp = await bob.get(f"/_matrix/client/v3/profile/{q(nobody)}")
    assert resp.code == 404, resp.body
    assert resp.body["errcode"] == "M_NOT_FOUND"


@pytest_twisted.ensureDeferred
async def test_our_user_reads_synapse_users_profile(synapse: SynapseServer,
                                                    ours: TestServer) -> None:
    # We query Synapse's /query/profile, signed; Synapse fetches our key to
    # verify the request (a bad signature would be a 401 from it).
    bob = await synapse.register(unique("bob"))
    resp = await bob.put(f"/_matrix/client/v3/profile/{q(bob.user_id or '')}/displayname",
                         {"displayname": "Bob of Synapse"})
    assert resp.code == 200, resp.body
    alice = await ours.register("alice")
    resp = await alice.get(f"/_matrix/client/v3/profile/{q(bob.user_id or '')}")
    assert resp.code == 200, f"{resp.code} {resp.body}\n{synapse.log_tail(30)}"
    assert resp.body.get("displayname") == "Bob of Synapse"


@pytest_twisted.ensureDeferred
async def test_room_aliases_resolve_across_servers(synapse: SynapseServer,
                                                   ours: TestServer) -> None:
    # /query/directory both ways: an alias on each server, looked up by a
    # user of the other, answers the room id and a server to join through.
    bob = await synapse.register(unique("bob"))
    alias_local = unique("synroom")
    resp = await bob.post("/_matrix/client/v3/createRoom",
                          {"room_alias_name": alias_local, "preset": "public_chat"})
    assert resp.code == 200, resp.body
    synapse_room = resp.body["room_id"]
    synapse_alias = f"#{alias_local}:{synapse.server_name}"

    alice = await ours.register("alice")
    resp = await alice.post("/_matrix/client/v3/createRoom",
                            {"room_alias_name": "ourroom", "preset": "public_chat"})
    assert resp.code == 200, resp.body
    our_room = resp.body["room_id"]
    our_alias = f"#ourroom:{ours.hs.hostname}"

    resp = await alice.get(f"/_matrix/client/v3/directory/room/{q(synapse_alias)}")
    assert resp.code == 200, resp.body
    assert resp.body["room_id"] == synapse_room
    assert synapse.server_name in resp.body["servers"]

    resp = await bob.get(f"/_matrix/client/v3/directory/room/{q(our_alias)}")
    assert resp.code == 200, f"{resp.code} {resp.body}\n{synapse.log_tail(30)}"
    assert resp.body["room_id"] == our_room
    assert str(ours.hs.hostname) in resp.body["servers"]

    # an alias neither has: 404 from the other side, passed on
    resp = await bob.get(f"/_matrix/client/v3/directory/room/{q('#nope:' + str(ours.hs.hostname))}")
    assert resp.code == 404, resp.body
