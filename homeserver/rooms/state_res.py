"""State resolution: v1 (room version 1), v2 (2-11) and v2.1 (12).

``resolve_state(room_version, state_sets, events)`` takes the states to
merge (``(type, state_key) -> event_id`` maps, e.g. the states after the
``prev_events`` of a new event) and the events they name (a mapping or a
fetch function), and returns the resolved state. Pure: no I/O; the auth rules
come from ``homeserver.rooms.auth``.

v2 (spec: rooms/fragments/v2-state-res.md) in the order the code runs:

1. split the state sets into the unconflicted state map and the conflicted
   state set;
2. the auth difference: events in some but not all of the full auth chains of
   the state sets. With U the unconflicted events and K_i the conflicted
   events of set i, the chain of set i is AC(U) | AC(K_i), so the difference
   is ``union(AC(K_i) - AC(U)) - intersection(AC(K_i) - AC(U))``: one walk of
   AC(U) with a shared visited set, then walks from each K_i that stop where
   AC(U) begins (everything below a node of AC(U) is in AC(U));
3. v2.1 only: the conflicted state subgraph, the events on auth paths between
   two conflicted events, found by one memoised walk from the conflicted
   events;
4. the power events of the full conflicted set and the parts of their auth
   chains in it, in reverse topological power order (Kahn's algorithm, the
   smallest of (-sender power, origin_server_ts, event_id) first);
5. iterative auth checks from the unconflicted state (v2.1: from the empty
   state); the remaining events in mainline order of the resulting power
   levels; iterative auth checks again; and the unconflicted state laid over
   the result.

The graph work happens on integer node ids (``AuthGraph``); events are read
only to take their type, sender, timestamps and auth edges, once each.

Where the spec is silent or Synapse is the de facto reference, this follows
Synapse: a key absent from one state set is conflicted (v2) but not (v1);
events already rejected are not admitted by the iterative auth checks (the
spec would re-check those rejected on state, which we cannot tell apart);
v1 resolves each join-rules and member key on its own, against the state left
by the power-levels pass. Events the fetch cannot find are left out. Power
events are as the spec defines them (Synapse also counts m.room.create, which
only matters in a room with two create events).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, StateResAlgorithm
from homeserver.rooms.auth import AuthError, auth_types_for_event, check_auth_rules
from homeserver.rooms.auth_chain import AuthGraph, EventSource
from homeserver.rooms.power_levels import PowerLevel, get_user_power_level

__all__ = ["AuthCheck", "StateKey", "resolve_state"]

StateKey = tuple[str, str]
# check_auth_rules: raise AuthError unless the event passes against the map
AuthCheck = Callable[[Event, Mapping[StateKey, Event]], None]

_CREATE = "m.room.create"
_POWER_LEVELS = "m.room.power_levels"
_JOIN_RULES = "m.room.join_rules"
_MEMBER = "m.room.member"
_PL_KEY: StateKey = (_POWER_LEVELS, "")


def resolve_state(room_version: RoomVersion | str,
                  state_sets: Sequence[Mapping[StateKey, str]],
                  events: EventSource | AuthGraph,
                  *, check_auth: AuthCheck = check_auth_rules) -> dict[StateKey, str]:
    """The resolution of ``state_sets`` under ``room_version``'s algorithm.

    ``events`` supplies the events the state sets name and their auth chains:
    a mapping or a function from event ID to ``Event`` (None if unknown), or
    an ``AuthGraph`` kept from an earlier call in the same room to reuse the
    auth edges it has already parsed.
    """
    rv = KNOWN_ROOM_VERSIONS[room_version] if isinstance(room_version, str) else room_version
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    graph = events if isinstance(events, AuthGraph) else AuthGraph(events)
    if rv.state_res is StateResAlgorithm.V1:
        return _resolve_v1(rv, state_sets, graph, check_auth)
    return _resolve_v2(rv, state_sets, graph, check_auth,
                       v2_1=rv.state_res is StateResAlgorithm.V2_1)


# ---------------------------------------------------------------------------
# v2 and v2.1


def _separate(state_sets: Sequence[Mapping[StateKey, str]]
              ) -> tuple[dict[StateKey, str], list[StateKey]]:
    """The unconflicted state map, and the keys that are conflicted: not in
    every state set with one value."""
    first = state_sets[0]
    rest = state_sets[1:]
    unconflicted: dict[StateKey, str] = {}
    conflicted: list[StateKey] = []
    for key, event_id in first.items():
        for other in rest:
            if other.get(key) != event_id:
                conflicted.append(key)
                break
        else:
            unconflicted[key] = event_id
    extra: set[StateKey] = set()
    for other in rest:
        for key in other:
            if key not in first and key not in extra:
                extra.add(key)
                conflicted.append(key)
    return unconflicted, conflicted


def _is_power_event(event: Event | None) -> bool:
    if event is None:
        return False
    etype = event.type
    if etype == _POWER_LEVELS or etype == _JOIN_RULES:
        return event.is_state()
    if etype == _MEMBER and event.membership in ("leave", "ban"):
        return event.state_key is not None and event.sender != event.state_key
    return False


def _resolve_v2(rv: RoomVersion, state_sets: Sequence[Mapping[StateKey, str]],
                graph: AuthGraph, check: AuthCheck, *, v2_1: bool) -> dict[StateKey, str]:
    unconflicted, conflicted_keys = _separate(state_sets)
    if not conflicted_keys:
        return unconflicted
    nid = graph.nid
    events = graph.events

    # The conflicted state set, and each state set's share of it.
    conflicted: set[int] = set()
    per_set: list[list[int]] = []
    for state in state_sets:
        share = []
        for key in conflicted_keys:
            event_id = state.get(key)
            if event_id is not None:
                share.append(nid(event_id))
        per_set.append(share)
        conflicted.update(share)

    # The auth difference (see the module docstring for the identity used).
    common = graph.ancestors([nid(e) for e in unconflicted.values()])
    chains = [graph.ancestors(share, common) for share in per_set]
    in_all = chains[0].intersection(*chains[1:])
    full = {n for chain in chains for n in chain if n not in in_all}
    full |= conflicted
    if v2_1:
        full |= conflicted_subgraph(graph, conflicted)
    full = {n for n in full if events[n] is not None}

    # Step 1: the power events, grown by their auth chains within the full
    # conflicted set, in reverse topological power order.
    power = [n for n in full if _is_power_event(events[n])]
    bits = {n: 1 << i for i, n in enumerate(full)}
    masks = graph.reach_masks(power, bits)
    chosen = 0
    for n in power:
        chosen |= bits[n] | masks[n]
    sorted_power = _reverse_topological_power_sort(
        graph, [n for n in full if bits[n] & chosen])

    # Step 2: iterative auth checks from the unconflicted state (v2.1: empty).
    base: Mapping[StateKey, str] = {} if v2_1 else unconflicted
    changes: dict[StateKey, str] = {}
    _iterative_auth_checks(rv, graph, sorted_power, base, changes, check)

    # Steps 3-4: the other events, in mainline order of the resolved power
    # levels, through the auth checks again.
    in_power = set(sorted_power)
    others = [n for n in full if n not in in_power]
    pl_id = changes.get(_PL_KEY) or base.get(_PL_KEY)
    _iterative_auth_checks(rv, graph, _mainline_sort(graph, others, pl_id), base, changes,
                           check)

    # Step 5: the unconflicted state wins over what the checks chose.
    result = dict(unconflicted)
    for key, event_id in changes.items():
        result.setdefault(key, event_id)
    return result


def conflicted_subgraph(graph: AuthGraph, conflicted: Iterable[int]) -> set[int]:
    """v2.1: the events on auth-event paths from one conflicted event to
    another, both ends included (and every conflicted event)."""
    conflicted = set(conflicted)
    # one shared bit: "has a conflicted event in its auth chain"
    masks = graph.reach_masks(conflicted, dict.fromkeys(conflicted, 1))
    # the walk from the conflicted events covers exactly their auth chains
    return {n for n, mask in masks.items() if mask} | conflicted


def _pl_auth_event(graph: AuthGraph, n: int) -> int | None:
    """The ``m.room.power_levels`` event among node ``n``'s auth events."""
    events = graph.events
    for a in graph.auth(n):
        event = events[a]
        if event is not None and event.type == _POWER_LEVELS and event.state_key == "":
            return a
    return None


