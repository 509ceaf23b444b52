"""Cross-signing: users' master, self-signing and user-signing keys, and the
signatures that tie devices and users together.

Uploads (``upload_signing_keys``, POST /keys/device_signing/upload): every
key must be well formed (``user_id`` the uploader, ``usage`` containing its
type, ``keys`` holding exactly one ``ed25519:<key>`` whose value is that
key), and the self-signing and user-signing keys must carry a valid
signature of the master key (the one uploaded with them, else the stored
one). A new master or self-signing key marks the user's device list changed,
which wakes room mates' /sync (``device_lists.changed``) and /keys/changes;
a new user-signing key is a change for the user alone
(``DeviceStore.mark_private_device_list_change_txn``); the master and
self-signing keys go to every other server sharing a room with the user as
``m.signing_key_update`` (the user-signing key is private to its owner).

Signatures (``upload_signatures``, POST /keys/signatures/upload), each
checked against the signing key that must have made it:
- a user's own device keys, by their self-signing key;
- a user's own master key, by one of their devices (``ed25519:<device>``);
- another user's master key, by the uploader's user-signing key.
A signature that does not verify, of a key we do not know, or of an object
that is not the stored key, is reported per key in ``failures`` and nothing
of it is stored. A signature of one's own device or master key marks one's
device list changed; a signature of another user's master key is a change
of that user for the signer alone. Stored signatures are merged into the key objects when
they are served (``cross_signing_keys_for_query``,
``add_signatures_to_device_keys``); a signature by a user-signing key is
only shown to its signer, as the spec says.

Remote users' master and self-signing keys arrive by ``m.signing_key_update``
(``on_signing_key_update``) or in /user/keys/query answers
(``store_remote_keys``); they are checked the same way before being stored.

``CrossSigning`` (``HomeServer.cross_signing``) is the service; the checks of
key objects and signatures are plain functions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.errors import Codes, MatrixError
from homeserver.storage.cross_signing import CrossSigningStore, SignatureRow
from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.streams import next_stream_id_txn

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.sender import FederationSender
    from homeserver.storage.database import Database
    from homeserver.storage.rooms import RoomStore
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

INVALID_SIGNATURE = Codes.INVALID_SIGNATURE

# body field of device_signing/upload -> key type (the usage it must have)
UPLOAD_FIELDS = {"master_key": "master", "self_signing_key": "self_signing",
                 "user_signing_key": "user_signing"}

# /keys/query answer field per key type
QUERY_FIELDS = {"master": "master_keys", "self_signing": "self_signing_keys",
                "user_signing": "user_signing_keys"}

# Key objects bigger than this are refused: a cross-signing key is ~300 bytes.
MAX_SIGNATURES_PER_OBJECT = 100


class BadKey(Exception):
    """A key object that is not well formed or not properly signed."""


def _is_b64_ed25519(value: Any) -> bool:
    if not isinstance(value, str) or not value or len(value) > 64:
        return False
    try:
        return len(decode_base64(value)) == 32
    except Exception:
        return False


def parse_cross_signing_key(key: Any, user_id: str, key_type: str) -> str:
    """Check a cross-signing key object; return its ed25519 public key."""
    if not isinstance(key, dict):
        raise BadKey(f"{key_type} key is not an object")
    if key.get("user_id") != user_id:
        raise BadKey(f"{key_type} key is not for {user_id}")
    usage = key.get("usage")
    if not isinstance(usage, list) or key_type not in usage \
            or not all(isinstance(u, str) for u in usage):
        raise BadKey(f"{key_type} key must have usage {key_type!r}")
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise BadKey(f"{key_type} key must have exactly one key")
    ((key_id, public_key),) = keys.items()
    algorithm, _, key_name = key_id.partition(":") if isinstance(key_id, str) else ("", "", "")
    if algorithm != "ed25519" or key_name != public_key or not _is_b64_ed25519(public_key):
        raise BadKey(f"{key_type} key must be one ed25519 key named by itself")
    signatures = key.get("signatures", {})
    if not isinstance(signatures, dict) or not all(
            isinstance(v, dict) and len(v) <= MAX_SIGNATURES_PER_OBJECT
            and all(isinstance(s, str) for s in v.values()) for v in signatures.values()):
        raise BadKey(f"{key_type} key has malformed signatures")
    return str(public_key)


def _verify(obj: dict[str, Any], signer: str, key_id: str, public_key: str) -> bool:
    """Does ``obj`` carry a valid signature by ``signer``'s ``key_id``?"""
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
        sigs = obj.get("signatures", {})
        if not isinstance(sigs, dict) or not isinstance(sigs.get(signer), dict) \
                or key_id not in sigs[signer]:
            return False
        # verify only the one signature in question: others may be unverifiable
        only = {**obj, "signatures": {signer: {key_id: sigs[signer][key_id]}}}
        verify_signed_json(only, signer, verify_key)
        return True
    except (SignatureVerifyException, ValueError, TypeError, KeyError):
        return False
    except Exception:  # a malformed base64 signature, say
        logger.debug("signature check of %s by %s failed", key_id, signer, exc_info=True)
        return False


