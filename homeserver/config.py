"""The homeserver's configuration: one typed object, loaded from YAML and
validated before anything starts.

Every key the server understands is declared once, in ``SCHEMA`` below. Key
names follow Synapse's wherever the concept is the same, so an operator can
carry most of a ``homeserver.yaml`` across. Loading checks every key against
the schema: an unknown key or a value of the wrong type raises ``ConfigError``
naming the key's path (``listeners[0].port``), which the CLI prints as one line.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from homeserver.config_synapse import drop_synapse_keys
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS


class ConfigError(Exception):
    """A problem with the configuration; ``str()`` is one line for the operator."""


# --- value parsers ---------------------------------------------------------

_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                   "w": 604_800_000, "y": 31_536_000_000}
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_duration_ms(value: Any, path: str) -> int:
    """Synapse-style duration: an integer of milliseconds or "5m", "1h", "30s"."""
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a duration, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)?", value.strip())
        if m:
            return int(m.group(1)) * _DURATION_UNITS[m.group(2) or "ms"]
    raise ConfigError(f"{path}: expected a duration such as 5m or 3600000, got {value!r}")


def parse_size(value: Any, path: str) -> int:
    """Synapse-style size: an integer of bytes or "50M", "10K"."""
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a size, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"(\d+)([KMG]?)B?", value.strip().upper())
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    raise ConfigError(f"{path}: expected a size such as 50M, got {value!r}")


# --- a small declarative schema -----------------------------------------------

@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and (for mappings) children."""

    kind: str  # str, int, float, bool, duration, size, map, list, any
    default: Any = None
    required: bool = False
    children: dict[str, "Key"] | None = None  # for kind == "map"
    item: "Key | None" = None  # for kind == "list"
    choices: tuple[Any, ...] | None = None
    nullable: bool = True
    # inclusive bounds for int keys
    minimum: int | None = None
    maximum: int | None = None


def _rate(per_second: float, burst: float) -> Key:
    return Key("map", children={"per_second": Key("float", per_second, nullable=False),
                                "burst_count": Key("float", burst, nullable=False)})


_LISTENER = Key("map", children={
    "port": Key("int", required=True, nullable=False, minimum=0, maximum=65535),
    "bind_addresses": Key("list", item=Key("str", nullable=False), default=["127.0.0.1"]),
    "type": Key("str", "http", choices=("http", "metrics")),
    "tls": Key("bool", False),
    "x_forwarded": Key("bool", False),
    "resources": Key("list", item=Key("map", children={
        "names": Key("list", item=Key("str", nullable=False), default=["client"]),
        "compress": Key("bool", False),
    }), default=[{"names": ["client"]}]),
})

# worker_app values; Synapse's generic worker serves what we route to a reader
WORKER_APPS = ("main", "sync_reader", "event_writer", "federation_sender", "pusher",
               "media_repository", "synapse.app.generic_worker", "synapse.app.homeserver",
               "synapse.app.federation_sender", "synapse.app.pusher",
               "synapse.app.media_repository")
# streams a writer may be named for (stream_writers); Synapse's names
STREAMS = ("events", "typing", "to_device", "account_data", "receipts", "presence",
           "push_rules", "device_lists")

_WORKER = Key("map", children={
    "worker_app": Key("str", "sync_reader", choices=WORKER_APPS, nullable=False),
    "worker_listeners": Key("list", item=_LISTENER, default=[]),
})

_INSTANCE = Key("map", children={
    "host": Key("str", "127.0.0.1", nullable=False),
    "port": Key("int", required=True, nullable=False, minimum=1, maximum=65535),
    "tls": Key("bool", False, nullable=False),
})

_DATABASE = Key("map", children={
    "name": Key("str", "sqlite3", choices=("sqlite3", "psycopg2"), nullable=False),
    "args": Key("map", default={}, children={
        # sqlite3: the file; psycopg2: the database name
        "database": Key("str"),
        "dbname": Key("str"),
        "user": Key("str"),
        "password": Key("str"),
        "host": Key("str"),
        "port": Key("int", minimum=1, maximum=65535),
        "sslmode": Key("str"),
        "cp_min": Key("int", 1, minimum=1),
        "cp_max": Key("int", 10, minimum=1),
    }),
    "allow_unsafe_locale": Key("bool", False),
})

