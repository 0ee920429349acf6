"""Property tests: the item codec round-trips, and MemoryLeaseStore against a model."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.leases import MemoryLeaseStore
from kinesio.leases.dynamodb import KNOWN_ATTRIBUTES, lease_from_item, lease_to_item

sentinels = st.sampled_from(["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "SHARD_END"])
sequence_numbers = st.integers(min_value=0, max_value=2**200).map(str)
positions = st.builds(
    ExtendedSequenceNumber,
    st.one_of(sentinels, sequence_numbers),
    st.integers(min_value=0, max_value=2**31),
)
names = st.text(min_size=1, max_size=20)
hash_keys = st.integers(min_value=0, max_value=2**128 - 1)
attribute_values: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.builds(lambda s: {"S": s}, st.text()),
    st.builds(lambda n: {"N": str(n)}, st.integers()),
    st.builds(lambda b: {"B": b}, st.binary()),
    st.builds(lambda ss: {"SS": sorted(ss)}, st.frozensets(names, min_size=1)),
)
extras = st.dictionaries(
    names.filter(lambda n: n not in KNOWN_ATTRIBUTES and n != "entityType"),
    attribute_values,
    max_size=4,
)
leases = st.builds(
    Lease,
    lease_key=names,
    lease_owner=st.none() | names,
    lease_counter=st.integers(min_value=0, max_value=2**63),
    checkpoint=positions,
    pending_checkpoint=st.none() | positions,
    owner_switches_since_checkpoint=st.integers(min_value=0, max_value=1000),
    parent_shard_ids=st.frozensets(names, max_size=2),
    child_shard_ids=st.frozensets(names, max_size=2),
    starting_hash_key=st.none() | hash_keys,
    ending_hash_key=st.none() | hash_keys,
    extra=extras,
)


@given(leases)
def test_item_codec_round_trips(lease: Lease) -> None:
    item = lease_to_item(lease)
    back = lease_from_item(item)
    assert back == lease
    assert back.extra == lease.extra
    # Sets are only written when non-empty: DynamoDB refuses empty sets.
    assert ("parentShardId" in item) == bool(lease.parent_shard_ids)
    assert ("childShardIds" in item) == bool(lease.child_shard_ids)
    assert ("leaseOwner" in item) == (lease.lease_owner is not None)


WORKERS = ("w1", "w2", "w3")
KEY = "shard-1"


class MemoryStoreMachine(RuleBasedStateMachine):
    """Workers act on one lease from views that may be stale; a model says who must win.

    The model is SPEC §2's table: counter-conditioned writes succeed only on the current
    counter, checkpoint also needs the owner, release needs only the owner; every success
    bumps the counter by exactly one.
    """

    views = Bundle("views")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = MemoryLeaseStore()
        self.model: Lease | None = None
        self.writes = 0

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(target=views)
    def create(self) -> Lease:
        lease = Lease(KEY)
        assert self.run(self.store.create_lease(lease)) == lease
        self.model = lease
        return lease

    @rule(target=views)
    def read(self) -> Lease | None:
        lease: Lease | None = self.run(self.store.get_lease(KEY))
        assert lease == self.model
        return lease

    @precondition(lambda self: self.model is None)
    @rule(target=views)
    def recreate(self) -> Lease:
        # A deleted lease may come back (e.g. re-created by a shard sync) at counter 0.
        lease = Lease(KEY)
        assert self.run(self.store.create_lease(lease)) == lease
        self.model = lease
        return lease

    def _check(self, seen: Lease | None, result: Lease | None, expect_win: bool) -> bool:
        if not expect_win:
            assert result is None
            return False
        assert result is not None
        assert self.model is not None
        assert result.lease_counter == self.model.lease_counter + 1
        self.writes += 1
        return True

    def _current(self, seen: Lease | None) -> bool:
        return (
            seen is not None
            and self.model is not None
            and seen.lease_counter == self.model.lease_counter
        )

    @rule(seen=views)
    def renew(self, seen: Lease | None) -> None:
        if seen is None:
            return
        result = self.run(self.store.renew(seen))
        win = (
            self._current(seen)
            and self.model is not None
            and (self.model.lease_owner == seen.lease_owner)
        )
        if self._check(seen, result, win):
            assert self.model is not None
            self.model = dataclasses.replace(self.model, lease_counter=result.lease_counter)

    @rule(target=views, seen=views, worker=st.sampled_from(WORKERS))
    def take(self, seen: Lease | None, worker: str) -> Lease | None:
        if seen is None:
            return None
        result: Lease | None = self.run(self.store.take(seen, worker))
        if self._check(seen, result, self._current(seen)):
            assert self.model is not None
            assert result is not None
            # Decided from the taker's view, as the KCL does. They differ only after a delete
            # and re-create (the counter restarts at 0), which this machine also explores.
            switched = seen.lease_owner not in (None, worker)
            assert result.owner_switches_since_checkpoint == (
                self.model.owner_switches_since_checkpoint + switched
            )
            self.model = result
        return result

    @rule(
        target=views,
        seen=views,
        worker=st.sampled_from(WORKERS),
        seq=st.integers(min_value=0, max_value=10**6),
    )
    def checkpoint(self, seen: Lease | None, worker: str, seq: int) -> Lease | None:
        if seen is None:
            return None
        position = ExtendedSequenceNumber(str(seq))
        result: Lease | None = self.run(self.store.checkpoint(seen, worker, position))
        win = self._current(seen) and self.model is not None and self.model.lease_owner == worker
        if self._check(seen, result, win):
            assert result is not None
            assert (result.checkpoint, result.owner_switches_since_checkpoint) == (position, 0)
            assert result.lease_owner == worker
            self.model = result
        return result

    @rule(target=views, seen=views, worker=st.sampled_from(WORKERS))
    def release(self, seen: Lease | None, worker: str) -> Lease | None:
        if seen is None:
            return None
        result: Lease | None = self.run(self.store.release(seen, worker))
        win = self.model is not None and self.model.lease_owner == worker
        if self._check(seen, result, win):
            assert result is not None
            assert result.lease_owner is None
            self.model = result
        return result

    @rule(seen=consumes(views))
    def delete(self, seen: Lease | None) -> None:
        if seen is None:
            return
        deleted = self.run(self.store.delete_lease(seen))
        assert deleted == self._current(seen)
        if deleted:
            self.model = None

    @invariant()
    def store_matches_model(self) -> None:
        stored = self.run(self.store.get_lease(KEY))
        assert stored == self.model
        if stored is not None:
            assert stored.lease_counter >= 0
            assert stored.owner_switches_since_checkpoint >= 0


MemoryStoreMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestMemoryStoreMachine = MemoryStoreMachine.TestCase