def _public_key(key: dict[str, Any]) -> str:
    return str(next(iter(key["keys"].values())))


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    """A key object as compared between uploads: without signatures and unsigned."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _merge(obj: dict[str, Any], rows: Iterable[SignatureRow]) -> None:
    for signer, key_id, _, _, signature in rows:
        sigs = obj.setdefault("signatures", {})
        if isinstance(sigs, dict):
            sigs.setdefault(signer, {})[key_id] = signature


# --- uploads ----------------------------------------------------------------------


def check_upload(user_id: str, body: dict[str, Any],
                 stored: dict[str, dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Validate a device_signing/upload body against the stored keys;
    returns key type -> (public key, key object) of what to store.
    Raises MatrixError 400 on a malformed or badly signed key."""
    new: dict[str, tuple[str, dict[str, Any]]] = {}
    try:
        for field, key_type in UPLOAD_FIELDS.items():
            key = body.get(field)
            if key is not None:
                new[key_type] = (parse_cross_signing_key(key, user_id, key_type), key)
    except BadKey as e:
        raise MatrixError(400, Codes.INVALID_PARAM, str(e)) from None
    if "master" in new:
        master_pub = new["master"][0]
    elif "master" in stored:
        master_pub = _public_key(stored["master"])
    elif new:
        raise MatrixError(400, Codes.INVALID_PARAM, "No master key to sign with")
    else:
        return new
    for key_type in ("self_signing", "user_signing"):
        if key_type in new and not _verify(new[key_type][1], user_id,
                                           f"ed25519:{master_pub}", master_pub):
            raise MatrixError(400, INVALID_SIGNATURE,
                              f"Invalid signature on {key_type} key")
    return new


def _store_keys_txn(txn: Txn, user_id: str, new: dict[str, tuple[str, dict[str, Any]]],
                    ) -> tuple[set[str], int | None]:
    """Store changed keys; the types of those that changed, and the stream
    position the user must be woken at for a private change. A new master or
    self-signing key marks the user's device list changed for everyone
    sharing a room; a new user-signing key only for the user themself (as
    Synapse does: nobody else sees it)."""
    stored = CrossSigningStore.get_keys_txn(txn, [user_id]).get(user_id, {})
    changed: set[str] = set()
    for key_type, (public_key, key) in new.items():
        old = stored.get(key_type)
        if old == key:
            continue
        if old is not None and _public_key(old) != public_key:
            # signatures of a replaced key sign nothing any more
            CrossSigningStore.delete_signatures_of_key_txn(txn, user_id, _public_key(old))
        CrossSigningStore.set_key_txn(txn, user_id, key_type, public_key, key,
                                      next_stream_id_txn(txn))
        changed.add(key_type)
    if changed & {"master", "self_signing"}:
        DeviceStore.mark_device_list_changed_txn(txn, user_id)
    private_pos = None
    if "user_signing" in changed:
        private_pos = DeviceStore.mark_private_device_list_change_txn(txn, user_id, [user_id])
    return changed, private_pos


