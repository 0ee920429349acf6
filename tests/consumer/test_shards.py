"""The shard graph and the resharding rules, on random split/merge histories and by hand."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinesio._models import (
    AT_TIMESTAMP,
    LATEST,
    MAX_HASH_KEY,
    SHARD_END,
    TRIM_HORIZON,
    ChildShard,
    ExtendedSequenceNumber,
    Lease,
    Shard,
)
from kinesio.consumer._shards import (
    ShardGraph,
    child_leases,
    children_from_list_shards,
    has_started,
    initial_leases,
    is_ready,
    parents_to_delete,
    unleased_parents,
)

PROPERTY = settings(max_examples=150, deadline=None)
SIMULATION = settings(max_examples=200, deadline=None)

AT_TRIM_HORIZON = ExtendedSequenceNumber(TRIM_HORIZON)
AT_LATEST = ExtendedSequenceNumber(LATEST)
AT_TIME = ExtendedSequenceNumber(AT_TIMESTAMP)
ENDED = ExtendedSequenceNumber(SHARD_END)


# -- random resharding histories ---------------------------------------------------------------


@dataclasses.dataclass
class History:
    """Every shard a stream ever had, and those ListShards still returns (within retention)."""

    every_shard: list[Shard]
    listed: list[Shard]

    @property
    def graph(self) -> ShardGraph:
        return ShardGraph.from_shards(self.listed)

    def probe_keys(self) -> list[int]:
        """One hash key per piece of the finest partition: chains are constant on each piece."""
        return sorted({shard.starting_hash_key for shard in self.every_shard})


def shard_id(n: int) -> str:
    return f"shardId-{n:012d}"


@st.composite
def histories(draw: st.DrawFn) -> History:
    """N shards evenly over the hash space, then random splits and merges of open shards,
    then everything closed before a random cut-off expired."""
    count = draw(st.integers(1, 4))
    step = (MAX_HASH_KEY + 1) // count
    shards: dict[str, Shard] = {}
    closed_at: dict[str, int] = {}
    for i in range(count):
        end = MAX_HASH_KEY if i == count - 1 else (i + 1) * step - 1
        shards[shard_id(i)] = Shard(shard_id(i), i * step, end, starting_sequence_number="0")
    next_id = count
    time = 0

    def open_shards() -> list[Shard]:
        return sorted((s for s in shards.values() if s.is_open), key=lambda s: s.starting_hash_key)

    def close(shard: Shard) -> None:
        shards[shard.shard_id] = dataclasses.replace(
            shard, ending_sequence_number=str(time * 1000 - 1)
        )
        closed_at[shard.shard_id] = time

    def add(start: int, end: int, parent: str, adjacent: str | None = None) -> None:
        nonlocal next_id
        new = Shard(
            shard_id(next_id),
            start,
            end,
            parent_shard_id=parent,
            adjacent_parent_shard_id=adjacent,
            starting_sequence_number=str(time * 1000 + next_id),
        )
        shards[new.shard_id] = new
        next_id += 1

    for _ in range(draw(st.integers(0, 12))):
        time += 1
        current = open_shards()
        splittable = [s for s in current if s.ending_hash_key > s.starting_hash_key]
        pairs = list(itertools.pairwise(current))
        kinds = (["split"] if splittable else []) + (["merge"] if pairs else [])
        if not kinds:
            break
        if draw(st.sampled_from(kinds)) == "split":
            parent = draw(st.sampled_from(splittable))
            point = draw(st.integers(parent.starting_hash_key + 1, parent.ending_hash_key))
            close(parent)
            add(parent.starting_hash_key, point - 1, parent.shard_id)
            add(point, parent.ending_hash_key, parent.shard_id)
        else:
            left, right = draw(st.sampled_from(pairs))
            assert left.ending_hash_key + 1 == right.starting_hash_key
            close(left)
            close(right)
            add(left.starting_hash_key, right.ending_hash_key, left.shard_id, right.shard_id)

    cutoff = draw(st.integers(0, time))
    every = list(shards.values())
    listed = [s for s in every if closed_at.get(s.shard_id, cutoff) >= cutoff]
    return History(every, listed)


def chain_up(graph: ShardGraph, start: str, key: int) -> list[str]:
    """The shards holding ``key`` from ``start`` up through its listed parents."""
    chain = [start]
    while True:
        above = [p for p in graph.parents(chain[-1]) if graph[p].contains(key)]
        assert len(above) <= 1, "the parents of a shard never overlap"
        if not above:
            return chain
        chain.append(above[0])


def assert_well_formed(
    leases: Iterable[Lease], graph: ShardGraph, at: ExtendedSequenceNumber
) -> None:
    for lease in leases:
        shard = graph[lease.lease_key]
        assert lease.lease_owner is None
        assert lease.checkpoint == at
        assert lease.parent_shard_ids == frozenset(shard.parent_shard_ids)
        assert (lease.starting_hash_key, lease.ending_hash_key) == (
            shard.starting_hash_key,
            shard.ending_hash_key,
        )


@PROPERTY
@given(history=histories(), at=st.sampled_from([AT_TRIM_HORIZON, AT_TIME]))
def test_from_the_start_every_key_is_read_once_at_every_point_in_time(
    history: History, at: ExtendedSequenceNumber
) -> None:
    graph = history.graph
    created = initial_leases(history.listed, (), at)
    keys = {lease.lease_key for lease in created}

    assert len(keys) == len(created)
    assert keys == {s for s in graph.shards if graph.is_root(s)}, "the oldest shards, no others"
    assert_well_formed(created, graph, at)
    # Every listed shard, open or long closed, is reached for every key exactly once.
    for shard in graph.shards.values():
        for key in history.probe_keys():
            if shard.contains(key):
                chain = chain_up(graph, shard.shard_id, key)
                assert len(keys.intersection(chain)) == 1, (shard.shard_id, key, chain)
    # Parents before children in the order returned.
    order = [int(graph[lease.lease_key].starting_sequence_number) for lease in created]
    assert order == sorted(order)
    assert initial_leases(history.listed, keys, at) == []


@PROPERTY
@given(history=histories())
def test_at_latest_only_the_open_shards(history: History) -> None:
    graph = history.graph
    created = initial_leases(history.listed, (), AT_LATEST)
    assert [lease.lease_key for lease in created] == sorted(s.shard_id for s in graph.open_shards())
    assert_well_formed(created, graph, AT_LATEST)
    assert initial_leases(history.listed, [lease.lease_key for lease in created], AT_LATEST) == []


@PROPERTY
@given(history=histories(), data=st.data())
def test_any_lease_table_is_completed_to_cover_every_open_key(
    history: History, data: st.DataObject
) -> None:
    graph = history.graph
    ids = sorted(graph.shards)
    existing = set(data.draw(st.lists(st.sampled_from(ids), unique=True) if ids else st.just([])))
    at = data.draw(st.sampled_from([AT_TRIM_HORIZON, AT_TIME, AT_LATEST]))

    created = initial_leases(history.listed, existing, at)
    keys = {lease.lease_key for lease in created}

    assert not keys & existing
    assert_well_formed(created, graph, at)
    for created_key in keys:
        ancestors = set(graph.ancestors(created_key))
        assert not ancestors & existing, "nothing below an existing lease is created"
        assert not ancestors & keys, "no created lease sits below another"
    covering = existing | keys
    reached: dict[str, bool] = {}

    def is_reached(sid: str) -> bool:
        if sid not in reached:
            reached[sid] = sid in covering or any(is_reached(p) for p in graph.parents(sid))
        return reached[sid]

    for sid in graph.shards:
        parents = graph.parents(sid)
        if sid not in covering and len(parents) > 1 and is_reached(sid):
            assert all(is_reached(p) for p in parents), "a merge child's end would wait for ever"
    for shard in graph.open_shards():
        if at == AT_LATEST:
            assert covering & {shard.shard_id, *graph.ancestors(shard.shard_id)}
            continue
        for key in history.probe_keys():
            if shard.contains(key):
                assert covering.intersection(chain_up(graph, shard.shard_id, key))
    assert initial_leases(history.listed, covering, at) == []


# -- processing simulation: parents first, deletion top-down, sync never re-creates ----------


@dataclasses.dataclass
class Processing:
    """A lease table driven by the rules: read, end (children first), clean up, sync."""

    graph: ShardGraph
    position: ExtendedSequenceNumber
    leases: dict[str, Lease]
    ever_created: set[str] = dataclasses.field(default_factory=set)
    finished: set[str] = dataclasses.field(default_factory=set)
    deleted: set[str] = dataclasses.field(default_factory=set)
    tick: int = 0

    @classmethod
    def start(cls, history: History, position: ExtendedSequenceNumber) -> Processing:
        graph = history.graph
        run = cls(graph, position, {})
        run.create(initial_leases(history.listed, (), position))
        return run

    def create(self, leases: Iterable[Lease]) -> None:
        for lease in leases:
            if lease.lease_key in self.leases:
                continue  # create-if-absent: a merge child is announced by both parents
            assert lease.lease_key not in self.deleted, f"{lease.lease_key} would be read again"
            assert lease.lease_key not in self.ever_created
            self.leases[lease.lease_key] = lease
            self.ever_created.add(lease.lease_key)

    def readable(self) -> list[str]:
        return sorted(
            key
            for key, lease in self.leases.items()
            if lease.checkpoint != ENDED and is_ready(lease, self.leases)
        )

    def assert_parents_done(self, key: str) -> None:
        for parent in self.graph.parents(key):
            if parent in self.ever_created:
                assert parent in self.finished, f"{key} read before its parent {parent} ended"

    def read(self, key: str) -> None:
        self.assert_parents_done(key)
        self.tick += 1
        lease = self.leases[key]
        self.leases[key] = dataclasses.replace(
            lease, checkpoint=ExtendedSequenceNumber(str(self.tick))
        )

    def children(self, key: str) -> list[Shard]:
        return children_from_list_shards(key, list(self.graph.shards.values()))

    def can_end(self, key: str) -> bool:
        if self.graph[key].is_open:
            return False
        return not unleased_parents(self.children(key), self.leases, listed=self.graph.shards)

    def end(self, key: str) -> None:
        self.assert_parents_done(key)
        assert self.can_end(key)
        children = self.children(key)
        self.create(child_leases(children))
        lease = self.leases[key]
        self.leases[key] = dataclasses.replace(
            lease, checkpoint=ENDED, child_shard_ids=frozenset(c.shard_id for c in children)
        )
        self.finished.add(key)

    def clean_up(self) -> bool:
        doomed = parents_to_delete(list(self.leases.values()))
        for key in doomed:
            assert self.leases[key].checkpoint == ENDED
            for parent in self.graph.parents(key):
                assert parent not in self.leases, f"{key} deleted before its parent {parent}"
            for child in self.graph.children(key):
                assert child in self.leases, f"{key} deleted before its child {child} has a lease"
                assert has_started(self.leases[child]), f"{key} deleted before {child} progressed"
        for key in doomed:
            del self.leases[key]
            self.deleted.add(key)
        return bool(doomed)

    def sync(self) -> None:
        assert initial_leases(list(self.graph.shards.values()), self.leases, self.position) == []

    def drain(self) -> None:
        """Read everything to the end, oldest first, cleaning up as it goes."""
        while True:
            moved = False
            for key in self.readable():
                if self.can_end(key):
                    self.end(key)
                    moved = True
                elif not has_started(self.leases[key]):
                    self.read(key)
                    moved = True
            self.sync()
            moved = self.clean_up() or moved
            if not moved:
                return

    def step(self, rng: random.Random) -> bool:
        """One random action; False when nothing is left to do."""
        readable = self.readable()
        endable = [key for key in readable if self.can_end(key)]
        unread = [
            key for key in readable if self.graph[key].is_open and not has_started(self.leases[key])
        ]
        actions = []
        if readable:
            actions.append("read")
        if endable:
            actions.append("end")
        if parents_to_delete(list(self.leases.values())):
            actions.append("clean")
        if not endable and not unread and "clean" not in actions:
            return False
        actions.append("sync")
        action = rng.choice(actions)
        if action == "read":
            self.read(rng.choice(readable))
        elif action == "end":
            self.end(rng.choice(endable))
        elif action == "clean":
            self.clean_up()
        else:
            self.sync()
        return True


@SIMULATION
@given(
    history=histories(),
    position=st.sampled_from([AT_TRIM_HORIZON, AT_TIME, AT_LATEST]),
    seed=st.integers(0, 2**32),
)
def test_reading_by_the_rules_reads_every_shard_once_parents_first(
    history: History, position: ExtendedSequenceNumber, seed: int
) -> None:
    rng = random.Random(seed)
    run = Processing.start(history, position)
    for _ in range(10 * (len(run.graph) + 1)):
        if not run.step(rng):
            break
        for lease in run.leases.values():
            if is_ready(lease, run.leases):
                for parent in lease.parent_shard_ids:
                    assert parent not in run.leases or run.leases[parent].checkpoint == ENDED
    run.drain()

    graph = run.graph
    open_ids = {s.shard_id for s in graph.open_shards()}
    if position == AT_LATEST:
        assert open_ids <= run.ever_created <= set(graph.shards)
    else:
        assert run.ever_created == set(graph.shards), "every listed shard is read, once"
    assert run.finished == run.ever_created - open_ids, "nothing is left stuck half-way"
    assert set(run.leases) == open_ids, "all else cleaned up"
    assert all(has_started(run.leases[s]) for s in open_ids)


# -- by hand -------------------------------------------------------------------------------------

HALF = 2**127


def split_stream() -> list[Shard]:
    return [
        Shard("p", 0, MAX_HASH_KEY, ending_sequence_number="99"),
        Shard("a", 0, HALF - 1, parent_shard_id="p", starting_sequence_number="100"),
        Shard("b", HALF, MAX_HASH_KEY, parent_shard_id="p", starting_sequence_number="101"),
    ]


def merge_stream() -> list[Shard]:
    return [
        Shard("p1", 0, HALF - 1, starting_sequence_number="5", ending_sequence_number="99"),
        Shard("p2", HALF, MAX_HASH_KEY, starting_sequence_number="3", ending_sequence_number="98"),
        Shard(
            "c",
            0,
            MAX_HASH_KEY,
            parent_shard_id="p1",
            adjacent_parent_shard_id="p2",
            starting_sequence_number="100",
        ),
    ]


def with_checkpoint(lease: Lease, checkpoint: str) -> Lease:
    return dataclasses.replace(lease, checkpoint=ExtendedSequenceNumber(checkpoint))


def test_graph_links_both_parents() -> None:
    graph = ShardGraph.from_shards(merge_stream())
    assert graph.parents("c") == ("p1", "p2")
    assert graph.children("p1") == ("c",)
    assert graph.children("p2") == ("c",)
    assert graph.ancestors("c") == ("p1", "p2")
    assert [s.shard_id for s in graph.open_shards()] == ["c"]
    assert graph.is_root("p1")
    assert not graph.is_root("c")
    assert "c" in graph
    assert len(graph) == 3


def test_graph_ignores_parents_past_retention() -> None:
    graph = ShardGraph.from_shards(split_stream()[1:])
    assert graph.parents("a") == ()
    assert graph.is_root("a")
    assert graph.children("p") == ("a", "b")  # still answered from the children's side
    assert graph.ancestors("a") == ()


def test_graph_ancestors_nearest_first() -> None:
    shards = [
        *split_stream(),
        Shard("a1", 0, 9, parent_shard_id="a", starting_sequence_number="200"),
        Shard("a2", 10, HALF - 1, parent_shard_id="a", starting_sequence_number="201"),
    ]
    shards[1] = dataclasses.replace(shards[1], ending_sequence_number="199")
    graph = ShardGraph.from_shards(shards)
    assert graph.ancestors("a1") == ("a", "p")
    assert [s.shard_id for s in graph.open_shards()] == ["a1", "a2", "b"]


def test_split_initial_leases() -> None:
    (parent,) = initial_leases(split_stream(), (), AT_TRIM_HORIZON)
    assert parent == Lease(
        lease_key="p", checkpoint=AT_TRIM_HORIZON, starting_hash_key=0, ending_hash_key=MAX_HASH_KEY
    )
    latest = initial_leases(split_stream(), (), AT_LATEST)
    assert [(x.lease_key, x.parent_shard_ids) for x in latest] == [
        ("a", frozenset({"p"})),
        ("b", frozenset({"p"})),
    ]
    assert all(x.checkpoint == AT_LATEST for x in latest)
    # The parent is leased already: its end will create the children.
    assert initial_leases(split_stream(), {"p"}, AT_TRIM_HORIZON) == []
    assert initial_leases(split_stream(), {"p"}, AT_LATEST) == []


def test_split_children_wait_for_their_parent_and_it_waits_for_them() -> None:
    children = child_leases(
        [
            ChildShard("a", ("p",), 0, HALF - 1),
            ChildShard("b", ("p",), HALF, MAX_HASH_KEY),
        ]
    )
    assert [(x.lease_key, x.checkpoint, x.parent_shard_ids) for x in children] == [
        ("a", AT_TRIM_HORIZON, frozenset({"p"})),
        ("b", AT_TRIM_HORIZON, frozenset({"p"})),
    ]
    assert (children[1].starting_hash_key, children[1].ending_hash_key) == (HALF, MAX_HASH_KEY)
    a, b = children
    parent = Lease("p", lease_owner="w", checkpoint=ExtendedSequenceNumber("42"))
    table = {x.lease_key: x for x in (parent, a, b)}
    assert not is_ready(a, table)
    table["p"] = dataclasses.replace(parent, checkpoint=ENDED, child_shard_ids=frozenset("ab"))
    assert is_ready(a, table)
    assert is_ready(b, table)
    assert parents_to_delete(list(table.values())) == []
    table["a"] = with_checkpoint(a, "1000")
    assert parents_to_delete(list(table.values())) == [], "b has not progressed yet"
    table["b"] = with_checkpoint(b, SHARD_END)
    assert parents_to_delete(list(table.values())) == ["p"]
    del table["p"]
    assert is_ready(a, table), "a deleted parent does not block"


def test_merge_initial_leases() -> None:
    created = initial_leases(merge_stream(), (), AT_TRIM_HORIZON)
    assert [x.lease_key for x in created] == ["p2", "p1"]  # by starting sequence number
    assert [x.lease_key for x in initial_leases(merge_stream(), (), AT_LATEST)] == ["c"]
    # One side under a lease: the other side is still read from the start...
    (other,) = initial_leases(merge_stream(), {"p1"}, AT_TRIM_HORIZON)
    assert other.lease_key == "p2"
    (other,) = initial_leases(merge_stream(), {"p1"}, AT_TIME)
    assert (other.lease_key, other.checkpoint) == ("p2", AT_TIME)
    # ...and at LATEST p2 gets a LATEST lease, so that p1's end can write the child's lease.
    (other,) = initial_leases(merge_stream(), {"p1"}, AT_LATEST)
    assert (other.lease_key, other.checkpoint) == ("p2", AT_LATEST)


def test_a_merge_child_is_written_once_both_parents_have_leases() -> None:
    shards = merge_stream()
    child = [s for s in shards if s.shard_id == "c"]
    assert unleased_parents(child, {"p1"}) == ["p2"]
    assert unleased_parents(child, {"p1", "p2"}) == []
    assert unleased_parents(child, {"p1"}, listed={"p1", "c"}) == [], "p2 is past retention"
    assert unleased_parents(child, {"p1", "c"}) == [], "the child exists already"
    split_children = children_from_list_shards("p", split_stream())
    assert unleased_parents(split_children, {"p"}) == []


def test_merge_child_waits_for_both_parents() -> None:
    (child,) = child_leases([s for s in merge_stream() if s.shard_id == "c"])
    assert child.parent_shard_ids == frozenset({"p1", "p2"})
    assert (child.starting_hash_key, child.ending_hash_key) == (0, MAX_HASH_KEY)
    p1 = Lease("p1", checkpoint=ENDED, child_shard_ids=frozenset({"c"}))
    p2 = Lease("p2", checkpoint=ExtendedSequenceNumber("7"))
    table = {"p1": p1, "p2": p2, "c": child}
    assert not is_ready(child, table)
    table["p2"] = with_checkpoint(p2, SHARD_END)
    assert is_ready(child, table)
    assert parents_to_delete(list(table.values())) == []
    table["c"] = with_checkpoint(child, "123")
    assert parents_to_delete(list(table.values())) == ["p1", "p2"]


def test_a_child_without_a_lease_holds_its_parent() -> None:
    parent = Lease("p", checkpoint=ENDED, child_shard_ids=frozenset({"a", "b"}))
    a = Lease("a", checkpoint=ExtendedSequenceNumber("5"), parent_shard_ids=frozenset({"p"}))
    assert parents_to_delete([parent, a]) == []


def test_a_finished_lease_without_known_children_stays() -> None:
    assert parents_to_delete([Lease("p", checkpoint=ENDED)]) == []


@pytest.mark.parametrize("start", [TRIM_HORIZON, LATEST, AT_TIMESTAMP])
def test_a_child_at_a_start_position_has_not_progressed(start: str) -> None:
    parent = Lease("p", checkpoint=ENDED)
    child = Lease("a", checkpoint=ExtendedSequenceNumber(start), parent_shard_ids=frozenset("p"))
    assert not has_started(child)
    assert parents_to_delete([parent, child]) == []


def test_deletion_goes_top_down() -> None:
    grandparent = Lease("g", checkpoint=ENDED, child_shard_ids=frozenset({"p"}))
    parent = Lease(
        "p", checkpoint=ENDED, parent_shard_ids=frozenset({"g"}), child_shard_ids=frozenset({"c"})
    )
    child = Lease("c", checkpoint=ExtendedSequenceNumber("1"), parent_shard_ids=frozenset({"p"}))
    assert parents_to_delete([grandparent, parent, child]) == ["g"]
    assert parents_to_delete([parent, child]) == ["p"]


def test_children_from_list_shards_finds_both_kinds_of_parent() -> None:
    shards = merge_stream()
    assert [s.shard_id for s in children_from_list_shards("p1", shards)] == ["c"]
    assert [s.shard_id for s in children_from_list_shards("p2", shards)] == ["c"]
    assert children_from_list_shards("c", shards) == []
    leases = child_leases(children_from_list_shards("p", split_stream()))
    assert [x.lease_key for x in leases] == ["a", "b"]


def test_the_kcl_example() -> None:
    """The example of the KCL's HierarchicalShardSyncer.determineNewLeasesToCreate."""
    step = (MAX_HASH_KEY + 1) // 6
    ranges = {str(i): (i * step, (i + 1) * step - 1 if i < 5 else MAX_HASH_KEY) for i in range(6)}

    def closed(sid: str, *parents: str, lo: str | None = None, hi: str | None = None) -> Shard:
        start = ranges[lo or sid][0]
        end = ranges[hi or sid][1]
        return Shard(
            sid,
            start,
            end,
            parent_shard_id=parents[0] if parents else None,
            adjacent_parent_shard_id=parents[1] if len(parents) > 1 else None,
            starting_sequence_number=sid,
            ending_sequence_number="1",
        )

    shards = [closed(str(i)) for i in range(4)]
    shards.append(dataclasses.replace(closed("4"), ending_sequence_number=None))
    shards.append(closed("5"))
    shards.append(closed("6", "0", "1", lo="0", hi="1"))
    shards.append(closed("7", "2", "3", lo="2", hi="3"))
    eight = closed("8", "6", "7", lo="0", hi="3")
    shards.append(dataclasses.replace(eight, ending_sequence_number=None))
    middle = (ranges["5"][0] + ranges["5"][1]) // 2
    shards.append(Shard("9", ranges["5"][0], middle, parent_shard_id="5"))
    shards.append(Shard("10", middle + 1, ranges["5"][1], parent_shard_id="5"))

    current = {"4", "5", "7"}
    assert [x.lease_key for x in initial_leases(shards, current, AT_TRIM_HORIZON)] == ["0", "1"]
    assert [x.lease_key for x in initial_leases(shards, current, AT_TIME)] == ["0", "1"]
    # 8 is reached through 7; 6 is reached by nothing and gets a LATEST lease, or 7 would wait
    # at its end for ever.
    (six,) = initial_leases(shards, current, AT_LATEST)
    assert (six.lease_key, six.checkpoint) == ("6", AT_LATEST)