def _sender_power(graph: AuthGraph, n: int) -> PowerLevel:
    """The power level of node ``n``'s sender according to its auth events."""
    event = graph.events[n]
    assert event is not None
    auth_map: dict[StateKey, Event] = {}
    for a in graph.auth(n):
        auth_event = graph.events[a]
        if (auth_event is not None and auth_event.state_key == ""
                and auth_event.type in (_POWER_LEVELS, _CREATE)):
            auth_map[auth_event.state_pair()] = auth_event
    return get_user_power_level(event.sender, auth_map, event.room_version)


def _reverse_topological_power_sort(graph: AuthGraph, nodes: list[int]) -> list[int]:
    """Kahn's algorithm over the auth edges between ``nodes``, taking the
    smallest (-sender power, origin_server_ts, event_id) of the ready nodes."""
    if not nodes:
        return []
    bits = {n: 1 << i for i, n in enumerate(nodes)}
    # nearest-ancestor edges generate the same order as the full auth chains
    nearest = graph.reach_masks(nodes, bits, through=False)
    children: dict[int, list[int]] = {n: [] for n in nodes}
    waiting: dict[int, int] = {}
    ready: list[tuple[tuple[PowerLevel, int, str], int]] = []
    events = graph.events
    for n in nodes:
        mask = nearest[n]
        count = 0
        while mask:
            low = mask & -mask
            mask ^= low
            children[nodes[low.bit_length() - 1]].append(n)
            count += 1
        waiting[n] = count
    keys = {}
    for n in nodes:
        event = events[n]
        assert event is not None
        keys[n] = (-_sender_power(graph, n), event.origin_server_ts, event.event_id)
        if not waiting[n]:
            ready.append((keys[n], n))
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for child in children[n]:
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, (keys[child], child))
    return order