# --- signatures -------------------------------------------------------------------


def _failure(errcode: str, message: str) -> dict[str, Any]:
    return {"errcode": errcode, "error": message}


# --- the service --------------------------------------------------------------------


class CrossSigning:
    """Uploads, signatures and the serving of cross-signing keys; remote users'
    keys from their servers."""

    def __init__(self, ctx: "ServerContext", db: "Database", store: CrossSigningStore,
                 rooms: "RoomStore", federation_sender: "FederationSender",
                 notifier: "Notifier") -> None:
        self.ctx = ctx
        # wakes a user's /sync for a change only they are told about
        self.notifier = notifier
        # an upload's keys, signatures and device-list mark are one transaction
        self.db = db
        self.store = store
        self.rooms = rooms
        self.federation_sender = federation_sender

    # -- serving ---------------------------------------------------------------------

    async def cross_signing_keys_for_query(self, requester_user_id: str,
                                           user_ids: list[str]) -> dict[str, dict]:
        """The cross-signing keys of ``user_ids`` for a /keys/query answer:
        {"master_keys": {user: key}, "self_signing_keys": {...},
        "user_signing_keys": {...}}, the last only for the requester themself.
        Stored signatures are merged in (a user-signing key's signature of
        someone's master key only when the requester made it)."""
        store = self.store
        wanted = list(dict.fromkeys(user_ids))
        keys = await store.get_keys(wanted)
        rows = await store.get_signatures([u for u in wanted if u in keys])
        out: dict[str, dict] = {"master_keys": {}, "self_signing_keys": {},
                                "user_signing_keys": {}}
        for user_id, by_type in keys.items():
            for key_type, key in by_type.items():
                if key_type == "user_signing" and user_id != requester_user_id:
                    continue
                public_key = _public_key(key)
                _merge(key, (r for r in rows if r[2] == user_id and r[3] == public_key
                             and r[0] in (user_id, requester_user_id)))
                out[QUERY_FIELDS[key_type]][user_id] = key
        return out

    async def add_signatures_to_device_keys(self,
                                            device_keys: dict[str, dict[str, dict]]) -> None:
        """Merge the stored signatures of devices (by their owner's self-signing
        key) into ``device_keys`` (user -> device -> key object), in place."""
        users = [u for u, devices in device_keys.items() if devices]
        if not users:
            return
        rows = await self.store.get_signatures(users)
        for row in rows:
            signer, _, target_user, target_device, _ = row
            obj = device_keys.get(target_user, {}).get(target_device)
            if isinstance(obj, dict) and signer == target_user:
                _merge(obj, [row])

    # -- uploads ---------------------------------------------------------------------

    async def has_master_key(self, user_id: str) -> bool:
        return "master" in await self.store.get_user_keys(user_id)

    async def upload_is_replay(self, user_id: str, body: dict[str, Any]) -> bool:
        """Are all keys of ``body`` exactly the stored ones (a client retrying)?"""
        stored = await self.store.get_user_keys(user_id)
        given = {t: body[f] for f, t in UPLOAD_FIELDS.items() if body.get(f) is not None}
        return bool(given) and all(stored.get(t) == k for t, k in given.items())

    async def upload_signing_keys(self, user_id: str, body: dict[str, Any]) -> None:
        """Store a local user's new cross-signing keys (the body of
        device_signing/upload, UIA already done) and tell other servers."""
        stored = await self.store.get_user_keys(user_id)
        new = check_upload(user_id, body, stored)
        if not new:
            return
        changed, private_pos = await self.db.run_interaction("upload_signing_keys",
                                                             _store_keys_txn, user_id, new)
        if private_pos is not None:
            self.notifier.notify_users([user_id], private_pos)
        if changed & {"master", "self_signing"}:
            await self.send_signing_key_update(user_id)

    async def send_signing_key_update(self, user_id: str) -> None:
        """Send ``user_id``'s master and self-signing keys to every other server
        sharing a room with them (m.signing_key_update)."""
        keys = await self.store.get_user_keys(user_id)
        content: dict[str, Any] = {"user_id": user_id}
        if "master" in keys:
            content["master_key"] = keys["master"]
        if "self_signing" in keys:
            content["self_signing_key"] = keys["self_signing"]
        mates = await self.rooms.get_room_mates(user_id)
        servers = {u.partition(":")[2] for u in mates} - {self.ctx.hostname, ""}
        for destination in sorted(servers):
            self.federation_sender.send_edu(destination, "m.signing_key_update", content,
                                            ("signing_key_update", user_id))

    # -- signatures ------------------------------------------------------------------

    async def upload_signatures(self, user_id: str,
                                body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Check and store the signatures of a /keys/signatures/upload body
        (user -> key ID -> signed object); returns the ``failures``."""
        store = self.store
        failures: dict[str, dict[str, Any]] = {}
        to_store: list[SignatureRow] = []
        changed_users: set[str] = set()
        signed_users: set[str] = set()

        def fail(target: str, key_id: str, errcode: str, message: str) -> None:
            failures.setdefault(target, {})[key_id] = _failure(errcode, message)

        targets = [t for t in body if isinstance(t, str)]
        all_keys = await store.get_keys(list({user_id, *targets}))
        own = all_keys.get(user_id, {})
        for target, objects in body.items():
            if not isinstance(objects, dict):
                fail(target, "", Codes.INVALID_PARAM, "Expected an object of signed keys")
                continue
            target_keys = all_keys.get(target, {})
            target_master = _public_key(target_keys["master"]) if "master" in target_keys \
                else None
            device_keys: dict[str, dict[str, Any]] = {}
            if target == user_id:
                device_keys = await store.get_device_keys(
                    user_id, [k for k in objects if k != target_master])
            for key_id, obj in objects.items():
                if not isinstance(obj, dict) or not isinstance(obj.get("signatures"), dict):
                    fail(target, key_id, Codes.INVALID_PARAM, "Not a signed object")
                    continue
                sigs = obj["signatures"].get(user_id)
                if not isinstance(sigs, dict) or not sigs:
                    fail(target, key_id, INVALID_SIGNATURE,
                         "No signature by the uploader")
                    continue
                if target == user_id and key_id == target_master:
                    # the master key, signed by one of the user's devices
                    stored_obj = target_keys["master"]
                    rows = []
                    for sig_key_id in sigs:
                        device_id = sig_key_id.partition(":")[2] \
                            if sig_key_id.startswith("ed25519:") else ""
                        if device_id == target_master:
                            continue  # the master key's self-signature: already there
                        rows.append((sig_key_id, device_id))
                    dev = await store.get_device_keys(user_id, [d for _, d in rows if d])
                    ok = bool(rows)
                    for sig_key_id, device_id in rows:
                        dev_pub = dev.get(device_id, {}).get("keys", {}).get(sig_key_id)
                        if not isinstance(dev_pub, str) or _strip(obj) != _strip(stored_obj) \
                                or not _verify(obj, user_id, sig_key_id, dev_pub):
                            ok = False
                            break
                    if not ok:
                        fail(target, key_id, INVALID_SIGNATURE,
                             "Invalid signature of the master key by a device")
                        continue
                    to_store.extend((user_id, k, user_id, key_id, sigs[k]) for k, _ in rows)
                    changed_users.add(user_id)
                elif target == user_id:
                    # a device of the user's own, signed by their self-signing key
                    if "self_signing" not in own:
                        fail(target, key_id, INVALID_SIGNATURE, "No self-signing key")
                        continue
                    stored_dev = device_keys.get(key_id)
                    if stored_dev is None:
                        fail(target, key_id, Codes.NOT_FOUND, "Unknown device")
                        continue
                    ssk = _public_key(own["self_signing"])
                    sig_key_id = f"ed25519:{ssk}"
                    if _strip(obj) != _strip(stored_dev) \
                            or not _verify(obj, user_id, sig_key_id, ssk):
                        fail(target, key_id, INVALID_SIGNATURE,
                             "Invalid signature by the self-signing key")
                        continue
                    to_store.append((user_id, sig_key_id, user_id, key_id, sigs[sig_key_id]))
                    changed_users.add(user_id)
                else:
                    # another user's master key, signed by the user-signing key
                    if "user_signing" not in own:
                        fail(target, key_id, INVALID_SIGNATURE, "No user-signing key")
                        continue
                    if target_master is None or key_id != target_master:
                        fail(target, key_id, Codes.NOT_FOUND, "Unknown master key")
                        continue
                    usk = _public_key(own["user_signing"])
                    sig_key_id = f"ed25519:{usk}"
                    if _strip(obj) != _strip(target_keys["master"]) \
                            or not _verify(obj, user_id, sig_key_id, usk):
                        fail(target, key_id, INVALID_SIGNATURE,
                             "Invalid signature by the user-signing key")
                        continue
                    to_store.append((user_id, sig_key_id, target, key_id, sigs[sig_key_id]))
                    # only the signer sees it: the signed user "changed" in
                    # their own /sync and /keys/changes alone
                    signed_users.add(target)
        if to_store:
            def txn_fn(txn: Txn) -> int | None:
                CrossSigningStore.add_signatures_txn(txn, to_store)
                for changed in sorted(changed_users):
                    DeviceStore.mark_device_list_changed_txn(txn, changed)
                if not signed_users:
                    return None
                return DeviceStore.mark_private_device_list_change_txn(
                    txn, user_id, sorted(signed_users))
            private_pos = await self.db.run_interaction("upload_signatures", txn_fn)
            if private_pos is not None:
                self.notifier.notify_users([user_id], private_pos)
        return failures

    # -- remote users ----------------------------------------------------------------

    async def store_remote_keys(self, origin: str, user_id: str,
                                master_key: Any, self_signing_key: Any) -> bool:
        """Store a remote user's master and/or self-signing key as their server
        sent them (EDU or /user/keys/query); False (nothing stored) if they are
        malformed or the self-signing key is not signed by the master key."""
        if user_id.partition(":")[2] != origin:
            return False
        stored = await self.store.get_user_keys(user_id)
        body = {"master_key": master_key, "self_signing_key": self_signing_key}
        try:
            new = check_upload(user_id, body, stored)
        except MatrixError as e:
            logger.info("dropping cross-signing keys of %s from %s: %s", user_id, origin, e.msg)
            return False
        if not new:
            return False
        await self.db.run_interaction("store_remote_signing_keys", _store_keys_txn, user_id, new)
        return True

    async def on_signing_key_update(self, origin: str,
                                    content: dict[str, Any]) -> None:
        """An m.signing_key_update EDU: store the user's new keys if someone here
        shares a room with them (else any server could fill the table)."""
        user_id = content.get("user_id")
        if not isinstance(user_id, str) or user_id.partition(":")[2] != origin:
            logger.info("dropping m.signing_key_update from %s: bad user_id", origin)
            return
        mates = await self.rooms.get_room_mates(user_id)
        if not any(self.ctx.is_mine(u) for u in mates):
            logger.debug("ignoring signing key update of %s: shares no room with us", user_id)
            return
        await self.store_remote_keys(origin, user_id, content.get("master_key"),
                                     content.get("self_signing_key"))
