"""Admin use cases around users' reports, registration tokens and the
servers we federate with (Synapse's event reports, registration tokens and
federation destinations admin APIs)."""

from __future__ import annotations

import builtins
import re
import secrets
import string
from typing import TYPE_CHECKING, Any

from homeserver.admin.audit import log_admin_action
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.storage.registration_tokens import RegistrationToken

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.sender import FederationSender
    from homeserver.storage import Stores
    from homeserver.storage.reports import Report

# Synapse's rules for registration tokens
TOKEN_CHARS = string.ascii_letters + string.digits + "._~-"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,64}")


class EventReports:
    def __init__(self, ctx: "ServerContext", stores: "Stores") -> None:
        self.ctx = ctx
        self.stores = stores

    async def _room_names(self, room_ids: set[str]) -> dict[str, tuple[Any, Any]]:
        out: dict[str, tuple[Any, Any]] = {}
        for room_id in room_ids:
            found = await self.stores.admin_rooms.room_summaries(self.ctx.hostname, room_id)
            state = found[0].state if found else {}
            out[room_id] = (state.get("m.room.name", {}).get("name"),
                            state.get("m.room.canonical_alias", {}).get("alias"))
        return out

    def _fields(self, r: "Report", names: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
        name, alias = names.get(r.room_id or "", (None, None))
        return {"id": r.id, "received_ts": r.received_ts, "room_id": r.room_id,
                "name": name if isinstance(name, str) else None,
                "canonical_alias": alias if isinstance(alias, str) else None,
                "event_id": r.event_id, "user_id": r.reporter, "reason": r.reason,
                "score": r.score, "sender": r.target_user_id}

    async def list(self, start: int, limit: int, backwards: bool, user_id: str | None,
                   room_id: str | None) -> tuple[list[dict[str, Any]], int]:
        reports, total = await self.stores.reports.list_event_reports(
            start=start, limit=limit, backwards=backwards, user_id=user_id, room_id=room_id)
        names = await self._room_names({r.room_id for r in reports if r.room_id})
        return [self._fields(r, names) for r in reports], total

    async def _get(self, report_id: int) -> "Report":
        report = await self.stores.reports.get_report(report_id)
        if report is None or report.kind != "event":
            raise not_found("Event report not found")
        return report

    async def get(self, report_id: int) -> dict[str, Any]:
        report = await self._get(report_id)
        names = await self._room_names({report.room_id} if report.room_id else set())
        body = self._fields(report, names)
        event = await self.stores.events.get_event(report.event_id or "")
        event_json = None
        if event is not None:
            # the PDU as Synapse shows it: with when it arrived (we keep the
            # sender's timestamp, which is that for our own users' events)
            event_json = dict(event.json)
            unsigned = event_json.get("unsigned")
            event_json["unsigned"] = {**(unsigned if isinstance(unsigned, dict) else {}),
                                      "age_ts": event.origin_server_ts}
        body["event_json"] = event_json
        return body

    async def delete(self, admin: str, report_id: int) -> None:
        await self._get(report_id)
        await self.stores.reports.delete_report(report_id)
        log_admin_action(admin, "delete_event_report", str(report_id))


def token_fields(t: RegistrationToken) -> dict[str, Any]:
    return {"token": t.token, "uses_allowed": t.uses_allowed, "pending": t.pending,
            "completed": t.completed, "expiry_time": t.expiry_time}


class RegistrationTokens:
    def __init__(self, ctx: "ServerContext", stores: "Stores") -> None:
        self.ctx = ctx
        self.stores = stores

    async def list(self, valid: bool | None) -> list[dict[str, Any]]:
        tokens = await self.stores.registration_tokens.list_tokens(valid, self.ctx.now_ms())
        return [token_fields(t) for t in tokens]

    async def get(self, token: str) -> dict[str, Any]:
        found = await self.stores.registration_tokens.get_token(token)
        if found is None:
            raise not_found(f"No such registration token: {token}")
        return token_fields(found)

    async def create(self, admin: str, token: str | None, length: int,
                     uses_allowed: int | None, expiry_time: int | None) -> dict[str, Any]:
        self.check_expiry(expiry_time)
        store = self.stores.registration_tokens
        if token is None:
            for _ in range(10):
                token = "".join(secrets.choice(TOKEN_CHARS) for _ in range(length))
                if await store.get_token(token) is None:
                    break
        elif not TOKEN_PATTERN.fullmatch(token):
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "token must consist only of characters matched by the regex "
                              "[A-Za-z0-9._~-] and be at most 64 characters")
        assert token is not None
        if await store.get_token(token) is not None:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Token already exists: {token}")
        try:
            await store.create_token(token, uses_allowed, expiry_time)
        except Exception:
            if await store.get_token(token) is not None:  # a concurrent create won
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"Token already exists: {token}") from None
            raise
        log_admin_action(admin, "create_registration_token", token,
                         uses_allowed=uses_allowed, expiry_time=expiry_time)
        return await self.get(token)

    def check_expiry(self, expiry_time: int | None) -> None:
        if expiry_time is not None and expiry_time < self.ctx.now_ms():
            raise MatrixError(400, Codes.INVALID_PARAM, "expiry_time must not be in the past")

    async def update(self, admin: str, token: str,
                     changes: dict[str, int | None]) -> dict[str, Any]:
        self.check_expiry(changes.get("expiry_time"))
        if not await self.stores.registration_tokens.update_token(token, changes):
            raise not_found(f"No such registration token: {token}")
        log_admin_action(admin, "update_registration_token", token, **changes)
        return await self.get(token)

    async def delete(self, admin: str, token: str) -> None:
        if not await self.stores.registration_tokens.delete_token(token):
            raise not_found(f"No such registration token: {token}")
        log_admin_action(admin, "delete_registration_token", token)