# one of oidc_providers (Synapse's keys; accounts/sso_config.py reads them)
_OIDC_PROVIDER = Key("map", children={
    "idp_id": Key("str", "oidc", nullable=False),
    "idp_name": Key("str"),
    "idp_icon": Key("str"),
    "idp_brand": Key("str"),
    "discover": Key("bool", True, nullable=False),
    "issuer": Key("str", required=True, nullable=False),
    "client_id": Key("str", required=True, nullable=False),
    "client_secret": Key("str"),
    "client_secret_path": Key("str"),
    "client_auth_method": Key("str", "client_secret_basic", nullable=False,
                              choices=("client_secret_basic", "client_secret_post", "none")),
    "pkce_method": Key("str", "auto", nullable=False, choices=("auto", "always", "never")),
    "scopes": Key("list", item=Key("str", nullable=False), default=["openid"]),
    "authorization_endpoint": Key("str"),
    "token_endpoint": Key("str"),
    "userinfo_endpoint": Key("str"),
    "jwks_uri": Key("str"),
    "skip_verification": Key("bool", False, nullable=False),
    "user_profile_method": Key("str", "auto", nullable=False,
                               choices=("auto", "userinfo_endpoint")),
    "allow_existing_users": Key("bool", False, nullable=False),
    "enable_registration": Key("bool", True, nullable=False),
    "id_token_signing_alg_values_supported": Key("list", item=Key("str", nullable=False)),
    "additional_authorization_parameters": Key("map", default={}, children=None),
    "user_mapping_provider": Key("map", children={
        "module": Key("str"),
        "config": Key("map", children={
            "subject_claim": Key("str", "sub", nullable=False),
            "subject_template": Key("str"),
            "picture_claim": Key("str", "picture", nullable=False),
            "localpart_template": Key("str"),
            "display_name_template": Key("str"),
            "email_template": Key("str"),
            "confirm_localpart": Key("bool", False, nullable=False),
        }),
    }),
    "attribute_requirements": Key("list", item=Key("map", children={
        "attribute": Key("str", required=True, nullable=False),
        "value": Key("str"),
        "one_of": Key("list", item=Key("str", nullable=False)),
    }), default=[]),
    # the provider may log out the devices of a session it ends
    # (POST /_synapse/client/oidc/backchannel_logout)
    "backchannel_logout_enabled": Key("bool", False, nullable=False),
    "backchannel_logout_ignore_sub": Key("bool", False, nullable=False),
})

