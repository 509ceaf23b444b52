"""Application service registrations, as Synapse reads them.

A registration file (``app_service_config_files``) is YAML::

    id: irc-bridge               # unique; names the service in its room lists
    url: http://localhost:9999   # where transactions go; null: none are sent
    as_token: ...                # the service's token to us (unique)
    hs_token: ...                # our token to the service
    sender_localpart: ircbot     # the service's own user
    namespaces:
      users:   [{exclusive: true, regex: '@irc_.*:example.org'}]
      aliases: [{exclusive: false, regex: '#irc_.*:example.org'}]
      rooms:   []
    rate_limited: false          # default true
    protocols: [irc]             # third-party protocols it answers for
    receive_ephemeral: false     # (MSC2409) typing/receipts/presence too

Namespace regexes come from the operator, not from users, and are matched
as Synapse matches them: anchored at the start of the ID (``re.match``), not
at the end. A bad file is a ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from homeserver.config import ConfigError


@dataclass(frozen=True)
class Namespace:
    regex: re.Pattern[str]
    exclusive: bool


@dataclass(frozen=True)
class ApplicationService:
    """One registered application service."""

    id: str
    url: str | None
    as_token: str
    hs_token: str
    # the service's own user, always in its namespace
    sender: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    # the file it came from, for messages
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # -- namespaces --

    def is_interested_in_user(self, user_id: str) -> bool:
        """The service's own user or one its user namespaces match."""
        return user_id == self.sender or _matches(self.users, user_id)

    def is_exclusive_user(self, user_id: str) -> bool:
        return user_id == self.sender or _matches(self.users, user_id, exclusive=True)

    def is_interested_in_alias(self, alias: str) -> bool:
        return _matches(self.aliases, alias)

    def is_exclusive_alias(self, alias: str) -> bool:
        return _matches(self.aliases, alias, exclusive=True)

    def is_interested_in_room(self, room_id: str) -> bool:
        return _matches(self.rooms, room_id)


def _matches(namespaces: Iterable[Namespace], value: str, exclusive: bool = False) -> bool:
    return any((ns.exclusive or not exclusive) and ns.regex.match(value)
               for ns in namespaces)


class AppServices:
    """Every registered service, found by token, by ID, by user or alias."""

    def __init__(self, services: Iterable[ApplicationService] = ()) -> None:
        self.services: tuple[ApplicationService, ...] = tuple(services)
        self._by_token = {s.as_token: s for s in self.services}
        self._by_id = {s.id: s for s in self.services}

    def __bool__(self) -> bool:
        return bool(self.services)

    def by_token(self, token: str) -> ApplicationService | None:
        return self._by_token.get(token)

    def by_id(self, service_id: str) -> ApplicationService | None:
        return self._by_id.get(service_id)

    def interested_in_user(self, user_id: str) -> list[ApplicationService]:
        return [s for s in self.services if s.is_interested_in_user(user_id)]

    def interested_in_alias(self, alias: str) -> list[ApplicationService]:
        return [s for s in self.services if s.is_interested_in_alias(alias)]

    def exclusive_user_owner(self, user_id: str) -> ApplicationService | None:
        """The service holding ``user_id`` in an exclusive namespace, if any."""
        return next((s for s in self.services if s.is_exclusive_user(user_id)), None)

    def exclusive_alias_owner(self, alias: str) -> ApplicationService | None:
        return next((s for s in self.services if s.is_exclusive_alias(alias)), None)

    def with_protocol(self, protocol: str) -> list[ApplicationService]:
        return [s for s in self.services if protocol in s.protocols and s.url]

    def exempt_from_rate_limits(self, user_id: str) -> bool:
        """Whether ``user_id`` is the user, or a namespace user, of a service
        registered with ``rate_limited: false`` (its messages are not limited)."""
        return any(not s.rate_limited and s.is_interested_in_user(user_id)
                   for s in self.services)


# --- loading -------------------------------------------------------------------

