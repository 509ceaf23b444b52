"""`homeserver import-synapse` against a real Synapse (docs/migrating-from-synapse.md).

A real Synapse (on the parametrised engine, SQLite or PostgreSQL) is used by
its clients: an admin and a user, a public room with an alias, a name and
messages, a DM, a profile, an upload, a second login, account data and a
read receipt, E2E keys and backups, push rules, a locked account, a blocked
room; a user of another server (one of ours) joins the public room over
federation and speaks, another invites a Synapse user to a room over there.
Synapse is stopped; the importer runs as the operator runs it (the command
line, in a child process; killed once in the middle, then run again) into a
fresh database of ours on the same engine; our server starts on the same
server name, serving federation where Synapse did, and the test checks what
those clients would see: the old passwords and the old access tokens work,
/sync shows the rooms with their messages in order, the alias resolves, the
media downloads under its old mxc URI, profiles and account data are there,
the pending invite can be answered, and what we send now is signed with
Synapse's key and accepted by the other server, whose next message reaches
us: for it, nothing changed.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import urllib.parse
from typing import Any

import pytest_twisted
import yaml
from PIL import Image
from signedjson.key import (
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    write_signing_keys,
)
from signedjson.sign import sign_json
from twisted.internet.task import deferLater

from homeserver.config import load_config
from homeserver.server import HomeServer
from tests.federation.ca import TestCA
from tests.harness import Client, TestServer, create_postgres_database, drop_postgres_database
from tests.interop.synapse import (  # noqa: F401 (the *_fixture imports are fixtures)
    SynapseServer,
    interop_ca_fixture,
    ours_fixture,
    start_synapse,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def q(value: str | None) -> str:
    return urllib.parse.quote(value or "", safe="")


async def _ok(resp: Any, what: str) -> Any:
    assert resp.code == 200, f"{what}: {resp.code} {resp.body}"
    return resp.body


async def invite_from_elsewhere(synapse: SynapseServer, elsewhere: TestServer) -> dict[str, Any]:
    """Carol, on Synapse, is invited to a room on another server and has not
    answered yet when the server moves."""
    from twisted.internet import reactor

    carol = await synapse.register("carol", "carol's old password")
    dave = await elsewhere.register("dave")
    room = (await _ok(await dave.post("/_matrix/client/v3/createRoom", {
        "name": "Elsewhere", "preset": "private_chat"}), "createRoom elsewhere"))["room_id"]
    await _ok(await dave.post(f"/_matrix/client/v3/rooms/{q(room)}/invite",
                              {"user_id": carol.user_id}), "invite carol")
    deadline = time.monotonic() + 30
    while True:
        sync = await _ok(await carol.get("/_matrix/client/v3/sync?timeout=1000"), "sync")
        if room in sync.get("rooms", {}).get("invite", {}):
            break
        assert time.monotonic() < deadline, "Synapse never showed Carol the invite"
        await deferLater(reactor, 0.2, lambda: None)
    # and Bob, on Synapse, has joined a room that lives over there: Synapse
    # holds its state as the join brought it (outliers)
    there = (await _ok(await dave.post("/_matrix/client/v3/createRoom", {
        "name": "Over there", "preset": "public_chat"}), "createRoom there"))["room_id"]
    bob = Client(synapse.base_url, None, synapse.agent)
    bob.access_token = (await _ok(await synapse.client().post("/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
        "password": "bob's old password"}, token=None), "bob login"))["access_token"]
    await _ok(await bob.post(
        f"/_matrix/client/v3/join/{q(there)}?server_name={q(elsewhere.hs.hostname)}", {}),
        "bob joins over there")
    await _ok(await dave.put(f"/_matrix/client/v3/rooms/{q(there)}/send/m.room.message/t1",
                             {"msgtype": "m.text", "body": "said over there"}), "dave there")
    await eventually_in(bob, there, "said over there", "Synapse got the message over there")
    return {"carol": carol, "invited_to": room, "there": there, "dave_there": dave}


async def eventually_in(client: Client, room: str, body: str, what: str) -> None:
    """Poll the room's history as ``client`` until ``body`` shows (30 s); by
    /messages: Synapse answers a repeated initial /sync from a cache."""
    from twisted.internet import reactor

    deadline = time.monotonic() + 30
    while True:
        resp = await client.get(f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=50")
        bodies = [e["content"].get("body") for e in (resp.body or {}).get("chunk", [])
                  if e.get("type") == "m.room.message"] if resp.code == 200 else []
        if body in bodies:
            return
        assert time.monotonic() < deadline, f"never: {what} ({resp.code}, {bodies[:3]})"
        await deferLater(reactor, 0.3, lambda: None)


async def join_from_elsewhere(synapse: SynapseServer, elsewhere: TestServer,
                              room: str, bob: Client) -> Client:
    """Dave, on another server, joins the hall and speaks (Synapse holds his
    events as any participating server does)."""
    dave = await elsewhere.register("dave_in_hall")
    await _ok(await dave.post(
        f"/_matrix/client/v3/join/{q(room)}?server_name={q(synapse.server_name)}", {}),
        "dave joins over federation")
    await _ok(await dave.put(f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/d1",
                             {"msgtype": "m.text", "body": "hello from elsewhere"}), "dave")
    await eventually_in(bob, room, "hello from elsewhere", "Synapse got Dave's message")
    return dave


async def populate(synapse: SynapseServer) -> dict[str, Any]:
    """Use Synapse as its users would; returns what they should find again."""
    alice = await synapse.register("alice", "alice's old password", admin=True)
    bob = await synapse.register("bob", "bob's old password")
    # a second device, logged in the ordinary way
    login = await _ok(await synapse.client().post("/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
        "password": "bob's old password", "initial_device_display_name": "Bob's phone"},
        token=None), "login")
    phone = synapse.client(login["access_token"])
    await _ok(await alice.put(f"/_matrix/client/v3/profile/{q(alice.user_id)}/displayname",
                              {"displayname": "Alice Liddell"}), "displayname")
    upload = await _ok(await alice.request(
        "POST", "/_matrix/media/v3/upload?filename=hello.txt", raw=b"hello from synapse",
        headers={"Content-Type": "text/plain"}), "upload")
    mxc = upload["content_uri"]
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture, "PNG")
    image = (await _ok(await alice.request(
        "POST", "/_matrix/media/v3/upload?filename=red.png", raw=picture.getvalue(),
        headers={"Content-Type": "image/png"}), "upload png"))["content_uri"]
    await _ok(await alice.put(f"/_matrix/client/v3/profile/{q(alice.user_id)}/avatar_url",
                              {"avatar_url": mxc}), "avatar")
    room = (await _ok(await alice.post("/_matrix/client/v3/createRoom", {
        "room_alias_name": "hall", "name": "The Hall", "preset": "public_chat"}),
        "createRoom"))["room_id"]
    await _ok(await alice.put(f"/_matrix/client/v3/directory/list/room/{q(room)}",
                              {"visibility": "public"}), "publish")
    await _ok(await bob.post(f"/_matrix/client/v3/join/{q(room)}", {}), "join")
    bodies = []
    last = ""
    for i in range(12):
        sender = alice if i % 3 else phone
        body = f"message {i}"
        last = (await _ok(await sender.put(
            f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/t{i}",
            {"msgtype": "m.text", "body": body}), "send"))["event_id"]
        bodies.append(body)
    await _ok(await bob.post(f"/_matrix/client/v3/rooms/{q(room)}/receipt/m.read/{q(last)}",
                             {}), "receipt")
    dm = (await _ok(await alice.post("/_matrix/client/v3/createRoom", {
        "is_direct": True, "invite": [bob.user_id], "preset": "trusted_private_chat"}),
        "dm"))["room_id"]
    await _ok(await bob.post(f"/_matrix/client/v3/join/{q(dm)}", {}), "join dm")
    await _ok(await bob.put(f"/_matrix/client/v3/rooms/{q(dm)}/send/m.room.message/d1",
                            {"msgtype": "m.text", "body": "just between us"}), "send dm")
    await _ok(await alice.put(
        f"/_matrix/client/v3/user/{q(alice.user_id)}/account_data/m.direct",
        {bob.user_id: [dm]}), "account data")
    # an admin locks Eve's account and blocks a room
    eve = await synapse.register("eve", "eve's old password")
    await _ok(await alice.put(f"/_synapse/admin/v2/users/{q(eve.user_id)}",
                              {"locked": True}), "lock eve")
    await _ok(await alice.put(f"/_synapse/admin/v2/users/{q(bob.user_id)}", {
        "threepids": [{"medium": "email", "address": "bob@example.org"}]}), "bob's email")
    blocked = f"!blocked:{synapse.server_name}"
    await _ok(await alice.put(f"/_synapse/admin/v1/rooms/{q(blocked)}/block",
                              {"block": True}), "block room")
    e2e = await populate_e2e_and_push(synapse, alice, phone, room)
    # where Bob's client was when the server moved
    since = (await _ok(await bob.get("/_matrix/client/v3/sync"), "sync"))["next_batch"]
    return {"since": since, "blocked": blocked, "alice": alice, "bob": bob, "phone": phone,
            "room": room, "dm": dm, "bodies": bodies, "mxc": mxc, "image": image, "last": last,
            **e2e}


def _ed25519(name: str) -> tuple[Any, str]:
    """A signing key whose key ID is its public key, as cross-signing keys have."""
    key = generate_signing_key(name)
    public = encode_verify_key_base64(get_verify_key(key))
    key.version = public
    return key, public


async def populate_e2e_and_push(synapse: SynapseServer, alice: Client, phone: Client,
                                room: str) -> dict[str, Any]:
    """Bob's phone's E2E keys, Alice's cross-signing keys and key backup, a
    push rule and a pusher."""
    whoami = await _ok(await phone.get("/_matrix/client/v3/account/whoami"), "whoami")
    bob_id = whoami["user_id"]
    phone_device = whoami["device_id"]
    device_keys: dict[str, Any] = {
        "user_id": bob_id, "device_id": phone_device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{phone_device}": "curveKeyOfBobsPhone",
                 f"ed25519:{phone_device}": "edKeyOfBobsPhone"},
        "signatures": {bob_id: {f"ed25519:{phone_device}": "sigOfTheDevice"}}}
    sig = {bob_id: {f"ed25519:{phone_device}": "sigOfTheKey"}}
    await _ok(await phone.post("/_matrix/client/v3/keys/upload", {
        "device_keys": device_keys,
        "one_time_keys": {"signed_curve25519:AAAAAQ": {"key": "oneTimeKeyOne",
                                                           "signatures": sig}},
        "fallback_keys": {"signed_curve25519:AAAAAg": {"key": "fallbackKey",
                                                        "fallback": True,
                                                        "signatures": sig}}}), "keys/upload")
    alice_id = alice.user_id or ""
    master, master_pub = _ed25519("master")
    self_signing, ss_pub = _ed25519("self")
    master_key = {"user_id": alice_id, "usage": ["master"],
                  "keys": {f"ed25519:{master_pub}": master_pub}}
    ss_key = sign_json({"user_id": alice_id, "usage": ["self_signing"],
                        "keys": {f"ed25519:{ss_pub}": ss_pub}}, alice_id, master)
    body: dict[str, Any] = {"master_key": master_key, "self_signing_key": ss_key}
    first = await alice.post("/_matrix/client/v3/keys/device_signing/upload", body)
    if first.code == 401:  # Synapse asks no auth for a user's first keys (MSC3967)
        body["auth"] = {"type": "m.login.password", "session": first.body["session"],
                        "identifier": {"type": "m.id.user", "user": alice_id},
                        "password": "alice's old password"}
        first = await alice.post("/_matrix/client/v3/keys/device_signing/upload", body)
    await _ok(first, "device_signing/upload")
    version = (await _ok(await alice.post("/_matrix/client/v3/room_keys/version", {
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": {"public_key": "backupPublicKey"}}), "backup version"))["version"]
    await _ok(await alice.put(
        f"/_matrix/client/v3/room_keys/keys/{q(room)}/session1?version={version}",
        {"first_message_index": 0, "forwarded_count": 0, "is_verified": False,
         "session_data": {"ciphertext": "c", "ephemeral": "e", "mac": "m"}}), "backup key")
    await _ok(await alice.put("/_matrix/client/v3/pushrules/global/content/teapot",
                              {"pattern": "teapot", "actions": ["notify"]}), "push rule")
    await _ok(await alice.put("/_matrix/client/v3/pushrules/global/override/.m.rule.master/"
                              "enabled", {"enabled": False}), "push rule enabled")
    await _ok(await phone.post("/_matrix/client/v3/pushers/set", {
        "kind": "http", "app_id": "org.example.app", "pushkey": "bobs-push-key",
        "app_display_name": "Example", "device_display_name": "Bob's phone", "lang": "en",
        "data": {"url": "https://push.invalid/_matrix/push/v1/notify"}}), "pusher")
    return {"phone_device": phone_device, "master_pub": master_pub,
            "backup_version": version}


def _stop_keeping_database(synapse: SynapseServer) -> str | None:
    """Stop the Synapse process; its PostgreSQL database stays for the import."""
    name = synapse.pg_database
    synapse.pg_database = None
    return name


def _our_config(tmp: str, server_name: str, engine: str,
                synapse: SynapseServer | None = None) -> tuple[str, str | None]:
    """A config for our server (a fresh database), as `homeserver init` writes
    one; with ``synapse``, federation is served where Synapse served it (its
    port, its TLS certificate), as a reverse proxy would keep it."""
    pg_name: str | None = None
    if engine == "sqlite":
        database: dict[str, Any] = {"name": "sqlite3", "args": {"database": "hs.db"}}
    else:
        args = create_postgres_database()  # empty: the import runs the migrations
        pg_name = str(args["database"])
        database = {"name": "psycopg2", "args": args}
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "homeserver.signing.key"), "w") as f:
        write_signing_keys(f, [generate_signing_key("a_ours")])
    path = os.path.join(tmp, "homeserver.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({
            "server_name": server_name,
            "public_baseurl": "http://127.0.0.1/",
            "listeners": [{"port": 0, "bind_addresses": ["127.0.0.1"]}],
            "database": database,
            "signing_key_path": "homeserver.signing.key",
            "media_store_path": "media",
            "bcrypt_rounds": 4,
            **(_federation_like(synapse) if synapse is not None else {}),
        }, f)
    return path, pg_name


def _federation_like(synapse: SynapseServer) -> dict[str, Any]:
    with open(os.path.join(synapse.tmp_dir, "homeserver.yaml")) as f:
        theirs = yaml.safe_load(f)
    return {
        "listeners": [
            {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
            {"port": synapse.port, "bind_addresses": ["127.0.0.1"], "tls": True,
             "resources": [{"names": ["federation"]}]}],
        "tls_certificate_path": theirs["tls_certificate_path"],
        "tls_private_key_path": theirs["tls_private_key_path"],
        "federation_custom_ca_list": theirs["federation_custom_ca_list"],
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
    }


def run_import(synapse_config: str, config: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver.cli", "import-synapse", "--synapse-config",
         synapse_config, "--config", config, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300)


def kill_during_rooms(synapse_config: str, config: str) -> int:
    """Run the import and SIGKILL it once some of the rooms' events are
    committed; its exit status (0 if it finished first)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "homeserver.cli", "import-synapse", "--synapse-config",
         synapse_config, "--config", config, "--no-progress", "--events-per-transaction", "1"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            # "rooms and events: 7 of 42", logged as commits go by
            if "rooms and events: " in line and " of " in line:
                proc.kill()
                break
    finally:
        status = proc.wait(timeout=120)
        proc.stderr.close()
    return status


