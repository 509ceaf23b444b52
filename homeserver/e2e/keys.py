"""Device keys, one-time keys and fallback keys; device lists over federation.

Uploads (``upload``, POST /keys/upload): device keys must name the uploader
and their device and have the spec's shape (the keys and signatures in them
are for clients to check, as Synapse leaves them); one-time and fallback keys are ``alg:id`` ->
key object (or a bare curve25519 string). A one-time key ID already stored
with other content is refused (400): a client that reuses IDs would make
two peers believe they share a session. New or changed device keys mark the
user's device list changed (``device_list_changes``), which wakes the /sync
of everyone sharing a room (``device_lists.changed``).

Queries and claims (``query``, ``claim``): local users are answered from the
database, remote users from their servers (POST /user/keys/query and
/user/keys/claim, one request per server, all in parallel, each bounded by
the client's ``timeout``); a server that fails is listed in ``failures``
and the rest of the answer stands. Remote device keys are served from our
cache of the user's device list when we have one (kept current by
``m.device_list_update``, see below). Cross-signing keys and signatures
come from ``e2e/cross_signing.py``.

Device lists over federation. Outbound: every device list change of a local
user (a device added, renamed or deleted, new device keys) reaches
``on_device_list_changed`` through the write hub (storage/hub.py);
``_announce`` then diffs the user's devices against what was last
announced (``E2eKeyStore.announce_txn``) and sends one
``m.device_list_update`` per changed device, chained by ``stream_id`` /
``prev_id``, to every server sharing a room with the user.
Inbound (``on_remote_update``): when the update's ``prev_id`` is the
stream_id our cache is at, it is applied; otherwise (a gap, or no cache
yet) the whole list is fetched again with GET /user/devices/{userId}. A
/keys/query for all devices of an uncached user who shares a room with the
requester fetches the list the same way (``_resync_uncached``), so later
queries are answered from the cache, kept current by the updates. When a
remote user shares no room with a local user any more (a leave or ban,
``on_commit``), our copy is dropped: their server stops sending updates,
and a query after a room is shared again must fetch the list afresh. A
fetch that fails leaves the cache as it was.

/sync reads a device's key counts through ``key_counts`` (cached in memory,
refreshed by every upload and claim on this process), so the sync fast
path can answer without the database.

``E2eKeyHandler`` is built by ``server.py`` (``HomeServer.e2e_keys``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from twisted.internet import defer

from homeserver.accounts.identifiers import parse_user_id
from homeserver.errors import Codes, MatrixError, bad_json, invalid_param
from homeserver.federation.client import FederationError, RequestFailed
from homeserver.storage.cache import LruCache
from homeserver.storage.e2e_keys import KeyCounts, OneTimeKeyConflict, RemoteDevice

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.e2e.cross_signing import CrossSigning
    from homeserver.federation.client import FederationClient
    from homeserver.federation.sender import FederationSender
    from homeserver.storage.e2e_keys import E2eKeyStore
    from homeserver.storage.hub import Committed
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"

# The default and largest wait for other servers in /keys/query and /keys/claim.
DEFAULT_TIMEOUT_MS = 10_000
MAX_TIMEOUT_MS = 60_000
# Bounds on one upload (a client tops up ~50 one-time keys at a time).
MAX_KEYS_PER_UPLOAD = 200
MAX_KEY_ID_BYTES = 255
# Bounds on one query or claim (users, and devices per user).
MAX_QUERY_USERS = 1000
MAX_QUERY_DEVICES = 1000
# Devices whose counts /sync keeps in memory.
COUNT_CACHE_SIZE = 10_000
# How many devices one /user/devices answer may bring into the cache.
MAX_REMOTE_DEVICES = 1000


def _is_key_id(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value.encode("utf-8", "surrogatepass"))
            <= MAX_KEY_ID_BYTES and "\x00" not in value)


# --- parsing and checking -----------------------------------------------------


def check_device_keys(keys: Any, user_id: str, device_id: str) -> dict[str, Any]:
    """Validate uploaded device keys: they must be the requester's device's
    and have the spec's shape (400 otherwise).

    The keys themselves and their signatures are the clients' business: a
    client checks a device's self-signature before trusting it, so the
    server stores what the device uploaded, as Synapse does (it neither
    requires an ``ed25519:<device>`` key nor verifies signatures)."""
    if not isinstance(keys, dict):
        raise bad_json("'device_keys' must be an object")
    if keys.get("user_id") != user_id:
        raise invalid_param("device_keys.user_id is not the requester")
    if keys.get("device_id") != device_id:
        raise invalid_param("device_keys.device_id is not the requester's device")
    algorithms = keys.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json("device_keys.algorithms must be a list of strings")
    key_map = keys.get("keys")
    if not isinstance(key_map, dict) or not all(
            _is_key_id(k) and isinstance(v, str) for k, v in key_map.items()):
        raise bad_json("device_keys.keys must map key IDs to strings")
    signatures = keys.get("signatures")
    if not isinstance(signatures, dict) or not all(
            isinstance(by_key, dict) and all(isinstance(s, str) for s in by_key.values())
            for by_key in signatures.values()):
        raise bad_json("device_keys.signatures must map user IDs to {key ID: signature}")
    return keys


def parse_key_map(value: Any, field: str) -> list[tuple[str, str, Any]]:
    """``one_time_keys`` / ``fallback_keys``: "alg:id" -> key object (or a
    bare key string) into (algorithm, key ID, key as uploaded)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise bad_json(f"'{field}' must be an object")
    if len(value) > MAX_KEYS_PER_UPLOAD:
        raise MatrixError(400, Codes.TOO_LARGE,
                          f"At most {MAX_KEYS_PER_UPLOAD} {field} per upload")
    out: list[tuple[str, str, Any]] = []
    for full_id, key in value.items():
        alg, sep, kid = full_id.partition(":") if isinstance(full_id, str) else ("", "", "")
        if not sep or not alg or not _is_key_id(kid) or not _is_key_id(full_id):
            raise invalid_param(f"{field}: key IDs must be 'algorithm:id'")
        if isinstance(key, str):
            out.append((alg, kid, key))  # an unsigned curve25519 key is the bare key
        elif isinstance(key, dict) and isinstance(key.get("key"), str):
            out.append((alg, kid, key))
        else:
            raise bad_json(f"{field}: {full_id} must be a key object with a 'key'")
    return out