_KEYS = {"id", "url", "as_token", "hs_token", "sender_localpart", "namespaces",
         "rate_limited", "protocols", "receive_ephemeral", "push_ephemeral",
         "de.sorunome.msc2409.push_ephemeral", "org.matrix.msc3202",
         "org.matrix.msc4190", "ip_range_whitelist", "description"}


def _need_str(data: dict[str, Any], key: str, where: str, *, nullable: bool = False) -> Any:
    value = data.get(key)
    if value is None and nullable and key in data:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key}: must be set to a non-empty string")
    return value


def _namespaces(data: Any, kind: str, where: str) -> tuple[Namespace, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{where}: namespaces.{kind}: expected a list")
    out = []
    for i, item in enumerate(data):
        path = f"{where}: namespaces.{kind}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: expected a mapping with regex and exclusive")
        regex, exclusive = item.get("regex"), item.get("exclusive", False)
        if not isinstance(regex, str):
            raise ConfigError(f"{path}.regex: must be set to a string")
        if not isinstance(exclusive, bool):
            raise ConfigError(f"{path}.exclusive: expected true or false")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise ConfigError(f"{path}.regex: not a valid regular expression: {e}") from None
        out.append(Namespace(compiled, exclusive))
    return tuple(out)


def parse_registration(data: Any, server_name: str, where: str) -> ApplicationService:
    """One registration file's content, checked; ``where`` names the file."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    service_id = _need_str(data, "id", where)
    url = _need_str(data, "url", where, nullable=True)
    as_token = _need_str(data, "as_token", where)
    hs_token = _need_str(data, "hs_token", where)
    localpart = _need_str(data, "sender_localpart", where)
    if ":" in localpart or localpart.startswith("@"):
        raise ConfigError(f"{where}: sender_localpart: a localpart, not a user ID")
    namespaces = data.get("namespaces") or {}
    if not isinstance(namespaces, dict):
        raise ConfigError(f"{where}: namespaces: expected a mapping")
    for kind in namespaces:
        if kind not in ("users", "aliases", "rooms"):
            raise ConfigError(f"{where}: namespaces.{kind}: unknown namespace kind")
    rate_limited = data.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise ConfigError(f"{where}: rate_limited: expected true or false")
    protocols = data.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
        raise ConfigError(f"{where}: protocols: expected a list of strings")
    ephemeral = data.get("receive_ephemeral",
                         data.get("de.sorunome.msc2409.push_ephemeral",
                                  data.get("push_ephemeral", False)))
    if not isinstance(ephemeral, bool):
        raise ConfigError(f"{where}: receive_ephemeral: expected true or false")
    if url is not None and not re.match(r"https?://", url):
        raise ConfigError(f"{where}: url: must be an http:// or https:// URL, or null")
    return ApplicationService(
        id=service_id, url=url.rstrip("/") if url else None, as_token=as_token,
        hs_token=hs_token, sender=f"@{localpart}:{server_name}",
        users=_namespaces(namespaces.get("users"), "users", where),
        aliases=_namespaces(namespaces.get("aliases"), "aliases", where),
        rooms=_namespaces(namespaces.get("rooms"), "rooms", where),
        rate_limited=rate_limited, protocols=tuple(protocols),
        receive_ephemeral=ephemeral, source=where,
        extra={k: v for k, v in data.items() if k not in _KEYS})


def load_registrations(paths: Iterable[str], server_name: str,
                       config_dir: str = ".") -> AppServices:
    """Read every registration file; refuse two services sharing an ID or token."""
    services: list[ApplicationService] = []
    for path in paths:
        full = os.path.join(config_dir, path)
        try:
            with open(full, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise ConfigError(f"app_service_config_files: cannot read {path}: "
                              f"{e.strerror}") from None
        except (yaml.YAMLError, UnicodeDecodeError):
            raise ConfigError(f"{path}: not a valid YAML registration file") from None
        service = parse_registration(data, server_name, path)
        for other in services:
            if other.id == service.id:
                raise ConfigError(f"{path}: id: {service.id!r} is also the id of "
                                  f"{other.source}")
            if other.as_token == service.as_token:
                raise ConfigError(f"{path}: as_token: the same as_token as {other.source}")
        services.append(service)
    return AppServices(services)
