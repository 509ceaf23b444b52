"""Process roles from the config, the replication record, and what a reader
serves itself: pure, no reactor, no database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.config import ConfigError, build_config, select_worker
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.replication.forward import served_locally
from homeserver.replication.record import decode_committed, encode_committed
from homeserver.replication.writers import event_write_room, room_writer
from homeserver.storage.hub import Committed

REPO = Path(__file__).resolve().parent.parent.parent


def deployment(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "server_name": "example.org",
        "database": {"name": "psycopg2", "args": {"database": "hs"}},
        "redis": {"enabled": True},
        "instance_map": {"main": {"host": "10.0.0.2", "port": 8080}},
        "workers": {"sync1": {"worker_app": "sync_reader", "worker_listeners": [
            {"port": 8083, "resources": [{"names": ["client"]}]}]}},
    }
    data.update(extra)
    return data


def error_of(data: dict[str, Any], worker: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config = build_config(data)
        if worker is not None:
            select_worker(config, worker)
    return str(info.value)


def test_a_config_without_workers_is_the_single_main_process() -> None:
    config = build_config({"server_name": "example.org",
                           "database": {"name": "sqlite3", "args": {"database": "x.db"}}})
    assert config.worker.is_main and config.worker.name == "main"
    assert config.worker.redis is None


def test_the_main_process_of_a_deployment_publishes_to_redis() -> None:
    config = build_config(deployment())
    assert config.worker.is_main
    assert config.worker.redis is not None and config.worker.redis.port == 6379
    assert config.worker.instance_map["main"].base_url == "http://10.0.0.2:8080"


def test_worker_takes_its_role_and_listeners_from_the_workers_map() -> None:
    config = select_worker(build_config(deployment()), "sync1")
    assert (config.worker.app, config.worker.name) == ("sync_reader", "sync1")
    assert [lst.port for lst in config.listeners] == [8083]


def test_a_worker_file_of_its_own_synapse_style() -> None:
    config = build_config(deployment(
        worker_app="synapse.app.generic_worker", worker_name="sync9",
        worker_listeners=[{"port": 8090}]))
    assert (config.worker.app, config.worker.name) == ("sync_reader", "sync9")
    assert [lst.port for lst in config.listeners] == [8090]


def test_unknown_worker_is_named_with_the_known_ones() -> None:
    assert error_of(deployment(), "sync7") == \
        "workers.sync7: no such worker in the config (known: sync1)"


def test_a_reader_needs_redis_and_main_s_address() -> None:
    assert "redis.enabled" in error_of(deployment(redis={"enabled": False}), "sync1")
    assert "instance_map.main" in error_of(deployment(instance_map={}), "sync1")


def test_event_writers_are_named_in_stream_writers_and_instance_map() -> None:
    writers = deployment(
        stream_writers={"events": ["writer1", "writer2"]},
        instance_map={"main": {"port": 8080}, "writer1": {"port": 8091},
                      "writer2": {"port": 8092}},
        workers={"writer1": {"worker_app": "event_writer",
                             "worker_listeners": [{"port": 8091}]},
                 "writer2": {"worker_app": "synapse.app.generic_worker",
                             "worker_listeners": [{"port": 8092}]}})
    main = build_config(writers)
    assert main.worker.is_main and main.worker.multi_writer
    assert main.worker.stream_writers == ("main", "writer1", "writer2")
    # a generic worker named in stream_writers.events is an event writer
    for name in ("writer1", "writer2"):
        worker = select_worker(main, name).worker
        assert (worker.app, worker.is_event_writer) == ("event_writer", True)
    assert "instance_map.writer2" in error_of(deployment(
        stream_writers={"events": ["writer1", "writer2"]},
        instance_map={"main": {"port": 8080}, "writer1": {"port": 8091}}))
    assert "redis.enabled" in error_of(deployment(
        redis={"enabled": False}, stream_writers={"events": ["writer1"]},
        instance_map={"main": {"port": 8080}, "writer1": {"port": 8091}}))
    assert "not named there" in error_of(deployment(
        workers={"w9": {"worker_app": "event_writer", "worker_listeners": [{"port": 1}]}}),
        "w9")


def test_other_streams_are_written_by_main_only() -> None:
    assert "only the main process writes" in error_of(
        deployment(stream_writers={"typing": ["main", "writer1"]}))
    assert "unknown stream" in error_of(deployment(stream_writers={"evnts": "main"}))
    config = build_config(deployment(stream_writers={"events": "main", "typing": ["main"]}))
    assert not config.worker.multi_writer


def test_one_writer_per_room_by_a_stable_hash() -> None:
    writers = ("writer1", "writer2")
    rooms = [f"!room{i}:example.org" for i in range(200)]
    owners = [room_writer(r, writers) for r in rooms]
    # the same answer in every process (no per-process salt) ...
    assert owners == [room_writer(r, list(writers)) for r in rooms]
    assert room_writer("!abc:example.org", writers) == room_writer("!abc:example.org", writers)
    # ... and the rooms spread over both writers
    assert 60 < owners.count("writer1") < 140


@pytest.mark.parametrize(("method", "path", "room"), [
    ("PUT", "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/t1", "!r:x"),
    ("POST", "/_matrix/client/r0/rooms/!r:x/send/m.room.message", "!r:x"),
    ("PUT", "/_matrix/client/v3/rooms/!r:x/state/m.room.topic/", "!r:x"),
    ("PUT", "/_matrix/client/v3/rooms/!r:x/redact/$e/t2", "!r:x"),
    ("POST", "/_matrix/client/v3/rooms/!r:x/join", "!r:x"),
    ("POST", "/_matrix/client/v3/rooms/!r:x/kick", "!r:x"),
    ("POST", "/_matrix/client/v3/join/%21r%3Ax", "!r:x"),
    ("POST", "/_matrix/client/v3/join/%23alias%3Ax", None),
    ("POST", "/_matrix/client/v3/rooms/!r:x/receipt/m.read/$e", None),
    ("PUT", "/_matrix/client/v3/rooms/!r:x/typing/@a:x", None),
    ("GET", "/_matrix/client/v3/rooms/!r:x/state/m.room.topic/", None),
    ("POST", "/_matrix/client/v3/rooms/!r:x/forget", None),
    ("POST", "/_matrix/client/v3/createRoom", None),
])
def test_which_requests_write_a_room_s_events(method: str, path: str,
                                               room: str | None) -> None:
    assert event_write_room(method.encode(), path.encode()) == room


def test_a_typo_in_a_worker_fails_the_main_process_too() -> None:
    workers = {"sync1": {"worker_app": "sync_reader", "worker_listner": []}}
    assert error_of(deployment(workers=workers)) == \
        "workers.sync1.worker_listner: unknown configuration key"


def test_run_with_an_unknown_worker_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "hs.yaml"
    config.write_text(yaml.safe_dump(deployment()))
    run = subprocess.run([sys.executable, "-m", "homeserver.cli", "run", "--config",
                          str(config), "--worker", "nope"], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(REPO)})
    assert run.returncode == 1
    assert run.stderr == ("homeserver: config error: workers.nope: no such worker in the "
                          "config (known: sync1)\n")


def test_a_committed_record_travels_unchanged() -> None:
    version = KNOWN_ROOM_VERSIONS["10"]
    event = Event("$e1", version, {"type": "m.room.message", "room_id": "!r:example.org",
                                   "sender": "@a:example.org", "content": {"body": "hi"}})
    committed = Committed(
        positions=(7, 8, 9), events=((event, 7),),
        scopes={8: (("!r:example.org", "@b:example.org"),), 9: (("", "@a:example.org"),)},
        device_list_changes=(("@c:example.org", 9),), tokens_changed=True,
        receipts=((8, "!r:example.org", "@b:example.org", "m.read", "", "$e1",
                   {"ts": 1}),))
    import json
    wire = json.loads(json.dumps(encode_committed(committed, {"$e1": {"@b:example.org":
                                                                      (1, 0)}})))
    back, verdicts = decode_committed(wire)
    assert verdicts == {"$e1": {"@b:example.org": (1, 0)}}
    assert back.positions == committed.positions
    assert back.scopes == committed.scopes
    assert back.device_list_changes == committed.device_list_changes
    assert back.receipts == committed.receipts
    assert back.tokens_changed
    (got, pos), = back.events
    assert (got.event_id, got.room_version, got.json, pos) == ("$e1", version, event.json, 7)


@pytest.mark.parametrize("method,path,local", [
    (b"GET", b"/_matrix/client/v3/sync", True),
    (b"GET", b"/_matrix/client/r0/sync", True),
    (b"GET", b"/_matrix/client/unstable/stream", True),
    (b"GET", b"/_matrix/client/v3/rooms/!r:x/messages", True),
    (b"GET", b"/_matrix/client/versions", True),
    (b"OPTIONS", b"/_matrix/client/v3/rooms/!r:x/send/m.room.message/1", True),
    (b"PUT", b"/_matrix/client/v3/rooms/!r:x/send/m.room.message/1", False),
    (b"POST", b"/_matrix/client/v3/sync", False),
    (b"POST", b"/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", False),
    (b"GET", b"/_matrix/client/v3/presence/@a:x/status", False),
    (b"GET", b"/_matrix/client/v1/media/download/x/y", False),
    (b"GET", b"/_matrix/media/v3/download/x/y", False),
    (b"GET", b"/_synapse/admin/v2/users", False),
    (b"GET", b"/_matrix/federation/v1/version", False),
    (b"GET", b"/_matrix/client/v3/login", False),
])
def test_a_reader_serves_reads_and_forwards_the_rest(method: bytes, path: bytes,
                                                    local: bool) -> None:
    assert served_locally(method, path) is local


def test_one_process_imports_nothing_of_replication(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from homeserver.config import build_config\n"
        "from homeserver.server import HomeServer\n"
        f"config = build_config({{'server_name': 'example.org', 'database': {{'name': "
        f"'sqlite3', 'args': {{'database': {str(tmp_path / 'hs.db')!r}}}}}}})\n"
        "HomeServer(config)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('txredisapi', "
        "'homeserver.replication'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_reader_waits_for_a_token_from_ahead_then_refuses_if_still_behind() -> None:
    from twisted.internet import defer
    from twisted.internet.task import Clock

    from homeserver.errors import MatrixError
    from homeserver.replication.tracker import CATCH_UP_TIMEOUT_S, ReaderStreamTracker

    async def allocated() -> int:
        return 20

    clock = Clock()
    tracker = ReaderStreamTracker(clock, allocated)
    tracker.advance(10)
    # handed out by another process, reached here a moment later: answered
    caught_up = defer.ensureDeferred(tracker.wait_for(12))
    assert not caught_up.called
    tracker.advance(12)
    assert caught_up.called and caught_up.result is None
    # never handed out by anyone: no wait (the token is refused as from the future)
    assert defer.ensureDeferred(tracker.wait_for(99)).called
    # handed out, but this process stays behind: 503, not an answer from behind
    behind = defer.ensureDeferred(tracker.wait_for(15))
    clock.advance(CATCH_UP_TIMEOUT_S)
    failure = []
    behind.addErrback(failure.append)
    assert failure and isinstance(failure[0].value, MatrixError)
    assert failure[0].value.status == 503


def background_roles(**extra: Any) -> dict[str, Any]:
    data = deployment(send_federation=False, federation_sender_instances=["fed1", "fed2"],
                      start_pushers=False, pusher_instances=["push1"], **extra)
    data["workers"].update({
        "fed1": {"worker_app": "federation_sender", "worker_listeners": [{"port": 8101}]},
        "fed2": {"worker_app": "synapse.app.federation_sender",
                 "worker_listeners": [{"port": 8102}]},
        "push1": {"worker_app": "pusher", "worker_listeners": [{"port": 8103}]}})
    return data


def test_federation_senders_and_pushers_run_where_the_config_names_them() -> None:
    config = build_config(background_roles())
    assert not config.worker.sends_federation and not config.worker.runs_pushers
    fed2 = select_worker(config, "fed2").worker
    assert (fed2.app, fed2.sends_federation, fed2.runs_pushers) == \
        ("federation_sender", True, False)
    push1 = select_worker(config, "push1").worker
    assert (push1.sends_federation, push1.runs_pushers) == (False, True)
    # without the keys, main sends and pushes as a single process does
    single = build_config(deployment()).worker
    assert single.sends_federation and single.runs_pushers


def test_destinations_and_users_shard_stably_over_the_instances() -> None:
    from homeserver.replication.writers import shard_owner
    servers = [f"server{i}.example" for i in range(200)]
    owners = [shard_owner(s, ("fed1", "fed2")) for s in servers]
    assert owners == [shard_owner(s, ("fed1", "fed2")) for s in servers]
    assert {"fed1", "fed2"} == set(owners)


def test_a_background_role_must_have_somewhere_to_run() -> None:
    data = deployment(send_federation=False)
    assert "federation_sender_instances names no process" in error_of(data)
    data = deployment(pusher_instances=["push1"])
    assert "start_pushers: set it to false" in error_of(data)
    data = background_roles()
    data["workers"]["push9"] = {"worker_app": "pusher", "worker_listeners": [{"port": 1}]}
    assert "pusher_instances: worker push9" in error_of(data, "push9")
