"""One contract for every LeaseStore: in memory, DynamoDB on moto, DynamoDB on dynalite.

Each test gets a fresh store and table (see _lease_harness.py).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from kinesio._errors import ValidationError
from kinesio._models import SHARD_END, ExtendedSequenceNumber, Lease
from kinesio.leases import LeaseStore

from ._lease_harness import SEQ, Backend, backend, kcl_item

__all__ = ["backend"]  # the fixture, parametrized over the three stores

pytestmark = pytest.mark.timeout(60)


async def test_create_then_get_returns_the_same_lease(backend: Backend) -> None:
    lease = Lease(
        lease_key="shardId-000000000001",
        checkpoint=ExtendedSequenceNumber(SEQ, 3),
        starting_hash_key=0,
        ending_hash_key=2**127 - 1,
    )
    created = await backend.store.create_lease(lease)
    assert created == lease
    assert await backend.store.get_lease(lease.lease_key) == lease


async def test_create_existing_lease_is_none_and_changes_nothing(backend: Backend) -> None:
    store = backend.store
    first = await store.create_lease(Lease("shard-1", lease_owner="w1", lease_counter=5))
    assert first is not None
    assert await store.create_lease(Lease("shard-1")) is None
    assert await store.get_lease("shard-1") == first


async def test_get_missing_lease_is_none(backend: Backend) -> None:
    assert await backend.store.get_lease("nope") is None


async def test_list_leases_skips_other_entity_types(backend: Backend) -> None:
    store = backend.store
    for i in range(3):
        assert await store.create_lease(Lease(f"shard-{i}")) is not None
    # KCL 3.5 tags leases with entityType=LEASE and keeps other entities beside them.
    await backend.put_raw(kcl_item("shard-tagged", entityType={"S": "LEASE"}))
    await backend.put_raw(
        {"leaseKey": {"S": "worker-metrics-1"}, "entityType": {"S": "WORKER_METRICS"}}
    )
    leases = await store.list_leases()
    assert sorted(lease.lease_key for lease in leases) == [
        "shard-0",
        "shard-1",
        "shard-2",
        "shard-tagged",
    ]
    assert await store.get_lease("worker-metrics-1") is None


async def test_list_leases_of_empty_table(backend: Backend) -> None:
    assert await backend.store.list_leases() == []


async def test_renew_bumps_the_counter_only(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(
        Lease("shard-1", lease_owner="w1", lease_counter=7, parent_shard_ids=frozenset({"p"}))
    )
    assert lease is not None
    renewed = await store.renew(lease)
    assert renewed == replace(lease, lease_counter=8)
    assert await store.get_lease("shard-1") == renewed
    again = await store.renew(renewed)
    assert again is not None
    assert again.lease_counter == 9


async def test_renew_with_a_stale_counter_is_lost(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    assert await store.renew(lease) is not None
    assert await store.renew(lease) is None  # counter 0 seen, 1 stored
    stored = await store.get_lease("shard-1")
    assert stored is not None
    assert stored.lease_counter == 1


async def test_renew_after_the_lease_was_taken_is_lost(backend: Backend) -> None:
    store = backend.store
    mine = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert mine is not None
    assert await store.take(mine, "w2") is not None
    assert await store.renew(mine) is None
    # Even with the new counter the owner must match.
    stored = await store.get_lease("shard-1")
    assert stored is not None
    assert await store.renew(replace(stored, lease_owner="w1")) is None


async def test_renew_missing_lease_is_lost(backend: Backend) -> None:
    assert await backend.store.renew(Lease("ghost", lease_owner="w1")) is None


async def test_take_unowned_lease_does_not_count_an_owner_switch(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1"))
    assert lease is not None
    taken = await store.take(lease, "w1")
    assert taken is not None
    assert (taken.lease_owner, taken.lease_counter, taken.owner_switches_since_checkpoint) == (
        "w1",
        1,
        0,
    )
    assert await store.get_lease("shard-1") == taken


async def test_steal_counts_owner_switches_and_retake_does_not(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1", lease_counter=3))
    assert lease is not None
    stolen = await store.take(lease, "w2")
    assert stolen is not None
    assert (stolen.lease_owner, stolen.lease_counter) == ("w2", 4)
    assert stolen.owner_switches_since_checkpoint == 1
    back = await store.take(stolen, "w1")
    assert back is not None
    assert back.owner_switches_since_checkpoint == 2
    same = await store.take(back, "w1")  # taking an expired lease of one's own
    assert same is not None
    assert (same.lease_counter, same.owner_switches_since_checkpoint) == (6, 2)
    assert await store.get_lease("shard-1") == same


async def test_take_with_a_stale_counter_is_lost(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    assert await store.renew(lease) is not None
    assert await store.take(lease, "w2") is None
    stored = await store.get_lease("shard-1")
    assert stored is not None
    assert stored.lease_owner == "w1"


async def test_concurrent_takes_have_exactly_one_winner(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1"))
    assert lease is not None
    results = await asyncio.gather(*(store.take(lease, f"w{i}") for i in range(5)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.get_lease("shard-1") == winners[0]


@pytest.fixture
def _threads_switch_often() -> Iterator[None]:
    """moto's server runs in this process, one thread per request: switching threads every
    microsecond makes two requests interleave inside the backend whenever they can."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.mark.usefixtures("_threads_switch_often")
