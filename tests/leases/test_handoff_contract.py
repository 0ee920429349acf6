"""The graceful hand-off writes (``checkpointOwner``, KCL 3.x) on every store that has them."""

from __future__ import annotations

import pytest

from kinesio._errors import ValidationError
from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.leases.base import CHECKPOINT_OWNER, HandoffLeaseStore, checkpoint_owner

from ._lease_harness import SEQ, Backend, backend

__all__ = ["backend"]  # the fixture, parametrized over the three stores

pytestmark = pytest.mark.timeout(60)

LATER = str(int(SEQ) + 10)


async def stolen(backend: Backend) -> tuple[HandoffLeaseStore, Lease]:
    """A lease of w1 stolen by w2 for a hand-off."""
    store = backend.store
    assert isinstance(store, HandoffLeaseStore)
    held = await store.create_lease(
        Lease("shard-1", lease_owner="w1", lease_counter=3, checkpoint=ExtendedSequenceNumber(SEQ))
    )
    assert held is not None
    taken = await store.take_for_handoff(held, "w2")
    assert taken is not None
    return store, taken


async def test_take_for_handoff_names_the_previous_owner(backend: Backend) -> None:
    store, taken = await stolen(backend)
    assert (taken.lease_owner, taken.lease_counter) == ("w2", 4)
    assert taken.owner_switches_since_checkpoint == 1
    assert checkpoint_owner(taken) == "w1"
    raw = await backend.get_raw("shard-1")
    assert raw is not None
    assert raw[CHECKPOINT_OWNER] == {"S": "w1"}
    assert await store.get_lease("shard-1") == taken


async def test_take_for_handoff_needs_the_counter_seen(backend: Backend) -> None:
    store, taken = await stolen(backend)
    old = Lease("shard-1", lease_owner="w1", lease_counter=3)
    assert await store.take_for_handoff(old, "w3") is None
    assert await store.get_lease("shard-1") == taken


async def test_taking_an_unowned_lease_sets_no_checkpoint_owner(backend: Backend) -> None:
    store = backend.store
    assert isinstance(store, HandoffLeaseStore)
    free = await store.create_lease(Lease("shard-1"))
    assert free is not None
    taken = await store.take_for_handoff(free, "w2")
    assert taken is not None
    assert taken.lease_owner == "w2"
    assert checkpoint_owner(taken) is None


async def test_previous_owner_checkpoints_and_lets_go(backend: Backend) -> None:
    store, taken = await stolen(backend)
    renewed = await store.renew(taken)  # the new owner keeps renewing meanwhile
    assert renewed is not None
    written = await store.handoff_checkpoint(renewed, "w1", ExtendedSequenceNumber(LATER, 2))
    assert written is not None
    assert written.checkpoint == ExtendedSequenceNumber(LATER, 2)
    assert written.owner_switches_since_checkpoint == 0
    assert checkpoint_owner(written) is None
    assert (written.lease_owner, written.lease_counter) == ("w2", renewed.lease_counter)
    # the counter did not move: the new owner's next renewal still holds
    assert await store.renew(renewed) is not None
    # and the previous owner cannot write a second time
    assert await store.handoff_checkpoint(written, "w1", ExtendedSequenceNumber(LATER, 3)) is None


async def test_letting_go_without_a_checkpoint_keeps_the_stored_one(backend: Backend) -> None:
    store, taken = await stolen(backend)
    written = await store.handoff_checkpoint(taken, "w1", None)
    assert written is not None
    assert written.checkpoint == ExtendedSequenceNumber(SEQ)
    assert checkpoint_owner(written) is None


async def test_only_the_named_previous_owner_may_write(backend: Backend) -> None:
    store, taken = await stolen(backend)
    assert await store.handoff_checkpoint(taken, "w3", ExtendedSequenceNumber(LATER)) is None
    # a third worker took the lease meanwhile: the previous owner's write is refused
    third = await store.take(taken, "w3")
    assert third is not None
    seen_before = Lease("shard-1", lease_owner="w2", lease_counter=taken.lease_counter)
    assert await store.handoff_checkpoint(seen_before, "w1", ExtendedSequenceNumber(LATER)) is None
    stored = await store.get_lease("shard-1")
    assert stored is not None
    assert stored.checkpoint == ExtendedSequenceNumber(SEQ)


async def test_new_owner_ends_the_wait_and_fences_the_previous_owner(backend: Backend) -> None:
    store, taken = await stolen(backend)
    ended = await store.end_handoff(taken, "w2")
    assert ended is not None
    assert ended.lease_counter == taken.lease_counter + 1
    assert checkpoint_owner(ended) is None
    assert await store.handoff_checkpoint(ended, "w1", ExtendedSequenceNumber(LATER)) is None
    assert await store.end_handoff(taken, "w2") is None  # stale counter
    stored = await store.get_lease("shard-1")
    assert stored == ended


async def test_handoff_checkpoint_rejects_unreadable_positions(backend: Backend) -> None:
    store, taken = await stolen(backend)
    with pytest.raises(ValidationError):
        await store.handoff_checkpoint(taken, "w1", ExtendedSequenceNumber("12ab"))
    assert await store.get_lease("shard-1") == taken
