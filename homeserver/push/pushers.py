"""The pusher pool and the HTTP pusher: notifications out to push gateways.

How a notification reaches a phone
----------------------------------
1. When an event is persisted, the push rule evaluator writes an
   ``event_push_actions`` row per user it notifies, in the event's own
   transaction, at the event's stream position (storage/event_hooks.py).
2. Our write hub subscription (database thread, storage/hub.py) notes the
   highest position that carried timeline events; the hub's ``on_persisted``
   hook (reactor) then tells us when ``persisted_upto`` has passed it: every action at or below
   that position is committed, none can still appear there. Nothing polls.
3. One pool loop at a time asks which users with a pusher have notifying
   actions in (the pool's position, persisted_upto] (one query) and wakes
   those users' pushers. The pool's position lives in memory only: at start
   every pusher is woken once, and each catches up from its own persisted
   ``last_stream_ordering``.
4. Each ``HttpPusher`` runs at most one loop: it reads the user's unread
   notifying actions past its ``last_stream_ordering`` (oldest first,
   skipping what a read receipt already covers), POSTs each to
   ``data.url`` as content/push-gateway-api.md describes, and persists its
   new position after each success. So a restart resumes after the last
   notification the gateway took; the gateway deduplicates by event_id the
   one a crash may repeat.

Formats: ``event_id_only`` sends event_id, room_id, counts, devices (and
prio); otherwise everything the spec lists (type, sender, display name,
room name and alias, user_is_target, content), plus what Synapse adds and
clients' gateways read: ``id`` (the event ID again, Synapse's deprecated
name), ``membership`` of a member event, and ``room_name`` falling back to
the canonical alias when the room has no name (Synapse's "human readable
name"). ``devices[].data`` is the pusher's data minus ``url``. ``prio`` is
"high" for highlights, sounds and encrypted events (the gateway cannot see
inside those), "low" otherwise, as Synapse. ``tweaks`` are the matched rule's ``set_tweak`` actions.
``counts.unread`` is the user's unread notifications in all joined rooms;
zero counts are left out, as the spec says.

Badge updates: when a local user's read receipt changes their unread count,
each of their pushers posts a count-only notification (no event_id, which
the spec allows for "notifications that only contain updated badge counts")
with the new count, as Synapse does, unless that count is the one it last
sent. Here ``unread`` is sent even when zero: a gateway (Sygnal) sets the
phone's badge only from a number it is given, so an omitted zero would
leave a stale badge. A failed badge update is logged and not retried; the
next one carries the then-current count.

Failures: a connection error, timeout or non-2xx answer retries the same
notification after ``initial_backoff_s``, doubling up to ``max_backoff_s``
(the spec's "reasonable amount of time using exponential backoff"). Once a
notification has failed for ``give_up_after_ms`` (a day) it is skipped and
the next one goes. A pushkey the gateway lists in ``rejected`` is deleted:
the spec says to stop sending to it. A pusher whose row is gone (the client
deleted it, or its device was deleted) stops at its next notification: the
row is read again before each POST, which also picks up a changed URL.

Push gateways are the user's own choice of server, so a pusher could aim
this server at its own admin ports or the cloud metadata service. As in
Synapse, ``pushers/set`` checks only the URL's form (http(s), the path
``/_matrix/push/v1/notify``: api/client/pushers.py), and every POST goes
through the outbound guard (``http/outbound.py``) with ``ip_range_blacklist``
minus ``ip_range_whitelist``, the ranges federation uses: a gateway on a
blocked address is never contacted, each attempt fails like an unreachable
gateway (backoff, then give up). A gateway on a private network needs its
range in ``ip_range_whitelist``. HTTPS gateways must present a certificate
the system's CAs trust (unless the test-only
``use_insecure_ssl_client_just_for_testing_do_not_use`` is on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.web.http_headers import Headers

from homeserver.http.outbound import IPFilter, guarded_agent, https_policy
from homeserver.storage.pushers import PushAction, Pusher, RoomContext
from homeserver.worker_loop import WorkerLoop

if TYPE_CHECKING:
    from twisted.web.client import Agent, HTTPConnectionPool

    from homeserver.context import ServerContext
    from homeserver.storage import Stores
    from homeserver.storage.hub import Committed
    from homeserver.storage.streams import StreamTracker

logger = logging.getLogger(__name__)

# how many notifications a pusher reads per query
BATCH = 20

PusherKey = tuple[str, str, str]  # (user_id, app_id, pushkey)


class PusherPool:
    """Every pusher of this server, woken as notifying events commit."""

    def __init__(self, ctx: "ServerContext", stores: "Stores", tracker: "StreamTracker") -> None:
        self.ctx = ctx
        self.stores = stores
        # the global stream's "persisted up to": how far actions are final
        self.tracker = tracker
        # backoff and timeouts: attributes so tests can shorten them
        self.initial_backoff_s = 1.0
        self.max_backoff_s = 3600.0
        self.give_up_after_ms = 24 * 3600 * 1000
        self.connect_timeout_s = 15.0
        self.request_timeout_s = 30.0
        self._pushers: dict[PusherKey, HttpPusher] = {}
        # every action at or below here has woken its users' pushers
        self._position = 0
        # the highest committed position that carried timeline events
        # (written on database threads: a plain int store)
        self._events_upto = 0
        self._loop: defer.Deferred[Any] | None = None
        self._running = False
        self._http_pool: HTTPConnectionPool | None = None
        self._agent: Agent | None = None
        # Several processes (pusher_instances, replication/roles.py): the
        # users whose pushers run here (None: all), and main's way of
        # telling the pusher processes that a user's pushers changed
        self.owns: Callable[[str], bool] | None = None
        self.on_changed: Callable[[str], None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Load every pusher and let each catch up from its own position."""
        self._running = True
        self._position = self.tracker.persisted_upto
        await self.reload()

    async def reload(self) -> None:
        """Load every pusher of ours and wake each: it catches up from its
        own persisted position (at start; on a pusher process, after it
        caught up from the database)."""
        for pusher in await self.stores.pushers.get_all_pushers():
            if pusher.kind == "http" and pusher.key not in self._pushers \
                    and (self.owns is None or self.owns(pusher.user_id)):
                self._pushers[pusher.key] = HttpPusher(self, pusher)
        for p in self._pushers.values():
            p.wake()

    async def reload_user(self, user_id: str) -> None:
        """Another process changed ``user_id``'s pushers: read them again."""
        if not self._running or (self.owns is not None and not self.owns(user_id)):
            return
        current = {p.key: p for p in await self.stores.pushers.get_pushers_for_user(user_id)
                   if p.kind == "http"}
        for key in [k for k in self._pushers if k[0] == user_id and k not in current]:
            self._drop(key)
        for key, pusher in current.items():
            existing = self._pushers.get(key)
            if existing is not None:
                existing.pusher = pusher
                existing.catch_up_to(pusher.last_stream_ordering)
            else:
                new = self._pushers[key] = HttpPusher(self, pusher)
                new.wake()

    async def stop(self) -> None:
        """Stop every pusher: cancel timers and requests in flight (what
        they carried is sent again after a restart)."""
        self._running = False
        loops = []
        if self._loop is not None:
            loops.append(self._loop)
        for p in self._pushers.values():
            d = p.stop()
            if d is not None:
                loops.append(d)
        if loops:
            await defer.DeferredList(loops, consumeErrors=True)
        if self._http_pool is not None:
            await self._http_pool.closeCachedConnections()

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            from twisted.web.client import HTTPConnectionPool  # with the first push

            self._http_pool = HTTPConnectionPool(self.ctx.reactor)
            self._http_pool.maxPersistentPerHost = 4
            self._agent = guarded_agent(self.ctx.reactor, IPFilter.from_config(self.ctx.config),
                                        connect_timeout_s=self.connect_timeout_s,
                                        pool=self._http_pool,
                                        context_factory=https_policy(self.ctx.config))
        return self._agent

    # -- pushers set and removed by the client API -----------------------------

    async def on_pusher_set(self, user_id: str, app_id: str, pushkey: str,
                            removed: list[PusherKey]) -> None:
        """A pusher was created or updated (and ``removed`` went with it)."""
        if self.on_changed is not None:
            self.on_changed(user_id)
        if self.owns is not None and not self.owns(user_id):
            return
        for key in removed:
            self._drop(key)
        pusher = await self.stores.pushers.get_pusher(user_id, app_id, pushkey)
        if pusher is None or pusher.kind != "http":
            return
        existing = self._pushers.get(pusher.key)
        if existing is not None:
            existing.pusher = pusher
            # a row made anew (the old one went with its device) starts now
            existing.catch_up_to(pusher.last_stream_ordering)
        else:
            self._pushers[pusher.key] = HttpPusher(self, pusher)

    def on_pusher_removed(self, key: PusherKey) -> None:
        if self.on_changed is not None:
            self.on_changed(key[0])
        self._drop(key)

    def forget(self, pusher: "HttpPusher") -> None:
        """A pusher found its row gone and stops by itself."""
        if self._pushers.get(pusher.pusher.key) is pusher:
            del self._pushers[pusher.pusher.key]

    def _drop(self, key: PusherKey) -> None:
        p = self._pushers.pop(key, None)
        if p is not None:
            p.stop()

    def pushers_of(self, user_id: str) -> list["HttpPusher"]:
        return [p for key, p in self._pushers.items() if key[0] == user_id]

    def on_receipt(self, user_id: str) -> None:
        """A local user's read receipt moved: their unread count may have dropped."""
        if not self._running:
            return
        for p in self.pushers_of(user_id):
            p.update_badge()

    # -- following new notifications -----------------------------------------

    def on_commit(self, committed: "Committed") -> None:
        """Write hub, database thread: only note the position; ``on_persisted``
        (reactor) acts once nothing below it is still in flight."""
        if committed.events:
            top = max(committed.positions)
            if top > self._events_upto:
                self._events_upto = top

    def on_persisted(self, upto: int) -> None:
        """Write hub, reactor: the stream is persisted up to ``upto``."""
        if self._running and self._pushers and self._events_upto > self._position \
                and self._loop is None:
            self._loop = self.ctx.run_in_background(self._run())

    async def _run(self) -> None:
        try:
            while self._running and self._pushers:
                upto = self.tracker.persisted_upto
                if upto <= self._position or self._events_upto <= self._position:
                    return
                users = await self.stores.pushers.get_users_with_pushers_and_actions(
                    self._position, upto)
                self._position = upto
                for user_id in users:
                    for p in self.pushers_of(user_id):
                        p.wake()
        except Exception:
            logger.exception("pusher pool: could not read new notifications")
        finally:
            self._loop = None


