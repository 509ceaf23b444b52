"""Send-to-device messages: per-device inboxes and the federation outbox.

Tables (migration 0010):

- ``device_inbox``: one row per message and local recipient device, with the
  global stream position of the request that sent it (one position per
  request; ``id`` orders the messages within it). /sync reads a device's
  messages in (since, until] (``get_messages``) and deletes them once the
  client syncs with a token past them (``delete_messages_upto``): that is
  the delivery acknowledgement of the spec.
- ``device_federation_outbox``: for recipients on other servers, one
  ``m.direct_to_device`` EDU content per destination and request
  (``{"sender", "type", "message_id", "messages": {user: {device: content}}}``),
  for the federation sender (a later issue) to deliver and delete.
- ``to_device_txn_ids``: the (user, scope, txn ID) of every request stored,
  so a retried request stores nothing again. ``prune_txn_ids`` drops old ones.

Everything of one request is written in one transaction (``add_messages_txn``):
the transaction ID, the expansion of ``"*"`` to the recipient's devices, the
inbox rows and the outbox rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders, select_in_txn
from homeserver.storage.streams import TO_DEVICE, next_stream_id_txn

ALL_DEVICES = "*"

_CHUNK = 500



class ToDeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing -------------------------------------------------------------

    @staticmethod
    def add_messages_txn(txn: Txn, sender: str, event_type: str,
                         local: Mapping[str, Mapping[str, dict[str, Any]]],
                         remote: Mapping[str, dict[str, Any]],
                         txn_key: tuple[str, str, str] | None,
                         now_ms: int) -> tuple[int, list[str]] | None:
        """Store one /sendToDevice request.

        ``local``: local user -> device ID or ``"*"`` -> content; ``"*"`` means
        every device of the user not addressed by name, and devices that do
        not exist are skipped. ``remote``: destination server -> EDU content.
        ``txn_key``: (user, scope, txn ID) of the request.

        Returns (stream position, local users given a message), or None when
        the transaction ID was seen before (nothing stored). The position is
        0 when nothing at all was stored.
        """
        if txn_key is not None:
            txn.execute(
                "INSERT INTO to_device_txn_ids (user_id, scope, txn_id, created_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, scope, txn_id) DO NOTHING",
                (*txn_key, now_ms))
            if txn.rowcount == 0:
                return None
        rows: list[tuple[str, str, str]] = []
        users = list(local)
        devices: dict[str, list[str]] = {}
        for user_id, device_id in select_in_txn(
                txn, "SELECT user_id, device_id FROM devices WHERE user_id IN ({})"
                " ORDER BY user_id, device_id", users, chunk=_CHUNK):
            devices.setdefault(user_id, []).append(device_id)
        for user_id, by_device in local.items():
            wildcard = by_device.get(ALL_DEVICES)
            for device_id in devices.get(user_id, []):
                content = by_device.get(device_id, wildcard)
                if content is None:
                    continue
                message = {"type": event_type, "sender": sender, "content": content}
                rows.append((user_id, device_id, json.dumps(message)))
        if not rows and not remote:
            return 0, []
        stream_id = next_stream_id_txn(txn)
        for user_id, device_id in dict.fromkeys((u, d) for u, d, _ in rows):
            txn.add_scope(stream_id, TO_DEVICE + device_id, user_id)
        txn.execute_many(
            "INSERT INTO device_inbox (user_id, device_id, stream_id, message)"
            " VALUES (?, ?, ?, ?)",
            [(user_id, device_id, stream_id, message) for user_id, device_id, message in rows])
        txn.execute_many(
            "INSERT INTO device_federation_outbox (destination, stream_id, message, created_ts)"
            " VALUES (?, ?, ?, ?)",
            [(destination, stream_id, json.dumps(edu), now_ms)
             for destination, edu in remote.items()])
        return stream_id, list(dict.fromkeys(user_id for user_id, _, _ in rows))

    async def add_messages(self, sender: str, event_type: str,
                           local: Mapping[str, Mapping[str, dict[str, Any]]],
                           remote: Mapping[str, dict[str, Any]],
                           txn_key: tuple[str, str, str] | None,
                           now_ms: int) -> tuple[int, list[str]] | None:
        """See ``add_messages_txn``."""
        return await self.db.run_interaction(
            "add_to_device_messages", self.add_messages_txn, sender, event_type, local,
            remote, txn_key, now_ms)

    async def prune_txn_ids(self, older_than_ms: int) -> None:
        """Forget the transaction IDs of requests stored before ``older_than_ms``."""
        await self.db.execute(
            "prune_to_device_txn_ids",
            "DELETE FROM to_device_txn_ids WHERE created_ts < ?", (older_than_ms,))

    # -- the inbox, for /sync ----------------------------------------------------

    @staticmethod
    def get_messages_txn(txn: Txn, user_id: str, device_id: str, since: int, until: int,
                         limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """The device's messages at positions in (since, until], oldest first.

        At most ``limit`` of them, except that the messages of one position are
        never split (all of the last position are returned, even past the
        limit). The int is ``until`` when every message of the range was
        returned, else the position of the last message returned: the caller
        stops there and sends the rest next time, without gap or duplicate.
        """
        if until <= since:
            return [], until
        if limit <= 0:
            return [], since
        rows = txn.select_all(
            "SELECT id, stream_id, message FROM device_inbox"
            " WHERE user_id = ? AND device_id = ? AND stream_id > ? AND stream_id <= ?"
            " ORDER BY stream_id, id LIMIT ?",
            (user_id, device_id, since, until, limit + 1))
        upto = until
        if len(rows) > limit:
            last_id, last_pos, _ = rows[limit - 1]
            kept = rows[:limit]
            if rows[limit][1] == last_pos:
                kept.extend(txn.select_all(
                    "SELECT id, stream_id, message FROM device_inbox"
                    " WHERE user_id = ? AND device_id = ? AND stream_id = ? AND id > ?"
                    " ORDER BY id", (user_id, device_id, last_pos, last_id)))
            rows, upto = kept, int(last_pos)
        return [json.loads(message) for _, _, message in rows], upto

    async def get_messages(self, user_id: str, device_id: str, since: int, until: int,
                           limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """``get_messages_txn`` in a transaction of its own."""
        return await self.db.run_interaction("get_to_device_messages", self.get_messages_txn,
                                             user_id, device_id, since, until, limit)

    async def has_messages(self, user_id: str, device_id: str, since: int,
                           until: int) -> bool:
        """Whether the device has messages at positions in (since, until]."""
        if until <= since:
            return False
        rows = await self.db.execute(
            "has_to_device_messages",
            "SELECT 1 FROM device_inbox WHERE user_id = ? AND device_id = ?"
            " AND stream_id > ? AND stream_id <= ? LIMIT 1",
            (user_id, device_id, since, until))
        return bool(rows)

    @staticmethod
    def delete_messages_upto_txn(txn: Txn, user_id: str, device_id: str, upto: int) -> None:
        """Drop the device's messages at positions <= ``upto`` (delivered)."""
        txn.execute(
            "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
            (user_id, device_id, upto))

    async def delete_messages_upto(self, user_id: str, device_id: str, upto: int) -> None:
        await self.db.run_interaction("delete_to_device_messages",
                                      self.delete_messages_upto_txn, user_id, device_id, upto)

    # -- devices going away --------------------------------------------------------

    async def get_devices_with_messages(self) -> set[tuple[str, str]]:
        """(user, device) of every local device with messages in its inbox."""
        rows = await self.db.execute(
            "get_devices_with_messages", "SELECT DISTINCT user_id, device_id FROM device_inbox")
        return {(str(u), str(d)) for u, d in rows}

    @staticmethod
    def delete_device_inbox_txn(txn: Txn, user_id: str, device_ids: list[str]) -> None:
        """Drop the inboxes of deleted devices."""
        for chunk in chunks(device_ids, _CHUNK):
            txn.execute(
                "DELETE FROM device_inbox"
                f" WHERE user_id = ? AND device_id IN ({placeholders(len(chunk))})",
                (user_id, *chunk))

    @staticmethod
    def delete_all_device_inboxes_txn(txn: Txn, user_id: str,
                                      except_device_id: str | None = None) -> None:
        """Drop the inboxes of every device of a user but ``except_device_id``."""
        if except_device_id is None:
            txn.execute("DELETE FROM device_inbox WHERE user_id = ?", (user_id,))
        else:
            txn.execute("DELETE FROM device_inbox WHERE user_id = ? AND device_id <> ?",
                        (user_id, except_device_id))

    async def delete_device_inbox(self, user_id: str, device_ids: list[str]) -> None:
        await self.db.run_interaction("delete_device_inbox", self.delete_device_inbox_txn,
                                      user_id, device_ids)

    # -- the federation outbox -------------------------------------------------------

    async def get_outbox(self, destination: str,
                         limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """The oldest queued EDU contents for ``destination``: (row id, content)."""
        rows = await self.db.execute(
            "get_to_device_outbox",
            "SELECT id, message FROM device_federation_outbox WHERE destination = ?"
            " ORDER BY stream_id, id LIMIT ?", (destination, limit))
        return [(int(row_id), json.loads(message)) for row_id, message in rows]

    async def delete_outbox(self, row_ids: list[int]) -> None:
        """Drop queued contents by row id (sent)."""
        def txn_fn(txn: Txn) -> None:
            for chunk in chunks(row_ids, _CHUNK):
                txn.execute("DELETE FROM device_federation_outbox"
                            f" WHERE id IN ({placeholders(len(chunk))})", chunk)
        await self.db.run_interaction("delete_to_device_outbox", txn_fn)