def _timeline_bodies(sync: dict[str, Any], room: str) -> list[str]:
    events = sync["rooms"]["join"][room]["timeline"]["events"]
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


@pytest_twisted.ensureDeferred
async def test_synapse_server_moves_over_with_its_users_rooms_tokens_and_media(
        engine: str, tmp_path: Any, interop_ca: TestCA, ours: TestServer) -> None:
    from twisted.internet import reactor

    synapse = await start_synapse(
        str(tmp_path / "synapse"), interop_ca, engine,
        # Synapse's default lets nobody publish to the room directory
        {"room_list_publication_rules": [{"action": "allow"}]})
    synapse_db: str | None = None
    our_db: str | None = None
    hs: HomeServer | None = None
    try:
        seen = await populate(synapse)
        dave = await join_from_elsewhere(synapse, ours, seen["room"], seen["bob"])
        seen["bodies"].append("hello from elsewhere")
        seen.update(await invite_from_elsewhere(synapse, ours))
        synapse_yaml = os.path.join(synapse.tmp_dir, "homeserver.yaml")
        # not while Synapse runs
        running, running_db = _our_config(str(tmp_path / "early"), synapse.server_name, engine)
        refused = run_import(synapse_yaml, running)
        if running_db:
            drop_postgres_database(running_db)
        assert refused.returncode == 1
        assert "Synapse is running" in refused.stderr
        synapse_db = _stop_keeping_database(synapse)
        await synapse.stop()

        # a server name that differs is refused, and nothing is written
        wrong, wrong_db = _our_config(str(tmp_path / "wrong"), "elsewhere.example", engine)
        refused = run_import(synapse_yaml, wrong)
        if wrong_db:
            drop_postgres_database(wrong_db)
        assert refused.returncode == 1
        assert "server_name differs" in refused.stderr

        # a database that is in use already is refused
        busy, busy_db = _our_config(str(tmp_path / "busy"), synapse.server_name, engine)
        made = subprocess.run([sys.executable, "-m", "homeserver.cli", "register-user",
                               "--config", busy, "-u", "carol", "-p", "carol's password"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        refused = run_import(synapse_yaml, busy)
        if busy_db:
            drop_postgres_database(busy_db)
        assert refused.returncode == 1
        assert "not fresh" in refused.stderr

        config_path, our_db = _our_config(str(tmp_path / "imported"), synapse.server_name,
                                           engine, synapse)
        dry = run_import(synapse_yaml, config_path, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "nothing written" in dry.stdout
        if engine == "sqlite":  # not even created
            assert not os.path.exists(os.path.join(tmp_path, "imported", "hs.db"))
        # stopped hard in the middle of the rooms (one event per transaction),
        # the import is taken up again where it stopped
        killed = kill_during_rooms(synapse_yaml, config_path)
        # a few events per transaction: the rooms go in several commits each
        done = run_import(synapse_yaml, config_path, "--no-progress",
                          "--events-per-transaction", "4")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "check: counts and sampled events match" in done.stdout
        if killed != 0:  # (a fast machine may finish before the kill)
            assert "users: done in an earlier run" in done.stderr
        # a second run finds every stage done and changes nothing
        again = run_import(synapse_yaml, config_path, "--no-progress")
        assert again.returncode == 0, again.stdout + again.stderr

        # our own key was kept aside, Synapse's took its place
        assert os.path.exists(os.path.join(tmp_path, "imported", "homeserver.signing.key"
                                           + ".before-import"))
        config = load_config(config_path)
        hs = HomeServer(config, reactor)
        await hs.setup()
        hs.listen()
        moved = Client(f"http://127.0.0.1:{hs.ports[0].getHost().port}")

        # the old password logs in
        login = await moved.post("/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "alice's old password"}, token=None)
        assert login.code == 200, login.body
        assert login.body["user_id"] == seen["alice"].user_id
        # a locked account stays shut (imported deactivated)
        eve = await moved.post("/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "eve"},
            "password": "eve's old password"}, token=None)
        assert eve.code == 403, eve.body
        # and the report says so, even for a stage done before the kill
        assert "locked on Synapse, imported deactivated" in done.stdout
        wrong_pw = await moved.post("/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "not it"}, token=None)
        assert wrong_pw.code == 403

        # the old access tokens still work, with their devices
        phone = Client(moved.base_url, seen["phone"].access_token)
        whoami = await phone.get("/_matrix/client/v3/account/whoami")
        assert whoami.code == 200, whoami.body
        assert whoami.body["user_id"] == seen["bob"].user_id
        devices = await _ok(await phone.get("/_matrix/client/v3/devices"), "devices")
        assert "Bob's phone" in [d.get("display_name") for d in devices["devices"]]
        alice = Client(moved.base_url, seen["alice"].access_token)
        bob = Client(moved.base_url, seen["bob"].access_token)
        me = await _ok(await alice.get("/_matrix/client/v3/account/whoami"), "whoami")
        assert me["user_id"] == seen["alice"].user_id

        # /sync: both rooms, the messages in the order they were sent
        filt = q('{"room":{"timeline":{"limit":50}}}')
        sync = await _ok(await bob.get(f"/_matrix/client/v3/sync?filter={filt}"), "sync")
        assert set(sync["rooms"]["join"]) >= {seen["room"], seen["dm"]}
        assert _timeline_bodies(sync, seen["room"]) == seen["bodies"]
        assert _timeline_bodies(sync, seen["dm"]) == ["just between us"]
        # a client that still holds Synapse's next_batch gets everything again
        resumed = await _ok(await bob.get(
            f"/_matrix/client/v3/sync?filter={filt}&since={q(seen['since'])}"), "since")
        assert _timeline_bodies(resumed, seen["room"]) == seen["bodies"]
        assert _timeline_bodies(resumed, seen["dm"]) == ["just between us"]
        # Carol's invite to a room on another server is still there to answer
        carol = Client(bob.base_url, seen["carol"].access_token)
        invited = await _ok(await carol.get("/_matrix/client/v3/sync"), "carol sync")
        invite = invited["rooms"]["invite"][seen["invited_to"]]["invite_state"]["events"]
        assert {"m.room.name", "m.room.member"} <= {e["type"] for e in invite}
        # the room's state: its name
        name = await _ok(await bob.get(
            f"/_matrix/client/v3/rooms/{q(seen['room'])}/state/m.room.name/"), "name")
        assert name["name"] == "The Hall"
        # and the history by /messages, newest first
        messages = await _ok(await bob.get(
            f"/_matrix/client/v3/rooms/{q(seen['room'])}/messages?dir=b&limit=5"), "messages")
        assert [e["content"].get("body") for e in messages["chunk"]
                if e["type"] == "m.room.message"][:3] == seen["bodies"][:-4:-1]

        # the alias resolves, the room is in the public directory
        alias = f"#hall:{synapse.server_name}"
        resolved = await _ok(await moved.get(f"/_matrix/client/v3/directory/room/{q(alias)}",
                                            token=None), "alias")
        assert resolved["room_id"] == seen["room"]
        public = await _ok(await bob.get("/_matrix/client/v3/publicRooms"), "publicRooms")
        assert seen["room"] in [r["room_id"] for r in public["chunk"]]

        # the room an admin blocked stays blocked
        admin = Client(moved.base_url, login.body["access_token"])
        block = await _ok(await admin.get(
            f"/_synapse/admin/v1/rooms/{q(seen['blocked'])}/block"), "block")
        assert block["block"] is True

        # the media downloads under its old mxc URI
        server, media_id = seen["mxc"][len("mxc://"):].split("/", 1)
        media = await bob.get(f"/_matrix/client/v1/media/download/{server}/{media_id}")
        assert media.code == 200, media.body
        assert media.body == b"hello from synapse"

        # an image: its thumbnail is made here on first request
        server, media_id = seen["image"][len("mxc://"):].split("/", 1)
        thumb = await bob.get(f"/_matrix/client/v1/media/thumbnail/{server}/{media_id}"
                              "?width=32&height=32&method=scale")
        assert thumb.code == 200, thumb.body
        assert thumb.header("content-type") in ("image/png", "image/jpeg", "image/webp")

        # Bob's email address is still his
        threepids = await _ok(await bob.get("/_matrix/client/v3/account/3pid"), "3pid")
        assert [(t["medium"], t["address"]) for t in threepids["threepids"]] == [
            ("email", "bob@example.org")]

        # profiles and account data
        profile = await _ok(await bob.get(
            f"/_matrix/client/v3/profile/{q(seen['alice'].user_id)}"), "profile")
        assert profile["displayname"] == "Alice Liddell"
        assert profile["avatar_url"] == seen["mxc"]
        direct = await _ok(await alice.get(
            f"/_matrix/client/v3/user/{q(seen['alice'].user_id)}/account_data/m.direct"),
            "m.direct")
        assert direct == {seen["bob"].user_id: [seen["dm"]]}

        # bob's read receipt is where he left it
        receipts = sync["rooms"]["join"][seen["room"]]["ephemeral"]["events"]
        read = [r for r in receipts if r["type"] == "m.receipt"]
        assert read and seen["last"] in read[0]["content"]

        # end-to-end keys: device keys, a one-time key, cross-signing, key backup
        bob_id = seen["bob"].user_id
        queried = await _ok(await alice.post("/_matrix/client/v3/keys/query",
                                             {"device_keys": {bob_id: []}}), "keys/query")
        assert queried["device_keys"][bob_id][seen["phone_device"]]["keys"][
            f"curve25519:{seen['phone_device']}"] == "curveKeyOfBobsPhone"
        claimed = await _ok(await alice.post("/_matrix/client/v3/keys/claim", {
            "one_time_keys": {bob_id: {seen["phone_device"]: "signed_curve25519"}}}), "claim")
        assert claimed["one_time_keys"][bob_id][seen["phone_device"]] == {
            "signed_curve25519:AAAAAQ": {"key": "oneTimeKeyOne", "signatures": {
                bob_id: {f"ed25519:{seen['phone_device']}": "sigOfTheKey"}}}}
        alice_id = seen["alice"].user_id
        own = await _ok(await alice.post("/_matrix/client/v3/keys/query",
                                         {"device_keys": {alice_id: []}}), "keys/query")
        assert list(own["master_keys"][alice_id]["keys"].values()) == [seen["master_pub"]]
        assert alice_id in own["self_signing_keys"]
        backup = await _ok(await alice.get("/_matrix/client/v3/room_keys/version"), "backup")
        assert backup["version"] == seen["backup_version"]
        assert backup["auth_data"] == {"public_key": "backupPublicKey"}
        backed = await _ok(await alice.get(
            f"/_matrix/client/v3/room_keys/keys?version={seen['backup_version']}"), "keys")
        assert "session1" in backed["rooms"][seen["room"]]["sessions"]

        # push rules and the pusher
        rule = await _ok(await alice.get("/_matrix/client/v3/pushrules/global/content/teapot"),
                         "push rule")
        assert rule["pattern"] == "teapot" and rule["actions"] == ["notify"]
        master_rule = await _ok(await alice.get(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled"), "master")
        assert master_rule == {"enabled": False}
        pushers = await _ok(await phone.get("/_matrix/client/v3/pushers"), "pushers")
        assert [p["pushkey"] for p in pushers["pushers"]] == ["bobs-push-key"]

        # the room goes on: a new message, signed with Synapse's key
        sent = await _ok(await bob.put(
            f"/_matrix/client/v3/rooms/{q(seen['room'])}/send/m.room.message/after",
            {"msgtype": "m.text", "body": "on the new server"}), "send after")
        event = await hs.stores.events.get_event(sent["event_id"])
        assert event is not None
        with open(os.path.join(synapse.tmp_dir, "signing.key")) as f:
            key_id = "ed25519:" + f.read().split()[1]
        assert list(event.json["signatures"][synapse.server_name]) == [key_id]
        sync2 = await _ok(await bob.get(f"/_matrix/client/v3/sync?filter={filt}"), "sync")
        assert _timeline_bodies(sync2, seen["room"])[-2:] == [seen["bodies"][-1],
                                                               "on the new server"]
        # ... and the other server in the room takes it: same name, same key,
        # same DAG, so for Dave's server nothing changed
        await eventually_in(dave, seen["room"], "on the new server",
                            "Dave's server accepted an event of the moved server")
        # the room that lives over there goes on too, both ways
        await eventually_in(bob, seen["there"], "said over there", "history over there")
        await _ok(await bob.put(
            f"/_matrix/client/v3/rooms/{q(seen['there'])}/send/m.room.message/b1",
            {"msgtype": "m.text", "body": "bob, moved"}), "bob over there")
        await eventually_in(seen["dave_there"], seen["there"], "bob, moved",
                            "the room's server accepted the moved server's event")
        # and what Dave says now reaches the moved server
        await _ok(await dave.put(
            f"/_matrix/client/v3/rooms/{q(seen['room'])}/send/m.room.message/d2",
            {"msgtype": "m.text", "body": "welcome back"}), "dave again")
        await eventually_in(bob, seen["room"], "welcome back",
                            "the moved server accepted Dave's new message")
    finally:
        if hs is not None:
            await hs.stop()
        await synapse.stop()
        for name in (synapse_db, our_db):
            if name:
                drop_postgres_database(name)
