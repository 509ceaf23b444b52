"""The HomeServer: builds the object graph from a Config and starts the listeners."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from signedjson.key import generate_signing_key, read_signing_keys
from twisted.internet import defer, threads

from homeserver.accounts.captcha import CaptchaVerifier
from homeserver.accounts.login import Logins
from homeserver.accounts.management import AccountManagement
from homeserver.accounts.registration import Registrations
from homeserver.accounts.sessions import Sessions
from homeserver.accounts.uia import UiAuth
from homeserver.admin.purge_history import HistoryPurger
from homeserver.admin.room_deletion import RoomDeleter
from homeserver.admin.rooms import AdminRooms
from homeserver.admin.users import AdminUsers
from homeserver.config import Config
from homeserver.context import ServerContext
from homeserver.edu.presence import PresenceHandler
from homeserver.edu.receipts import ReceiptHandler
from homeserver.edu.typing import TypingManager
from homeserver.federation.client import FederationClient
from homeserver.federation.edus import EduHandler
from homeserver.federation.event_handler import FederationEventHandler
from homeserver.federation.keys import KeyRing
from homeserver.federation.membership import FederationMembership
from homeserver.federation.request_auth import FederationAuth
from homeserver.federation.sender import FederationSender
from homeserver.federation.transactions import TransactionReceiver
from homeserver.http.auth import Auth
from homeserver.http.channel import MAX_CONNECTIONS_PER_IP, GuardedSite
from homeserver.http.outbound import https_policy
from homeserver.http.ratelimit import Ratelimiter
from homeserver.http.request import SizeLimitedRequest
from homeserver.http.resource import MatrixResource
from homeserver.http.router import Router
from homeserver.http.webclient import WebClient, default_bundle_path
from homeserver.push.actions import PushActions
from homeserver.push.pushers import PusherPool
from homeserver.rooms.access import RoomReader
from homeserver.rooms.creation import RoomCreation
from homeserver.rooms.creator import EventCreator
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.hierarchy import HierarchyHandler
from homeserver.rooms.ignored import IgnoredUsers
from homeserver.rooms.membership import MembershipHandler
from homeserver.rooms.search import Searcher
from homeserver.rooms.sending import RoomSender
from homeserver.rooms.upgrade import RoomUpgrader
from homeserver.storage import Stores
from homeserver.storage.database import Database
from homeserver.storage.event_expiry import record_txn as record_expiry_txn
from homeserver.storage.migrations import prepare_database_blocking
from homeserver.storage.relations import index_relation_txn
from homeserver.storage.search import index_batch_txn, index_event_txn
from homeserver.storage.streams import StreamTracker, current_stream_id
from homeserver.storage.user_directory import member_joined_txn
from homeserver.sync.event_stream import EventStream
from homeserver.sync.fast_path import FastPath
from homeserver.sync.filter import FilterCache
from homeserver.sync.handler import SyncHandler
from homeserver.sync.memory import SyncMemory
from homeserver.sync.notifier import Notifier
from homeserver.sync.recency import RoomRecency
from homeserver.sync.recent import RecentActivity
from homeserver.sync.room_builder import RoomBuilder
from homeserver.sync.sliding import SlidingSyncHandler

if TYPE_CHECKING:
    from homeserver.accounts.jwt_login import JwtLogins
    from homeserver.accounts.sso import SsoHandler

logger = logging.getLogger(__name__)

# Connections the kernel queues for a listener before we accept them
# (Twisted's default is 50): a thousand clients reconnecting at once (a
# restart, a network blip) would overflow 50, and a connection whose last
# handshake packet the kernel dropped looks open to the client while we never
# see it, until TCP's retries give up.
LISTEN_BACKLOG = 1024


class HomeServer:
    """Everything one server process holds, built once from its config.

    ``clock`` is anything with ``seconds()`` and ``callLater()``: the reactor in
    production, a ``twisted.internet.task.Clock`` in tests that need time to
    move on command (rate limits, expiry).
    """

    def __init__(self, config: Config, reactor: Any = None, clock: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.config = config
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.hostname = config.server_name
        self.db = Database(config.database.engine, config.database.args, reactor)
        # this process's role among several (docs/scale-out.md); by default
        # the main and only process
        self.worker = config.worker
        db = self.db
        if self.worker.multi_writer and (self.worker.is_main or self.worker.is_event_writer):
            # one stream writer of several: its own positions, the others'
            # frontiers (replication/tracker.py)
            from homeserver.replication.tracker import WriterStreamTracker
            self.db.stream_tracker = WriterStreamTracker(
                self.worker.name, self.worker.stream_writers, self.clock,
                lambda: current_stream_id(db))
        elif self.worker.is_main:
            self.db.stream_tracker = StreamTracker()
        else:
            # a reader: positions as the stream writers publish them
            from homeserver.replication.tracker import ReaderStreamTracker
            self.db.stream_tracker = ReaderStreamTracker(
                self.clock, lambda: current_stream_id(db), self.worker.stream_writers)
        # which run of the server in-memory stream positions (typing) belong to
        self.epoch = secrets.token_hex(4)
        self.signing_key = self._load_signing_key()
        # what every service shares (homeserver/context.py); services take it
        # and the collaborators they use, not the whole server
        self.ctx = ServerContext(config, reactor, self.clock, self.signing_key, self.epoch)
        # the web client's files, served at / of the client listeners
        self.web_client: WebClient | None = None
        if config.web_client["enabled"]:
            self.web_client = WebClient(os.path.join(
                config.config_dir, config.web_client["path"] or default_bundle_path()))
        factor = config.caches["global_factor"]
        self.stores = Stores(
            self.db, event_cache_size=max(1, int(config.event_cache_size * factor)),
            state_cache_size=max(0, int(config.state_cache_size * factor)))
        # which local users each new event notifies (push/actions.py)
        self.push_actions = PushActions(self.stores.push_rules)
        self._add_persist_hooks()
        self.auth = Auth(self.ctx, self.stores.tokens, self.stores.devices, self.stores.users)
        self.ratelimiters = {
            "message": Ratelimiter(self.clock, "rc_message", config.rc_message),
            "registration": Ratelimiter(self.clock, "rc_registration", config.rc_registration),
            "login_address": Ratelimiter(self.clock, "rc_login.address", config.rc_login_address),
            "login_account": Ratelimiter(self.clock, "rc_login.account", config.rc_login_account),
            "login_failed": Ratelimiter(self.clock, "rc_login.failed_attempts",
                                        config.rc_login_failed_attempts),
        }
        if config.app_services:
            self.ratelimiters["message"].exempt = config.app_services.exempt_from_rate_limits
        # 3PIDs: identity servers, e-mail validation, the accounts' addresses
        from homeserver.identity.client import IdentityServerClient
        from homeserver.identity.mailer import Mailer
        from homeserver.identity.threepids import Threepids
        self.identity_client = IdentityServerClient(self.ctx)
        self.threepids = Threepids(self.ctx, self.stores.threepids, self.identity_client,
                                   Mailer(self.ctx))
        # accounts
        self.sessions = Sessions(self.ctx, self.db)
        self.logins = Logins(self.ctx, self.db, self.stores.users,
                             self.ratelimiters["login_failed"], self.stores.threepids)
        self.ui_auth = UiAuth(self.ctx, self.db, self.stores.ui_auth, self.stores.users,
                              self.logins, self.threepids,
                              CaptchaVerifier(self.ctx, context_factory=https_policy(config)))
        self.registrations = Registrations(self.ctx, self.db, self.stores.users,
                                           self.stores.tokens, self.ui_auth,
                                           self.ratelimiters["registration"], self.threepids)
        # org.matrix.login.jwt, when jwt_config is enabled
        # (each optional piece imported only when configured: a smaller idle footprint)
        jwt = config.sso_config.jwt
        self.jwt_logins: JwtLogins | None = None
        if jwt is not None:
            from homeserver.accounts.jwt_login import JwtLogins
            self.jwt_logins = JwtLogins(self.ctx, jwt, self.logins, self.registrations)
        self.account_management = AccountManagement(self.ctx, self.db, self.stores.tokens,
                                                     self.stores.devices, self.ui_auth)
        # m.login.token: issued by SSO and POST /login/get_token
        from homeserver.accounts.login_tokens import LoginTokens
        self.login_tokens = LoginTokens(self.ctx, self.stores.sso, self.stores.users)
        # the spec's OAuth 2.0 API, with oauth_api.enabled
        from homeserver.accounts.oauth_server import OAuthServer
        self.oauth_server: OAuthServer | None = OAuthServer(
            self.ctx, self.db, self.stores.oauth, self.logins) \
            if config.oauth_api["enabled"] else None
        # single sign-on through OpenID Connect providers, when configured
        self.sso: SsoHandler | None = None
        if config.sso_config.sso_enabled:
            from homeserver.accounts.sso import SsoHandler
            self.sso = SsoHandler(self.ctx, self.db, self.stores.sso, self.stores.users,
                                  self.login_tokens, self.ui_auth, self.threepids)
        self.notifier = Notifier(self.ctx, self.db.stream_tracker, self.stores.rooms)
        # what a woken /sync can be answered from without the database;
        # complete from the stream position at setup()
        self.recent = RecentActivity(2**62)
        # every outbound federation request (the room directory asks other
        # servers' aliases, federation/ below does the rest)
        self.federation_client = FederationClient(self.ctx)
        # rooms
        self.event_creator = EventCreator(self.ctx, self.stores, self.notifier)
        self.membership = MembershipHandler(self.ctx, self.stores, self.event_creator)
        # shadow-bans and rate-limit overrides (admin API), asked per request
        from homeserver.admin.user_moderation import UserModeration
        from homeserver.storage.user_moderation import UserModerationStore
        self.user_moderation = UserModeration(self.ctx, self.stores, UserModerationStore(self.db))
        self.ratelimiters["message"].overrides = self.user_moderation.ratelimit_override
        # the content filter and spam checker modules (moderation/)
        from homeserver.moderation.gate import ModerationGate
        from homeserver.moderation.policy_lists import PolicyLists
        from homeserver.moderation.spam_checker import SpamChecker
        self.policy_lists = PolicyLists(self.stores, config.policy_rooms)
        self.moderation_gate = ModerationGate(
            self.stores, config.content_filter, SpamChecker(config.server_name, config.modules,
                                                    self.stores.users, self.clock),
            self.policy_lists, config.server_name)
        self.admin_users = AdminUsers(self.ctx, self.stores, self.account_management,
                                      self.registrations, self.threepids, self.membership)
        # message retention: expired messages hidden from clients (rooms/retention.py)
        from homeserver.rooms.retention import RetentionConfig, RoomRetention
        from homeserver.storage.retention import RetentionStore
        self.retention_store = RetentionStore(self.db)
        self.retention = RoomRetention(self.ctx, self.retention_store,
                                       RetentionConfig.from_raw(config.retention))
        self.room_reader = RoomReader(self.ctx, self.stores,
                                      IgnoredUsers(self.stores.account_data),
                                      self.retention if self.retention.enabled else None)
        self.room_directory = RoomDirectory(self.ctx, self.stores, self.event_creator,
                                            self.federation_client)
        self.room_creation = RoomCreation(self.event_creator, self.membership,
                                          self.room_directory)
        self.room_upgrader = RoomUpgrader(self.ctx, self.stores, self.event_creator,
                                          self.membership, self.room_creation)
        self.room_sender = RoomSender(self.stores, self.event_creator, self.room_directory,
                                      self.ratelimiters["message"], self.user_moderation,
                                      self.moderation_gate)
        self.admin_rooms = AdminRooms(self.ctx, self.stores, self.room_reader)
        self.room_deleter = RoomDeleter(self.ctx, self.stores, self.membership,
                                        self.room_creation, self.event_creator)
        self.history_purger = HistoryPurger(self.ctx, self.stores)
        from homeserver.admin.background_updates import BackgroundUpdates
        self.background_updates = BackgroundUpdates(self.db)
        self.searcher = Searcher(self.stores, self.room_reader)
        # edu
        self.typing = TypingManager(self.ctx, self.stores.rooms, self.notifier)
        self.presence = PresenceHandler(self.ctx, self.stores, self.db.stream_tracker,
                                        self.notifier)
        # federation (federation/__init__.py has the map)
        ctx, stores = self.ctx, self.stores
        self.keyring = KeyRing(ctx, stores.server_keys, self.federation_client)
        self.federation_sender = FederationSender(ctx, self.db.stream_tracker,
                                                  stores.federation_queue, stores.to_device,
                                                  self.federation_client)
        self.federation_auth = FederationAuth(ctx, self.keyring, self.federation_sender)
        self.federation_event_handler = FederationEventHandler(
            ctx, stores, self.keyring, self.federation_client, self.federation_sender,
            self.event_creator, self.notifier, self.typing)
        self.federation_membership = FederationMembership(
            ctx, stores, self.federation_client, self.federation_sender,
            self.federation_event_handler, self.event_creator, self.notifier,
            self.room_upgrader)
        self.edu_handler = EduHandler(
            ctx, self.db, stores, self.federation_event_handler, self.federation_sender,
            self.typing, self.presence, self.notifier)
        self.federation_transactions = TransactionReceiver(
            ctx, stores.federation_events, stores.rooms, self.federation_event_handler,
            self.edu_handler)
        # rooms: invites by e-mail address, through identity servers
        from homeserver.rooms.third_party_invites import ThirdPartyInvites
        self.third_party_invites = ThirdPartyInvites(
            ctx, stores, self.identity_client, self.event_creator, self.membership,
            self.federation_client, self.federation_sender)
        # rooms: the space hierarchy asks other servers
        self.hierarchy = HierarchyHandler(self.ctx, self.stores, self.federation_client)
        # after the notifier: it chains onto its device-list hook
        from homeserver.e2e.cross_signing import CrossSigning
        from homeserver.e2e.keys import E2eKeyHandler
        self.cross_signing = CrossSigning(self.ctx, self.db, self.stores.cross_signing,
                                          self.stores.rooms, self.federation_sender,
                                          self.notifier)
        self.e2e_keys = E2eKeyHandler(self.ctx, self.stores.e2e_keys, self.stores.rooms,
                                      self.cross_signing, self.federation_client,
                                      self.federation_sender)
        # sync: after the key handler (whose counts every response carries)
        self.filter_cache = FilterCache(self.stores.filters)
        self.sync_memory = SyncMemory(self.recent, self.typing, self.notifier,
                                      self.room_reader.ignored, self.e2e_keys,
                                      self.push_actions)
        self.sync_handler = SyncHandler(
            self.ctx, self.db.stream_tracker, self.typing, self.presence, self.notifier,
            RoomBuilder(self.stores, self.typing, self.presence, self.room_reader,
                        self.e2e_keys, self.sync_memory),
            FastPath(self.ctx, self.sync_memory))
        # simplified sliding sync (MSC4186): the same stores, builder pieces,
        # tokens and notifier as /sync, another response shape
        self.room_recency = RoomRecency(self.stores.sliding_sync)
        self.sliding_sync = SlidingSyncHandler(
            self.ctx, self.stores, self.sync_handler, self.sync_handler.builder,
            self.room_reader, self.typing, self.presence, self.notifier, self.room_recency,
            self.sync_memory)
        # the deprecated /events and initialSync, over the same reads as /sync
        self.event_stream = EventStream(self.ctx, self.stores, self.room_reader,
                                        self.sync_handler, self.notifier, self.typing,
                                        self.presence)
        self.pushers = PusherPool(self.ctx, self.stores, self.db.stream_tracker)
        # self-destructing messages (MSC2228), when the operator turns them on
        from homeserver.rooms.ephemeral import EventExpirer
        self.event_expirer: EventExpirer | None = EventExpirer(
            self.ctx, self.stores.event_expiry, self.stores.events,
        ) if self.config.enable_ephemeral_messages else None
        # delayed events (MSC4140), refused unless max_event_delay_duration
        from homeserver.rooms.delayed_events import DelayedEvents
        self.delayed_events = DelayedEvents(self.ctx, self.stores, self.room_sender,
                                            self.config.max_event_delay_duration)
        # after the pushers: a read receipt updates the user's badge
        self.receipts = ReceiptHandler(self.ctx, self.stores, self.notifier, self.pushers)
        from homeserver.media.preview import UrlPreviewer
        from homeserver.media.remote import RemoteMediaFetcher
        from homeserver.media.repository import MediaRepository
        from homeserver.storage.media import MediaStore
        self.remote_media = RemoteMediaFetcher(self.ctx, self.federation_client)
        self.media_repository = MediaRepository(self.ctx, MediaStore(self.db), self.remote_media)
        self.url_previewer = UrlPreviewer(self.ctx, self.media_repository)
        # purging expired messages and old media on a schedule
        from homeserver.admin.media import AdminMedia
        from homeserver.admin.retention_jobs import RetentionJobs
        from homeserver.storage.admin_media import AdminMediaStore
        self.admin_media = AdminMedia(self.ctx, self.stores, AdminMediaStore(self.db),
                                      self.media_repository)
        self.retention_jobs = RetentionJobs(
            self.ctx, self.retention_store, self.retention.config, self.history_purger,
            self.admin_media, config.media_retention["local_media_lifetime"],
            config.media_retention["remote_media_lifetime"])
        # application services (appservice/): asked about their namespaces,
        # sent the events of interest
        from homeserver.appservice.client import AppServiceClient
        from homeserver.appservice.handler import AppServiceHandler
        from homeserver.appservice.interest import Interest
        from homeserver.appservice.registration import AppServices
        from homeserver.appservice.scheduler import AppServiceScheduler
        app_services = config.app_services or AppServices()
        self.appservice_client = AppServiceClient(self.ctx)
        interest = Interest(self.ctx, self.stores)
        self.appservice_handler = AppServiceHandler(self.ctx, self.stores, app_services,
                                                    self.appservice_client, interest)
        self.appservice_scheduler = AppServiceScheduler(
            self.ctx, self.stores, self.db.stream_tracker, app_services,
            self.appservice_client, interest)
        self.router = Router()
        self._background = self.ctx.background
        self.ports: list[Any] = []
        self._connections: set[Any] = set()
        from homeserver.api import register_all_routes, streams
        register_all_routes(self, self.router)
        self.websocket = streams.register_routes(self, self.router)
        self._build_replication()
        if self.worker.redis is not None:
            from homeserver.replication.roles import place_roles
            place_roles(self)
        if self.worker.media_jobs != "main":
            from homeserver.replication.roles import place_media_jobs
            place_media_jobs(self)
        self._wire_late()
        self._subscribe_after_write()
        self._register_metrics()

    def _build_replication(self) -> None:
        """With several processes (redis.enabled; docs/scale-out.md): the main
        process publishes its writes, a reader follows them. Nothing of
        replication is imported otherwise."""
        self.replication_publisher: Any = None
        self.replication_follower: Any = None
        # main: the readers' syncs, for presence; a reader: its reporter
        self.reader_syncs: Any = None
        self.sync_reporter: Any = None
        redis = self.worker.redis
        if redis is None:
            return
        from twisted.web.client import HTTPConnectionPool

        from homeserver.replication.follower import ReplicationFollower
        from homeserver.replication.forward import WebSocketWrites, build_route
        from homeserver.replication.publisher import ReplicationPublisher
        writers = self.worker.stream_writers
        if self.worker.is_main or self.worker.is_event_writer:
            self.replication_publisher = ReplicationPublisher(
                self.reactor, self.hostname, redis, self.db.stream_tracker, self.push_actions,
                writer=self.worker.name)
        if self.worker.is_main:
            # a device's one-time key counts changed here: readers drop theirs
            self.e2e_keys.counts_changed = lambda devices: \
                self.replication_publisher.invalidate("key_counts", [list(d) for d in devices])
            # typing lives in memory: readers mirror main's
            self.typing.on_change = self.replication_publisher.typing_changed
            # the readers' users syncing, for presence
            from homeserver.replication.reader_syncs import ReaderSyncs
            self.reader_syncs = ReaderSyncs(self.ctx, redis, self.presence)
            if not self.worker.multi_writer:
                return
            # with event writers, main follows them: its notifier, fast path,
            # federation sender, pushers and application services hear the
            # events they write; its WebSocket's sends go to the rooms' writers
            follower = self.replication_follower = ReplicationFollower(
                self.ctx, redis, self.worker.name, self.db, self.db.stream_tracker, self.recent,
                self.notifier, self.stores, self.push_actions, self.typing, writers,
                self.replication_publisher)
            follower.on_reset += [self.room_reader.ignored.forget_all,
                                  self.stores.events.cache.clear, self.retention.forget_all]
            self._forward_pool = HTTPConnectionPool(self.reactor, persistent=True)
            self.websocket.factory.forward_writes = WebSocketWrites(
                self.worker.instance_map["main"].base_url, self.reactor, self._forward_pool,
                build_route(self.worker))
            return
        follower = self.replication_follower = ReplicationFollower(
            self.ctx, redis, self.worker.name, self.db, self.db.stream_tracker, self.recent,
            self.notifier, self.stores, self.push_actions, self.typing, writers,
            self.replication_publisher)
        # what a reader drops when it catches up from the database: every
        # cache that replication keeps true
        follower.on_reset += [self.room_reader.ignored.forget_all, self.stores.events.cache.clear,
                              self.stores.tokens.tokens_changed, self.e2e_keys.forget_counts,
                              self.typing.forget_all_typing, self.retention.forget_all]
        follower.invalidators["key_counts"] = lambda keys: self.e2e_keys.forget_counts(
            [(str(k[0]), str(k[1])) for k in keys])
        # presence is the main process's: syncs here are reported to it
        from homeserver.replication.reader_syncs import SyncReporter
        self.sync_reporter = SyncReporter(self.ctx, redis, self.worker.name)
        self.presence.sync_tracking = False
        self.presence.report_sync = self.sync_reporter.report
        # the WebSocket's writing requests go to main (or the room's writer)
        # as their REST twins
        self._forward_pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.websocket.factory.forward_writes = WebSocketWrites(
            self.worker.instance_map["main"].base_url, self.reactor, self._forward_pool,
            build_route(self.worker) if self.worker.event_writers else None)

    def _wire_late(self) -> None:
        """The back-references of services that need each other: each was
        built before the other existed."""
        # rooms
        self.membership.user_moderation = self.user_moderation
        self.typing.user_moderation = self.user_moderation
        self.membership.gate = self.moderation_gate
        self.room_creation.gate = self.moderation_gate
        self.registrations.gate = self.moderation_gate
        self.registrations.user_moderation = self.user_moderation
        self.media_repository.gate = self.moderation_gate
        if self.policy_lists.active:
            self.federation_auth.policy = self.policy_lists
        if self.moderation_gate.spam_checker.active:
            self.room_directory.gate = self.moderation_gate
            self.federation_transactions.gate = self.moderation_gate
        if self.moderation_gate.has_modules:
            self.federation_membership.gate = self.moderation_gate
        if self.moderation_gate.checks_federated_events:
            self.federation_event_handler.spam_gate = self.moderation_gate
        self.event_creator.typing = self.typing
        self.event_creator.presence = self.presence
        if self.worker.is_event_writer and self.sync_reporter is not None:
            # presence is main's: a sender here is active there
            # (replication/reader_syncs.py)
            self.event_creator.presence = self.sync_reporter
        self.event_creator.federation_membership = self.federation_membership
        self.membership.federation_membership = self.federation_membership
        self.room_creation.third_party_invites = self.third_party_invites
        if self.ctx.config.app_services:
            self.membership.app_services = self.appservice_handler
            self.room_directory.app_services = self.appservice_handler
            self.room_upgrader.app_services = self.appservice_handler
            # typing and receipts for services with receive_ephemeral
            if any(s.receive_ephemeral for s in self.ctx.config.app_services.services):
                self.typing.app_services = self.appservice_scheduler
                self.receipts.app_services = self.appservice_scheduler
                self.edu_handler.app_services = self.appservice_scheduler
        # sync, edu: typing, receipts and presence go out through the EDU
        # handler, which brings the other servers' back to them
        self.typing.edu_handler = self.edu_handler
        self.receipts.edu_handler = self.edu_handler
        self.presence.edu_handler = self.edu_handler
        # accounts: m.login.sso re-authentication asks who is linked to a provider
        if self.sso is not None:
            self.ui_auth.sso_links = self.stores.sso
        # federation
        self.federation_membership.membership = self.membership
        self.edu_handler.e2e_keys = self.e2e_keys
        self.edu_handler.cross_signing = self.cross_signing

    # -- helpers used across the server --

    def now_ms(self) -> int:
        return self.ctx.now_ms()

    def run_in_background(self, coro: Coroutine[Any, Any, Any]) -> "defer.Deferred[Any]":
        """Run ``coro`` without awaiting it; failures are logged, never lost."""
        return self.ctx.run_in_background(coro)

    def is_mine(self, user_id: str) -> bool:
        return self.ctx.is_mine(user_id)

    def _load_signing_key(self) -> Any:
        path = self.config.signing_key_path
        if not path:
            # No key configured (tests, embedded use): an ephemeral one, so the
            # events this process creates are signed all the same.
            logger.info("no signing_key_path configured: using an ephemeral signing key")
            return generate_signing_key("ephemeral")
        path = os.path.join(self.config.config_dir, path)
        with open(path, encoding="ascii") as f:
            keys = read_signing_keys(f)
        return keys[0]

    # -- lifecycle --

    async def setup(self) -> None:
        """Open the database and bring its schema up to date."""
        self.db.start()
        await threads.deferToThreadPool(self.reactor, self.db._pool,
                                        prepare_database_blocking, self.db)
        await self.stores.auth_chains.ensure_indexed()
        await self.user_moderation.load()
        if not self.worker.is_main:
            # a worker: where the stream is comes from the stream writers, and
            # the background work below is the main process's alone
            if self.worker.is_event_writer:
                # an event writer says where it stands before it takes any
                # position (replication/follower.py counts on it)
                self.db.stream_tracker.reset(await current_stream_id(self.db))
                self.replication_publisher.start()
            await self.replication_follower.start()
            self.sync_reporter.start()
            if self.worker.sends_federation or self.worker.runs_pushers \
                    or self.worker.media_jobs == self.worker.name:
                # a federation sender or pusher process (replication/roles.py)
                from homeserver.replication.roles import start_worker
                await start_worker(self)
            return
        position = await current_stream_id(self.db)
        self.db.stream_tracker.reset(position)
        self.recent.restart(position, await self.stores.to_device.get_devices_with_messages())
        if self.replication_publisher is not None:
            self.replication_publisher.start()
            self.reader_syncs.start()
        if self.replication_follower is not None:
            # main with event writers: their positions before anything else
            await self.replication_follower.start()
        await self.federation_sender.start()
        await self.presence.start()
        if self.worker.runs_pushers:
            await self.pushers.start()
        if self.event_expirer is not None:
            await self.event_expirer.start()
        if self.delayed_events.enabled:
            await self.delayed_events.start()
        await self.appservice_handler.register_senders()
        await self.appservice_scheduler.start()
        if self.retention_jobs.active:
            await self.retention_jobs.start()
        # room deletions a stop or crash cut short
        self.run_in_background(self.room_deleter.resume())
        # messages stored before full-text search existed (a no-op once done),
        # an update the admin API shows and may pause (admin/background_updates.py)
        self.run_in_background(self.background_updates.run(
            "event_search_history", self.stores.search.index_history))

    def _add_persist_hooks(self) -> None:
        """The per-event work inside every transaction that stores a timeline
        event (storage/event_hooks.py), in the order it has always run."""
        hooks = self.stores.events.persist_hooks
        hooks.add(self.push_actions.persist_hook_txn, self.push_actions.batch_hook_txn)
        hooks.add(index_relation_txn)
        hooks.add(index_event_txn, index_batch_txn)
        hooks.add(member_joined_txn)
        if self.config.enable_ephemeral_messages:
            hooks.add(record_expiry_txn)
        # an invite to a room we do not hold (an outlier) notifies the invitee
        hooks.add_remote_invite(self.push_actions.remote_invite_txn)

    def _subscribe_after_write(self) -> None:
        """Who hears about committed writes, and in what order: the one
        list (storage/hub.py); services do not subscribe themselves."""
        hub = self.db.hub
        if not self.worker.is_main:
            self._subscribe_reader()
            if self.replication_publisher is not None:
                # an event writer: its own commits, to the other processes
                self.replication_publisher.subscribe_to(hub)
            return
        # Database thread, right after each commit, before the stream
        # tracker hears the transaction ended. First what a woken /sync
        # answers from (recent activity): every wake-up comes after it.
        hub.subscribe(self.recent.on_commit)
        # ... and each room's newest events, by which sliding sync sorts
        hub.subscribe(self.room_recency.on_commit)
        # an account data write may change a user's ignore list
        hub.subscribe(self.room_reader.ignored._on_commit)
        # local events to the other servers of their rooms
        hub.subscribe(self.federation_sender._on_commit)
        # the highest position that carried events, for the pushers
        hub.subscribe(self.pushers.on_commit)
        # ... and for the application services' queues
        hub.subscribe(self.appservice_scheduler.on_commit)
        # joins: presence for servers that now share a room with our users
        hub.subscribe(self.presence.on_commit)
        # a room that stops allowing guests: its local guests leave
        hub.subscribe(self.membership.on_commit)
        # a rule arriving in a policy room counts from the next check
        hub.subscribe(self.policy_lists.on_commit)
        # a new m.room.retention event: the room's policy is read again
        hub.subscribe(self.retention.on_commit)
        # a leave may end the last room shared with a remote user: their
        # device list copy goes (e2e/keys.py)
        hub.subscribe(self.e2e_keys.on_commit)
        # a self-destructing message may expire before the expirer's timer
        if self.event_expirer is not None:
            hub.subscribe(self.event_expirer.on_commit)
        # a state event cancels other users' delayed events for that state
        if self.delayed_events.enabled:
            hub.subscribe(self.delayed_events.on_commit)
        # Reactor, each device-list change before its position counts as
        # finished: wake the user and room mates, then tell other servers.
        hub.on_device_list_changed(self.notifier.device_list_changed)
        hub.on_device_list_changed(self.e2e_keys.on_device_list_changed)
        # a logout must stop its token at once
        hub.on_tokens_changed(self.stores.tokens.tokens_changed)
        # Reactor, when "persisted up to" advances: wake waiting readers,
        # then the pushers.
        hub.on_persisted(self.notifier._on_persisted)
        hub.on_persisted(self.pushers.on_persisted)
        hub.on_persisted(self.appservice_scheduler.on_persisted)
        # with event writers, main hears their events too: its event cache
        # holds events as persisted, and a redaction drops them
        if self.worker.multi_writer:
            replayed = self.replication_publisher.replaying_commits
            hub.subscribe(lambda c: self._written_elsewhere(c) if id(c) in replayed else None)
        # with several processes: all of the above, to the other processes
        if self.replication_publisher is not None:
            self.replication_publisher.subscribe_to(hub)

    def _subscribe_reader(self) -> None:
        """A reader process's subscribers: what its syncs read from memory.
        The records come from the main process (replication/follower.py)
        and are fed to the same hub; the writers' side (federation, pushers,
        application services, expiry) runs in the main process only."""
        hub = self.db.hub
        hub.subscribe(self.recent.on_commit)
        hub.subscribe(self.room_reader.ignored._on_commit)
        # the event cache holds events as persisted: a redaction drops them
        hub.subscribe(self._forget_redacted)
        # a new m.room.retention event: the room's policy is read again
        hub.subscribe(self.retention.on_commit)
        hub.on_device_list_changed(self.notifier.device_list_changed)
        hub.on_tokens_changed(self.stores.tokens.tokens_changed)
        hub.on_persisted(self.notifier._on_persisted)
        if self.worker.sends_federation or self.worker.runs_pushers:
            from homeserver.replication.roles import subscribe_worker
            subscribe_worker(self)

    def _written_elsewhere(self, committed: Any) -> None:
        """Main, on the reactor: events an event writer persisted. The event
        cache forgets what they redact, and who left a room stops typing
        there (typing is main's; edu/typing.py)."""
        self._forget_redacted(committed)
        for event, _ in committed.events:
            if event.type == "m.room.member" and event.state_key is not None \
                    and event.content.get("membership") != "join":
                self.typing.left_room(event.state_key, str(event.json.get("room_id")))

    def _forget_redacted(self, committed: Any) -> None:
        """A redaction another process persisted: the redacted event goes
        from the event cache (it holds events as persisted)."""
        for event, _ in committed.events:
            if event.type == "m.room.redaction" and isinstance(event.redacts, str):
                self.stores.events.cache.invalidate(event.redacts)

    def _register_metrics(self) -> None:
        """What the metrics read from the services (docs/monitoring.md)."""
        from homeserver.metrics import Metrics
        metrics = self.metrics = Metrics()
        if not self.config.enable_metrics:
            return  # nothing counted, nothing served
        self.db.txn_observer = metrics.observe_transaction
        self.db.hub.subscribe(lambda c: metrics.events_persisted.inc(len(c.events))
                              if c.events else None)
        metrics.gauge("synapse_notifier_listeners", "Requests waiting for new data (long-polls)",
                      lambda: float(self.notifier.waiting()))
        metrics.gauge("synapse_federation_destinations",
                      "Federation destinations by state", self.federation_sender.destination_counts,
                      labels=("state",))
        caches: dict[str, Any] = {"events": self.stores.events.cache,
                                  "state_blocks": self.stores.state.cache}
        metrics.gauge("synapse_util_caches_cache_size", "Entries in each cache",
                      lambda: {(n,): float(len(c)) for n, c in caches.items()}, labels=("name",))
        metrics.gauge("synapse_util_caches_cache_hits", "Lookups that found their entry",
                      lambda: {(n,): float(c.hits) for n, c in caches.items()},
                      labels=("name",))
        metrics.gauge("synapse_util_caches_cache", "Lookups in each cache",
                      lambda: {(n,): float(c.hits + c.misses) for n, c in caches.items()},
                      labels=("name",))
        metrics.gauge("synapse_websocket_connections", "Open WebSocket sync connections",
                      lambda: float(len(self.websocket.connections)))

    def build_site(self, x_forwarded: bool = False,
                   resources: frozenset[str] = frozenset({"client"})) -> GuardedSite:
        resource = MatrixResource(self.router, self.auth, self.federation_auth,
                                  self.config.max_client_json_size, resources,
                                  metrics=self.metrics if self.config.enable_metrics else None,
                                  web_client=self.web_client if "client" in resources else None)
        # behind a reverse proxy (x_forwarded) every client has the proxy's
        # address: no per-IP cap there (http/channel.py)
        if not self.worker.is_main or self.worker.multi_writer:
            # a worker forwards what it does not serve to the main process;
            # with event writers, a room's event writes go to its writer
            from homeserver.replication.forward import (
                ForwardingResource,
                build_room_route,
                build_route,
            )
            alias_room = room_route = None
            if self.worker.multi_writer:
                directory = self.stores.directory

                async def alias_room(alias: str) -> str | None:
                    found = await directory.get_alias(alias)
                    return None if found is None else found.room_id
                room_route = build_room_route(self.worker)
            resource = ForwardingResource(  # type: ignore[assignment]
                resource, self.worker.instance_map["main"].base_url, x_forwarded, self.reactor,
                build_route(self.worker), alias_room, room_route)
        site = GuardedSite(resource, self.clock,
                           max_connections_per_ip=0 if x_forwarded else MAX_CONNECTIONS_PER_IP)
        site.displayTracebacks = False
        max_size = max(self.config.max_upload_size, self.config.max_client_json_size)

        def request_factory(*args: Any, **kwargs: Any) -> SizeLimitedRequest:
            req = SizeLimitedRequest(*args, **kwargs)
            req.max_body_size = max_size
            req.x_forwarded = x_forwarded  # type: ignore[attr-defined]
            return req

        site.requestFactory = request_factory  # type: ignore[assignment]
        # remember open connections: stopping a listener leaves accepted
        # (kept-alive) ones open, and stop() must not leave them served
        connections = self._connections
        build = site.buildProtocol

        def build_protocol(addr: Any) -> Any:
            proto = build(addr)
            if proto is not None:
                connections.add(proto)
                lost = proto.connectionLost

                def connection_lost(reason: Any) -> Any:
                    connections.discard(proto)
                    return lost(reason)
                proto.connectionLost = connection_lost
            return proto
        site.buildProtocol = build_protocol  # type: ignore[method-assign]
        # our own access log replaces Twisted's
        site.log = lambda request: None  # type: ignore[method-assign]
        return site

    def listen(self) -> list[Any]:
        if self.web_client is not None and any(
                "client" in lst.resources for lst in self.config.listeners if lst.type == "http"):
            self.web_client.log_state()
        if self.config.enable_metrics:
            self.metrics.start_lag_probe(self.reactor)
        for listener in self.config.listeners:
            if listener.type == "metrics":
                self._listen_metrics(listener)
                continue
            site = self.build_site(listener.x_forwarded, frozenset(listener.resources))
            tls_options = None
            if listener.tls:
                from homeserver.federation.tls import server_tls_options
                tls_options = server_tls_options(self.config)
            for address in listener.bind_addresses:
                if tls_options is not None:
                    port = self.reactor.listenSSL(listener.port, site, tls_options,
                                                  backlog=LISTEN_BACKLOG, interface=address)
                else:
                    port = self.reactor.listenTCP(listener.port, site, backlog=LISTEN_BACKLOG,
                                                  interface=address)
                logger.info("listening on %s://%s:%d", "https" if listener.tls else "http",
                            address, port.getHost().port)
                self.ports.append(port)
        return self.ports

    def _listen_metrics(self, listener: Any) -> None:
        if not self.config.enable_metrics:
            logger.warning("a metrics listener on port %d is configured but enable_metrics is"
                           " false: not started", listener.port)
            return
        from twisted.web.server import Site

        from homeserver.http.monitoring import MetricsResource
        site = Site(MetricsResource(self.metrics))
        site.displayTracebacks = False
        for address in listener.bind_addresses:
            port = self.reactor.listenTCP(listener.port, site, interface=address)
            logger.info("metrics on http://%s:%d/metrics", address, port.getHost().port)
            self.ports.append(port)

    async def stop(self) -> None:
        self.metrics.stop()
        if self.replication_publisher is not None:
            await self.replication_publisher.stop()
        if self.replication_follower is not None:
            await self.replication_follower.stop()
        for replication_part in (self.reader_syncs, self.sync_reporter):
            if replication_part is not None:
                await replication_part.stop()
        for port in self.ports:
            d = port.stopListening()
            if d is not None:
                await d
        self.ports.clear()
        # first: cancels in-flight transactions (a hanging peer must not hold us)
        await self.federation_sender.stop()
        await self.pushers.stop()
        if self.event_expirer is not None:
            self.event_expirer.stop()
        self.delayed_events.stop()
        self.retention_jobs.stop()
        await self.appservice_scheduler.stop()
        await self.media_repository.stop()
        for proto in list(self._connections):
            # Twisted's HTTP protocol is a wrapper: the transport is its channel's
            transport = getattr(proto, "transport", None) or getattr(
                getattr(proto, "_channel", None), "transport", None)
            if transport is not None:
                transport.abortConnection()
        if self._background:
            await defer.DeferredList(list(self._background), consumeErrors=True)
        # sliding sync positions of responses sent: written before the database closes
        await self.sliding_sync.flush()
        self.websocket.close_all()
        self.presence.stop()
        self.federation_client.close()
        await self.identity_client.close()
        await threads.deferToThread(self.db.close)
