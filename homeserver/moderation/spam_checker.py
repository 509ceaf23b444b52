"""Spam checker modules, loaded from the ``modules`` config as Synapse loads them.

Each entry names a class (``module: package.module.Class``) and its
``config``. The class is built as ``Class(config, api)`` (after
``Class.parse_config(config)`` if it has one) and registers its callbacks
with ``api.register_spam_checker_callbacks(...)``, Synapse's names:

- ``check_event_for_spam(event: dict)``: the event about to be sent (type,
  room_id, sender, content, state_key);
- ``user_may_join_room(user_id, room_id, is_invited)``;
- ``user_may_invite(inviter, invitee, room_id)``;
- ``user_may_create_room(user_id)``;
- ``check_registration_for_spam(email_threepid, username, request_info,
  auth_provider_id)``: ``"allow"``, ``"deny"`` (403) or ``"shadow_ban"``
  (the account is made and shadow-banned), or Synapse's
  ``RegistrationBehaviour`` (its ``.value``); ``request_info`` is
  ``[(user_agent, ip)]`` (our user agent is empty);
- ``check_media_file_for_spam(data: bytes, file_info: dict)``: an upload's
  bytes and ``media_type``, ``upload_name``, ``user_id`` (Synapse hands a
  file wrapper and its FileInfo);
- ``check_login_for_spam(user_id, device_id, initial_display_name,
  request_info, auth_provider_id)``: a password, token or JWT login (not an
  application service's) about to make a session;
- ``user_may_send_3pid_invite(inviter, medium, address, room_id)``;
  ``should_drop_federated_event(pdu: dict)``: True drops a PDU of an
  inbound transaction unseen (a raising module keeps it); fetched later as
  another event's prev_event, it is kept redacted;
- ``federated_user_may_invite(event: dict)``: an invite of one of our users
  from another server; ``user_may_send_state_event(user_id, room_id,
  event_type, state_key, content)``;
- ``user_may_knock(user_id, room_id)`` (ours; Synapse has none),
  ``user_may_create_room_alias(user_id, room_alias)`` (an alias string with
  Synapse's ``to_string()``,
  ``localpart`` and ``domain``), ``user_may_publish_room(user_id, room_id)``
  (listing in the room directory);
- ``check_username_for_spam(user_profile, requester_id)`` (or Synapse's
  older one-argument form): a user directory result (``user_id``,
  ``display_name``, ``avatar_url``); True leaves it out of the searcher's
  results (a raising callback leaves it in, or out with ``fail_closed``).

A callback may be a plain or an async function. It allows with ``NOT_SPAM``
(``"NOT_SPAM"``), None, or (as Synapse's older interface) False from
``check_event_for_spam`` and True from the ``user_may_*``; anything else
refuses: an errcode string, an ``(errcode, dict)`` pair, or the boolean that
means no. A refusal is 403 with that errcode (M_FORBIDDEN for a boolean).

A callback that raises is logged and the action allowed, as Synapse does,
unless its module's entry says ``fail_closed: true``: then it is refused.
The callbacks run in config order; the first refusal wins. Unlike Synapse,
``check_event_for_spam`` sees the event before it is built (no event ID,
no auth events): it runs before anything is stored.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

NOT_SPAM = "NOT_SPAM"
CALLBACKS = ("check_event_for_spam", "user_may_join_room", "user_may_invite",
             "user_may_create_room", "check_registration_for_spam",
             "check_media_file_for_spam", "check_username_for_spam", "user_may_knock",
             "user_may_create_room_alias", "user_may_publish_room",
             "federated_user_may_invite", "user_may_send_state_event",
             "check_login_for_spam", "user_may_send_3pid_invite",
             "should_drop_federated_event")
REGISTRATION_VERDICTS = ("allow", "deny", "shadow_ban")


class RoomAlias(str):
    """A room alias as Synapse's modules get it (``to_string()``,
    ``localpart``, ``domain``), and a plain string too."""

    def to_string(self) -> str:
        return str(self)

    @property
    def localpart(self) -> str:
        return self[1:].split(":", 1)[0]

    @property
    def domain(self) -> str:
        return self.split(":", 1)[1] if ":" in self else ""


class ModuleConfigError(Exception):
    pass


@dataclass
class _Registered:
    module: str
    fail_closed: bool
    callbacks: dict[str, Callable[..., Any]] = field(default_factory=dict)


class ModuleApi:
    """What a module's constructor is handed (Synapse's ModuleApi, the part
    spam checkers use): the server's name, a clock, a user's account."""

    def __init__(self, server_name: str, registered: _Registered, users: Any,
                 clock: Any) -> None:
        self.server_name = server_name
        self._registered = registered
        self._users = users
        self._clock = clock

    def is_mine(self, user_id: str) -> bool:
        return user_id.endswith(":" + self.server_name)

    def time_msec(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def get_userinfo_by_id(self, user_id: str) -> Any:
        """The local account (``user_id``, ``creation_ts`` in ms, ``admin``,
        ``is_guest``, ``deactivated``), or None."""
        return None if self._users is None else await self._users.get_user(user_id)

    def register_spam_checker_callbacks(self, **callbacks: Callable[..., Any] | None) -> None:
        for name, fn in callbacks.items():
            if name not in CALLBACKS:
                raise ModuleConfigError(f"{self._registered.module}: unknown spam checker "
                                        f"callback {name!r} (we offer {', '.join(CALLBACKS)})")
            if fn is not None:
                self._registered.callbacks[name] = fn


def _refusal(result: Any, allow_bool: bool) -> MatrixError | None:
    """None when ``result`` allows; else the error to answer."""
    if result is None or result == NOT_SPAM or result is allow_bool:
        return None
    if isinstance(result, bool):
        return MatrixError(403, Codes.FORBIDDEN, "This request was refused as spam")
    if isinstance(result, str):
        return MatrixError(403, result, "This request was refused as spam")
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str):
        extra = result[1] if isinstance(result[1], dict) else {}
        return MatrixError(403, result[0], "This request was refused as spam", **extra)
    return MatrixError(403, Codes.FORBIDDEN, "This request was refused as spam")


class SpamChecker:
    def __init__(self, server_name: str, entries: list[dict[str, Any]], users: Any = None,
                 clock: Any = None) -> None:
        self._modules: list[_Registered] = []
        for entry in entries:
            path = entry.get("module")
            if not isinstance(path, str) or "." not in path:
                raise ModuleConfigError("modules: each entry needs module: package.Class")
            module_name, _, class_name = path.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError) as e:
                raise ModuleConfigError(f"modules: cannot load {path}: {e}") from None
            config = entry.get("config") or {}
            if hasattr(cls, "parse_config"):
                config = cls.parse_config(config)
            registered = _Registered(path, bool(entry.get("fail_closed", False)))
            cls(config, ModuleApi(server_name, registered, users, clock))
            self._modules.append(registered)

    @property
    def active(self) -> bool:
        return any(m.callbacks for m in self._modules)

    async def _run(self, name: str, allow_bool: bool, *args: Any) -> None:
        for module in self._modules:
            fn = module.callbacks.get(name)
            if fn is None:
                continue
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                logger.exception("spam checker %s.%s failed", module.module, name)
                if module.fail_closed:
                    raise MatrixError(403, Codes.FORBIDDEN,
                                      "This request could not be checked for spam") from None
                continue
            refusal = _refusal(result, allow_bool)
            if refusal is not None:
                logger.info("spam checker %s refused %s", module.module, name)
                raise refusal

    async def check_event_for_spam(self, event: dict[str, Any]) -> None:
        await self._run("check_event_for_spam", False, event)

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> None:
        await self._run("user_may_join_room", True, user_id, room_id, is_invited)

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> None:
        await self._run("user_may_invite", True, inviter, invitee, room_id)

    async def user_may_create_room(self, user_id: str) -> None:
        await self._run("user_may_create_room", True, user_id)

    async def check_login_for_spam(self, user_id: str, device_id: str | None,
                                   initial_display_name: str | None,
                                   request_info: list[tuple[str, str]],
                                   auth_provider_id: str | None) -> None:
        await self._run("check_login_for_spam", False, user_id, device_id,
                        initial_display_name, request_info, auth_provider_id)

    async def user_may_send_3pid_invite(self, inviter: str, medium: str, address: str,
                                        room_id: str) -> None:
        await self._run("user_may_send_3pid_invite", True, inviter, medium, address, room_id)

    async def should_drop_federated_event(self, pdu: Any) -> None:
        """Raises (a refusal) when a module answers True: drop the PDU."""
        for module in self._modules:
            fn = module.callbacks.get("should_drop_federated_event")
            if fn is None:
                continue
            try:
                result = fn(dict(pdu) if isinstance(pdu, dict) else pdu)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                logger.exception("spam checker %s.should_drop_federated_event failed",
                                 module.module)
                continue
            if result is True:
                raise MatrixError(403, Codes.FORBIDDEN, "dropped")

    async def federated_user_may_invite(self, event: dict[str, Any]) -> None:
        await self._run("federated_user_may_invite", True, event)

    async def user_may_send_state_event(self, user_id: str, room_id: str, event_type: str,
                                        state_key: str, content: dict[str, Any]) -> None:
        await self._run("user_may_send_state_event", True, user_id, room_id, event_type,
                        state_key, dict(content))

    async def user_may_knock(self, user_id: str, room_id: str) -> None:
        await self._run("user_may_knock", True, user_id, room_id)

    async def user_may_create_room_alias(self, user_id: str, room_alias: str) -> None:
        await self._run("user_may_create_room_alias", True, user_id, RoomAlias(room_alias))

    async def user_may_publish_room(self, user_id: str, room_id: str) -> None:
        await self._run("user_may_publish_room", True, user_id, room_id)

    async def check_media_file_for_spam(self, data: bytes, file_info: dict[str, Any]) -> None:
        await self._run("check_media_file_for_spam", False, data, file_info)

    async def check_username_for_spam(self, profile: dict[str, Any],
                                      requester_id: str) -> bool:
        """Whether a module finds this user directory entry spammy."""
        for module in self._modules:
            fn = module.callbacks.get("check_username_for_spam")
            if fn is None:
                continue
            try:
                takes_requester = len(inspect.signature(fn).parameters) >= 2
                result = fn(dict(profile), requester_id) if takes_requester \
                    else fn(dict(profile))
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                logger.exception("spam checker %s.check_username_for_spam failed",
                                 module.module)
                if module.fail_closed:
                    return True
                continue
            if result is True:
                return True
        return False

    async def check_registration_for_spam(self, email_threepid: dict[str, Any] | None,
                                          username: str | None,
                                          request_info: list[tuple[str, str]],
                                          auth_provider_id: str | None) -> str:
        """"allow", "deny" or "shadow_ban": the first module not allowing wins."""
        for module in self._modules:
            fn = module.callbacks.get("check_registration_for_spam")
            if fn is None:
                continue
            try:
                result = fn(email_threepid, username, request_info, auth_provider_id)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                logger.exception("spam checker %s.check_registration_for_spam failed",
                                 module.module)
                if module.fail_closed:
                    return "deny"
                continue
            verdict = str(getattr(result, "value", result)).lower()
            if verdict not in REGISTRATION_VERDICTS:
                logger.warning("spam checker %s answered %r to a registration; taken as deny",
                               module.module, result)
                verdict = "deny"
            if verdict != "allow":
                logger.info("spam checker %s: registration of %s: %s", module.module,
                            username, verdict)
                return verdict
        return "allow"
