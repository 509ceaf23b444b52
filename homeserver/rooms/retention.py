"""Message retention (MSC1763, as Synapse serves it): how long a room's
messages live, and hiding the expired ones from clients.

A room's policy is its ``m.room.retention`` state event (``max_lifetime``,
``min_lifetime``, in milliseconds); a room without one (or a key it leaves
out) takes the server's ``retention.default_policy``. With ``retention.enabled``
false nothing here applies.

Two things follow from a policy's ``max_lifetime``, as on Synapse:

- a message (not a state event: the spec's retention is only about the
  timeline) older than ``max_lifetime`` is not served to clients any more,
  from the moment it expires: ``RoomReader`` asks ``drop_expired`` for every
  timeline read (``/messages``, ``/context``, ``/event``, ``/sync``
  timelines, search, relations). The room's own ``max_lifetime`` counts
  here, unclamped;
- the purge jobs (``admin/retention_jobs.py``) delete expired messages from
  the database on a schedule, with ``max_lifetime`` brought within
  ``allowed_lifetime_min`` .. ``allowed_lifetime_max``.

``min_lifetime`` is parsed and reported, and (as on Synapse) not otherwise
enforced. The pure rules are functions of plain data; ``RoomRetention``
reads and caches each room's policy (a commit of a new ``m.room.retention``
event drops the cached one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from homeserver.config import ConfigError

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.storage.hub import Committed
    from homeserver.storage.retention import RetentionStore

RETENTION_TYPE = "m.room.retention"
# the spec's largest integer: a lifetime beyond it is no lifetime
MAX_SAFE_INT = 2**53 - 1

T = TypeVar("T")


@dataclass(frozen=True)
class RetentionPolicy:
    min_lifetime: int | None = None
    max_lifetime: int | None = None


@dataclass(frozen=True)
class PurgeJob:
    """One ``retention.purge_jobs`` entry: every ``interval`` ms, purge the
    rooms whose ``max_lifetime`` is in (shortest, longest]."""

    interval: int
    shortest_max_lifetime: int | None = None
    longest_max_lifetime: int | None = None

    @property
    def key(self) -> str:
        """Names the job in ``retention_job_runs``."""
        return f"purge:{self.shortest_max_lifetime}:{self.longest_max_lifetime}:{self.interval}"

    def covers(self, max_lifetime: int) -> bool:
        low, high = self.shortest_max_lifetime, self.longest_max_lifetime
        return (low is None or max_lifetime > low) and (high is None or max_lifetime <= high)


@dataclass(frozen=True)
class RetentionConfig:
    enabled: bool = False
    default_policy: RetentionPolicy = RetentionPolicy()
    allowed_lifetime_min: int | None = None
    allowed_lifetime_max: int | None = None
    purge_jobs: tuple[PurgeJob, ...] = (PurgeJob(86_400_000),)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> RetentionConfig:
        """From the validated ``retention`` mapping; ConfigError where
        Synapse refuses the same values."""
        default = raw.get("default_policy") or {}
        for where, value in (("default_policy.min_lifetime", default.get("min_lifetime")),
                             ("default_policy.max_lifetime", default.get("max_lifetime")),
                             ("allowed_lifetime_min", raw.get("allowed_lifetime_min")),
                             ("allowed_lifetime_max", raw.get("allowed_lifetime_max"))):
            if value is not None and value <= 0:
                raise ConfigError(f"retention.{where}: must be a positive duration")
        policy = RetentionPolicy(default.get("min_lifetime"), default.get("max_lifetime"))
        if (policy.min_lifetime is not None and policy.max_lifetime is not None
                and policy.min_lifetime > policy.max_lifetime):
            raise ConfigError("retention.default_policy: min_lifetime can not be greater than "
                              "max_lifetime")
        low, high = raw.get("allowed_lifetime_min"), raw.get("allowed_lifetime_max")
        if low is not None and high is not None and low > high:
            raise ConfigError("retention: allowed_lifetime_min can not be greater than "
                              "allowed_lifetime_max")
        jobs = []
        for i, job in enumerate(raw.get("purge_jobs") or []):
            shortest, longest = job.get("shortest_max_lifetime"), job.get("longest_max_lifetime")
            if shortest is not None and longest is not None and shortest > longest:
                raise ConfigError(f"retention.purge_jobs[{i}]: shortest_max_lifetime can not "
                                  "be greater than longest_max_lifetime")
            if job["interval"] <= 0:
                raise ConfigError(f"retention.purge_jobs[{i}].interval: must be positive")
            jobs.append(PurgeJob(job["interval"], shortest, longest))
        return cls(enabled=bool(raw.get("enabled")), default_policy=policy,
                   allowed_lifetime_min=low, allowed_lifetime_max=high,
                   purge_jobs=tuple(jobs) or (PurgeJob(86_400_000),))

    def room_policy(self, content: Any) -> RetentionPolicy:
        """A room's policy: its ``m.room.retention`` content (None: it has
        none) over the server's default, key by key."""
        own = policy_from_content(content)
        return RetentionPolicy(
            own.min_lifetime if own.min_lifetime is not None
            else self.default_policy.min_lifetime,
            own.max_lifetime if own.max_lifetime is not None
            else self.default_policy.max_lifetime)

    def purge_lifetime(self, policy: RetentionPolicy) -> int | None:
        """The ``max_lifetime`` a purge goes by: the policy's, within the
        allowed bounds (None: the room's messages are never purged)."""
        lifetime = policy.max_lifetime
        if lifetime is None:
            return None
        if self.allowed_lifetime_min is not None:
            lifetime = max(lifetime, self.allowed_lifetime_min)
        if self.allowed_lifetime_max is not None:
            lifetime = min(lifetime, self.allowed_lifetime_max)
        return lifetime


