"""State resolution over hand-built DAGs, with the real auth rules.

The scenarios are the classic ones of Synapse's state res test suite: every
room starts with the same events (Alice creates the room, sets power levels
and a public join rule; Bob, Charlie and Zara join; START), then each test
adds events and chains of prev_events that fork after START and meet again at
END. ``Dag`` builds the events in topological order, computing the state
before each one (by state resolution where branches meet) and choosing its
auth events from that state the way a server would. The state at END is what
the test checks.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.auth import AuthError, auth_types_for_event, check_auth_rules
from homeserver.rooms.auth_chain import AuthGraph
from homeserver.rooms.power_levels import get_user_power_level
from homeserver.rooms.state_res import StateKey, conflicted_subgraph, resolve_state

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CHARLIE = "@charlie:example.com"
EVELYN = "@evelyn:example.com"
ZARA = "@zara:example.com"

PL = "m.room.power_levels"
TOPIC = "m.room.topic"
MEMBER = "m.room.member"
JR = "m.room.join_rules"


@dataclass
class N:
    """A node of a test DAG: an event before it has IDs, edges and auth events."""

    id: str
    sender: str
    type: str
    state_key: str | None = None
    content: dict[str, Any] = field(default_factory=dict)


def member(id: str, sender: str, target: str, membership: str) -> N:  # noqa: A002
    return N(id, sender, MEMBER, target, {"membership": membership})


def power(id: str, sender: str, users: dict[str, int], **extra: Any) -> N:  # noqa: A002
    return N(id, sender, PL, "", {"users": users, **extra})


def topic(id: str, sender: str) -> N:  # noqa: A002
    return N(id, sender, TOPIC, "", {"topic": id})


def initial_nodes() -> list[N]:
    return [
        N("CREATE", ALICE, "m.room.create", "", {"creator": ALICE}),
        member("IMA", ALICE, ALICE, "join"),
        power("IPOWER", ALICE, {ALICE: 100}),
        N("IJR", ALICE, JR, "", {"join_rule": "public"}),
        member("IMB", BOB, BOB, "join"),
        member("IMC", CHARLIE, CHARLIE, "join"),
        member("IMZ", ZARA, ZARA, "join"),
        N("START", ZARA, "m.room.message", None, {"body": "start"}),
        N("END", ZARA, "m.room.message", None, {"body": "end"}),
    ]


INITIAL_EDGES = ["START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE"]


class Dag:
    """Events of one room built from nodes and prev_event chains.

    ``edges`` are chains: ``["END", "B", "A"]`` makes A the prev event of B
    and B of END. In v12 rooms the creator has infinite power and may not be
    listed in power levels, so she is dropped from every ``users`` map.
    """

    def __init__(self, version: str, nodes: list[N], edges: list[list[str]]) -> None:
        self.rv = rv = KNOWN_ROOM_VERSIONS[version]
        by_id = {n.id: n for n in initial_nodes() + nodes}
        prevs: dict[str, set[str]] = {n: set() for n in by_id}
        for chain in [INITIAL_EDGES, *edges]:
            for a, b in itertools.pairwise(chain):
                prevs[a].add(b)
        self.events: dict[str, Event] = {}
        self.ids: dict[str, str] = {}
        self.state_after: dict[str, dict[StateKey, str]] = {}
        depth: dict[str, int] = {}
        self.room_id = "!CREATE" if rv.room_id_from_create_event else "!room:example.com"
        for ts, node_id in enumerate(_topological(prevs)):
            node = by_id[node_id]
            event_id = f"${node_id}" if rv.event_ids_are_hashes else f"${node_id}:example.com"
            self.ids[node_id] = event_id
            before = self.resolve([self.state_after[p] for p in sorted(prevs[node_id])])
            content = dict(node.content)
            if node.type == "m.room.create" and rv.implicit_room_creator:
                content.pop("creator")
            if node.type == PL and rv.privileged_creators:
                content["users"] = {u: v for u, v in content["users"].items() if u != ALICE}
            js: dict[str, Any] = {
                "type": node.type, "sender": node.sender, "content": content,
                "origin_server_ts": ts,
                "depth": 1 + max((depth[p] for p in prevs[node_id]), default=0),
                "prev_events": [self.ids[p] for p in sorted(prevs[node_id])],
            }
            if node.state_key is not None:
                js["state_key"] = node.state_key
            if not (rv.room_id_from_create_event and node.type == "m.room.create"):
                js["room_id"] = self.room_id
            js["auth_events"] = [before[k] for k in sorted(auth_types_for_event(rv, js))
                                 if k in before]
            depth[node_id] = js["depth"]
            event = Event(event_id, rv, js)
            self.events[event_id] = event
            after = dict(before)
            if node.state_key is not None:
                after[(node.type, node.state_key)] = event_id
            self.state_after[node_id] = after

    def resolve(self, state_sets: list[dict[StateKey, str]]) -> dict[StateKey, str]:
        return resolve_state(self.rv, state_sets, self.events)

    def changed_at_end(self, expected: list[str]) -> tuple[dict[StateKey, str],
                                                           dict[StateKey, str]]:
        """(expected, actual): the state at END where it differs from START,
        plus the keys of the expected nodes."""
        want = {}
        for node_id in expected:
            event = self.events[self.ids[node_id]]
            want[event.state_pair()] = event.event_id
        start, end = self.state_after["START"], self.state_after["END"]
        got = {k: v for k, v in end.items() if k in want or start.get(k) != v}
        return want, got


def _topological(prevs: dict[str, set[str]]) -> list[str]:
    """Node ids, each after its prev events (ties by id, like the events' ts)."""
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(prevs):
        ready = sorted(n for n in prevs if n not in done and prevs[n] <= done)
        order.append(ready[0])
        done.add(ready[0])
    return order


# ---------------------------------------------------------------------------
# The classic scenarios

CASES: dict[str, tuple[list[N], list[list[str]], list[str]]] = {
    # Alice bans Bob while Bob, concurrently, re-sends power levels: the ban
    # (sorted first: Alice has more power) stands and Bob's event fails.
    "ban_vs_pl": (
        [power("PA", ALICE, {ALICE: 100, BOB: 50}),
         member("MA", ALICE, ALICE, "join"),
         member("MB", ALICE, BOB, "ban"),
         power("PB", BOB, {ALICE: 100, BOB: 50})],
        [["END", "MB", "MA", "PA", "START"], ["END", "PB", "PA"]],
        ["PA", "MA", "MB"],
    ),
    # Evelyn joins while Alice makes the room invite-only: the join rule is
    # a power event and is applied first, so the join fails.
    "join_rule_evasion": (
        [N("JR", ALICE, JR, "", {"join_rule": "invite"}),
         member("ME", EVELYN, EVELYN, "join")],
        [["END", "JR", "START"], ["END", "ME", "START"]],
        ["JR"],
    ),
    # Power levels passed down Alice -> Bob -> Charlie on one branch; the
    # other branch only has Alice's. The chain wins.
    "offtopic_pl": (
        [power("PA", ALICE, {ALICE: 100, BOB: 50}),
         power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50}),
         power("PC", CHARLIE, {ALICE: 100, BOB: 50, CHARLIE: 0})],
        [["END", "PC", "PB", "PA", "START"], ["END", "PA"]],
        ["PC"],
    ),
    # Alice demotes Bob (PA2) while Bob sets power levels and a topic: Bob's
    # events fail, Alice's topic T2 stays.
    "topic_basic": (
        [topic("T1", ALICE),
         power("PA1", ALICE, {ALICE: 100, BOB: 50}),
         topic("T2", ALICE),
         power("PA2", ALICE, {ALICE: 100, BOB: 0}),
         power("PB", BOB, {ALICE: 100, BOB: 50}),
         topic("T3", BOB)],
        [["END", "PA2", "T2", "PA1", "T1", "START"], ["END", "T3", "PB", "PA1"]],
        ["PA2", "T2"],
    ),
    # Bob's topic is undone by his ban: the topic resets to Alice's T1.
    "topic_reset": (
        [topic("T1", ALICE),
         power("PA", ALICE, {ALICE: 100, BOB: 50}),
         topic("T2", BOB),
         member("MB", ALICE, BOB, "ban")],
        [["END", "MB", "T2", "PA", "T1", "START"], ["END", "T1"]],
        ["T1", "MB", "PA"],
    ),
    # A message joins the branches (MZ1), then Alice sets a topic after it:
    # T4 wins, Bob's power levels lose to Alice's demotion.
    "topic": (
        [topic("T1", ALICE),
         power("PA1", ALICE, {ALICE: 100, BOB: 50}),
         topic("T2", ALICE),
         power("PA2", ALICE, {ALICE: 100, BOB: 0}),
         power("PB", BOB, {ALICE: 100, BOB: 50}),
         topic("T3", BOB),
         N("MZ1", ZARA, "m.room.message", None, {"body": "merge"}),
         topic("T4", ALICE)],
        [["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"],
         ["END", "MZ1", "T3", "PB", "PA1"]],
        ["T4", "PA2"],
    ),
    # Two admins race on power levels (PA2 raises the PL event level to 100,
    # PB re-sends the old one). The mainline of the winning PA2 puts T3 (based
    # on PA2) after T4 (based on PB, off the mainline), though T4 was sent
    # later: T3 wins.
    "mainline_sort": (
        [topic("T1", ALICE),
         power("PA1", ALICE, {ALICE: 100, BOB: 50}),
         topic("T2", ALICE),
         power("PA2", ALICE, {ALICE: 100, BOB: 50}, events={PL: 100}),
         power("PB", BOB, {ALICE: 100, BOB: 50}),
         topic("T3", BOB),
         topic("T4", ALICE)],
        [["END", "T3", "PA2", "T2", "PA1", "T1", "START"], ["END", "T4", "PB", "PA1"]],
        ["T3", "PA2"],
    ),
}