SCHEMA: dict[str, Key] = {
    "server_name": Key("str", required=True, nullable=False),
    "public_baseurl": Key("str"),
    "serve_client_wellknown": Key("bool", True),
    # /.well-known/matrix/server naming <server_name>:443 (Synapse's key), so
    # other servers reach federation through the client listener's port 443
    "serve_server_wellknown": Key("bool", False),
    # more keys for /.well-known/matrix/client (m.homeserver stays ours)
    "extra_well_known_client_content": Key("map", default={}),
    # the web client (webclient/, docs/web-client.md) served at / of every
    # listener with the client resource; path: the built bundle (relative to
    # this file's directory), by default webclient/dist of the source tree
    "web_client": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
        "path": Key("str"),
    }),
    "listeners": Key("list", item=_LISTENER,
                     default=[{"port": 8008, "bind_addresses": ["127.0.0.1"]}]),
    "database": _DATABASE,
    "signing_key_path": Key("str"),
    "log_config": Key("str"),
    "pid_file": Key("str"),
    "registration_shared_secret": Key("str"),
    "enable_registration": Key("bool", False),
    "enable_registration_without_verification": Key("bool", False),
    "registration_requires_token": Key("bool", False),
    # m.login.recaptcha (accounts/captcha.py): available when the private key
    # is set; required for registration with enable_registration_captcha
    "enable_registration_captcha": Key("bool", False, nullable=False),
    "recaptcha_public_key": Key("str"),
    "recaptcha_private_key": Key("str"),
    "recaptcha_siteverify_api": Key("str"),
    "allow_guest_access": Key("bool", False),
    "bcrypt_rounds": Key("int", 12, minimum=4, maximum=31),
    "password_config": Key("map", children={
        "enabled": Key("bool", True),
        "policy": Key("map", children={
            "enabled": Key("bool", False),
            "minimum_length": Key("int", 0),
        }),
    }),
    # -- signing in without a password here (docs/sso.md) --
    # POST /_matrix/client/v1/login/get_token: a logged-in device asks for a
    # login token (m.login.token) for a new device; after re-authentication
    # unless require_ui_auth is false
    "login_via_existing_session": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
        "require_ui_auth": Key("bool", True, nullable=False),
        "token_timeout": Key("duration", 300_000),
    }),
    # SSO: redirect URLs (prefixes) that get the login token without the
    # confirmation page
    "sso": Key("map", children={
        "client_whitelist": Key("list", item=Key("str", nullable=False), default=[]),
        # Synapse's: refresh the display name from the provider at each
        # sign-in (not supported: true is refused at load)
        "update_profile_information": Key("bool", False, nullable=False),
    }),
    # OpenID Connect identity providers (Synapse's keys; accounts/oidc_config.py)
    "oidc_providers": Key("list", item=_OIDC_PROVIDER, default=[]),
    # CAS single sign-on (Synapse's keys; accounts/cas.py)
    "cas_config": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
        "server_url": Key("str"),
        # deprecated in Synapse: public_baseurl is used
        "service_url": Key("str"),
        "displayname_attribute": Key("str"),
        # attribute -> the value it must have (null: only present)
        "required_attributes": Key("map", default={}, children=None),
        "idp_name": Key("str"),
        "idp_icon": Key("str"),
        "idp_brand": Key("str"),
        "protocol_version": Key("int", None, choices=(2, 3)),
        "enable_registration": Key("bool", True, nullable=False),
    }),
    # the spec's OAuth 2.0 API with this server as the authorization server
    # (accounts/oauth_server.py): auth_metadata, client registration, code
    # grant with PKCE, refresh, revocation
    "oauth_api": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
    }),
    # org.matrix.login.jwt: log in with a JWT signed by a trusted issuer
    "jwt_config": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
        # the HMAC secret, or the PEM public key for RS*/ES*/PS*/EdDSA
        "secret": Key("str"),
        "algorithm": Key("str"),
        "subject_claim": Key("str", "sub", nullable=False),
        "display_name_claim": Key("str"),
        "issuer": Key("str"),
        "audiences": Key("list", item=Key("str", nullable=False)),
    }),
    "refreshable_access_token_lifetime": Key("duration", 300_000),
    "refresh_token_lifetime": Key("duration", None),
    "session_lifetime": Key("duration", None),
    "ui_auth": Key("map", children={"session_timeout": Key("duration", 0)}),
    "max_upload_size": Key("size", 50 * 1024 * 1024),
    "max_client_json_size": Key("size", 64 * 1024),
    "rc_message": _rate(0.2, 10),
    "rc_registration": _rate(0.17, 3),
    "rc_login": Key("map", children={
        "address": _rate(0.003, 5),
        "account": _rate(0.003, 5),
        "failed_attempts": _rate(0.17, 3),
    }),
    "rc_admin_redaction": _rate(1, 50),
    "report_stats": Key("bool", False),
    # Prometheus metrics: served on type: metrics listeners and at
    # /_synapse/metrics where an http listener names the metrics resource
    "enable_metrics": Key("bool", False),
    # error reports to Sentry (homeserver/sentry.py): dsn and environment
    "sentry": Key("map", default={}, children={
        "dsn": Key("str"),
        "environment": Key("str"),
    }),
    "suppress_key_server_warning": Key("bool", False),
    "trusted_key_servers": Key("list", item=Key("any"), default=[]),
    "media_store_path": Key("str"),
    "caches": Key("map", children={"global_factor": Key("float", 0.5)}),
    # Synapse's name and default; scaled by caches.global_factor.
    "event_cache_size": Key("size", "10K"),
    # State snapshot blocks, in entries (as Synapse's stateGroupMembersCache,
    # 500K); scaled by caches.global_factor; 0 disables the cache.
    "state_cache_size": Key("size", "500K"),
    # MSC2228 self-destructing messages (Synapse's key): a message whose
    # content has org.matrix.self_destruct_after (a ms timestamp) is pruned,
    # as a redaction would, at that time
    "enable_ephemeral_messages": Key("bool", False, nullable=False),
    # MSC4140 delayed events (Synapse's key): the longest delay a client may
    # ask for; unset, delayed events are refused
    "max_event_delay_duration": Key("duration"),
    "default_room_version": Key("str", DEFAULT_ROOM_VERSION, nullable=False,
                                choices=tuple(KNOWN_ROOM_VERSIONS)),
    "presence": Key("map", children={
        "enabled": Key("bool", True, nullable=False),
        # send and accept m.presence EDUs over federation
        "federation": Key("bool", True, nullable=False),
    }),
    # -- search --
    # POST /user_directory/search (Synapse's keys): enabled false answers
    # nothing; search_all_users finds every user the server knows, not only
    # those sharing a room with the searcher or in a public room;
    # prefer_local_users ranks this server's users first
    "user_directory": Key("map", children={
        "enabled": Key("bool", True, nullable=False),
        "search_all_users": Key("bool", False, nullable=False),
        "prefer_local_users": Key("bool", False, nullable=False),
    }),
    # -- administration --
    # server notices (Synapse's keys): POST /_synapse/admin/v1/send_server_notice
    # sends as @<system_mxid_localpart> into a room of its own with each user;
    # no localpart: notices are off
    "server_notices": Key("map", children={
        "system_mxid_localpart": Key("str"),
        "system_mxid_display_name": Key("str"),
        "system_mxid_avatar_url": Key("str"),
        "room_name": Key("str", "Server Notices"),
        "room_avatar_url": Key("str"),
        "room_topic": Key("str"),
        "auto_join": Key("bool", False, nullable=False),
    }),
    # the content filter (docs/moderation.md): local users' messages with these
    # words (whole words, any case), matching these regular expressions, or
    # with more links or mentions than allowed are refused (action: reject,
    # 403 with the reason) or sent and redacted at once (action: redact);
    # room_rules: rooms add words with an org.homeserver.content_filter state event
    "content_filter": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
        "words": Key("list", item=Key("str", nullable=False), default=[]),
        "patterns": Key("list", item=Key("str", nullable=False), default=[]),
        "action": Key("str", "reject", nullable=False, choices=("reject", "redact")),
        "max_links": Key("int", minimum=0),
        "max_mentions": Key("int", minimum=0),
        "room_rules": Key("bool", True, nullable=False),
    }),
    # moderation policy lists followed (docs/moderation.md): room IDs whose
    # m.policy.rule.user|room|server bans apply to this server's users and rooms
    "policy_rooms": Key("list", item=Key("str", nullable=False), default=[]),
    # message retention (Synapse's keys; docs/moderation.md): m.room.retention
    # policies and this default hide expired messages from clients, and
    # the purge jobs delete them (shortest exclusive, longest inclusive)
    "retention": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
        "default_policy": Key("map", children={
            "min_lifetime": Key("duration"),
            "max_lifetime": Key("duration"),
        }),
        "allowed_lifetime_min": Key("duration"),
        "allowed_lifetime_max": Key("duration"),
        "purge_jobs": Key("list", default=[], item=Key("map", children={
            "shortest_max_lifetime": Key("duration"),
            "longest_max_lifetime": Key("duration"),
            "interval": Key("duration", required=True, nullable=False),
        })),
    }),
    # media not used for this long is deleted (local) or forgotten (cached
    # remote), checked hourly (Synapse's keys)
    "media_retention": Key("map", children={
        "local_media_lifetime": Key("duration"),
        "remote_media_lifetime": Key("duration"),
    }),
    # spam checker modules, as Synapse's modules: key (docs/moderation.md):
    # [{module: package.Class, config: {...}, fail_closed: false}]
    "modules": Key("list", item=Key("map", children=None), default=[]),
    # -- voip --
    # TURN servers handed to clients by /voip/turnServer (Synapse's names);
    # credentials follow the TURN REST scheme with the shared secret
    "turn_uris": Key("list", item=Key("str", nullable=False), default=[]),
    "turn_shared_secret": Key("str"),
    "turn_user_lifetime": Key("duration", 3_600_000),
    "turn_allow_guests": Key("bool", True, nullable=False),
    # -- media --
    # (media_store_path and max_upload_size are declared above; media_store_path
    # defaults to "media_store" next to the config file)
    # true: media uploaded (or fetched from other servers) from now on is served
    # only on the authenticated /_matrix/client/v1/media endpoints; the legacy
    # /_matrix/media/v3 download and thumbnail answer 404 for it
    "enable_authenticated_media": Key("bool", True, nullable=False),
    # images with more pixels than this are not thumbnailed (decompression bombs)
    "max_image_pixels": Key("size", "32M"),
    # true: thumbnails of any requested size are made on demand; false: the
    # closest of thumbnail_sizes (made at upload) is served
    "dynamic_thumbnails": Key("bool", False, nullable=False),
    "thumbnail_sizes": Key("list", item=Key("map", children={
        "width": Key("int", required=True, nullable=False, minimum=1, maximum=10_000),
        "height": Key("int", required=True, nullable=False, minimum=1, maximum=10_000),
        "method": Key("str", "scale", choices=("crop", "scale"), nullable=False),
    }), default=[{"width": 32, "height": 32, "method": "crop"},
                 {"width": 96, "height": 96, "method": "crop"},
                 {"width": 320, "height": 240, "method": "scale"},
                 {"width": 640, "height": 480, "method": "scale"},
                 {"width": 800, "height": 600, "method": "scale"}]),
    # a media ID from /_matrix/media/v1/create expires unused after this long
    "unused_expiration_time": Key("duration", 86_400_000),
    # how many created-but-not-uploaded media IDs one user may hold
    "max_pending_media_uploads": Key("int", 5, minimum=1),
    # extra stores every file is copied to and read back from when missing
    # locally: [{type: s3, bucket: ..., endpoint_url: ..., region_name: ...,
    # access_key_id: ..., secret_access_key: ..., prefix: ...}] (needs boto3)
    "media_storage_providers": Key("list", item=Key("map", children=None), default=[]),
    "url_preview_enabled": Key("bool", False, nullable=False),
    # URL previews never fetch from these ranges (the same defaults as
    # ip_range_blacklist) unless listed in url_preview_ip_range_whitelist
    "url_preview_ip_range_blacklist": Key("list", item=Key("str", nullable=False), default=[
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
        "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15",
        "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "0.0.0.0/8",
        "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
        "::/128", "::ffff:0:0/96"]),
    "url_preview_ip_range_whitelist": Key("list", item=Key("str", nullable=False), default=[]),
    # the most of a page (or image) a preview downloads
    "max_spider_size": Key("size", "10M"),
    # -- e-mail --
    # sending validation e-mails (requestToken) through an SMTP server
    # (Synapse's keys); e-mail 3PIDs work only when notif_from is set
    "email": Key("map", children={
        "smtp_host": Key("str", "localhost", nullable=False),
        "smtp_port": Key("int", 25, minimum=1, maximum=65535),
        "smtp_user": Key("str"),
        "smtp_pass": Key("str"),
        # STARTTLS must succeed before anything is sent
        "require_transport_security": Key("bool", False, nullable=False),
        # false: never STARTTLS, even when the server offers it
        "enable_tls": Key("bool", True, nullable=False),
        # the From: address, e.g. "Your Server <noreply@example.org>"
        "notif_from": Key("str"),
        "app_name": Key("str", "Matrix", nullable=False),
        # how long the link in a validation e-mail works
        "validation_token_lifetime": Key("duration", 3_600_000),
    }),
    # -- federation --
    # the federation listener's TLS certificate (PEM chain) and key; a
    # listener with tls: true serves them
    "tls_certificate_path": Key("str"),
    "tls_private_key_path": Key("str"),
    "federation_verify_certificates": Key("bool", True, nullable=False),
    # extra CA certificates (PEM files) trusted for outbound federation
    "federation_custom_ca_list": Key("list", item=Key("str", nullable=False), default=[]),
    # TESTING ONLY (Synapse's key): true fetches push gateways, URL previews
    # and identity servers over HTTPS without checking certificates
    # (http/outbound.py); never in production
    "use_insecure_ssl_client_just_for_testing_do_not_use": Key("bool", False,
                                                               nullable=False),
    # None: federate with anyone; else only with these servers
    "federation_domain_whitelist": Key("list", item=Key("str", nullable=False)),
    # outbound requests (federation, key fetches) never reach these ranges ...
    "ip_range_blacklist": Key("list", item=Key("str", nullable=False), default=[
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
        "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15",
        "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "0.0.0.0/8",
        "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
        "::/128", "::ffff:0:0/96"]),
    # ... unless listed here
    "ip_range_whitelist": Key("list", item=Key("str", nullable=False), default=[]),
    # signing keys this server used before (key ID -> {key, expired_ts})
    "old_signing_keys": Key("map", default={}, children=None),
    # how long our key response says it is valid for
    "key_refresh_interval": Key("duration", 86_400_000),
    "allow_public_rooms_over_federation": Key("bool", False),
    "allow_profile_lookup_over_federation": Key("bool", True),
    # -- application services --
    # registration files of bridges and bots (Synapse's YAML format;
    # docs/appservices.md), relative to this file's directory
    "app_service_config_files": Key("list", item=Key("str", nullable=False), default=[]),
    # true: requests to application services also carry the hs_token as the
    # legacy access_token query parameter (Synapse's key)
    "use_appservice_legacy_authorization": Key("bool", False, nullable=False),
    # -- several processes (docs/scale-out.md); all absent: one process --
    # Redis carries the replication stream between the processes
    "redis": Key("map", children={
        "enabled": Key("bool", False, nullable=False),
        "host": Key("str", "127.0.0.1", nullable=False),
        "port": Key("int", 6379, minimum=1, maximum=65535),
        "password": Key("str"),
        "dbid": Key("int", 0, minimum=0),
    }),
    # where each process listens, by worker name ("main" for the main
    # process): {host, port, tls}; readers forward writes to main's entry
    "instance_map": Key("map", default={}, children=None),
    # which process writes each stream: `events: [writer1, writer2]` shards
    # the rooms' events over those processes (a stable hash of the room ID);
    # every other stream is written by "main"
    "stream_writers": Key("map", default={}, children=None),
    # this process's role: null or "main" for the main process, "sync_reader",
    # "event_writer" (a process named in stream_writers.events)
    # (Synapse's synapse.app.generic_worker is taken as "sync_reader")
    "worker_app": Key("str", choices=WORKER_APPS),
    "worker_name": Key("str"),
    "worker_listeners": Key("list", item=_LISTENER),
    # the workers `homeserver run --worker NAME` can start from this file:
    # NAME -> {worker_app, worker_listeners}
    "workers": Key("map", default={}, children=None),
    # outbound federation on processes of its own (Synapse's names):
    # send_federation: false on main, and the senders, destinations sharded
    # over them by a stable hash of the server name
    "send_federation": Key("bool", True),
    "federation_sender_instances": Key("list", default=[], item=Key("str")),
    # push gateways on processes of their own: users sharded by hash
    "start_pushers": Key("bool", True),
    "pusher_instances": Key("list", default=[], item=Key("str")),
    # the media worker that runs media's background jobs (retention purges)
    "media_instance_running_background_jobs": Key("str"),
    "federation": Key("map", children={
        "client_timeout": Key("duration", 60_000),
        "max_short_retry_delay": Key("duration", 2_000),
        "max_long_retry_delay": Key("duration", 60_000),
        "max_short_retries": Key("int", 3, minimum=0),
        "max_long_retries": Key("int", 10, minimum=0),
        "destination_min_retry_interval": Key("duration", 600_000),
        "destination_retry_multiplier": Key("float", 2),
        "destination_max_retry_interval": Key("duration", 7 * 86_400_000),
    }),
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _default(key: Key, path: str) -> Any:
    """The value of a key that is absent (or null): its default, checked like a value."""
    if key.kind == "map" and key.children is not None:
        return _check_map(key.children, copy.deepcopy(key.default or {}), path)
    if key.default is None:
        return None
    return _check(key, copy.deepcopy(key.default), path)


