"""Lease taking and stealing: the KCL rules, one plan at a time and over many rounds."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinesio._models import SHARD_END, ExtendedSequenceNumber, Lease
from kinesio.consumer._assignment import Plan, fair_target, is_finished, plan

PROPERTY = settings(max_examples=150, deadline=None)
SIMULATION = settings(max_examples=100, deadline=None)

FINISHED = ExtendedSequenceNumber(SHARD_END)
WORKERS = [f"w{i}" for i in range(6)]


def lease(key: str, owner: str | None = None, *, finished: bool = False) -> Lease:
    if finished:
        return Lease(lease_key=key, lease_owner=owner, checkpoint=FINISHED)
    return Lease(lease_key=key, lease_owner=owner)


def table(owners: Mapping[str, str | None]) -> list[Lease]:
    return [lease(key, owner) for key, owner in owners.items()]


def live_counts(
    leases: Iterable[Lease], expired: AbstractSet[str], workers: Iterable[str] = ()
) -> Counter[str]:
    """Unfinished, non-expired leases per owner; ``workers`` are listed even when they hold 0."""
    counts: Counter[str] = Counter({worker: 0 for worker in workers})
    for item in leases:
        owner = item.lease_owner
        if owner is not None and item.lease_key not in expired and not is_finished(item):
            counts[owner] += 1
    return counts


def check_plan(
    leases: Sequence[Lease],
    expired: AbstractSet[str],
    me: str,
    result: Plan,
    *,
    max_leases: int | None,
    max_leases_to_steal: int,
) -> None:
    """Every guarantee of ``plan`` for one decision, checked from first principles."""
    by_key = {item.lease_key: item for item in leases}
    active = [item for item in leases if not is_finished(item)]

    def live(item: Lease) -> bool:
        return item.lease_owner is not None and item.lease_key not in expired

    workers = {item.lease_owner for item in leases if live(item)} | {me}
    if active:
        expected = 1 if len(workers) >= len(active) else math.ceil(len(active) / len(workers))
        if max_leases is not None:
            expected = min(expected, max_leases)
    else:
        expected = 0
    assert result.target == expected

    counts = live_counts(leases, expired, [me])
    mine = counts[me]
    available = {item.lease_key for item in active if not live(item)}

    assert len(set(result.take)) == len(result.take)
    assert len(set(result.steal)) == len(result.steal)
    assert not (result.take and result.steal)
    for key in [*result.take, *result.steal]:
        assert not is_finished(by_key[key]), "finished leases are never taken or stolen"
    # Never above the target, and nothing at all once there.
    assert mine + len(result.take) + len(result.steal) <= max(result.target, mine)
    if mine >= result.target:
        assert result.empty

    # Taking: only unowned or expired leases, as many as needed and available.
    assert set(result.take) <= available
    if mine < result.target and available:
        assert len(result.take) == min(result.target - mine, len(available))

    # Stealing: only when nothing is available, from one most loaded live worker.
    if result.steal:
        assert not available
        assert len(result.steal) <= max_leases_to_steal
        victim = result.steal_from
        assert victim is not None
        assert victim != me
        for key in result.steal:
            assert live(by_key[key])
            assert by_key[key].lease_owner == victim
        others = [count for worker, count in counts.items() if worker != me]
        assert counts[victim] == max(others)
        if counts[victim] <= result.target:
            # Only the KCL's one exception: a victim at exactly the target, me two short.
            assert counts[victim] == result.target
            assert len(result.steal) == 1
            assert mine <= result.target - 2
        # The imbalance is never reversed.
        assert counts[victim] - len(result.steal) >= mine + len(result.steal)
    else:
        assert result.steal_from is None


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Lease], frozenset[str], str]:
    size = draw(st.integers(0, 30))
    # Half the tables have every lease held and live, so that stealing gets its share.
    crowded = draw(st.booleans())
    owners = st.sampled_from(WORKERS) if crowded else st.one_of(st.none(), st.sampled_from(WORKERS))
    # About one lease in six finished, one in five expired.
    leases = [
        lease(f"shard-{i:03d}", draw(owners), finished=draw(st.integers(0, 5)) == 0)
        for i in range(size)
    ]
    expired = frozenset(
        item.lease_key for item in leases if not crowded and draw(st.integers(0, 4)) == 0
    )
    me = draw(st.sampled_from(WORKERS))
    return leases, expired, me


@PROPERTY
@given(
    data=tables(),
    max_leases=st.one_of(st.none(), st.integers(1, 12)),
    max_leases_to_steal=st.integers(0, 4),
    seed=st.integers(0, 2**32),
)
def test_every_plan_keeps_the_rules(
    data: tuple[list[Lease], frozenset[str], str],
    max_leases: int | None,
    max_leases_to_steal: int,
    seed: int,
) -> None:
    leases, expired, me = data
    result = plan(
        leases,
        expired,
        me,
        max_leases=max_leases,
        max_leases_to_steal=max_leases_to_steal,
        rng=random.Random(seed),
    )
    check_plan(
        leases,
        expired,
        me,
        result,
        max_leases=max_leases,
        max_leases_to_steal=max_leases_to_steal,
    )


@PROPERTY
@given(data=tables(), seed=st.integers(0, 2**32), shuffle_seed=st.integers(0, 2**32))
def test_plans_replay_from_the_seed_whatever_the_read_order(
    data: tuple[list[Lease], frozenset[str], str], seed: int, shuffle_seed: int
) -> None:
    leases, expired, me = data
    reordered = list(leases)
    random.Random(shuffle_seed).shuffle(reordered)
    first = plan(leases, expired, me, rng=random.Random(seed))
    again = plan(reordered, expired, me, rng=random.Random(seed))
    assert first == again


@st.composite
def fair_tables(draw: st.DrawFn) -> tuple[list[Lease], list[str]]:
    """Every unfinished lease owned by a live worker, counts differing by at most one."""
    workers = WORKERS[: draw(st.integers(1, len(WORKERS)))]
    size = draw(st.integers(0, 30))
    order = draw(st.permutations(workers))
    leases = [lease(f"shard-{i:03d}", order[i % len(order)]) for i in range(size)]
    for i in range(draw(st.integers(0, 4))):
        leases.append(
            lease(f"done-{i}", draw(st.one_of(st.none(), st.sampled_from(workers))), finished=True)
        )
    return leases, list(workers)


@PROPERTY
@given(data=fair_tables(), max_leases_to_steal=st.integers(1, 4), seed=st.integers(0, 2**32))
def test_a_fair_table_stays_as_it_is(
    data: tuple[list[Lease], list[str]], max_leases_to_steal: int, seed: int
) -> None:
    leases, workers = data
    for worker in workers:
        result = plan(
            leases,
            frozenset(),
            worker,
            max_leases_to_steal=max_leases_to_steal,
            rng=random.Random(seed),
        )
        assert result.empty, (worker, result)


# -- simulation: every worker plans against the current table and applies its plan ---------


@dataclasses.dataclass
class Cluster:
    """A lease table and the workers alive; a lease of a dead worker counts as expired."""

    leases: dict[str, Lease]
    workers: list[str]
    max_leases: int | None = None
    max_leases_to_steal: int = 1

    @property
    def expired(self) -> frozenset[str]:
        return frozenset(
            key
            for key, item in self.leases.items()
            if item.lease_owner is not None and item.lease_owner not in self.workers
        )

    def counts(self) -> Counter[str]:
        return live_counts(self.leases.values(), self.expired, self.workers)

    def unowned(self) -> list[str]:
        """Unfinished leases nobody alive holds."""
        return [
            key
            for key, item in self.leases.items()
            if not is_finished(item) and item.lease_owner not in self.workers
        ]

    def is_fair(self) -> bool:
        """Counts within one of each other and nothing left over, or every worker at its cap
        (a worker above the cap keeps its leases: the KCL never gives leases back)."""
        counts = self.counts()
        if self.max_leases is not None and min(counts.values()) >= self.max_leases:
            return True
        return max(counts.values()) - min(counts.values()) <= 1 and not self.unowned()

    def run_round(self, rng: random.Random) -> bool:
        """Each worker in turn (random order) plans and applies; True if anything moved."""
        moved = False
        order = list(self.workers)
        rng.shuffle(order)
        for worker in order:
            leases = list(self.leases.values())
            expired = self.expired
            result = plan(
                leases,
                expired,
                worker,
                max_leases=self.max_leases,
                max_leases_to_steal=self.max_leases_to_steal,
                rng=rng,
            )
            check_plan(
                leases,
                expired,
                worker,
                result,
                max_leases=self.max_leases,
                max_leases_to_steal=self.max_leases_to_steal,
            )
            for key in [*result.take, *result.steal]:
                self.leases[key] = dataclasses.replace(self.leases[key], lease_owner=worker)
                moved = True
        return moved

    def settle(self, rng: random.Random, max_rounds: int) -> int:
        """Rounds until one moves nothing; fails if that takes more than ``max_rounds``."""
        for rounds in range(max_rounds + 1):
            if not self.run_round(rng):
                return rounds
        raise AssertionError(f"no quiet round after {max_rounds} rounds: {self.counts()}")


def round_bound(cluster: Cluster) -> int:
    # Each worker steals at least one lease per round until it is within one of the most
    # loaded, so the number of rounds grows with the share a newcomer needs, not with the
    # table; the slack covers the take rounds and the random order.
    active = sum(1 for item in cluster.leases.values() if not is_finished(item))
    return math.ceil(active / max(1, len(cluster.workers))) + 3


def assert_settled(cluster: Cluster, rng: random.Random) -> None:
    assert cluster.is_fair(), cluster.counts()
    finished = {key: item for key, item in cluster.leases.items() if is_finished(item)}
    for _ in range(3):
        assert not cluster.run_round(rng), "a fair table must not thrash"
    assert {key: item for key, item in cluster.leases.items() if is_finished(item)} == finished


@st.composite
def clusters(draw: st.DrawFn, *, start_empty: bool = True) -> Cluster:
    workers = WORKERS[: draw(st.integers(1, len(WORKERS)))]
    size = draw(st.integers(0, 40))
    if start_empty:
        owners: list[str | None] = [None] * size
    else:
        # Any start: some leases held by workers that are gone.
        owners = [
            draw(st.one_of(st.none(), st.sampled_from([*WORKERS, "gone-1", "gone-2"])))
            for _ in range(size)
        ]
    leases = {f"shard-{i:03d}": lease(f"shard-{i:03d}", owner) for i, owner in enumerate(owners)}
    for i in range(draw(st.integers(0, 3))):
        owner = draw(st.one_of(st.none(), st.sampled_from([*workers, "gone-1"])))
        leases[f"done-{i}"] = lease(f"done-{i}", owner, finished=True)
    return Cluster(
        leases=leases,
        workers=list(workers),
        max_leases=draw(st.one_of(st.none(), st.integers(1, 10))),
        max_leases_to_steal=draw(st.integers(1, 3)),
    )


@SIMULATION
@given(cluster=clusters(), seed=st.integers(0, 2**32))
def test_workers_starting_together_settle_fair(cluster: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    cluster.settle(rng, round_bound(cluster))
    assert_settled(cluster, rng)


@SIMULATION
@given(cluster=clusters(start_empty=False), seed=st.integers(0, 2**32))
def test_any_table_settles_fair(cluster: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    # From an arbitrary table a worker may start far above the target and lose one lease per
    # thief per round, so allow for the largest holding.
    worst = max(Counter(item.lease_owner for item in cluster.leases.values()).values(), default=0)
    cluster.settle(rng, round_bound(cluster) + worst)
    assert_settled(cluster, rng)


@SIMULATION
@given(
    cluster=clusters(),
    seed=st.integers(0, 2**32),
    deaths=st.integers(1, len(WORKERS) - 1),
)
def test_leases_of_a_dead_worker_are_taken_by_the_others(
    cluster: Cluster, seed: int, deaths: int
) -> None:
    rng = random.Random(seed)
    cluster.max_leases = None
    cluster.settle(rng, round_bound(cluster))
    if len(cluster.workers) <= deaths:
        deaths = len(cluster.workers) - 1
    dead = set(rng.sample(cluster.workers, deaths))
    cluster.workers = [worker for worker in cluster.workers if worker not in dead]
    orphaned = {
        key
        for key, item in cluster.leases.items()
        if item.lease_owner in dead and not is_finished(item)
    }

    cluster.settle(rng, round_bound(cluster) + 1)

    assert_settled(cluster, rng)
    for key in orphaned:
        assert cluster.leases[key].lease_owner in cluster.workers
    assert not cluster.unowned()


@SIMULATION
@given(cluster=clusters(), seed=st.integers(0, 2**32), joining=st.integers(1, 3))
def test_a_joining_worker_gets_its_fair_share(cluster: Cluster, seed: int, joining: int) -> None:
    rng = random.Random(seed)
    cluster.settle(rng, round_bound(cluster))
    newcomers = [f"new-{i}" for i in range(joining)]
    cluster.workers = [*cluster.workers, *newcomers]

    cluster.settle(rng, round_bound(cluster) + 1)

    assert_settled(cluster, rng)
    active = sum(1 for item in cluster.leases.values() if not is_finished(item))
    share = active // len(cluster.workers)
    if cluster.max_leases is not None:
        share = min(share, cluster.max_leases)
    counts = cluster.counts()
    for worker in newcomers:
        assert counts[worker] >= share


# -- by hand ----------------------------------------------------------------------------------


def test_target_follows_the_kcl() -> None:
    assert fair_target(0, 3) == 0
    assert fair_target(3, 3) == 1
    assert fair_target(2, 5) == 1
    assert fair_target(10, 3) == 4
    assert fair_target(9, 3) == 3
    assert fair_target(10, 3, max_leases=2) == 2


def test_a_lone_worker_takes_everything_unfinished() -> None:
    leases = [*table({"a": None, "b": None, "c": "old"}), lease("d", None, finished=True)]
    result = plan(leases, frozenset({"c"}), "me", rng=random.Random(1))
    assert sorted(result.take) == ["a", "b", "c"]
    assert result.target == 3


def test_taking_stops_at_the_target_and_is_shuffled() -> None:
    leases = table({f"s{i}": None for i in range(8)} | {"x": "other"})
    seen = set()
    for seed in range(20):
        result = plan(leases, frozenset(), "me", rng=random.Random(seed))
        assert len(result.take) == 5  # ceil(9 / 2)
        seen.add(tuple(result.take))
    assert len(seen) > 1


def test_a_live_lease_is_not_taken_while_free_ones_exist() -> None:
    leases = table({"a": "other", "b": "other", "c": "other", "d": None})
    result = plan(leases, frozenset(), "me", rng=random.Random(0))
    assert result.take == ["d"]
    assert result.steal == []


def test_steals_from_the_most_loaded_worker_only() -> None:
    leases = table({"a1": "a", "a2": "a", "a3": "a", "a4": "a", "b1": "b", "b2": "b"})
    result = plan(leases, frozenset(), "me", max_leases_to_steal=5, rng=random.Random(0))
    # target ceil(6 / 3) = 2; a is 2 above it, and I need 2.
    assert result.steal_from == "a"
    assert len(result.steal) == 2
    assert set(result.steal) <= {"a1", "a2", "a3", "a4"}


def test_steals_at_most_max_leases_to_steal() -> None:
    leases = table({f"a{i}": "a" for i in range(9)})
    result = plan(leases, frozenset(), "me", rng=random.Random(0))
    assert len(result.steal) == 1
    result = plan(leases, frozenset(), "me", max_leases_to_steal=0, rng=random.Random(0))
    assert result.empty


def test_one_short_of_a_worker_at_the_target_does_not_steal() -> None:
    # 5 leases, 2 workers: target 3; a holds 3, I hold 2. Stealing would only swap roles.
    leases = table({"a1": "a", "a2": "a", "a3": "a", "m1": "me", "m2": "me"})
    assert plan(leases, frozenset(), "me", rng=random.Random(0)).empty


def test_two_short_of_workers_at_the_target_steals_one() -> None:
    # 2/2/2/0: no worker is above the target 2, yet the spread is 2; the KCL steals one.
    leases = table({"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c", "c2": "c"})
    result = plan(leases, frozenset(), "me", max_leases_to_steal=3, rng=random.Random(0))
    assert len(result.steal) == 1
    assert result.steal_from in {"a", "b", "c"}


def test_expired_leases_do_not_count_for_their_owner() -> None:
    leases = table({"a1": "a", "a2": "a", "a3": "a", "b1": "b"})
    result = plan(leases, frozenset({"a1", "a2", "a3"}), "b", rng=random.Random(0))
    # a is no longer a live worker: b alone, target 4.
    assert result.target == 4
    assert sorted(result.take) == ["a1", "a2", "a3"]


def test_finished_leases_do_not_count_and_are_never_taken() -> None:
    leases = [
        lease("a1", "a"),
        lease("done-1", "a", finished=True),
        lease("done-2", "a", finished=True),
        lease("done-3", None, finished=True),
        lease("free", None),
    ]
    result = plan(leases, frozenset({"done-2"}), "me", rng=random.Random(0))
    assert result.target == 1
    assert result.take == ["free"]
    # a holds one live unfinished lease of two, alone: target 2, so it takes the free one only.
    assert plan(leases, frozenset(), "a", rng=random.Random(0)).take == ["free"]


def test_an_owner_of_finished_leases_only_is_still_a_worker() -> None:
    leases = [lease("done", "a", finished=True), lease("s1"), lease("s2")]
    result = plan(leases, frozenset(), "me", rng=random.Random(0))
    assert result.target == 1
    assert len(result.take) == 1


def test_max_leases_caps_the_target() -> None:
    leases = table({f"s{i}": None for i in range(10)})
    result = plan(leases, frozenset(), "me", max_leases=3, rng=random.Random(0))
    assert result.target == 3
    assert len(result.take) == 3


def test_empty_table_means_nothing_to_do() -> None:
    assert plan([], frozenset(), "me", rng=random.Random(0)) == Plan()


@pytest.mark.parametrize(("max_leases", "max_leases_to_steal"), [(0, 1), (-1, 1), (None, -1)])
def test_rejects_nonsense_limits(max_leases: int | None, max_leases_to_steal: int) -> None:
    with pytest.raises(ValueError, match="max_leases"):
        plan(
            [],
            frozenset(),
            "me",
            max_leases=max_leases,
            max_leases_to_steal=max_leases_to_steal,
            rng=random.Random(0),
        )
