"""The event model: a PDU's JSON with its event ID and room version.

``Event`` wraps the JSON exactly as it travels between servers (for v3+
rooms that JSON has no ``event_id``: the ID is the reference hash). The
accessors read the fields every layer needs, normalising the v1/v2 shape of
``prev_events``/``auth_events`` (``[[event_id, hashes], ...]``) to plain ID
lists. Events are immutable by convention: nothing may change ``json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.events.room_versions import RoomVersion


def _ids(refs: Any) -> tuple[str, ...]:
    """Event IDs from a prev_events/auth_events list of either shape."""
    if not isinstance(refs, list):
        return ()
    out = []
    for ref in refs:
        if isinstance(ref, str):
            out.append(ref)
        elif isinstance(ref, list) and ref and isinstance(ref[0], str):
            out.append(ref[0])
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Event:
    event_id: str
    room_version: RoomVersion
    json: dict[str, Any]
    # set for events rejected by the auth rules (kept for the DAG, never state)
    rejected_reason: str | None = None

    @classmethod
    def from_pdu(cls, pdu: dict[str, Any], room_version: RoomVersion,
                 rejected_reason: str | None = None) -> Event:
        """Wrap a PDU, computing its event ID as ``room_version`` says.

        v1/v2 read the PDU's ``event_id``; v3+ hash it (the PDU should carry no
        ``event_id`` then). The PDU is not validated: see ``events.validation``.
        """
        from homeserver.events.hashes import compute_event_id

        return cls(compute_event_id(pdu, room_version), room_version, pdu, rejected_reason)

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r}>"

    @property
    def type(self) -> str:
        return str(self.json.get("type", ""))

    @property
    def state_key(self) -> str | None:
        sk = self.json.get("state_key")
        return sk if isinstance(sk, str) else None

    def is_state(self) -> bool:
        return isinstance(self.json.get("state_key"), str)

    @property
    def sender(self) -> str:
        return str(self.json.get("sender", ""))

    @property
    def room_id(self) -> str:
        return str(self.json.get("room_id", ""))

    @property
    def content(self) -> dict[str, Any]:
        c = self.json.get("content")
        return c if isinstance(c, dict) else {}

    @property
    def depth(self) -> int:
        d = self.json.get("depth", 0)
        return d if isinstance(d, int) else 0

    @property
    def origin_server_ts(self) -> int:
        ts = self.json.get("origin_server_ts", 0)
        return ts if isinstance(ts, int) else 0

    @property
    def prev_event_ids(self) -> tuple[str, ...]:
        return _ids(self.json.get("prev_events"))

    @property
    def auth_event_ids(self) -> tuple[str, ...]:
        return _ids(self.json.get("auth_events"))

    @property
    def redacts(self) -> str | None:
        # v11 moved "redacts" into content; earlier versions keep it top-level
        r = self.content.get("redacts") if self.room_version.redaction_rules >= 11 else None
        if r is None:
            r = self.json.get("redacts")
        return r if isinstance(r, str) else None

    @property
    def membership(self) -> str | None:
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    def state_pair(self) -> tuple[str, str]:
        """(type, state_key) of a state event."""
        sk = self.state_key
        assert sk is not None, "not a state event"
        return self.type, sk