# order_by values of the destination list
DESTINATION_ORDERS = ("destination", "retry_last_ts", "retry_interval", "failure_ts",
                      "last_successful_stream_ordering")


class Destinations:
    """The servers we send to, with the federation sender's backoff."""

    def __init__(self, stores: "Stores", sender: "FederationSender") -> None:
        self.stores = stores
        self.sender = sender

    async def _all(self) -> dict[str, dict[str, Any]]:
        timings = await self.stores.federation_queue.get_all_retry_timings()
        timings.update(self.sender.known_destinations())
        return {d: {"destination": d, "retry_last_ts": last_ts, "retry_interval": interval,
                    "failure_ts": last_ts if interval > 0 else None,
                    "last_successful_stream_ordering": None}
                for d, (last_ts, interval) in timings.items()}

    async def list(self, start: int, limit: int, order_by: str, backwards: bool,
                   search: str | None) -> tuple[list[dict[str, Any]], int]:
        rows = sorted((await self._all()).values(), key=lambda r: r["destination"])
        if search:
            rows = [r for r in rows if search.lower() in r["destination"].lower()]
        present = [r for r in rows if r[order_by] is not None]
        present.sort(key=lambda r: r[order_by], reverse=backwards)
        absent = [r for r in rows if r[order_by] is None]
        rows = present + absent if not backwards else absent + present
        return rows[start:start + limit], len(rows)

    async def rooms(self, destination: str,
                    local_host: str) -> "builtins.list[dict[str, Any]]":
        """The rooms we share with ``destination`` (404 for a server we never
        sent to)."""
        await self.get(destination)
        return [{"room_id": room_id, "stream_ordering": pos} for room_id, pos in
                await self.stores.admin_rooms.rooms_shared_with_server(destination, local_host)]

    async def get(self, destination: str) -> dict[str, Any]:
        found = (await self._all()).get(destination)
        if found is None:
            raise not_found("Unknown destination")
        return found

    async def reset_connection(self, admin: str, destination: str) -> None:
        found = await self.get(destination)
        if not found["retry_last_ts"] and not found["retry_interval"]:
            raise MatrixError(400, Codes.UNKNOWN,
                              "The retry timing does not need to be reset for this "
                              "destination.")
        await self.sender.reset_backoff(destination)
        log_admin_action(admin, "reset_destination_connection", destination)