def _check_bounds(key: Key, value: int, path: str) -> None:
    low, high = key.minimum, key.maximum
    if (low is None or value >= low) and (high is None or value <= high):
        return
    if low is not None and high is not None:
        raise ConfigError(f"{path}: must be between {low} and {high}, got {value}")
    if low is not None:
        raise ConfigError(f"{path}: must be at least {low}, got {value}")
    raise ConfigError(f"{path}: must be at most {high}, got {value}")


def _check(key: Key, value: Any, path: str) -> Any:
    """Validate ``value`` against ``key`` and return it with defaults filled in."""
    if value is None:
        if key.required or not key.nullable:
            raise ConfigError(f"{path}: must be set")
        # `database:` with nothing under it, or `bcrypt_rounds: null`, means the default.
        return _default(key, path)
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{path}: must be one of {', '.join(map(str, key.choices))}, "
                          f"got {value!r}")
    kind = key.kind
    checks: dict[str, Callable[[Any], bool]] = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "map": lambda v: isinstance(v, dict),
        "any": lambda v: True,
    }
    if kind == "duration":
        return parse_duration_ms(value, path)
    if kind == "size":
        return parse_size(value, path)
    if not checks[kind](value):
        expected = {"str": "a string", "int": "an integer", "float": "a number",
                    "bool": "true or false", "list": "a list", "map": "a mapping"}[kind]
        raise ConfigError(f"{path}: expected {expected}, got {_type_name(value)}")
    if kind == "int":
        _check_bounds(key, value, path)
    if kind == "float":
        return float(value)
    if kind == "list":
        assert key.item is not None
        return [_check(key.item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map" and key.children is not None:
        return _check_map(key.children, value, path)
    return value


def _check_map(children: dict[str, Key], value: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(f"{path}: keys must be strings, got {name!r}")
        if name not in children:
            where = f"{path}.{name}" if path else name
            raise ConfigError(f"{where}: unknown configuration key")
    for name, key in children.items():
        where = f"{path}.{name}" if path else name
        if name in value:
            out[name] = _check(key, value[name], where)
        elif key.required:
            raise ConfigError(f"{where}: must be set")
        else:
            out[name] = _default(key, where)
    return out


# --- the typed view -----------------------------------------------------------

@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst_count: float


@dataclass(frozen=True)
class Listener:
    port: int
    bind_addresses: list[str]
    type: str
    tls: bool
    x_forwarded: bool
    resources: list[str]


@dataclass(frozen=True)
class DatabaseConfig:
    engine: str  # "sqlite" or "postgres"
    args: dict[str, Any]


@dataclass(frozen=True)
class Instance:
    """Where one process of the deployment listens (``instance_map``)."""

    host: str
    port: int
    tls: bool

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


@dataclass(frozen=True)
class RedisConfig:
    host: str
    port: int
    password: str | None
    dbid: int


@dataclass(frozen=True)
class WorkerConfig:
    """This process's role among several (docs/scale-out.md). The default, a
    main process without Redis, is the single-process server."""

    app: str = "main"  # "main" or "sync_reader"
    name: str = "main"
    # None: no replication (one process)
    redis: RedisConfig | None = None
    instance_map: dict[str, Instance] = field(default_factory=dict)
    # stream_writers.events: the processes the rooms' events are sharded
    # over; empty: the main process writes them all
    event_writers: tuple[str, ...] = ()
    # federation_sender_instances / pusher_instances: the processes that
    # send federation transactions / push; empty: main
    federation_senders: tuple[str, ...] = ()
    pushers: tuple[str, ...] = ()
    # the process that runs media's background jobs (main by default)
    media_jobs: str = "main"

    @property
    def sends_federation(self) -> bool:
        """Whether this process sends our events to other servers (its share
        of the destinations: ``replication/writers.py`` ``shard_of``)."""
        return self.name in self.federation_senders if self.federation_senders \
            else self.is_main

    @property
    def runs_pushers(self) -> bool:
        """Whether this process runs pushers (its share of the users)."""
        return self.name in self.pushers if self.pushers else self.is_main

    @property
    def is_main(self) -> bool:
        return self.app == "main"

    @property
    def is_event_writer(self) -> bool:
        return self.name in self.event_writers

    @property
    def multi_writer(self) -> bool:
        """Whether processes other than main write the global stream."""
        return any(w != "main" for w in self.event_writers)

    @property
    def stream_writers(self) -> tuple[str, ...]:
        """Every process that takes global stream positions: main, and the
        event writers."""
        return ("main", *(w for w in self.event_writers if w != "main"))


@dataclass
class Config:
    """The validated configuration. ``raw`` keeps every key with its default."""

    raw: dict[str, Any]
    config_dir: str = "."
    server_name: str = ""
    public_baseurl: str = ""
    listeners: list[Listener] = field(default_factory=list)
    database: DatabaseConfig = field(default_factory=lambda: DatabaseConfig("sqlite", {}))
    signing_key_path: str | None = None
    rc_message: RateLimit = RateLimit(0.2, 10)
    rc_registration: RateLimit = RateLimit(0.17, 3)
    rc_login_address: RateLimit = RateLimit(0.003, 5)
    rc_login_account: RateLimit = RateLimit(0.003, 5)
    rc_login_failed_attempts: RateLimit = RateLimit(0.17, 3)
    # the registered application services (appservice/registration.py)
    app_services: Any = None
    # the identity providers and JWT login (accounts/sso_config.py SsoConfig)
    sso_config: Any = None
    # one line per Synapse key that was dropped (logged at start)
    warnings: list[str] = field(default_factory=list)
    # this process's role (worker_app, worker_name, redis, instance_map)
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def __getattr__(self, name: str) -> Any:
        # Plain keys (enable_registration, bcrypt_rounds, ...) read straight
        # from the validated mapping, so they are declared only in SCHEMA.
        raw = self.__dict__.get("raw")
        if raw is not None and name in raw:
            return raw[name]
        raise AttributeError(name)


def _rate_limit(value: dict[str, Any]) -> RateLimit:
    return RateLimit(value["per_second"], value["burst_count"])


def build_config(data: Any, config_dir: str = ".") -> Config:
    """Validate a parsed YAML document and return the typed ``Config``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the configuration must be a mapping, got {_type_name(data)}")
    # a Synapse homeserver.yaml carried across: its keys we do not implement
    # are dropped with a warning, or refused where ignoring them is unsafe
    try:
        data, warnings = drop_synapse_keys(data, SCHEMA.keys())
    except ValueError as e:
        raise ConfigError(str(e)) from None
    raw = _check_map(SCHEMA, data, "")
    server_name = raw["server_name"]
    if raw["max_event_delay_duration"] is not None and raw["max_event_delay_duration"] <= 0:
        raise ConfigError("max_event_delay_duration: must be a positive duration if set")
    if "m.homeserver" in raw["extra_well_known_client_content"]:
        raise ConfigError("extra_well_known_client_content: m.homeserver is set from "
                          "public_baseurl and cannot be overridden")
    if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:\d{1,5})?", server_name):
        raise ConfigError(f"server_name: not a valid server name: {server_name!r}")
    if raw["enable_registration"] and not (
        raw["enable_registration_without_verification"] or raw["registration_requires_token"]
        or raw["enable_registration_captcha"]
    ):
        raise ConfigError(
            "enable_registration: open registration without verification lets anyone create "
            "accounts; set registration_requires_token, enable_registration_captcha or "
            "enable_registration_without_verification: true")
    if raw["enable_registration_captcha"] and not (
        raw["recaptcha_public_key"] and raw["recaptcha_private_key"]
    ):
        raise ConfigError("enable_registration_captcha: needs recaptcha_public_key and "
                          "recaptcha_private_key")
    # the identity providers, checked and with their templates compiled
    from homeserver.accounts.sso_config import load_sso_config
    sso_config = load_sso_config(raw, config_dir)
    for i, pattern in enumerate(raw["content_filter"]["patterns"]):
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"content_filter.patterns[{i}]: not a regular expression: "
                              f"{e}") from None
    from homeserver.rooms.retention import RetentionConfig
    RetentionConfig.from_raw(raw["retention"])  # refuses what Synapse refuses
    for key, value in raw["media_retention"].items():
        if value is not None and value <= 0:
            raise ConfigError(f"media_retention.{key}: must be a positive duration")
    listeners = []
    for lst in raw["listeners"]:
        names = [n for r in lst["resources"] for n in r["names"]]
        listeners.append(Listener(lst["port"], lst["bind_addresses"], lst["type"], lst["tls"],
                                  lst["x_forwarded"], names))
    db = raw["database"]
    engine = "sqlite" if db["name"] == "sqlite3" else "postgres"
    args = {k: v for k, v in db["args"].items() if v is not None}
    if engine == "sqlite":
        if "database" not in args:
            raise ConfigError("database.args.database: must be set to the SQLite file's path")
        # Like signing_key_path: relative to the config file, not to the cwd.
        if args["database"] != ":memory:":
            args["database"] = os.path.join(config_dir, args["database"])
    public_baseurl = raw["public_baseurl"]
    if not public_baseurl:
        public_baseurl = f"https://{server_name}/"
    if not public_baseurl.endswith("/"):
        public_baseurl += "/"
    rc_login = raw["rc_login"]
    for name in raw["workers"]:  # checked now, so a typo fails the main process too
        _check(_WORKER, raw["workers"][name], f"workers.{name}")
    worker, worker_listeners = _worker_config(raw, raw["worker_name"], raw["worker_app"],
                                              raw["worker_listeners"])
    if worker_listeners is not None:
        listeners = worker_listeners
    from homeserver.appservice.registration import load_registrations
    app_services = load_registrations(raw["app_service_config_files"], server_name,
                                      config_dir)
    return Config(
        raw=raw,
        config_dir=config_dir,
        server_name=server_name,
        public_baseurl=public_baseurl,
        listeners=listeners,
        database=DatabaseConfig(engine, args),
        signing_key_path=raw["signing_key_path"],
        rc_message=_rate_limit(raw["rc_message"]),
        rc_registration=_rate_limit(raw["rc_registration"]),
        rc_login_address=_rate_limit(rc_login["address"]),
        rc_login_account=_rate_limit(rc_login["account"]),
        rc_login_failed_attempts=_rate_limit(rc_login["failed_attempts"]),
        app_services=app_services,
        sso_config=sso_config,
        warnings=warnings,
        worker=worker,
    )


def _listeners(items: list[dict[str, Any]]) -> list[Listener]:
    return [Listener(lst["port"], lst["bind_addresses"], lst["type"], lst["tls"],
                     lst["x_forwarded"], [n for r in lst["resources"] for n in r["names"]])
            for lst in items]


def _worker_config(raw: dict[str, Any], name: str | None, app: str | None,
                   listeners: list[dict[str, Any]] | None
                   ) -> tuple[WorkerConfig, list[Listener] | None]:
    """The role of this process, and its listeners if they are its own."""
    if app in ("synapse.app.generic_worker",):
        app = "sync_reader"
    if app in ("synapse.app.federation_sender", "synapse.app.pusher",
               "synapse.app.media_repository"):
        app = app.rsplit(".", 1)[1]
    if app in (None, "synapse.app.homeserver"):
        app = "main"
    instances: dict[str, Instance] = {}
    for inst_name, value in raw["instance_map"].items():
        checked = _check(_INSTANCE, value, f"instance_map.{inst_name}")
        instances[str(inst_name)] = Instance(checked["host"], checked["port"], checked["tls"])
    event_writers: tuple[str, ...] = ()
    for stream, writers in raw["stream_writers"].items():
        if stream not in STREAMS:
            raise ConfigError(f"stream_writers.{stream}: unknown stream; one of "
                              f"{', '.join(STREAMS)}")
        names = writers if isinstance(writers, list) else [writers]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"stream_writers.{stream}: a list of process names")
        if stream == "events":
            if len(set(names)) != len(names):
                raise ConfigError("stream_writers.events: a process is named twice")
            event_writers = tuple(names)
        elif names != ["main"]:
            raise ConfigError(f"stream_writers.{stream}: only the main process writes "
                              "this stream so far (docs/scale-out.md)")
    redis_raw = raw["redis"]
    redis = RedisConfig(redis_raw["host"], redis_raw["port"], redis_raw["password"],
                        redis_raw["dbid"]) if redis_raw["enabled"] else None
    for writer in event_writers:
        if writer == "main":
            continue
        if redis is None:
            raise ConfigError(f"redis.enabled: event writer {writer} needs Redis to tell "
                              "the other processes what it writes")
        if writer not in instances:
            raise ConfigError(f"instance_map.{writer}: the other processes forward the "
                              "sends of its rooms there and must know where it listens")
    if any(w != "main" for w in event_writers) and "main" not in instances:
        raise ConfigError("instance_map.main: with event writers, the WebSocket's writes "
                          "and every other write go to the main process there")
    if app == "event_writer" and name not in event_writers:
        raise ConfigError(f"stream_writers.events: worker {name} is an event_writer but is "
                          "not named there")
    if app != "main" and name in event_writers:
        app = "event_writer"
    if app != "main":
        if not name or name == "main":
            raise ConfigError("worker_name: a worker needs a name other than main")
        if redis is None:
            raise ConfigError(f"redis.enabled: worker {name} ({app}) needs Redis to hear "
                              "about the main process's writes")
        if "main" not in instances:
            raise ConfigError(f"instance_map.main: worker {name} forwards writes to the main "
                              "process and must know where it listens")
    senders = _instances(raw, "federation_sender_instances", "send_federation", redis)
    pushers = _instances(raw, "pusher_instances", "start_pushers", redis)
    if app == "federation_sender" and name not in senders:
        raise ConfigError(f"federation_sender_instances: worker {name} is a "
                          "federation_sender but is not named there")
    if app == "pusher" and name not in pushers:
        raise ConfigError(f"pusher_instances: worker {name} is a pusher but is not named there")
    media_jobs = raw["media_instance_running_background_jobs"] or "main"
    worker = WorkerConfig(app, name or "main", redis, instances, event_writers,
                          senders, pushers, media_jobs)
    return worker, (_listeners(listeners) if listeners is not None else None)


def _instances(raw: dict[str, Any], key: str, flag: str,
               redis: RedisConfig | None) -> tuple[str, ...]:
    """``federation_sender_instances`` (with ``send_federation``) or
    ``pusher_instances`` (with ``start_pushers``): the processes that do it."""
    names = [str(n) for n in raw[key]]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"{key}: a list of distinct process names")
    if not raw[flag] and not names:
        raise ConfigError(f"{flag}: false, but {key} names no process to do it instead")
    if raw[flag] and names and "main" not in names:
        raise ConfigError(f"{flag}: set it to false when {key} names other processes "
                          "(or name main among them)")
    if any(n != "main" for n in names) and redis is None:
        raise ConfigError(f"redis.enabled: {key} needs Redis to feed those processes")
    return tuple(names)


def select_worker(config: Config, name: str) -> Config:
    """``config`` as the worker ``name`` of its ``workers`` map runs it
    (``homeserver run --worker NAME``): its role and its own listeners."""
    workers = config.raw["workers"]
    if name == "main":
        return config
    if name not in workers:
        known = ", ".join(sorted(workers)) or "none"
        raise ConfigError(f"workers.{name}: no such worker in the config (known: {known})")
    entry = _check(_WORKER, workers[name], f"workers.{name}")
    worker, listeners = _worker_config(config.raw, name, entry["worker_app"],
                                       entry["worker_listeners"])
    if not listeners:
        raise ConfigError(f"workers.{name}.worker_listeners: a worker needs listeners of "
                          "its own")
    return dataclasses.replace(config, worker=worker, listeners=listeners)


def load_config(path: str) -> Config:
    """Read, parse and validate the YAML file at ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return build_config(data, os.path.dirname(os.path.abspath(path)))