def _mainline_sort(graph: AuthGraph, nodes: list[int], pl_id: str | None) -> list[int]:
    """``nodes`` in mainline order of the power levels event ``pl_id``."""
    if not nodes:
        return []
    # depth: 1 for the oldest power levels of the mainline, higher for later
    # ones, 0 for "not on the mainline" (the spec's infinite position)
    depth: dict[int, int] = {}
    if pl_id is not None:
        mainline: list[int] = []
        p: int | None = graph.nid(pl_id)
        while p is not None and p not in depth:
            mainline.append(p)
            depth[p] = 0  # marks it, guards against cycles
            p = _pl_auth_event(graph, p)
        for i, p in enumerate(reversed(mainline)):
            depth[p] = i + 1
    found: dict[int, int] = dict(depth)  # memo: power levels event -> depth reached

    def mainline_depth(n: int) -> int:
        path = []
        p = _pl_auth_event(graph, n)
        d = 0
        while p is not None:
            known = found.get(p)
            if known is not None:
                d = known
                break
            found[p] = 0  # provisional, guards against cycles
            path.append(p)
            p = _pl_auth_event(graph, p)
        for p in path:
            found[p] = d
        return d

    events = graph.events
    keyed = []
    for n in nodes:
        event = events[n]
        assert event is not None
        keyed.append(((mainline_depth(n), event.origin_server_ts, event.event_id), n))
    keyed.sort()
    return [n for _, n in keyed]


def _iterative_auth_checks(rv: RoomVersion, graph: AuthGraph, order: list[int],
                           base: Mapping[StateKey, str], changes: dict[StateKey, str],
                           check: AuthCheck) -> None:
    """Apply each event of ``order`` that passes the auth rules to the state
    ``base`` overlaid with ``changes`` (updating ``changes``). A pair the rules
    need and the state lacks comes from the event's own auth events."""
    events = graph.events
    nid = graph.nid
    for n in order:
        event = events[n]
        if event is None or event.rejected_reason is not None or not event.is_state():
            continue
        auth_map: dict[StateKey, Event] = {}
        for a in graph.auth(n):
            auth_event = events[a]
            if (auth_event is not None and auth_event.rejected_reason is None
                    and auth_event.is_state()):
                auth_map[auth_event.state_pair()] = auth_event
        for key in auth_types_for_event(rv, event):
            event_id = changes.get(key) or base.get(key)
            if event_id is not None:
                state_event = events[nid(event_id)]
                if state_event is not None and state_event.rejected_reason is None:
                    auth_map[key] = state_event
        try:
            check(event, auth_map)
        except AuthError:
            continue
        changes[event.state_pair()] = event.event_id


