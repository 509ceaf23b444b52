"""A room's auth DAG, interned to integers, for state resolution.

State resolution walks the graph formed by ``auth_events`` again and again:
auth chains, the auth difference, the conflicted state subgraph (v2.1), the
auth-event edges between the events it sorts. ``AuthGraph`` gives every event
it meets a small integer (a node id) and keeps each node's auth edges as a
tuple of node ids, parsed once, so the walks compare and hash integers and
never re-read event JSON.

Two walks cover everything state resolution asks:

- ``ancestors``: the union of the auth chains of some nodes, optionally not
  walking past a set of nodes already known (one shared visited set: each
  node is expanded once however many chains it is on);
- ``reach_masks``: for every node reached from some roots, which of a set of
  *target* nodes lie in its auth chain, as a bitmask, memoised per node (each
  node is computed once, from its auth events' masks).

An ``AuthGraph`` can outlive one resolution: a caller resolving many states
of one room can keep it, and the parsed edges are reused.

v12 (``room_id_from_create_event``): the create event is not listed in
``auth_events`` (the room ID names it), yet every event is authorised by it.
The graph adds it as an implicit auth edge of every other event, which is what
the auth rules need and what Synapse does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet

from homeserver.events.model import Event

EventSource = Mapping[str, Event] | Callable[[str], "Event | None"]

_EMPTY: frozenset[int] = frozenset()


def _implicit_create_id(event: Event) -> str | None:
    """v12: the create event's ID, from the room ID ("!x" -> "$x")."""
    if not event.room_version.room_id_from_create_event or event.type == "m.room.create":
        return None
    room_id = event.room_id
    return "$" + room_id[1:] if room_id.startswith("!") else None


class AuthGraph:
    """The events of one room seen so far, by node id, with their auth edges.

    Events come from ``events`` (a mapping or a fetch function) on first use.
    A missing event is a node with no event and no edges: the walks go round
    it, and state resolution leaves it out.
    """

    __slots__ = ("_get", "event_ids", "events", "_nid", "_auth")

    def __init__(self, events: EventSource) -> None:
        self._get: Callable[[str], Event | None] = (
            events.get if isinstance(events, Mapping) else events
        )
        self.event_ids: list[str] = []
        self.events: list[Event | None] = []
        self._nid: dict[str, int] = {}
        self._auth: list[tuple[int, ...] | None] = []

    def nid(self, event_id: str) -> int:
        """The node id of ``event_id`` (fetching the event the first time)."""
        n = self._nid.get(event_id)
        if n is None:
            n = len(self.event_ids)
            self._nid[event_id] = n
            self.event_ids.append(event_id)
            self.events.append(self._get(event_id))
            self._auth.append(None)
        return n

    def auth(self, n: int) -> tuple[int, ...]:
        """The node ids of the auth events of node ``n``."""
        edges = self._auth[n]
        if edges is None:
            event = self.events[n]
            if event is None:
                edges = ()
            else:
                ids = event.auth_event_ids
                create = _implicit_create_id(event)
                if create is not None and create not in ids:
                    ids = (create, *ids)
                edges = tuple(self.nid(a) for a in ids)
            self._auth[n] = edges
        return edges

    def ancestors(self, starts: Iterable[int], stop: AbstractSet[int] = _EMPTY) -> set[int]:
        """The union of the auth chains of ``starts``, leaving out ``stop``.

        The walk does not pass through a node in ``stop``: give it a set closed
        under taking auth chains (a union of auth chains) and the result is
        exactly the union of the chains minus ``stop``.
        """
        edges = self._auth
        expand = self.auth
        seen: set[int] = set()
        stack: list[int] = []
        for n in starts:
            e = edges[n]
            stack.extend(e if e is not None else expand(n))
        while stack:
            n = stack.pop()
            if n in seen or n in stop:
                continue
            seen.add(n)
            e = edges[n]
            stack.extend(e if e is not None else expand(n))
        return seen

    def reach_masks(self, roots: Iterable[int], bits: Mapping[int, int], *,
                    through: bool = True) -> dict[int, int]:
        """For each root and every node on the walk from it, the OR of
        ``bits[t]`` over the target nodes ``t`` (the keys of ``bits``) in its
        auth chain.

        ``through=False`` stops at targets: a node's mask then holds only its
        *nearest* targets, those reached on a path with no other target on it
        (enough to order the targets: the order they generate is the same).
        Auth cycles, which a valid room cannot have, are cut, not looped on.
        """
        memo: dict[int, int] = {}
        opened: set[int] = set()
        auth = self.auth
        for root in roots:
            if root in memo:
                continue
            stack = [root]
            while stack:
                n = stack.pop()
                if n in memo:
                    continue
                if n not in opened:
                    # first visit: come back once the auth events are done
                    opened.add(n)
                    stack.append(n)
                    for a in auth(n):
                        if a not in memo and a not in opened and (through or a not in bits):
                            stack.append(a)
                    continue
                mask = 0
                for a in auth(n):
                    b = bits.get(a)
                    if b is None:
                        mask |= memo.get(a, 0)
                    elif through:
                        mask |= b | memo.get(a, 0)
                    else:
                        mask |= b
                memo[n] = mask
        return memo