async def test_a_take_and_a_checkpoint_racing_at_one_counter_never_both_win(
    backend: Backend,
) -> None:
    """A dead worker's last checkpoint and the survivor's take, both at the counter each saw:
    DynamoDB applies one; the other is refused. (moto without a lock let both through.)"""
    store = backend.store
    for round_ in range(20):
        created = await store.create_lease(Lease(f"shard-{round_}"))
        assert created is not None
        held = await store.take(created, "w1")
        assert held is not None
        writes: list[Awaitable[Lease | None]] = [
            store.checkpoint(held, "w1", ExtendedSequenceNumber(SEQ, round_))
        ]
        writes += [store.take(held, f"w{i}") for i in range(2, 12)]
        results = await asyncio.gather(*writes)
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, f"round {round_}: {len(winners)} conditional writes won"
        assert await store.get_lease(held.lease_key) == winners[0]


async def test_checkpoint_by_the_holder(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    lease = await store.take(lease, "w2")
    assert lease is not None
    assert lease.owner_switches_since_checkpoint == 1
    done = await store.checkpoint(lease, "w2", ExtendedSequenceNumber(SEQ, 4))
    assert done is not None
    assert done.checkpoint == ExtendedSequenceNumber(SEQ, 4)
    assert (done.lease_owner, done.lease_counter) == ("w2", lease.lease_counter + 1)
    assert done.owner_switches_since_checkpoint == 0
    assert await store.get_lease("shard-1") == done


async def test_checkpoint_needs_the_owner(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    assert await store.checkpoint(lease, "w2", ExtendedSequenceNumber(SEQ)) is None
    unowned = await store.create_lease(Lease("shard-2"))
    assert unowned is not None
    assert await store.checkpoint(unowned, "w1", ExtendedSequenceNumber(SEQ)) is None
    assert await store.get_lease("shard-1") == lease


async def test_a_zombie_cannot_checkpoint(backend: Backend) -> None:
    """The key safety property: a worker that lost its lease cannot overwrite progress."""
    store = backend.store
    created = await store.create_lease(Lease("shard-1"))
    assert created is not None
    zombie_view = await store.take(created, "zombie")
    assert zombie_view is not None
    # The zombie stalls; its lease expires and w2 takes it, then checkpoints.
    live = await store.take(zombie_view, "w2")
    assert live is not None
    live = await store.checkpoint(live, "w2", ExtendedSequenceNumber("200"))
    assert live is not None
    assert await store.checkpoint(zombie_view, "zombie", ExtendedSequenceNumber("100")) is None
    # Nor by claiming to be the new owner with its stale counter ...
    assert await store.checkpoint(zombie_view, "w2", ExtendedSequenceNumber("100")) is None
    # ... nor by reading the new counter and writing under its own name.
    fresh = await store.get_lease("shard-1")
    assert fresh is not None
    assert await store.checkpoint(fresh, "zombie", ExtendedSequenceNumber("100")) is None
    assert await store.get_lease("shard-1") == live
    assert live.checkpoint == ExtendedSequenceNumber("200")


async def test_checkpoint_sets_children_and_pending(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    prepared = await store.checkpoint(
        lease, "w1", ExtendedSequenceNumber("10"), pending=ExtendedSequenceNumber("20", 2)
    )
    assert prepared is not None
    assert prepared.pending_checkpoint == ExtendedSequenceNumber("20", 2)
    ended = await store.checkpoint(
        prepared, "w1", ExtendedSequenceNumber(SHARD_END), child_shard_ids=["c2", "c1"]
    )
    assert ended is not None
    assert ended.checkpoint == ExtendedSequenceNumber(SHARD_END)
    assert ended.pending_checkpoint is None
    assert ended.child_shard_ids == frozenset({"c1", "c2"})
    # Later checkpoints without children keep them.
    again = await store.checkpoint(ended, "w1", ExtendedSequenceNumber(SHARD_END))
    assert again is not None
    assert again.child_shard_ids == frozenset({"c1", "c2"})
    assert await store.get_lease("shard-1") == again


@pytest.mark.parametrize("bad", ["", "12a", "-5", "trim_horizon"])
async def test_checkpoint_rejects_unreadable_positions(backend: Backend, bad: str) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    with pytest.raises(ValidationError):
        await store.checkpoint(lease, "w1", ExtendedSequenceNumber(bad))
    with pytest.raises(ValidationError):
        await store.create_lease(Lease("shard-2", checkpoint=ExtendedSequenceNumber(bad)))
    assert await store.get_lease("shard-1") == lease


@pytest.mark.parametrize(
    "lease",
    [
        Lease(""),
        Lease("shard-1", starting_hash_key=-1),
        Lease("shard-1", ending_hash_key=2**128),
        Lease("shard-1", pending_checkpoint=ExtendedSequenceNumber("x")),
    ],
)
async def test_create_rejects_unstorable_leases(backend: Backend, lease: Lease) -> None:
    with pytest.raises(ValidationError):
        await backend.store.create_lease(lease)
    assert await backend.store.list_leases() == []


def test_stores_implement_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.store, LeaseStore)


async def test_release_removes_the_owner(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1", lease_counter=2))
    assert lease is not None
    assert await store.release(lease, "w2") is None
    released = await store.release(lease, "w1")
    assert released is not None
    assert (released.lease_owner, released.lease_counter) == (None, 3)
    assert await store.get_lease("shard-1") == released
    assert await store.release(released, "w1") is None  # no longer the owner


async def test_release_needs_the_owner_not_the_counter(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    renewed = await store.renew(lease)
    assert renewed is not None
    released = await store.release(lease, "w1")  # lease holds the older counter
    assert released is not None
    assert (released.lease_owner, released.lease_counter) == (None, 2)


async def test_delete_is_conditional_on_the_counter(backend: Backend) -> None:
    store = backend.store
    lease = await store.create_lease(Lease("shard-1", lease_owner="w1"))
    assert lease is not None
    renewed = await store.renew(lease)
    assert renewed is not None
    assert await store.delete_lease(lease) is False
    assert await store.get_lease("shard-1") == renewed
    assert await store.delete_lease(renewed) is True
    assert await store.get_lease("shard-1") is None
    assert await store.delete_lease(renewed) is False
    assert await store.list_leases() == []


async def test_parent_shard_ids_round_trip(backend: Backend) -> None:
    store = backend.store
    lease = Lease(
        "shardId-000000000003",
        parent_shard_ids=frozenset({"shardId-000000000001", "shardId-000000000002"}),
        starting_hash_key=2**127,
        ending_hash_key=2**128 - 1,
    )
    assert await store.create_lease(lease) == lease
    assert await store.get_lease(lease.lease_key) == lease
    [listed] = await store.list_leases()
    assert listed == lease
    taken = await store.take(lease, "w1")
    assert taken is not None
    done = await store.checkpoint(taken, "w1", ExtendedSequenceNumber(SEQ))
    assert done is not None
    assert done.parent_shard_ids == lease.parent_shard_ids
    assert (done.starting_hash_key, done.ending_hash_key) == (2**127, 2**128 - 1)


async def test_unknown_attributes_survive_every_write(backend: Backend) -> None:
    store = backend.store
    unknown: dict[str, Any] = {
        "throughputKBps": {"N": "12.5"},
        "leaseTag": {"M": {"nested": {"L": [{"S": "a"}, {"N": "1"}]}}},
    }
    await backend.put_raw(kcl_item("shard-1", leaseOwner={"S": "w1"}, **unknown))
    lease = await store.get_lease("shard-1")
    assert lease is not None
    assert lease.extra == unknown

    steps: list[Callable[[Lease], Awaitable[Lease | None]]] = [
        store.renew,
        lambda lease: store.take(lease, "w2"),
        lambda lease: store.checkpoint(lease, "w2", ExtendedSequenceNumber(SEQ)),
        lambda lease: store.release(lease, "w2"),
        lambda lease: store.take(lease, "w3"),
    ]
    for step in steps:
        written = await step(lease)
        assert written is not None
        assert written.extra == unknown
        raw = await backend.get_raw("shard-1")
        assert raw is not None
        assert {k: raw[k] for k in unknown} == unknown
        lease = written
    [listed] = await store.list_leases()
    assert listed.extra == unknown


async def test_take_and_release_clear_the_kcl3_checkpoint_owner(backend: Backend) -> None:
    """KCL 3 removes ``checkpointOwner`` on take and evict; renew and checkpoint keep it."""
    store = backend.store
    marker = {"checkpointOwner": {"S": "java-old"}, "throughputKBps": {"N": "3"}}

    async def marked(key: str, owner: str | None = "w1") -> Lease:
        owned = {"leaseOwner": {"S": owner}} if owner else {}
        await backend.put_raw(kcl_item(key, **owned, **marker))
        lease = await store.get_lease(key)
        assert lease is not None
        assert lease.extra == marker
        return lease

    renewed = await store.renew(await marked("kept"))
    assert renewed is not None
    done = await store.checkpoint(renewed, "w1", ExtendedSequenceNumber(SEQ))
    assert done is not None
    assert done.extra == marker
    clearing: list[tuple[str, Callable[[Lease], Awaitable[Lease | None]]]] = [
        ("stolen", lambda lease: store.take(lease, "w2")),
        ("released", lambda lease: store.release(lease, "w1")),
        ("unowned", lambda lease: store.take(replace(lease, lease_owner=None), "w2")),
    ]
    for key, write in clearing:
        owner = None if key == "unowned" else "w1"
        written = await write(await marked(key, owner))
        assert written is not None
        assert written.extra == {"throughputKBps": {"N": "3"}}
        raw = await backend.get_raw(key)
        assert raw is not None
        assert "checkpointOwner" not in raw
        assert raw["throughputKBps"] == {"N": "3"}


async def test_checkpoint_clears_pending_application_state(backend: Backend) -> None:
    store = backend.store
    await backend.put_raw(
        kcl_item(
            "shard-1",
            leaseOwner={"S": "w1"},
            pendingCheckpoint={"S": "20"},
            pendingCheckpointSubSequenceNumber={"N": "0"},
            pendingCheckpointState={"B": b"app-state"},
        )
    )
    lease = await store.get_lease("shard-1")
    assert lease is not None
    assert lease.pending_checkpoint == ExtendedSequenceNumber("20")
    assert lease.extra == {"pendingCheckpointState": {"B": b"app-state"}}
    done = await store.checkpoint(lease, "w1", ExtendedSequenceNumber("20"))
    assert done is not None
    assert (done.pending_checkpoint, done.extra) == (None, {})
    raw = await backend.get_raw("shard-1")
    assert raw is not None
    assert not {"pendingCheckpoint", "pendingCheckpointState"} & raw.keys()