# ---------------------------------------------------------------------------
# v1 (room version 1 only; spec: rooms/v1.md, as Synapse implements it)


def _v1_order(events: Iterable[Event]) -> list[Event]:
    """Descending depth, then ascending sha1(event_id)."""
    return sorted(events, key=lambda e: (-e.depth,
                                         hashlib.sha1(e.event_id.encode("utf-8")).hexdigest()))


def _resolve_v1(rv: RoomVersion, state_sets: Sequence[Mapping[StateKey, str]],
                graph: AuthGraph, check: AuthCheck) -> dict[StateKey, str]:
    # v1 calls a key conflicted only if two sets give it different events
    unconflicted: dict[StateKey, str] = dict(state_sets[0])
    conflicted_ids: dict[StateKey, set[str]] = {}
    for state in state_sets[1:]:
        for key, event_id in state.items():
            known = unconflicted.get(key)
            if known is None:
                ids = conflicted_ids.get(key)
                if ids is None:
                    unconflicted[key] = event_id
                else:
                    ids.add(event_id)
            elif known != event_id:
                conflicted_ids[key] = {known, event_id}
                del unconflicted[key]
    if not conflicted_ids:
        return unconflicted

    def fetch(event_id: str) -> Event | None:
        return graph.events[graph.nid(event_id)]

    # the auth events of the conflicted events, from the unconflicted state
    auth_events: dict[StateKey, Event] = {}
    for ids in conflicted_ids.values():
        for event_id in ids:
            event = fetch(event_id)
            if event is None:
                continue
            for key in auth_types_for_event(rv, event):
                if key not in auth_events and key in unconflicted:
                    auth_event = fetch(unconflicted[key])
                    if auth_event is not None:
                        auth_events[key] = auth_event

    conflicted: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted_ids.items():
        found = [e for e in (fetch(i) for i in ids) if e is not None]
        if len(found) > 1:
            conflicted[key] = found
        elif found:
            unconflicted[key] = found[0].event_id

    resolved: dict[StateKey, Event] = {}
    if _PL_KEY in conflicted:
        resolved[_PL_KEY] = _v1_resolve_auth_events(rv, conflicted[_PL_KEY], auth_events, check)
    auth_events.update(resolved)
    for etype in (_JOIN_RULES, _MEMBER):
        for key, candidates in conflicted.items():
            if key[0] == etype:
                resolved[key] = _v1_resolve_auth_events(rv, candidates, auth_events, check)
        auth_events.update(resolved)
    for key, candidates in conflicted.items():
        if key not in resolved:
            resolved[key] = _v1_resolve_normal_events(candidates, auth_events, check)

    result = unconflicted
    for key, event in resolved.items():
        result[key] = event.event_id
    return result


def _v1_resolve_auth_events(rv: RoomVersion, candidates: list[Event],
                            auth_events: Mapping[StateKey, Event], check: AuthCheck) -> Event:
    """From the lowest depth up, apply each event while the auth rules allow."""
    ascending = list(reversed(_v1_order(candidates)))
    needed = set().union(*(auth_types_for_event(rv, e) for e in candidates))
    state = {key: auth_events[key] for key in needed if key in auth_events}
    accepted = ascending[0]
    for event in ascending[1:]:
        state[accepted.state_pair()] = accepted
        try:
            check(event, state)
        except AuthError:
            return accepted
        accepted = event
    return accepted


def _v1_resolve_normal_events(candidates: list[Event], auth_events: Mapping[StateKey, Event],
                              check: AuthCheck) -> Event:
    """The deepest event that passes the auth rules (or the shallowest)."""
    ordered = _v1_order(candidates)
    for event in ordered:
        try:
            check(event, auth_events)
        except AuthError:
            continue
        return event
    return ordered[-1]