def test_initial_position_must_be_a_start_sentinel() -> None:
    with pytest.raises(ValueError, match="initial_checkpoint"):
        initial_leases(split_stream(), (), ENDED)
    with pytest.raises(ValueError, match="initial_checkpoint"):
        initial_leases(split_stream(), (), ExtendedSequenceNumber("123"))


def test_a_cycle_in_a_malformed_listing_does_not_hang() -> None:
    shards = [
        Shard("x", 0, MAX_HASH_KEY, parent_shard_id="y", ending_sequence_number="1"),
        Shard("y", 0, MAX_HASH_KEY, parent_shard_id="x", ending_sequence_number="1"),
        Shard("z", 0, MAX_HASH_KEY, parent_shard_id="x"),
    ]
    assert initial_leases(shards, (), AT_TRIM_HORIZON) == []
    assert [x.lease_key for x in initial_leases(shards, (), AT_LATEST)] == ["z"]
    assert set(ShardGraph.from_shards(shards).ancestors("z")) == {"x", "y"}


def test_deep_histories_do_not_hit_the_recursion_limit() -> None:
    shards = [Shard("s0", 0, MAX_HASH_KEY, ending_sequence_number="1")]
    for i in range(1, 5000):
        shards.append(
            Shard(f"s{i}", 0, MAX_HASH_KEY, parent_shard_id=f"s{i - 1}", ending_sequence_number="1")
        )
    shards[-1] = dataclasses.replace(shards[-1], ending_sequence_number=None)
    assert [x.lease_key for x in initial_leases(shards, (), AT_TRIM_HORIZON)] == ["s0"]
    assert initial_leases(shards, {"s2500"}, AT_TRIM_HORIZON) == []
    assert len(ShardGraph.from_shards(shards).ancestors("s4999")) == 4999
