"""Devices: one per login session, with a display name and last-seen details."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Txn
from homeserver.storage.pushers import PusherStore
from homeserver.storage.streams import ONLY_USER, next_stream_id_txn
from homeserver.storage.to_device import ToDeviceStore
from homeserver.storage.tokens import TokenStore


@dataclass(frozen=True)
class Device:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None

    def to_client(self) -> dict[str, object]:
        return {"device_id": self.device_id, "display_name": self.display_name,
                "last_seen_ip": self.last_seen_ip, "last_seen_ts": self.last_seen_ts}


_COLUMNS = "user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent"


class DeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def ensure_device_txn(txn: Txn, user_id: str, device_id: str,
                          display_name: str | None) -> None:
        """Create the device, or keep it (and its name) if it already exists."""
        exists = txn.select_one("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?",
                                (user_id, device_id))
        if exists is None:
            txn.execute("INSERT INTO devices (user_id, device_id, display_name) VALUES (?, ?, ?)",
                        (user_id, device_id, display_name))
            DeviceStore.mark_device_list_changed_txn(txn, user_id)
        elif display_name is not None:
            txn.execute("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                        (display_name, user_id, device_id))
            DeviceStore.mark_device_list_changed_txn(txn, user_id)

    @staticmethod
    def mark_device_list_changed_txn(txn: Txn, user_id: str) -> int:
        """Record that ``user_id``'s device list changed (for /sync's
        ``device_lists``); returns the change's stream position."""
        pos = next_stream_id_txn(txn)
        txn.execute("INSERT INTO device_list_changes (user_id, stream_id) VALUES (?, ?)"
                    " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
                    (user_id, pos))
        txn.note_device_list_change(user_id, pos)
        return pos

    @staticmethod
    def mark_private_device_list_change_txn(txn: Txn, viewer: str,
                                            user_ids: list[str]) -> int:
        """Record that ``user_ids`` changed as far as ``viewer`` alone is
        concerned (their own user-signing key; their signature of another
        user's master key), as Synapse's user signature stream does: only
        ``viewer``'s /sync and /keys/changes list them. The caller wakes
        ``viewer``; returns the change's stream position."""
        pos = next_stream_id_txn(txn)
        for user_id in user_ids:
            txn.execute("INSERT INTO device_list_private_changes (viewer, user_id, stream_id)"
                        " VALUES (?, ?, ?) ON CONFLICT (viewer, user_id)"
                        " DO UPDATE SET stream_id = excluded.stream_id", (viewer, user_id, pos))
        # only the viewer's sync must leave the fast path for it
        txn.add_scope(pos, ONLY_USER, viewer)
        return pos

    @staticmethod
    def private_device_list_changes_txn(txn: Txn, viewer: str, since: int,
                                        until: int) -> set[str]:
        """The users changed for ``viewer`` alone in (since, until]."""
        return {r[0] for r in txn.select_all(
            "SELECT user_id FROM device_list_private_changes WHERE viewer = ?"
            " AND stream_id > ? AND stream_id <= ?", (viewer, since, until))}

    async def get_devices(self, user_id: str) -> list[Device]:
        rows = await self.db.execute(
            "get_devices", f"SELECT {_COLUMNS} FROM devices WHERE user_id = ? ORDER BY device_id",
            (user_id,))
        return [Device(*r) for r in rows]

    async def get_device(self, user_id: str, device_id: str) -> Device | None:
        rows = await self.db.execute(
            "get_device", f"SELECT {_COLUMNS} FROM devices WHERE user_id = ? AND device_id = ?",
            (user_id, device_id))
        return Device(*rows[0]) if rows else None

    async def set_display_name(self, user_id: str, device_id: str, name: str | None) -> bool:
        """Rename a device; False when it does not exist."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                        (name, user_id, device_id))
            if txn.rowcount > 0:
                DeviceStore.mark_device_list_changed_txn(txn, user_id)
                return True
            return False
        return await self.db.run_interaction("set_device_display_name", txn_fn)

    @staticmethod
    def delete_devices_txn(txn: Txn, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and every token that belongs to them."""
        for device_id in device_ids:
            TokenStore.delete_tokens_for_device_txn(txn, user_id, device_id)
            txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                        (user_id, device_id))
        if device_ids:
            PusherStore.delete_pushers_for_devices_txn(txn, user_id, device_ids)
            ToDeviceStore.delete_device_inbox_txn(txn, user_id, device_ids)
            DeviceStore.mark_device_list_changed_txn(txn, user_id)

    @staticmethod
    def delete_all_devices_txn(txn: Txn, user_id: str,
                               except_device_id: str | None = None) -> None:
        """Delete every device of a user but ``except_device_id``, with their tokens."""
        TokenStore.delete_all_tokens_txn(txn, user_id, except_device_id)
        if except_device_id is None:
            txn.execute("DELETE FROM devices WHERE user_id = ?", (user_id,))
        else:
            txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id <> ?",
                        (user_id, except_device_id))
        PusherStore.delete_pushers_for_user_txn(txn, user_id, except_device_id)
        ToDeviceStore.delete_all_device_inboxes_txn(txn, user_id, except_device_id)
        DeviceStore.mark_device_list_changed_txn(txn, user_id)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        await self.db.run_interaction("delete_devices", self.delete_devices_txn, user_id,
                                      device_ids)

    async def update_last_seen(self, user_id: str, device_id: str, ts: int, ip: str,
                               user_agent: str) -> None:
        await self.db.execute(
            "update_last_seen",
            "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?"
            " WHERE user_id = ? AND device_id = ?", (ts, ip, user_agent, user_id, device_id))