def _lifetime(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SAFE_INT:
        return None
    return value


def policy_from_content(content: Any) -> RetentionPolicy:
    """The lifetimes an ``m.room.retention`` content sets; a value that is
    not a positive integer sets nothing (remote servers' events are not
    checked as ours are)."""
    if not isinstance(content, dict):
        return RetentionPolicy()
    return RetentionPolicy(_lifetime(content.get("min_lifetime")),
                           _lifetime(content.get("max_lifetime")))


def content_error(content: dict[str, Any]) -> str | None:
    """Why a local user's ``m.room.retention`` content is refused (Synapse
    answers 400 too), or None."""
    for key in ("min_lifetime", "max_lifetime"):
        value = content.get(key)
        if value is not None and _lifetime(value) is None:
            return f"'{key}' must be a positive integer of milliseconds"
    low, high = content.get("min_lifetime"), content.get("max_lifetime")
    if low is not None and high is not None and low > high:
        return "'min_lifetime' can not be greater than 'max_lifetime'"
    return None


def is_expired(event: "Event", policy: RetentionPolicy, now_ms: int) -> bool:
    """Whether clients no longer see ``event``: a message older than the
    policy's ``max_lifetime``."""
    if event.is_state() or policy.max_lifetime is None:
        return False
    return event.origin_server_ts < now_ms - policy.max_lifetime


class RoomRetention:
    def __init__(self, ctx: "ServerContext", store: "RetentionStore",
                 config: RetentionConfig) -> None:
        self.ctx = ctx
        self.store = store
        self.config = config
        # room ID -> its policy (default included); dropped when one is sent
        self._policies: dict[str, RetentionPolicy] = {}
        # bumped by each new m.room.retention: a read that raced with one
        # is not kept
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def on_commit(self, committed: "Committed") -> None:
        """Database thread: a new ``m.room.retention`` event changes the room's policy."""
        if not self.config.enabled:
            return
        for event, _ in committed.events:
            if event.type == RETENTION_TYPE and event.state_key == "":
                self._generation += 1
                self._policies.pop(event.room_id, None)

    def forget_all(self) -> None:
        """Every room's policy is read again (a scale-out reader that lost
        track of the stream)."""
        self._generation += 1
        self._policies.clear()

    async def policy(self, room_id: str) -> RetentionPolicy:
        found = self._policies.get(room_id)
        if found is None:
            generation = self._generation
            content = await self.store.current_policy_content(room_id)
            found = self.config.room_policy(content)
            if len(self._policies) > 100_000:
                self._policies.clear()
            if generation == self._generation:
                self._policies[room_id] = found
        return found

    async def drop_expired(self, room_id: str,
                           events: Sequence[tuple[int, "Event"]]) -> list[tuple[int, "Event"]]:
        """``events`` ((stream position, event)) less the expired messages."""
        if not self.config.enabled or not events:
            return list(events)
        policy = await self.policy(room_id)
        if policy.max_lifetime is None:
            return list(events)
        now = self.ctx.now_ms()
        return [(p, e) for p, e in events if not is_expired(e, policy, now)]
