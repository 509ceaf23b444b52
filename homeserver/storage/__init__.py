"""Storage: the Database, schema migrations, and one store per aggregate.

SQL lives only in this package, always with bound parameters.
"""

from __future__ import annotations

from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.admin_rooms import AdminRoomStore
from homeserver.storage.admin_users import AdminUserStore
from homeserver.storage.appservice import AppServiceStore
from homeserver.storage.auth_chains import AuthChainStore
from homeserver.storage.cross_signing import CrossSigningStore
from homeserver.storage.database import Database
from homeserver.storage.delayed_events import DelayedEventStore
from homeserver.storage.devices import DeviceStore
from homeserver.storage.directory import DirectoryStore
from homeserver.storage.e2e_keys import E2eKeyStore
from homeserver.storage.event_expiry import EventExpiryStore
from homeserver.storage.events import DEFAULT_EVENT_CACHE_SIZE, EventStore
from homeserver.storage.federation_events import FederationEventStore
from homeserver.storage.federation_queue import FederationQueueStore
from homeserver.storage.filters import FilterStore
from homeserver.storage.key_backup import KeyBackupStore
from homeserver.storage.oauth import OAuthStore
from homeserver.storage.openid import OpenIdStore
from homeserver.storage.presence import PresenceStore
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.push_rules import PushRuleStore
from homeserver.storage.pushers import PusherStore
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.relations import RelationStore
from homeserver.storage.reports import ReportStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.search import SearchStore
from homeserver.storage.server_keys import ServerKeyStore
from homeserver.storage.sliding_sync import SlidingSyncStore
from homeserver.storage.sso import SsoStore
from homeserver.storage.state import DEFAULT_STATE_CACHE_SIZE, StateStore
from homeserver.storage.sync import SyncStore
from homeserver.storage.threepids import ThreepidStore
from homeserver.storage.to_device import ToDeviceStore
from homeserver.storage.tokens import TokenStore
from homeserver.storage.ui_auth import UiAuthStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.users import UserStore


class Stores:
    """Every store of one database, built once by the HomeServer."""

    def __init__(self, db: Database, event_cache_size: int = DEFAULT_EVENT_CACHE_SIZE,
                 state_cache_size: int = DEFAULT_STATE_CACHE_SIZE) -> None:
        self.db = db
        self.state = StateStore(db, state_cache_size)
        self.users = UserStore(db)
        self.admin_users = AdminUserStore(db)
        self.admin_rooms = AdminRoomStore(db)
        self.devices = DeviceStore(db)
        self.tokens = TokenStore(db)
        self.profiles = ProfileStore(db)
        self.account_data = AccountDataStore(db)
        self.filters = FilterStore(db)
        self.ui_auth = UiAuthStore(db)
        self.registration_tokens = RegistrationTokenStore(db)
        self.events = EventStore(db, event_cache_size, self.state)
        self.auth_chains = AuthChainStore(db)
        self.rooms = RoomStore(db)
        self.directory = DirectoryStore(db)
        self.appservice = AppServiceStore(db)
        self.receipts = ReceiptStore(db)
        self.to_device = ToDeviceStore(db)
        self.presence = PresenceStore(db)
        self.sync = SyncStore(db)
        self.openid = OpenIdStore(db)
        # login tokens, identity-provider subjects, SSO sign-ins in progress
        self.sso = SsoStore(db)
        # the OAuth 2.0 API's clients and authorization codes
        self.oauth = OAuthStore(db)
        self.federation_queue = FederationQueueStore(db)
        self.federation_events = FederationEventStore(db, self.state, self.events)
        self.server_keys = ServerKeyStore(db)
        self.search = SearchStore(db)
        self.user_directory = UserDirectoryStore(db)
        self.relations = RelationStore(db)
        self.reports = ReportStore(db)
        self.push_rules = PushRuleStore(db)
        self.e2e_keys = E2eKeyStore(db)
        self.cross_signing = CrossSigningStore(db)
        self.key_backup = KeyBackupStore(db)
        self.pushers = PusherStore(db)
        self.threepids = ThreepidStore(db)
        self.event_expiry = EventExpiryStore(db)
        self.delayed_events = DelayedEventStore(db)
        self.sliding_sync = SlidingSyncStore(db, self.state)
