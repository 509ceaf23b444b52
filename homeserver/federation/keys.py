"""Our signing keys and other servers' verify keys.

server-server-api.md "Retrieving server keys"; rooms/fragments/
v5-signing-requirements.md for how long a key counts.

Our own keys: ``own_key_response`` is the body of GET /_matrix/key/v2/server:
the current key (``ServerContext.signing_key``) in ``verify_keys``, the keys of
``config.old_signing_keys`` in ``old_verify_keys``, valid for
``config.key_refresh_interval``, signed by the current key. It is signed
once and kept; it is signed again when half its validity has passed, so a
peer always gets an answer valid for at least half the interval.

Other servers' keys (``get_verify_keys``), cheapest first:
1. our own server: the keys above, no I/O;
2. an in-memory map (bounded), then the database (``storage/server_keys.py``);
3. GET /_matrix/key/v2/server from the server itself, unsigned;
4. POST /_matrix/key/v2/query to each of ``config.trusted_key_servers``
   (Synapse's format: ``[{server_name, verify_keys?: {key_id: base64}}]``);
   the notary's signature is checked with the configured keys when there are
   any, and always the origin's own signature, so a notary can vouch only for
   what the origin itself signed.

A key "counts" for a minimum timestamp if ``min(valid_until_ts, fetched_ts
+ 7 days) >= minimum``: the 7-day cap is the v5+ rule for events, and using
it for every lookup also means a key is re-checked with its owner at least
weekly, whatever ``valid_until_ts`` the owner claimed. A minimum of 0 (rooms
v1-v4) accepts any key we ever fetched, expired or not.

Fetching is shared and rate-limited per server: concurrent lookups of one
server wait for a single fetch, and a server whose fetch failed (or lacked
the wanted keys) is not asked again for ``NEGATIVE_CACHE_MS``, so a peer
signing with an unknown key cannot make us hammer it, or make it look as
if we do. The price: a server that rotates its key in that minute (or whose
name a forger used with a bogus key ID) is not re-asked until it passes.
Network errors never escape: a key we could not get is simply not found,
and the caller's signature check fails.

As a notary (``notary_key_responses``) we serve the signed responses we
hold, fetching from the server itself when none is valid long enough, each
with our own signature added.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from canonicaljson import encode_canonical_json
from signedjson.key import (
    decode_verify_key_base64,
    decode_verify_key_bytes,
    encode_verify_key_base64,
    get_verify_key,
)
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import VerifyKey
from twisted.internet import defer

from homeserver.events import signing
from homeserver.events.identifiers import is_valid_server_name
from homeserver.events.signing import MAX_KEY_VALIDITY_MS, SignatureError
from homeserver.storage.cache import LruCache
from homeserver.storage.server_keys import StoredKey

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.events.room_versions import RoomVersion
    from homeserver.federation.client import FederationClient
    from homeserver.storage.server_keys import ServerKeyStore

logger = logging.getLogger(__name__)

KEY_SERVER_PATH = "/_matrix/key/v2/server"
KEY_QUERY_PATH = "/_matrix/key/v2/query"

# how long a server whose keys we could not get is left alone
NEGATIVE_CACHE_MS = 60_000
# verify keys kept in memory (each a few hundred bytes)
MEMORY_CACHE_SIZE = 10_000
# our current key never expires as far as we are concerned
_FOREVER = 2**62


@dataclass(frozen=True)
class KeyInfo:
    verify_key: VerifyKey
    valid_until_ts: int
    fetched_ts: int


class KeyResponseError(Exception):
    """A key response that is malformed, for the wrong server, or not self-signed."""


def _counts(valid_until_ts: int, fetched_ts: int, minimum_valid_until_ts: int) -> bool:
    if minimum_valid_until_ts <= 0:
        return True
    return min(valid_until_ts, fetched_ts + MAX_KEY_VALIDITY_MS) >= minimum_valid_until_ts


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_key(key_id: str, key_base64: Any) -> VerifyKey | None:
    """The ed25519 verify key ``key_id`` from unpadded base64, or None if it is
    not one we can use (other algorithms, bad base64, wrong length)."""
    alg, sep, version = key_id.partition(":")
    if alg != "ed25519" or not sep or not version or not isinstance(key_base64, str):
        return None
    try:
        key: VerifyKey = decode_verify_key_base64(alg, version, key_base64)
    except Exception:  # bad base64, or nacl refusing the length
        return None
    return key


def check_signed_by(obj: Mapping[str, Any], signer: str,
                    keys: Mapping[str, VerifyKey]) -> None:
    """``obj`` carries ``signer``'s signature by at least one of ``keys``, and every
    signature of ``signer`` made with one of ``keys`` verifies; else SignatureError.
    Signatures by keys not in ``keys`` are skipped (the spec's rule)."""
    sigs = obj.get("signatures")
    signer_sigs = sigs.get(signer) if isinstance(sigs, dict) else None
    if not isinstance(signer_sigs, dict) or not signer_sigs:
        raise SignatureError(f"not signed by {signer}")
    checked = 0
    for key_id in signer_sigs:
        key = keys.get(key_id)
        if key is None:
            continue
        # the key's alg/version name the signature verify_signed_json checks
        vk = decode_verify_key_bytes(key_id, bytes(key))
        try:
            verify_signed_json(dict(obj), signer, vk)
        except SignatureVerifyException as e:
            raise SignatureError(f"bad signature by {signer} {key_id}") from e
        except Exception as e:  # canonical JSON refusing a value (floats, ...)
            raise SignatureError(f"cannot check signature by {signer}: {e}") from e
        checked += 1
    if not checked:
        raise SignatureError(f"no known key for the signatures of {signer}: "
                             f"{sorted(str(k) for k in signer_sigs)}")


def parse_key_response(server_name: str, response: Any, fetched_ts: int) -> list[StoredKey]:
    """The keys of a server's signed key response, checked: it names
    ``server_name``, has ``valid_until_ts``, and is signed by one of its own
    ``verify_keys``. Keys of algorithms we do not know are left out."""
    if not isinstance(response, dict):
        raise KeyResponseError("key response is not an object")
    if response.get("server_name") != server_name:
        raise KeyResponseError(f"key response names {response.get('server_name')!r}, "
                               f"not {server_name!r}")
    valid_until_ts = response.get("valid_until_ts")
    if not _is_int(valid_until_ts):
        raise KeyResponseError("key response has no integer valid_until_ts")
    verify_keys = response.get("verify_keys")
    if not isinstance(verify_keys, dict):
        raise KeyResponseError("key response has no verify_keys object")
    current: dict[str, VerifyKey] = {}
    for key_id, entry in verify_keys.items():
        if isinstance(entry, dict):
            key = decode_key(key_id, entry.get("key"))
            if key is not None:
                current[key_id] = key
    try:
        check_signed_by(response, server_name, current)
    except SignatureError as e:
        raise KeyResponseError(f"key response not self-signed: {e}") from e
    try:
        key_json = encode_canonical_json(response).decode("utf-8")
    except Exception as e:
        raise KeyResponseError(f"key response is not canonical JSON: {e}") from e
    rows = [StoredKey(server_name, key_id, encode_verify_key_base64(key), valid_until_ts,
                      fetched_ts, key_json) for key_id, key in current.items()]
    old = response.get("old_verify_keys")
    if isinstance(old, dict):
        for key_id, entry in old.items():
            if key_id in current or not isinstance(entry, dict):
                continue
            expired_ts = entry.get("expired_ts")
            key = decode_key(key_id, entry.get("key"))
            if key is not None and _is_int(expired_ts):
                rows.append(StoredKey(server_name, key_id, encode_verify_key_base64(key),
                                      expired_ts, fetched_ts, key_json))
    return rows


@dataclass(frozen=True)
class TrustedKeyServer:
    server_name: str
    # empty: trust whatever the notary answers over TLS
    verify_keys: dict[str, VerifyKey]


def parse_trusted_key_servers(entries: Iterable[Any]) -> list[TrustedKeyServer]:
    """``config.trusted_key_servers`` (entries we cannot use are logged and skipped)."""
    servers = []
    for entry in entries or []:
        if isinstance(entry, str):
            entry = {"server_name": entry}
        name = entry.get("server_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not is_valid_server_name(name):
            logger.error("trusted_key_servers: ignoring entry without a valid server_name")
            continue
        keys: dict[str, VerifyKey] = {}
        raw_keys = entry.get("verify_keys") or {}
        if not isinstance(raw_keys, dict):
            logger.error("trusted_key_servers: %s: verify_keys must be a map", name)
            continue
        for key_id, key_b64 in raw_keys.items():
            key = decode_key(str(key_id), key_b64)
            if key is None:
                logger.error("trusted_key_servers: %s: unusable key %s", name, key_id)
                continue
            keys[str(key_id)] = key
        if raw_keys and not keys:
            continue  # keys were configured but none usable: do not trust blindly
        servers.append(TrustedKeyServer(name, keys))
    return servers


class KeyRing:
    def __init__(self, ctx: "ServerContext", store: "ServerKeyStore",
                 client: "FederationClient") -> None:
        self.ctx = ctx
        self.store = store
        self.client = client
        self._own_response: dict[str, Any] | None = None
        self._own_resign_at = 0
        self._old_keys = self._parse_old_signing_keys(ctx.config.old_signing_keys or {})
        self._trusted = parse_trusted_key_servers(ctx.config.trusted_key_servers or [])
        self._memory: LruCache[tuple[str, str], KeyInfo] = LruCache(MEMORY_CACHE_SIZE)
        # server -> waiters of the fetch in progress
        self._inflight: dict[str, list[defer.Deferred[None]]] = {}
        # server -> when its last fetch came back without the keys wanted
        self._failed_at: dict[str, int] = {}
        # (server, key IDs) -> when a notary query's fetch of them failed
        self._notary_failed_at: dict[tuple[str, tuple[str, ...]], int] = {}

    # -- our own keys --

    @property
    def own_key_id(self) -> str:
        key = self.ctx.signing_key
        return f"{key.alg}:{key.version}"

    @staticmethod
    def _parse_old_signing_keys(raw: Mapping[str, Any]) -> dict[str, tuple[VerifyKey, int]]:
        keys: dict[str, tuple[VerifyKey, int]] = {}
        for key_id, entry in raw.items():
            key = decode_key(str(key_id), entry.get("key") if isinstance(entry, dict) else None)
            expired_ts = entry.get("expired_ts") if isinstance(entry, dict) else None
            if key is None or not _is_int(expired_ts):
                logger.error("old_signing_keys: ignoring %s: needs key and expired_ts", key_id)
                continue
            keys[str(key_id)] = (key, expired_ts)
        return keys

    def own_key_response(self) -> dict[str, Any]:
        """The signed body of GET /_matrix/key/v2/server (a copy: callers may sign it)."""
        now = self.ctx.now_ms()
        if self._own_response is None or now >= self._own_resign_at:
            interval = int(self.ctx.config.key_refresh_interval)
            signing_key = self.ctx.signing_key
            body: dict[str, Any] = {
                "server_name": self.ctx.hostname,
                "valid_until_ts": now + interval,
                "verify_keys": {self.own_key_id: {
                    "key": encode_verify_key_base64(get_verify_key(signing_key))}},
                "old_verify_keys": {
                    key_id: {"key": encode_verify_key_base64(key), "expired_ts": expired_ts}
                    for key_id, (key, expired_ts) in self._old_keys.items()
                    if key_id != self.own_key_id},
            }
            self._own_response = sign_json(body, self.ctx.hostname, signing_key)
            self._own_resign_at = now + interval // 2
        return copy.deepcopy(self._own_response)

    def _own_keys(self, key_ids: Iterable[str]) -> dict[str, KeyInfo]:
        now = self.ctx.now_ms()
        found: dict[str, KeyInfo] = {}
        for key_id in key_ids:
            if key_id == self.own_key_id:
                found[key_id] = KeyInfo(get_verify_key(self.ctx.signing_key), _FOREVER, now)
            elif key_id in self._old_keys:
                key, expired_ts = self._old_keys[key_id]
                found[key_id] = KeyInfo(key, expired_ts, now)
        return found

    # -- other servers' keys --

    async def get_verify_keys(self, server_name: str, key_ids: Iterable[str],
                              minimum_valid_until_ts: int) -> dict[str, VerifyKey]:
        """The keys among ``key_ids`` of ``server_name`` that count until
        ``minimum_valid_until_ts`` (0: any key ever valid); missing ones are
        left out. Never raises for network trouble."""
        infos = await self.get_key_infos(server_name, key_ids, minimum_valid_until_ts)
        return {key_id: info.verify_key for key_id, info in infos.items()}

    async def get_key_infos(self, server_name: str, key_ids: Iterable[str],
                            minimum_valid_until_ts: int) -> dict[str, KeyInfo]:
        """As ``get_verify_keys``, with each key's validity and fetch time."""
        wanted = [k for k in dict.fromkeys(key_ids)
                  if isinstance(k, str) and k.startswith("ed25519:")]
        if not wanted:
            return {}
        if server_name == self.ctx.hostname:
            return {k: v for k, v in self._own_keys(wanted).items()
                    if _counts(v.valid_until_ts, v.fetched_ts, minimum_valid_until_ts)
                    or k == self.own_key_id}
        if not is_valid_server_name(server_name):
            return {}
        found = await self._cached(server_name, wanted, minimum_valid_until_ts)
        if len(found) < len(wanted):
            await self._fetch(server_name, [k for k in wanted if k not in found],
                              minimum_valid_until_ts, use_notaries=True)
            found = await self._cached(server_name, wanted, minimum_valid_until_ts)
        return found

    async def _cached(self, server_name: str, key_ids: list[str],
                      minimum_valid_until_ts: int) -> dict[str, KeyInfo]:
        found: dict[str, KeyInfo] = {}
        for key_id in key_ids:
            info = self._memory.get((server_name, key_id))
            if info is not None and _counts(info.valid_until_ts, info.fetched_ts,
                                            minimum_valid_until_ts):
                found[key_id] = info
        missing = [k for k in key_ids if k not in found]
        if missing:
            for row in await self.store.get_keys(server_name, missing):
                info = self._remember(row)
                if info is not None and _counts(info.valid_until_ts, info.fetched_ts,
                                                minimum_valid_until_ts):
                    found[row.key_id] = info
        return found

    def _remember(self, row: StoredKey) -> KeyInfo | None:
        key = decode_key(row.key_id, row.verify_key)
        if key is None:
            return None
        info = KeyInfo(key, row.valid_until_ts, row.fetched_ts)
        cache_key = (row.server_name, row.key_id)
        held = self._memory.get(cache_key)
        if held is not None and held.valid_until_ts > info.valid_until_ts:
            return held
        self._memory.put(cache_key, info)
        return info

    async def _store(self, rows: list[StoredKey]) -> None:
        await self.store.store_keys(rows)
        for row in rows:
            self._remember(row)

    async def _fetch(self, server_name: str, key_ids: list[str], minimum_valid_until_ts: int,
                     *, use_notaries: bool) -> None:
        """Fetch ``server_name``'s keys into the cache, sharing a fetch in progress
        and skipping servers that failed lately."""
        waiters = self._inflight.get(server_name)
        if waiters is not None:
            waiter: defer.Deferred[None] = defer.Deferred()
            waiters.append(waiter)
            await waiter
            return
        if self._fresh(server_name, key_ids, minimum_valid_until_ts):
            # a fetch finished while the caller was reading the database
            return
        now = self.ctx.now_ms()
        failed_at = self._failed_at.get(server_name)
        if failed_at is not None and now - failed_at < NEGATIVE_CACHE_MS:
            return
        self._inflight[server_name] = []
        try:
            ok, _ = await self._fetch_uncached(server_name, key_ids, minimum_valid_until_ts,
                                               use_notaries)
            if ok:
                self._failed_at.pop(server_name, None)
            else:
                self._note_failure(server_name)
        finally:
            for w in self._inflight.pop(server_name):
                w.callback(None)

    async def _fetch_for_notary(self, server_name: str, key_ids: list[str],
                                minimum_valid_until_ts: int) -> None:
        """Ask ``server_name`` itself for its keys, for a notary query.

        Unlike a lookup for a signature check, an answer that merely lacks a
        key valid long enough is not held against the server: the querying
        server asked for that minimum, and the next query (perhaps with
        another) must ask the origin again, as Synapse's notary does. What
        is remembered for ``NEGATIVE_CACHE_MS`` is a fetch that failed (no
        answer, an error, a malformed response), per server and key IDs, so
        nobody can make us hammer an unreachable server through our notary.
        Fetches of one server are still shared."""
        waiters = self._inflight.get(server_name)
        if waiters is not None:
            waiter: defer.Deferred[None] = defer.Deferred()
            waiters.append(waiter)
            await waiter
            return
        now = self.ctx.now_ms()
        failure_key = (server_name, tuple(sorted(key_ids)))
        failed_at = self._notary_failed_at.get(failure_key)
        if failed_at is not None and now - failed_at < NEGATIVE_CACHE_MS:
            return
        self._inflight[server_name] = []
        try:
            _, answered = await self._fetch_uncached(server_name, key_ids,
                                                     minimum_valid_until_ts, False)
            if answered:
                self._notary_failed_at.pop(failure_key, None)
            else:
                if len(self._notary_failed_at) > 10_000:
                    self._notary_failed_at = {k: t for k, t in self._notary_failed_at.items()
                                              if now - t < NEGATIVE_CACHE_MS}
                self._notary_failed_at[failure_key] = now
        finally:
            for w in self._inflight.pop(server_name):
                w.callback(None)

    def _fresh(self, server_name: str, key_ids: list[str],
               minimum_valid_until_ts: int) -> bool:
        """Whether memory already holds every key of ``key_ids`` that counts."""
        for key_id in key_ids:
            info = self._memory.get((server_name, key_id))
            if info is None or not _counts(info.valid_until_ts, info.fetched_ts,
                                           minimum_valid_until_ts):
                return False
        return True

    def _note_failure(self, server_name: str) -> None:
        now = self.ctx.now_ms()
        if len(self._failed_at) > 10_000:
            self._failed_at = {s: t for s, t in self._failed_at.items()
                               if now - t < NEGATIVE_CACHE_MS}
        self._failed_at[server_name] = now

    async def _fetch_uncached(self, server_name: str, key_ids: list[str],
                              minimum_valid_until_ts: int,
                              use_notaries: bool) -> tuple[bool, bool]:
        """(whether the wanted keys (any key, if none named) are now cached,
        whether the server itself answered with a valid key response)."""
        wanted = set(key_ids)
        got: set[str] = set()
        answered = False
        try:
            response = await self.client.get_json(
                server_name, KEY_SERVER_PATH, sign=False)
            rows = parse_key_response(server_name, response, self.ctx.now_ms())
            await self._store(rows)
            answered = True
            got |= {r.key_id for r in rows
                    if _counts(r.valid_until_ts, r.fetched_ts, minimum_valid_until_ts)}
        except defer.CancelledError:
            raise
        except Exception as e:  # unreachable, refused, malformed: try the notaries
            logger.info("fetching keys of %s directly failed: %s", server_name, e)
        if got and wanted <= got:
            return True, answered
        if not use_notaries:
            return False, answered
        for notary in self._trusted:
            if notary.server_name in (server_name, self.ctx.hostname):
                continue
            try:
                got |= await self._fetch_from_notary(notary, server_name, wanted - got,
                                                     minimum_valid_until_ts)
            except defer.CancelledError:
                raise
            except Exception as e:
                logger.info("fetching keys of %s from %s failed: %s", server_name,
                            notary.server_name, e)
            if got and wanted <= got:
                return True, answered
        return False, answered

    async def _fetch_from_notary(self, notary: TrustedKeyServer, server_name: str,
                                 key_ids: set[str], minimum_valid_until_ts: int) -> set[str]:
        criteria = {"minimum_valid_until_ts": max(minimum_valid_until_ts, 0)}
        body = {"server_keys": {server_name: {k: dict(criteria) for k in sorted(key_ids)}}}
        response = await self.client.post_json(
            notary.server_name, KEY_QUERY_PATH, body)
        entries = response.get("server_keys") if isinstance(response, dict) else None
        if not isinstance(entries, list):
            raise KeyResponseError("notary answer has no server_keys list")
        got: set[str] = set()
        now = self.ctx.now_ms()
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("server_name") != server_name:
                continue  # we asked about one server only
            try:
                if notary.verify_keys:
                    check_signed_by(entry, notary.server_name, notary.verify_keys)
                rows = parse_key_response(server_name, entry, now)
            except (SignatureError, KeyResponseError) as e:
                logger.warning("notary %s gave a bad key response for %s: %s",
                               notary.server_name, server_name, e)
                continue
            await self._store(rows)
            got |= {r.key_id for r in rows
                    if _counts(r.valid_until_ts, r.fetched_ts, minimum_valid_until_ts)}
        return got

    # -- checking signatures --

    async def verify_json_for_server(self, server_name: str, obj: dict[str, Any],
                                     minimum_valid_until_ts: int) -> None:
        """``obj`` is signed by ``server_name`` with a key we can get that counts
        until ``minimum_valid_until_ts``; else SignatureError."""
        sigs = obj.get("signatures")
        server_sigs = sigs.get(server_name) if isinstance(sigs, dict) else None
        if not isinstance(server_sigs, dict) or not server_sigs:
            raise SignatureError(f"not signed by {server_name}")
        keys = await self.get_verify_keys(server_name, list(server_sigs),
                                          minimum_valid_until_ts)
        check_signed_by(obj, server_name, keys)

    async def verify_event_signatures(self, pdu: dict[str, Any],
                                      room_version: "RoomVersion") -> None:
        """Every server that must have signed ``pdu`` did, with a key valid for it
        (v5+: valid at its origin_server_ts); else SignatureError."""
        required = signing.required_signature_servers(pdu, room_version)
        ts = pdu.get("origin_server_ts")
        if room_version.enforce_key_validity:
            if not _is_int(ts):
                raise SignatureError("event has no integer origin_server_ts")
            minimum = ts
        else:
            minimum = 0
        sigs = pdu.get("signatures")
        if not isinstance(sigs, dict):
            raise SignatureError("event has no signatures")
        servers = sorted(required)

        async def lookup(server: str) -> dict[str, KeyInfo]:
            server_sigs = sigs.get(server)
            if not isinstance(server_sigs, dict):
                return {}
            return await self.get_key_infos(server, list(server_sigs), minimum)

        results = await defer.gatherResults(
            [defer.ensureDeferred(lookup(s)) for s in servers], consumeErrors=True)
        keys: dict[tuple[str, str], VerifyKey] = {}
        for server, infos in zip(servers, results, strict=True):
            for key_id, info in infos.items():
                if signing.key_valid_for_event(room_version, minimum, info.valid_until_ts,
                                               info.fetched_ts):
                    keys[(server, key_id)] = info.verify_key
        signing.verify_event_signatures(pdu, room_version, keys)

    # -- serving as a notary --

    async def notary_key_responses(self, server_name: str, key_ids: Iterable[str],
                                   minimum_valid_until_ts: int) -> list[dict[str, Any]]:
        """Key responses of ``server_name`` for /_matrix/key/v2/query, signed by us.

        Cached responses are served if they hold the keys asked for (any key
        when none are named) valid until ``minimum_valid_until_ts``; else we
        ask the server itself first (``_fetch_for_notary``). When it cannot
        give better, what we hold is served, expired or not (the asking
        server decides what it accepts): a key the origin no longer lists is
        never forgotten, because rows are kept per key ID and a new answer
        only adds or refreshes. With key IDs named, only the responses
        holding them are served; an unreachable server with no cache gets [].
        """
        if server_name == self.ctx.hostname:
            return [self.own_key_response()]
        wanted = list(dict.fromkeys(key_ids))
        store = self.store

        def satisfied(rows: list[StoredKey]) -> bool:
            valid = {r.key_id for r in rows if r.valid_until_ts >= minimum_valid_until_ts}
            return bool(valid) and all(k in valid for k in wanted)

        rows = await store.get_keys(server_name)
        if not satisfied(rows):
            await self._fetch_for_notary(server_name, wanted, minimum_valid_until_ts)
            rows = await store.get_keys(server_name)
        if wanted:
            rows = [r for r in rows if r.key_id in wanted]
        responses = []
        seen: set[str] = set()
        for row in sorted(rows, key=lambda r: -r.valid_until_ts):
            if row.key_json in seen:
                continue
            seen.add(row.key_json)
            response = json.loads(row.key_json)
            responses.append(sign_json(response, self.ctx.hostname, self.ctx.signing_key))
        return responses