def parse_timeout(body: dict[str, Any]) -> int:
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise invalid_param("'timeout' must be a non-negative integer")
    return min(timeout, MAX_TIMEOUT_MS)


def parse_query(body: dict[str, Any]) -> dict[str, list[str]]:
    """/keys/query's ``device_keys``: user -> device IDs (empty: all)."""
    query = body.get("device_keys")
    if not isinstance(query, dict):
        raise bad_json("'device_keys' must be an object")
    if len(query) > MAX_QUERY_USERS:
        raise MatrixError(400, Codes.TOO_LARGE, f"At most {MAX_QUERY_USERS} users per query")
    out: dict[str, list[str]] = {}
    for user_id, devices in query.items():
        if devices is None:
            devices = []
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices) \
                or len(devices) > MAX_QUERY_DEVICES:
            raise bad_json("device_keys must map user IDs to lists of device IDs")
        if parse_user_id(user_id) is None:
            continue  # no such user has keys; Synapse skips them too
        out[user_id] = list(dict.fromkeys(devices))
    return out


def parse_claim(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    """/keys/claim's ``one_time_keys``: user -> device -> algorithm."""
    query = body.get("one_time_keys")
    if not isinstance(query, dict):
        raise bad_json("'one_time_keys' must be an object")
    if len(query) > MAX_QUERY_USERS:
        raise MatrixError(400, Codes.TOO_LARGE, f"At most {MAX_QUERY_USERS} users per claim")
    out: dict[str, dict[str, str]] = {}
    for user_id, devices in query.items():
        if not isinstance(devices, dict) or len(devices) > MAX_QUERY_DEVICES or not all(
                isinstance(d, str) and _is_key_id(a) for d, a in devices.items()):
            raise bad_json("one_time_keys must map user IDs to {device ID: algorithm}")
        if parse_user_id(user_id) is None:
            continue
        out[user_id] = dict(devices)
    return out


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


# --- the handler ----------------------------------------------------------------


class E2eKeyHandler:
    def __init__(self, ctx: "ServerContext", store: "E2eKeyStore",
                 rooms: "RoomStore", cross_signing: "CrossSigning",
                 federation_client: "FederationClient",
                 federation_sender: "FederationSender") -> None:
        self.ctx = ctx
        self.store = store
        self.rooms = rooms
        self.cross_signing = cross_signing
        self.federation_client = federation_client
        self.federation_sender = federation_sender
        self._counts: LruCache[tuple[str, str], KeyCounts] = LruCache(COUNT_CACHE_SIZE)
        # told the devices whose counts an upload or a claim changed (the
        # replication publisher, with several processes; set by HomeServer)
        self.counts_changed: Callable[[list[tuple[str, str]]], None] | None = None
        # one announce at a time per user: the stream_id chain must not fork
        self._announce_locks: dict[str, defer.DeferredLock] = {}
        self._resync_locks: dict[str, defer.DeferredLock] = {}

    # -- key counts (/sync) ------------------------------------------------------

    def _remember_counts(self, user_id: str, device_id: str, counts: KeyCounts) -> None:
        self._counts.put((user_id, device_id), counts)

    def forget_counts(self, devices: list[tuple[str, str]] | None = None) -> None:
        """Drop the cached counts of ``devices`` (None: of all): another
        process changed them (docs/scale-out.md)."""
        if devices is None:
            self._counts.clear()
        else:
            for device in devices:
                self._counts.invalidate(device)

    def cached_counts(self, user_id: str, device_id: str | None) -> KeyCounts | None:
        """The device's counts if known without the database (the fast path)."""
        if device_id is None:
            return KeyCounts({}, [])
        return self._counts.get((user_id, device_id))

    async def key_counts(self, user_id: str, device_id: str | None) -> KeyCounts:
        if device_id is None:
            return KeyCounts({}, [])
        counts = await self.store.get_key_counts(user_id, device_id)
        self._remember_counts(user_id, device_id, counts)
        return counts

    # -- upload ------------------------------------------------------------------

    async def upload(self, user_id: str, device_id: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        """POST /keys/upload: the device's one-time key counts after it."""
        device_keys = body.get("device_keys")
        if device_keys is not None:
            device_keys = check_device_keys(device_keys, user_id, device_id)
        one_time = parse_key_map(body.get("one_time_keys"), "one_time_keys")
        fallback = parse_key_map(body.get("fallback_keys"), "fallback_keys")
        try:
            counts = await self.store.upload_keys(user_id, device_id, device_keys, one_time,
                                                  fallback)
        except OneTimeKeyConflict as e:
            raise invalid_param(f"One-time key {e.key_id} already exists with other "
                                "content") from None
        self._remember_counts(user_id, device_id, counts)
        if self.counts_changed is not None:
            self.counts_changed([(user_id, device_id)])
        return {"one_time_key_counts": counts.one_time}

    # -- query -------------------------------------------------------------------

    async def query(self, requester_user_id: str, query: dict[str, list[str]],
                    timeout_ms: int) -> dict[str, Any]:
        """POST /keys/query."""
        local = {u: d for u, d in query.items() if self.ctx.is_mine(u)}
        remote = {u: d for u, d in query.items() if not self.ctx.is_mine(u)}
        device_keys: dict[str, dict[str, dict[str, Any]]] = {u: {} for u in query}
        device_keys.update(await self.store.get_device_keys(local))
        failures: dict[str, Any] = {}
        extra: dict[str, dict[str, Any]] = {"master_keys": {}, "self_signing_keys": {}}
        if remote:
            cached, uncached = await self.store.get_cached_remote_keys(remote)
            device_keys.update(cached)
            uncached -= await self._resync_uncached(requester_user_id, remote, uncached,
                                                    device_keys, timeout_ms)
            by_server: dict[str, dict[str, list[str]]] = {}
            for user_id in uncached:
                by_server.setdefault(_server_of(user_id), {})[user_id] = remote[user_id]

            async def ask(server: str, users: dict[str, list[str]]) -> None:
                try:
                    answer = await self._post(server, "/user/keys/query",
                                              {"device_keys": users}, timeout_ms)
                except _Unreachable as e:
                    failures[server] = e.failure
                    return
                self._merge_remote_query(server, users, answer, device_keys, extra)

            await defer.gatherResults(
                [defer.ensureDeferred(ask(s, u)) for s, u in by_server.items()],
                consumeErrors=True)
        result: dict[str, Any] = {"device_keys": device_keys, "failures": failures}
        signing = await self.cross_signing.cross_signing_keys_for_query(
            requester_user_id, list(query))
        for field, keys in signing.items():
            # a remote server's answer is fresher than what we stored of it
            result[field] = {**keys, **extra.get(field, {})}
        await self.cross_signing.add_signatures_to_device_keys(device_keys)
        return result

    async def _resync_uncached(self, requester_user_id: str, remote: dict[str, list[str]],
                               uncached: set[str],
                               device_keys: dict[str, dict[str, dict[str, Any]]],
                               timeout_ms: int) -> set[str]:
        """Fetch the whole device lists of the uncached users asked for in
        full who share a room with the requester (so their servers' updates
        will keep our copy current), as Synapse does; their keys go into
        ``device_keys`` from the fresh cache. Returns the users served so;
        the rest (or those whose server failed) are asked with
        /user/keys/query."""
        wanted = [u for u in sorted(uncached) if not remote[u]]
        if not wanted:
            return set()
        sharing = await self.rooms.get_room_mates(requester_user_id, wanted)
        to_fetch = [u for u in wanted if u in sharing]
        if not to_fetch:
            return set()
        results = await defer.gatherResults(
            [defer.ensureDeferred(self.resync(u, timeout_ms)) for u in to_fetch],
            consumeErrors=True)
        done = {u for u, ok in zip(to_fetch, results, strict=True) if ok}
        if done:
            fresh, _ = await self.store.get_cached_remote_keys({u: [] for u in done})
            device_keys.update({u: fresh.get(u, {}) for u in done})
        return done

    def _merge_remote_query(self, server: str, users: dict[str, list[str]], answer: Any,
                            device_keys: dict[str, dict[str, dict[str, Any]]],
                            extra: dict[str, dict[str, Any]]) -> None:
        """Take what ``server`` answered about its own users (and only the
        users and devices asked for)."""
        got = answer.get("device_keys") if isinstance(answer, dict) else None
        if isinstance(got, dict):
            for user_id, devices in got.items():
                if user_id not in users or not isinstance(devices, dict):
                    continue
                wanted = users[user_id]
                device_keys[user_id] = {
                    d: k for d, k in devices.items()
                    if isinstance(k, dict) and (not wanted or d in wanted)
                    and k.get("user_id") == user_id and k.get("device_id") == d}
        for field in ("master_keys", "self_signing_keys"):
            keys = answer.get(field) if isinstance(answer, dict) else None
            if isinstance(keys, dict):
                for user_id, key in keys.items():
                    if user_id in users and isinstance(key, dict):
                        extra[field][user_id] = key
        for user_id in users:
            master = extra["master_keys"].get(user_id)
            ssk = extra["self_signing_keys"].get(user_id)
            if master is not None or ssk is not None:
                self.ctx.run_in_background(
                    self.cross_signing.store_remote_keys(server, user_id, master, ssk))

    # -- claim -------------------------------------------------------------------

    async def claim_local(self, query: dict[str, dict[str, str]],
                          ) -> dict[str, dict[str, dict[str, Any]]]:
        claimed = await self.store.claim_keys(query)
        for user_id, devices in query.items():
            for device_id in devices:
                self._counts.invalidate((user_id, device_id))
        if self.counts_changed is not None:
            self.counts_changed([(u, d) for u, devices in query.items() for d in devices])
        return claimed

    async def claim(self, query: dict[str, dict[str, str]], timeout_ms: int,
                    ) -> dict[str, Any]:
        """POST /keys/claim."""
        local = {u: d for u, d in query.items() if self.ctx.is_mine(u)}
        one_time_keys = await self.claim_local(local)
        failures: dict[str, Any] = {}
        by_server: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in query.items():
            if not self.ctx.is_mine(user_id):
                by_server.setdefault(_server_of(user_id), {})[user_id] = devices

        async def ask(server: str, users: dict[str, dict[str, str]]) -> None:
            try:
                answer = await self._post(server, "/user/keys/claim",
                                          {"one_time_keys": users}, timeout_ms)
            except _Unreachable as e:
                failures[server] = e.failure
                return
            got = answer.get("one_time_keys") if isinstance(answer, dict) else None
            if not isinstance(got, dict):
                return
            for user_id, devices in got.items():
                if user_id in users and isinstance(devices, dict):
                    one_time_keys[user_id] = {
                        d: k for d, k in devices.items()
                        if d in users[user_id] and isinstance(k, dict)}

        await defer.gatherResults(
            [defer.ensureDeferred(ask(s, u)) for s, u in by_server.items()],
            consumeErrors=True)
        return {"one_time_keys": one_time_keys, "failures": failures}

    async def _post(self, server: str, path: str, body: dict[str, Any],
                    timeout_ms: int) -> dict[str, Any]:
        try:
            answer = await self.federation_client.post_json(
                server, FEDERATION_V1 + path, body, timeout_ms=max(timeout_ms, 1))
        except FederationError as e:
            logger.info("%s of %s failed: %s", path, server, e)
            raise _Unreachable({"status": e.code, "message": f"{server} answered {e.code}"}
                               ) from None
        except (RequestFailed, defer.TimeoutError, defer.CancelledError) as e:
            logger.info("%s of %s failed: %s", path, server, e)
            raise _Unreachable({"status": 503, "message": f"Failed to reach {server}"}
                               ) from None
        except Exception as e:  # a bad destination name and the like
            logger.info("%s of %s failed: %r", path, server, e)
            raise _Unreachable({"status": 503, "message": f"Failed to reach {server}"}
                               ) from None
        if not isinstance(answer, dict):
            raise _Unreachable({"status": 502, "message": f"{server} sent a malformed answer"})
        return answer

    # -- device lists: outbound --------------------------------------------------

    def on_device_list_changed(self, user_id: str, stream_pos: int) -> None:
        if self.ctx.is_mine(user_id):
            self.ctx.run_in_background(self._announce(user_id))

    async def _announce(self, user_id: str) -> None:
        lock = self._announce_locks.setdefault(user_id, defer.DeferredLock())
        await lock.acquire()
        try:
            updates = await self.store.announce(user_id)
            if not updates:
                return
            mates = await self.rooms.get_room_mates(user_id)
            servers = {_server_of(u) for u in mates} - {self.ctx.hostname, ""}
            for destination in sorted(servers):
                for content in updates:
                    self.federation_sender.send_edu(destination, "m.device_list_update",
                                                       content)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._announce_locks.pop(user_id, None)

    async def local_device_list(self, user_id: str) -> dict[str, Any]:
        """GET /user/devices/{userId}'s answer for a local user."""
        stream_id, devices = await self.store.get_local_device_list(user_id)
        out = []
        for device_id, name, keys in devices:
            entry: dict[str, Any] = {"device_id": device_id}
            if name is not None:
                entry["device_display_name"] = name
            if keys is not None:
                entry["keys"] = keys
            out.append(entry)
        # cross-signing signatures of the devices, as /keys/query serves them
        await self.cross_signing.add_signatures_to_device_keys(
            {user_id: {e["device_id"]: e["keys"] for e in out if "keys" in e}})
        answer: dict[str, Any] = {"user_id": user_id, "stream_id": stream_id, "devices": out}
        signing = await self.cross_signing.cross_signing_keys_for_query("", [user_id])
        for field, name in (("master_keys", "master_key"),
                            ("self_signing_keys", "self_signing_key")):
            if user_id in signing.get(field, {}):
                answer[name] = signing[field][user_id]
        return answer

    # -- device lists: inbound ---------------------------------------------------

    def on_commit(self, committed: "Committed") -> None:
        """The write hub, on the database thread: a leave (or ban) may end
        the last room a remote user shares with us, after which their
        server stops telling us of their devices."""
        left: list[tuple[str, str]] = []
        for event, _ in committed.events:
            if event.type == "m.room.member" and event.state_key is not None \
                    and event.rejected_reason is None \
                    and event.membership in ("leave", "ban"):
                left.append((event.room_id, event.state_key))
        if left:
            self.ctx.reactor.callFromThread(self._start_forget_untracked, left)

    def _start_forget_untracked(self, left: list[tuple[str, str]]) -> None:
        self.ctx.run_in_background(self._forget_untracked(left))

    async def _forget_untracked(self, left: list[tuple[str, str]]) -> None:
        """Drop our copy of the device lists of remote users who share no
        room with a local user any more: it would go stale unseen, so the
        next query (after a room is shared again) fetches it afresh."""
        candidates: set[str] = set()
        for room_id, user_id in left:
            if not self.ctx.is_mine(user_id):
                candidates.add(user_id)
                continue
            room = await self.rooms.get_room(room_id)
            if room is not None:
                candidates.update(u for u in await self.rooms.get_members(room.room_nid)
                                  if not self.ctx.is_mine(u))
        if not candidates:
            return
        for user_id in sorted(await self.store.get_cached_remote_users(sorted(candidates))):
            mates = await self.rooms.get_room_mates(user_id)
            if not any(self.ctx.is_mine(u) for u in mates):
                logger.debug("no longer sharing a room with %s: forgetting their devices",
                             user_id)
                await self.store.forget_remote_devices(user_id)

    async def on_remote_update(self, origin: str, content: dict[str, Any]) -> None:
        """An m.device_list_update EDU (already checked: the user is of
        ``origin`` and shares a room with a local user)."""
        user_id = content["user_id"]
        stream_id, prev_id = content.get("stream_id"), content.get("prev_id", [])
        device_id = content.get("device_id")
        if not isinstance(stream_id, int) or isinstance(stream_id, bool) \
                or not isinstance(prev_id, list) or not isinstance(device_id, str):
            await self.resync(user_id)
            return
        lock = self._resync_locks.setdefault(user_id, defer.DeferredLock())
        await lock.acquire()
        try:
            ours = await self.store.get_remote_stream_id(user_id)
            if ours is not None and stream_id <= ours:
                return  # already have it (a resync got ahead of the EDU)
            keys = content.get("keys")
            name = content.get("device_display_name")
            device = RemoteDevice(device_id, name if isinstance(name, str) else None,
                                  keys if isinstance(keys, dict) and self._keys_ok(
                                      keys, user_id, device_id) else None)
            if ours is not None and prev_id == [ours] and await self.store.apply_remote_update(
                    user_id, ours, stream_id, device, content.get("deleted") is True):
                return
            await self._resync_locked(user_id)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._resync_locks.pop(user_id, None)

    @staticmethod
    def _keys_ok(keys: dict[str, Any], user_id: str, device_id: str) -> bool:
        """Keys a remote server gives for one of its users' devices are kept
        as sent (their content is for clients to check, as Synapse leaves
        it), unless they name another user or device."""
        return keys.get("user_id", user_id) == user_id \
            and keys.get("device_id", device_id) == device_id

    async def resync(self, user_id: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> bool:
        """Fetch a remote user's whole device list into the cache; False
        when their server could not tell us (the cache, if any, stays as it
        was: a server that is down changes nobody's devices)."""
        lock = self._resync_locks.setdefault(user_id, defer.DeferredLock())
        await lock.acquire()
        try:
            return await self._resync_locked(user_id, timeout_ms)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._resync_locks.pop(user_id, None)

    async def _resync_locked(self, user_id: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> bool:
        server = _server_of(user_id)
        try:
            answer = await self.federation_client.get_json(
                server, f"{FEDERATION_V1}/user/devices/{quote(user_id, safe='')}",
                timeout_ms=max(timeout_ms, 1))
        except Exception as e:
            logger.info("device list resync of %s failed: %r", user_id, e)
            return False
        stream_id = answer.get("stream_id") if isinstance(answer, dict) else None
        devices = answer.get("devices") if isinstance(answer, dict) else None
        if not isinstance(stream_id, int) or isinstance(stream_id, bool) \
                or not isinstance(devices, list) or answer.get("user_id") != user_id:
            logger.info("device list resync of %s: malformed answer", user_id)
            return False
        parsed: dict[str, RemoteDevice] = {}
        for entry in devices[:MAX_REMOTE_DEVICES]:
            if not isinstance(entry, dict) or not _is_key_id(entry.get("device_id")):
                continue
            device_id = entry["device_id"]
            name = entry.get("device_display_name")
            keys = entry.get("keys")
            parsed[device_id] = RemoteDevice(
                device_id, name if isinstance(name, str) else None,
                keys if isinstance(keys, dict) and self._keys_ok(keys, user_id, device_id)
                else None)
        await self.store.replace_remote_devices(user_id, stream_id, list(parsed.values()))
        if answer.get("master_key") is not None or answer.get("self_signing_key") is not None:
            await self.cross_signing.store_remote_keys(server, user_id,
                                                       answer.get("master_key"),
                                                       answer.get("self_signing_key"))
        return True


class _Unreachable(Exception):
    """A remote server that did not answer a query or claim usefully."""

    def __init__(self, failure: dict[str, Any]) -> None:
        super().__init__(failure.get("message"))
        self.failure = failure