class HttpPusher(WorkerLoop):
    """One pusher: its notifications, in order, to its push gateway."""

    # an unexpected error ends the round; the next notification tries again
    backoff_on_error = False

    def __init__(self, pool: PusherPool, pusher: Pusher) -> None:
        super().__init__(pool.ctx)
        self.pool = pool
        self.stores = pool.stores
        self.pusher = pusher
        self._position = pusher.last_stream_ordering
        self._failing_since = pusher.failing_since_ts
        # the unread count the gateway last heard (None: not yet, this run)
        self._badge_sent: int | None = None
        self._badge_loop: defer.Deferred[Any] | None = None
        self._badge_again = False

    def update_badge(self) -> None:
        """Send the current unread count if it is not the one last sent; one
        badge update at a time (a later call makes it look again)."""
        if self._stopped:
            return
        if self._badge_loop is not None:
            self._badge_again = True
            return
        self._badge_loop = self.ctx.run_in_background(self._run_badge())

    async def _run_badge(self) -> None:
        try:
            again = True
            while again and not self._stopped:
                self._badge_again = False
                await self._send_badge()
                again = self._badge_again
        except defer.CancelledError:
            pass
        except Exception:
            logger.exception("pusher %s/%s: badge update failed", self.pusher.user_id,
                             self.pusher.app_id)
        finally:
            self._badge_loop = None

    async def _send_badge(self) -> None:
        p = self.pusher
        unread = await self.stores.pushers.get_unread_count(p.user_id)
        if unread == self._badge_sent:
            return
        data = {k: v for k, v in p.data.items() if k != "url"}
        body = {"notification": {
            "counts": {"unread": unread}, "prio": "low",
            "devices": [{"app_id": p.app_id, "pushkey": p.pushkey,
                         "pushkey_ts": p.pushkey_ts // 1000, "data": data}]}}
        try:
            resp = await self._post(str(p.data.get("url", "")), body)
            await resp.text()
        except defer.CancelledError:
            if self._stopped:
                raise
            logger.info("pusher: badge update to push gateway timed out")
            return
        except Exception as e:
            logger.info("pusher: badge update to push gateway failed: %s", type(e).__name__)
            return
        if 200 <= resp.code < 300:
            self._badge_sent = unread
        else:
            logger.info("pusher: push gateway answered %d to a badge update", resp.code)

    def catch_up_to(self, position: int) -> None:
        self._position = max(self._position, position)

    def describe(self) -> str:
        return f"pusher {self.pusher.user_id}/{self.pusher.app_id}"

    def backoff_limits(self) -> tuple[float, float]:
        return (self.pool.initial_backoff_s, self.pool.max_backoff_s)

    def stop(self) -> "defer.Deferred[Any] | None":
        if self._badge_loop is not None:
            self._badge_loop.cancel()
        return super().stop()

    async def process(self) -> bool:
        """Send what is owed. True: a full batch went, look for more."""
        store = self.stores.pushers
        upto = self.pool.tracker.persisted_upto
        actions = await store.get_push_actions(self.pusher.user_id, self._position, upto, BATCH)
        for action in actions:
            if self._stopped:
                return False
            # read again: deleted (by the client, or with its device) means
            # stop; updated (a new URL) means use the new one
            current = await store.get_pusher(*self.pusher.key)
            if current is None:
                self._stopped = True
                self.pool.forget(self)
                return False
            self.pusher = current
            outcome = await self._send(action)
            if outcome == "rejected":
                logger.info("push gateway rejected pushkey of %s/%s: pusher removed",
                            self.pusher.user_id, self.pusher.app_id)
                await store.delete_pusher(*self.pusher.key)
                self._stopped = True
                self.pool.forget(self)
                return False
            now = self.ctx.now_ms()
            if outcome == "failed":
                if self._failing_since is None:
                    self._failing_since = now
                if now - self._failing_since < self.pool.give_up_after_ms:
                    await store.set_progress(*self.pusher.key, self._position,
                                             self._failing_since)
                    wait_s = self.back_off()
                    logger.info("pusher %s/%s: push failed, retrying in %.1fs",
                                self.pusher.user_id, self.pusher.app_id, wait_s)
                    return False
                logger.warning("pusher %s/%s: giving up on %s after failing since %d",
                               self.pusher.user_id, self.pusher.app_id, action.event_id,
                               self._failing_since)
            self._failing_since = None
            self.succeeded()
            self._position = action.stream_ordering
            await store.set_progress(*self.pusher.key, self._position, None)
        if len(actions) < BATCH:
            # nothing owed up to ``upto``: skip past it (actions hidden by a
            # receipt need not be read again)
            if upto > self._position:
                self._position = upto
                await store.set_progress(*self.pusher.key, self._position, None)
            return False
        return True

    async def _send(self, action: PushAction) -> str:
        """POST one notification: "ok", "rejected" or "failed"."""
        try:
            body = await self._notification(action)
        except Exception:
            logger.exception("pusher: could not build the notification for %s",
                             action.event_id)
            return "ok"  # nothing to send (the event is gone): move on
        url = str(self.pusher.data.get("url", ""))
        try:
            resp = await self._post(url, body)
            content = await resp.json() if 200 <= resp.code < 300 else None
            if content is None:
                await resp.text()
        except defer.CancelledError:
            if self._stopped:
                raise
            return "failed"  # the request timed out
        except Exception as e:
            logger.info("pusher: POST to push gateway failed: %s", type(e).__name__)
            return "failed"
        if not 200 <= resp.code < 300:
            logger.info("pusher: push gateway answered %d", resp.code)
            return "failed"
        rejected = content.get("rejected") if isinstance(content, dict) else None
        if isinstance(rejected, list) and self.pusher.pushkey in rejected:
            return "rejected"
        self._badge_sent = body["notification"]["counts"].get("unread", 0)
        return "ok"

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON. The Content-Type is plain ``application/json``
        (treq's ``json=`` adds ``; charset=UTF-8``, which some gateways, and
        SyTest's, do not accept; JSON is UTF-8 by definition)."""
        import treq

        return await treq.post(url, data=json.dumps(body).encode("utf-8"),
                               headers=Headers({b"Content-Type": [b"application/json"]}),
                               agent=self.pool.agent,  # type: ignore[arg-type]
                               timeout=self.pool.request_timeout_s,
                               reactor=self.ctx.reactor)

    async def _notification(self, action: PushAction) -> dict[str, Any]:
        """The /notify body (content/push-gateway-api.md)."""
        p = self.pusher
        event = await self.stores.events.get_event(action.event_id)
        if event is None:
            raise LookupError(action.event_id)
        data = {k: v for k, v in p.data.items() if k != "url"}
        device = {"app_id": p.app_id, "pushkey": p.pushkey,
                  "pushkey_ts": p.pushkey_ts // 1000, "data": data, "tweaks": action.tweaks}
        unread = await self.stores.pushers.get_unread_count(p.user_id)
        counts = {"unread": unread} if unread else {}
        prio = "high" if (action.highlight or "sound" in action.tweaks
                          or event.type == "m.room.encrypted") else "low"
        notification: dict[str, Any] = {
            "event_id": event.event_id, "room_id": event.room_id, "counts": counts,
            "prio": prio, "devices": [device]}
        if data.get("format") == "event_id_only":
            return {"notification": notification}
        ctx = await self.stores.pushers.get_room_context(event.room_id, event.sender)
        if ctx == RoomContext(None, None, None) and event.type == "m.room.member":
            # an invite to a room we do not hold: what its stripped state says
            ctx = _stripped_context(
                await self.stores.federation_events.get_remote_invite_state(
                    event.event_id) or [], event.sender)
        notification.update({"id": event.event_id, "type": event.type,
                             "sender": event.sender})
        if ctx.sender_display_name is not None:
            notification["sender_display_name"] = ctx.sender_display_name
        room_name = ctx.room_name or ctx.room_alias
        if room_name:
            notification["room_name"] = room_name
        if ctx.room_alias is not None:
            notification["room_alias"] = ctx.room_alias
        if event.type == "m.room.member" and event.state_key is not None:
            membership = event.content.get("membership")
            if isinstance(membership, str):
                notification["membership"] = membership
            notification["user_is_target"] = event.state_key == p.user_id
        if event.content:
            notification["content"] = event.content
        return {"notification": notification}


def _stripped_context(stripped: list[Any], sender: str) -> RoomContext:
    """Room name, alias and the sender's display name from an invite's
    stripped state events."""
    found: dict[str, str] = {}
    wanted = {("m.room.name", ""): "name", ("m.room.canonical_alias", ""): "alias",
              ("m.room.member", sender): "displayname"}
    for ev in stripped:
        if not isinstance(ev, dict) or not isinstance(ev.get("content"), dict):
            continue
        field = wanted.get((ev.get("type"), ev.get("state_key")))  # type: ignore[arg-type]
        value = ev["content"].get(field) if field else None
        if field and isinstance(value, str) and value:
            found[field] = value
    return RoomContext(found.get("name"), found.get("alias"), found.get("displayname"))
