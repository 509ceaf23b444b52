"""Synapse's configuration keys that we do not implement.

An operator carries a Synapse ``homeserver.yaml`` across: every top-level key
of Synapse's documented configuration is either one of ours (``config.py``'s
schema, same name, same meaning) or listed here. A key listed here is dropped
with one warning line (``<key>: Synapse setting not supported here;
ignored``), unless ignoring the value given would weaken security or change
what happens to data: then the config is refused, naming the key and why.
Such keys are refused only when set to something other than Synapse's
default, so a generated or copied config that leaves them alone starts.

A key in no schema at all stays an error (a typo must not pass silently).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Refusal = tuple[Callable[[Any], bool], str]


def _set(value: Any) -> bool:
    """Given a value that does something (not null, empty or false)."""
    return value not in (None, False, "", [], {})


def _enabled(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("enabled"))


def _is_not(default: Any) -> Callable[[Any], bool]:
    return lambda value: value is not None and value != default


# key -> (does this value matter?, what ignoring it would do)
REFUSED: dict[str, Refusal] = {
    "require_auth_for_profile_requests": (
        _is_not(False), "profiles would be readable without an access token"),
    "limit_profile_requests_to_users_who_share_rooms": (
        _is_not(False), "profiles would be readable by users who share no room"),
    "include_profile_data_on_invite": (
        _is_not(True), "invites would carry the profile data you chose to withhold"),
    "block_non_admin_invites": (_is_not(False), "every user could still send invites"),
    "hs_disabled": (_is_not(False), "the server would stay open to its users"),
    "limit_usage_by_mau": (_is_not(False), "the monthly active user limit would not apply"),
    "redaction_retention_period": (
        _is_not("7d"), "redacted events' content would be kept for another period than"
        " configured"),
    "forgotten_room_retention_period": (_set, "forgotten rooms would not be purged"),
    "registrations_require_3pid": (
        _set, "accounts could register without the third-party ID you require"),
    "allowed_local_3pids": (_set, "any e-mail address could be added to an account"),
    "enable_set_displayname": (_is_not(True), "users could still change their display name"),
    "enable_set_avatar_url": (_is_not(True), "users could still change their avatar"),
    "enable_3pid_changes": (_is_not(True), "users could still change their e-mail addresses"),
    "saml2_config": (_set, "users could not sign in through SAML"),
    "matrix_authentication_service": (
        _enabled, "sign-in would not be delegated to the authentication service"),
    "databases": (_set, "several databases are not supported: use the database key"),
    "user_consent": (_set, "users would not be asked to consent to your terms"),
    "alias_creation_rules": (_set, "users could create aliases your rules forbid"),
    "room_list_publication_rules": (
        _set, "users could publish rooms in the directory that your rules forbid"),
    "encryption_enabled_by_default_for_room_type": (
        _is_not("off"), "new rooms would not be encrypted by default"),
    "default_power_level_content_override": (
        _set, "rooms would be created with the spec's power levels, not yours"),
    "federation_client_minimum_tls_version": (
        lambda v: v is not None and str(v) not in ("1", "1.0"),
        "outgoing federation would accept older TLS versions than you allow"),
    "prevent_media_downloads_from": (_set, "media from those servers would be downloaded"),
    "url_preview_url_blacklist": (_set, "URLs you block would be previewed"),
    "push": (lambda v: isinstance(v, dict) and v.get("include_content") is False,
             "message content would be sent to push gateways"),
    "nonrefreshable_access_token_lifetime": (
        _is_not("infinity"), "access tokens would live longer than configured"),
    "next_link_domain_whitelist": (
        _set, "validation links could redirect to any domain"),
    "request_token_inhibit_3pid_errors": (
        _is_not(False), "validation requests would reveal which addresses have accounts"),
}

# Keys whose value is dropped with a warning: operational tuning, features we
# do not have whose absence weakens nothing (rate limits of endpoints we do not
# serve, workers, tracing), secrets our design does not use (macaroons, forms).
IGNORED: frozenset[str] = frozenset({
    "daemonize", "print_pidfile", "user_agent_suffix", "use_frozen_dicts",
    "web_client_location",
    "soft_file_limit", "allow_public_rooms_without_auth", "gc_thresholds", "gc_min_interval",
    "filter_timeline_limit", "enable_search", "manhole", "manhole_settings", "http_proxy",
    "https_proxy", "no_proxy_hosts", "dummy_events_threshold", "delete_stale_devices_after",
    "user_types", "admin_contact", "hs_disabled_message",
    "max_mau_value", "mau_trial_days", "mau_appservice_trial_days", "mau_limit_alerting",
    "mau_stats_only", "mau_limit_reserved_threepids", "server_context", "limit_remote_rooms",
    "require_membership_for_aliases", "allow_per_room_profiles", "max_avatar_size",
    "allowed_avatar_mimetypes", "user_ips_max_age", "templates",
    "federation_certificate_verification_whitelist", "federation_whitelist_endpoint_enabled",
    "federation_metrics_domains", "allow_device_name_lookup_over_federation",
    "rc_registration_token_validity", "rc_joins", "rc_joins_per_room", "rc_3pid_validation",
    "rc_invites", "rc_third_party_invite", "rc_media_create", "rc_federation", "rc_presence",
    "rc_delayed_event_mgmt", "rc_reports", "rc_room_creation", "rc_user_directory",
    "federation_rr_transactions_per_room_per_second", "enable_media_repo",
    "enable_local_media_storage", "media_upload_limits", "remote_media_download_burst_count",
    "remote_media_download_per_second", "url_preview_accept_language", "oembed",
    "recaptcha_public_key_path", "recaptcha_private_key_path", "turn_shared_secret_path",
    "turn_username", "turn_password", "matrix_rtc", "disable_msisdn_registration",
    "enable_3pid_lookup", "registration_shared_secret_path", "default_identity_server",
    "account_threepid_delegates", "auto_join_rooms", "autocreate_auto_join_rooms",
    "autocreate_auto_join_rooms_federated", "autocreate_auto_join_room_preset",
    "auto_join_mxid_localpart", "auto_join_rooms_for_guests", "inhibit_user_in_use_error",
    "allow_underscore_prefixed_registration",
    "metrics_flags", "report_stats_endpoint", "room_prejoin_state", "track_puppeted_user_ips",
    "track_appservice_user_ips", "macaroon_secret_key",
    "macaroon_secret_key_path", "form_secret", "form_secret_path",
    "key_server_signing_keys_path", "stats",
    "enable_room_list_search", "forget_rooms_on_leave", "exclude_rooms_from_sync",
    "exclude_rooms_from_presence", "opentracing", "worker_replication_secret",
    "worker_replication_secret_path",
    "outbound_federation_restricted_to", "run_background_tasks_on",
    "update_user_directory_from_worker", "notify_appservices_from_worker",
    "worker_manhole", "worker_daemonize", "worker_pid_file", "worker_log_config",
    "background_updates", "auto_accept_invites",
})


def drop_synapse_keys(data: dict[str, Any], ours: set[str] | frozenset[str] |
                      Any) -> tuple[dict[str, Any], list[str]]:
    """``data`` without the Synapse keys we do not implement, and one warning
    per key dropped. Raises ValueError (the key and why) for a refused value.
    ``ours``: the keys our schema declares (they are never dropped)."""
    kept: dict[str, Any] = {}
    warnings: list[str] = []
    for name, value in data.items():
        if name in ours or not isinstance(name, str):
            kept[name] = value
            continue
        refusal = REFUSED.get(name)
        if refusal is not None:
            matters, why = refusal
            if matters(value):
                raise ValueError(f"{name}: Synapse setting not supported here, and ignoring"
                                 f" it would be unsafe: {why}")
        elif name not in IGNORED:
            kept[name] = value  # no Synapse key either: the schema check names it
            continue
        warnings.append(f"{name}: Synapse setting not supported here; ignored")
    return kept, warnings