V2_VERSIONS = ["2", "6", "10", "11", "12"]


@pytest.mark.parametrize("version", V2_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_classic_scenario(case: str, version: str) -> None:
    nodes, edges, expected = CASES[case]
    want, got = Dag(version, nodes, edges).changed_at_end(expected)
    assert got == want


@pytest.mark.parametrize("version", V2_VERSIONS + ["1"])
def test_concurrent_joins_are_both_kept(version: str) -> None:
    dag = Dag(version, [member("MA", EVELYN, EVELYN, "join"), member("MB", ZARA, ZARA, "leave")],
              [["END", "MA", "START"], ["END", "MB", "START"]])
    end = dag.state_after["END"]
    assert end[(MEMBER, EVELYN)] == dag.ids["MA"]
    assert end[(MEMBER, ZARA)] == dag.ids["MB"]


@pytest.mark.parametrize("version", V2_VERSIONS + ["1"])
def test_unconflicted_state_is_preserved(version: str) -> None:
    """Every key on which the branches agree keeps its event, even if an
    event of the auth difference for that key would pass the checks."""
    dag = Dag(version, [topic("T1", ALICE), power("PA", ALICE, {ALICE: 100, BOB: 50}),
                        topic("TB", BOB), topic("TC", ALICE)],
              [["END", "TB", "PA", "T1", "START"], ["END", "TC", "T1"]])
    one, two = dag.state_after["TB"], dag.state_after["TC"]
    resolved = dag.resolve([one, two])
    for key, event_id in one.items():
        if two.get(key) == event_id:
            assert resolved[key] == event_id
    assert resolved[(PL, "")] == dag.ids["PA"]


# ---------------------------------------------------------------------------
# v1 against v2 on the same DAG


def test_v1_picks_the_deepest_topic_where_v2_uses_the_mainline() -> None:
    """The "mainline_sort" room: v2 orders the topics by the power levels
    they were sent under (T3, based on the winning PA2, is applied last); v1
    picks the deepest topic that passes auth. Here T4 is deeper (its branch
    is longer) and passes, so v1 keeps it."""
    nodes, edges, _ = CASES["mainline_sort"]
    # lengthen T4's branch so T4 is the deeper of the two topics
    nodes = [*nodes, topic("TX", ALICE), topic("TY", ALICE)]
    edges = [edges[0], ["END", "T4", "TY", "TX", "PB", "PA1"]]
    v2 = Dag("2", nodes, edges)
    v1 = Dag("1", nodes, edges)
    assert v2.state_after["END"][(TOPIC, "")] == v2.ids["T3"]
    assert v1.events[v1.ids["T4"]].depth > v1.events[v1.ids["T3"]].depth
    assert v1.state_after["END"][(TOPIC, "")] == v1.ids["T4"]


def test_v1_loses_a_delegated_power_change_that_v2_keeps() -> None:
    """offtopic_pl: Alice gives Bob 50 (PA), Bob gives Charlie 50 (PB), Charlie
    changes the power levels (PC). One branch is at PC, the other at PA.
    v1 looks only at the conflicting PA and PC: from the shallowest, PC is
    checked against PA, where Charlie has no power, and fails - a state reset
    to PA. v2 replays the auth difference (PB too) and keeps PC."""
    nodes, edges, _ = CASES["offtopic_pl"]
    v1 = Dag("1", nodes, edges)
    v2 = Dag("2", nodes, edges)
    assert v1.state_after["END"][(PL, "")] == v1.ids["PA"]
    assert v2.state_after["END"][(PL, "")] == v2.ids["PC"]


# ---------------------------------------------------------------------------
# v2.1 (room version 12) against v2


def _v21_scenario(version: str) -> tuple[Dag, list[dict[StateKey, str]]]:
    """Bob, a moderator, changes the power levels (P1); later Alice bans him
    (BAN, authorised by P1). A server that lost P1 in an earlier resolution
    holds the ban under the old power levels (P0). The ban is unconflicted,
    the power levels are conflicted between P0 and P1."""
    nodes = [power("P0", ALICE, {ALICE: 100, BOB: 50}),
             power("P1", BOB, {ALICE: 100, BOB: 50}, state_default=40),
             member("BAN", ALICE, BOB, "ban")]
    dag = Dag(version, nodes, [["END", "BAN", "P1", "P0", "START"]])
    with_p1 = dag.state_after["BAN"]
    without_p1 = {**with_p1, (PL, ""): dag.ids["P0"]}
    return dag, [with_p1, without_p1]


def test_v2_reauthorises_against_the_unconflicted_future() -> None:
    """v2 checks P1 against the unconflicted state, where Bob is already
    banned: P1 fails and the power levels reset to P0."""
    dag, state_sets = _v21_scenario("11")
    assert dag.resolve(state_sets)[(PL, "")] == dag.ids["P0"]


def test_v2_1_starts_from_empty_state_and_keeps_the_earlier_change() -> None:
    """v2.1 (MSC4297) begins the iterative auth checks from the empty state:
    P1 is checked against its own auth events (Bob joined then), passes, and
    stays; the ban is laid back on top as unconflicted state."""
    dag, state_sets = _v21_scenario("12")
    resolved = dag.resolve(state_sets)
    assert resolved[(PL, "")] == dag.ids["P1"]
    assert resolved[(MEMBER, BOB)] == dag.ids["BAN"]


def test_v2_1_conflicted_subgraph_holds_the_events_between_conflicted_ones() -> None:
    dag = Dag("12", [power("P0", ALICE, {BOB: 50}), power("P1", ALICE, {BOB: 60}),
                     power("P2", ALICE, {BOB: 70}), topic("T", BOB)],
              [["END", "T", "P2", "P1", "P0", "START"]])
    graph = AuthGraph(dag.events)
    p0, p1, p2 = (graph.nid(dag.ids[n]) for n in ("P0", "P1", "P2"))
    sub = conflicted_subgraph(graph, {p0, p2})
    assert sub == {p0, p1, p2}
    # IPOWER lies below P0 only: it is not between two conflicted events
    assert graph.nid(dag.ids["IPOWER"]) not in sub


def _subgraph_scenario(version: str) -> tuple[Dag, list[dict[StateKey, str]]]:
    """Alice raises Bob to 75 (P1, after P0), Bob sets a topic (T) and then
    raises Charlie to 75 (P2), which only P1 allows. One state set is at P2;
    the other has the same topic but power levels P0 (an earlier resolution
    lost P1 and P2). P1 is in both sets' auth chains (T cites it), so it is
    not in the auth difference: only P0 and P2 conflict."""
    nodes = [power("P0", ALICE, {ALICE: 100, BOB: 50}),
             power("P1", ALICE, {ALICE: 100, BOB: 75}),
             topic("T", BOB),
             power("P2", BOB, {ALICE: 100, BOB: 75, CHARLIE: 75})]
    dag = Dag(version, nodes, [["END", "P2", "T", "P1", "P0", "START"]])
    at_p2 = dag.state_after["P2"]
    return dag, [at_p2, {**at_p2, (PL, ""): dag.ids["P0"]}]


def test_v2_resets_power_levels_when_the_middle_change_is_not_replayed() -> None:
    """v2 replays P0 then P2; P2 is checked against P0, fails, and the room
    resets to P0."""
    dag, state_sets = _subgraph_scenario("11")
    assert dag.resolve(state_sets)[(PL, "")] == dag.ids["P0"]


def test_v2_1_replays_the_conflicted_subgraph_and_keeps_the_latest_change() -> None:
    """v2.1 adds P1, which lies on the auth path from P2 to P0, to the full
    conflicted set: P0, P1, P2 replay in order and P2 stands."""
    dag, state_sets = _subgraph_scenario("12")
    assert dag.resolve(state_sets)[(PL, "")] == dag.ids["P2"]
    assert dag.resolve(state_sets)[(TOPIC, "")] == dag.ids["T"]


# ---------------------------------------------------------------------------
# Properties


@pytest.mark.parametrize("version", ["1", "2", "11", "12"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_result_does_not_depend_on_the_order_of_the_state_sets(case: str, version: str) -> None:
    nodes, edges, _ = CASES[case]
    dag = Dag(version, nodes, edges)
    tips = [dag.state_after[chain[1]] for chain in edges]
    tips.append(dag.state_after["START"])
    results = {tuple(sorted(dag.resolve(list(p)).items()))
               for p in itertools.permutations(tips)}
    assert len(results) == 1


@pytest.mark.parametrize("version", ["1", "2", "12"])
def test_resolving_one_state_or_equal_states_changes_nothing(version: str) -> None:
    nodes, edges, _ = CASES["topic_basic"]
    dag = Dag(version, nodes, edges)
    state = dag.state_after["T3"]
    assert dag.resolve([state]) == state
    assert dag.resolve([state, dict(state)]) == state
    assert dag.resolve([]) == {}


def test_a_kept_auth_graph_gives_the_same_answer() -> None:
    nodes, edges, _ = CASES["topic"]
    dag = Dag("10", nodes, edges)
    graph = AuthGraph(dag.events)
    sets = [dag.state_after["T4"], dag.state_after["T3"]]
    first = resolve_state("10", sets, graph)
    assert resolve_state("10", sets, graph) == first == dag.resolve(sets)


def test_events_the_fetch_cannot_find_are_left_out() -> None:
    nodes, edges, _ = CASES["topic_basic"]
    dag = Dag("10", nodes, edges)
    missing = dag.ids["T3"]
    sets = [dag.state_after["T2"], dag.state_after["T3"]]
    resolved = resolve_state("10", sets, lambda e: None if e == missing else dag.events.get(e))
    assert resolved[(TOPIC, "")] == dag.ids["T2"]


# ---------------------------------------------------------------------------
# Against a literal reading of the spec, on random forks


def _reference_v2(rv_id: str, state_sets: list[dict[StateKey, str]],
                  events: dict[str, Event]) -> dict[StateKey, str]:
    """State res v2/v2.1 transcribed from the spec, with no shortcuts: full
    auth chains per state set, the order from full auth chains."""
    rv = KNOWN_ROOM_VERSIONS[rv_id]
    v21 = rv_id == "12"

    def auth_ids(e: Event) -> list[str]:
        ids = list(e.auth_event_ids)
        if rv.room_id_from_create_event and e.type != "m.room.create":
            ids.append("$" + e.room_id[1:])
        return ids

    def chain(eid: str) -> set[str]:
        out: set[str] = set()
        todo = auth_ids(events[eid])
        while todo:
            a = todo.pop()
            if a not in out:
                out.add(a)
                todo.extend(auth_ids(events[a]))
        return out

    keys = set().union(*state_sets)
    unconflicted = {k: state_sets[0][k] for k in keys
                    if all(s.get(k) == state_sets[0].get(k) for s in state_sets)}
    conflicted = {s[k] for s in state_sets for k in keys - unconflicted.keys() if k in s}
    chains = [set().union(*(chain(e) for e in s.values())) for s in state_sets]
    full = (set().union(*chains) - chains[0].intersection(*chains[1:])) | conflicted
    if v21:
        full |= {e for c in conflicted for e in chain(c)
                 if chain(e) & conflicted} | conflicted

    def is_power(e: Event) -> bool:
        return e.type in (PL, JR) or (e.type == MEMBER and e.membership in ("leave", "ban")
                                       and e.sender != e.state_key)

    xs = {e for e in full if is_power(events[e])}
    xs |= {a for p in list(xs) for a in chain(p) if a in full}

    def pl_of(eid: str) -> float:
        e = events[eid]
        amap = {events[a].state_pair(): events[a] for a in auth_ids(e)}
        return get_user_power_level(e.sender, amap, rv)

    order: list[str] = []
    left = set(xs)
    while left:
        ready = [e for e in left if not (chain(e) & left)]
        best = min(ready, key=lambda e: (-pl_of(e), events[e].origin_server_ts, e))
        order.append(best)
        left.remove(best)

    def checks(state: dict[StateKey, str], seq: list[str]) -> dict[StateKey, str]:
        state = dict(state)
        for eid in seq:
            e = events[eid]
            amap = {events[a].state_pair(): events[a] for a in auth_ids(e)}
            for k in auth_types_for_event(rv, e):
                if k in state:
                    amap[k] = events[state[k]]
            try:
                check_auth_rules(e, amap)
            except AuthError:
                continue
            state[e.state_pair()] = eid
        return state

    partial = checks({} if v21 else unconflicted, order)

    def pl_parent(eid: str) -> str | None:
        return next((a for a in auth_ids(events[eid]) if events[a].type == PL), None)

    mainline = []
    p = partial.get((PL, ""))
    while p:
        mainline.append(p)
        p = pl_parent(p)

    def position(eid: str) -> float:
        p = pl_parent(eid)
        while p:
            if p in mainline:
                return mainline.index(p)
            p = pl_parent(p)
        return float("inf")

    rest = sorted(full - xs, key=lambda e: (-position(e), events[e].origin_server_ts, e))
    return {**checks(partial, rest), **unconflicted}


USERS = [ALICE, BOB, CHARLIE, ZARA, EVELYN]


def _random_room(version: str, seed: int) -> tuple[Dag, list[str]]:
    """A room that forks after START into three branches of random state
    changes by random users; only events that pass auth on their branch are
    kept. Returns the DAG and the branch tips."""
    rng = random.Random(seed)
    nodes: list[N] = []
    branches: list[list[str]] = [["START"], ["START"], ["START"]]
    # build incrementally, checking each candidate against its branch state
    for i in range(18):
        b = rng.randrange(3)
        sender = rng.choice(USERS)
        kind = rng.random()
        node_id = f"E{i:02d}"
        if kind < 0.3:
            node = topic(node_id, sender)
        elif kind < 0.55:
            users = {u: rng.choice([0, 50, 50, 100]) for u in rng.sample(USERS, 3)}
            users[ALICE] = 100
            node = power(node_id, sender, users)
        elif kind < 0.65:
            node = N(node_id, sender, JR, "", {"join_rule": rng.choice(["public", "invite"])})
        else:
            target = rng.choice(USERS)
            membership = rng.choice(["join", "leave", "ban", "invite"])
            # joins only pass for oneself: most "join"s with target != sender are dropped
            node = member(node_id, sender, target, membership)
        trial = Dag(version, [*nodes, node], [list(reversed([*branches[b], node_id]))])
        event = trial.events[trial.ids[node_id]]
        amap = {trial.events[a].state_pair(): trial.events[a] for a in event.auth_event_ids}
        if trial.rv.room_id_from_create_event:
            amap[("m.room.create", "")] = trial.events[trial.ids["CREATE"]]
        try:
            check_auth_rules(event, amap)
        except AuthError:
            continue
        nodes.append(node)
        branches[b].append(node_id)
    edges = [list(reversed(chain)) for chain in branches if len(chain) > 1]
    dag = Dag(version, nodes, edges)
    tips = [chain[-1] for chain in branches]
    return dag, tips


@pytest.mark.parametrize("version", ["2", "10", "12"])
@pytest.mark.parametrize("seed", range(12))
def test_random_forks_match_the_literal_spec_and_any_order(version: str, seed: int) -> None:
    dag, tips = _random_room(version, seed)
    sets = [dag.state_after[t] for t in tips]
    expected = _reference_v2(version, sets, dag.events)
    for perm in itertools.permutations(sets):
        assert dag.resolve(list(perm)) == expected


@pytest.mark.parametrize("seed", range(12))
def test_v1_on_random_forks_does_not_depend_on_the_order_of_the_state_sets(seed: int) -> None:
    dag, tips = _random_room("1", seed)
    sets = [dag.state_after[t] for t in tips]
    results = {tuple(sorted(dag.resolve(list(p)).items())) for p in itertools.permutations(sets)}
    assert len(results) == 1
