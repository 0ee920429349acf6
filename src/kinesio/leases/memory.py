"""An in-process lease store with the same semantics as the DynamoDB one."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Collection
from typing import Any

from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.leases.base import (
    CHECKPOINT_OWNER,
    PENDING_CHECKPOINT_STATE,
    check_new_lease,
    check_position,
    checkpoint_owner,
    is_lease_item,
)


class MemoryLeaseStore:
    """A :class:`~kinesio.leases.LeaseStore` kept in a dict, for tests and single-process use.

    Each operation yields to the event loop once before it acts (so concurrent tasks
    interleave as they would against a remote table) and then checks its condition and writes
    in one step, with no await in between, which makes it atomic with respect to other tasks
    on the same loop. It is not thread-safe: use it from one event loop. Leases are copied in
    and out, so callers never share a mutable ``extra`` dict with the store.
    """

    def __init__(self) -> None:
        self._items: dict[str, Lease] = {}

    async def __aenter__(self) -> MemoryLeaseStore:
        await self.create_table_if_missing()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def create_table_if_missing(self) -> None:
        await asyncio.sleep(0)

    async def list_leases(self, *, consistent: bool = True) -> list[Lease]:
        await asyncio.sleep(0)
        return [_copy(lease) for lease in self._items.values() if is_lease_item(lease.extra)]

    async def get_lease(self, lease_key: str) -> Lease | None:
        await asyncio.sleep(0)
        lease = self._items.get(lease_key)
        if lease is None or not is_lease_item(lease.extra):
            return None
        return _copy(lease)

    async def create_lease(self, lease: Lease) -> Lease | None:
        check_new_lease(lease)
        await asyncio.sleep(0)
        if lease.lease_key in self._items:
            return None
        return self._store(lease)

    async def renew(self, lease: Lease) -> Lease | None:
        await asyncio.sleep(0)
        stored = self._items.get(lease.lease_key)
        if (
            stored is None
            or stored.lease_counter != lease.lease_counter
            or stored.lease_owner != lease.lease_owner
        ):
            return None
        return self._store(dataclasses.replace(stored, lease_counter=stored.lease_counter + 1))

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        await asyncio.sleep(0)
        stored = self._items.get(lease.lease_key)
        if stored is None or stored.lease_counter != lease.lease_counter:
            return None
        switches = stored.owner_switches_since_checkpoint
        # Decided from the lease as the taker saw it, like the KCL (equal counters mean the
        # same owner, since every owner change bumps the counter).
        if lease.lease_owner is not None and lease.lease_owner != owner:
            switches += 1
        return self._store(
            dataclasses.replace(
                stored,
                lease_owner=owner,
                lease_counter=stored.lease_counter + 1,
                owner_switches_since_checkpoint=switches,
                extra=_without_checkpoint_owner(stored.extra),
            )
        )

    async def checkpoint(
        self,
        lease: Lease,
        owner: str,
        checkpoint: ExtendedSequenceNumber,
        *,
        child_shard_ids: Collection[str] | None = None,
        pending: ExtendedSequenceNumber | None = None,
    ) -> Lease | None:
        check_position(checkpoint, what="checkpoint")
        if pending is not None:
            check_position(pending, what="pending checkpoint")
        await asyncio.sleep(0)
        stored = self._items.get(lease.lease_key)
        if stored is None or stored.lease_counter != lease.lease_counter:
            return None
        if stored.lease_owner != owner:
            return None
        extra = dict(stored.extra)
        # The application state belongs to the pending checkpoint it came with (KCL 2.x).
        extra.pop(PENDING_CHECKPOINT_STATE, None)
        children = frozenset(child_shard_ids) if child_shard_ids else stored.child_shard_ids
        return self._store(
            dataclasses.replace(
                stored,
                lease_counter=stored.lease_counter + 1,
                checkpoint=checkpoint,
                owner_switches_since_checkpoint=0,
                pending_checkpoint=pending,
                child_shard_ids=children,
                extra=extra,
            )
        )

    async def release(self, lease: Lease, owner: str) -> Lease | None:
        await asyncio.sleep(0)
        stored = self._items.get(lease.lease_key)
        if stored is None or stored.lease_owner != owner:
            return None
        return self._store(
            dataclasses.replace(
                stored,
                lease_owner=None,
                lease_counter=stored.lease_counter + 1,
                extra=_without_checkpoint_owner(stored.extra),
            )
        )

    async def take_for_handoff(self, lease: Lease, owner: str) -> Lease | None:
        previous = lease.lease_owner
        taken = await self.take(lease, owner)
        if taken is None or previous is None or previous == owner:
            return taken
        extra = {**taken.extra, CHECKPOINT_OWNER: {"S": previous}}
        return self._store(dataclasses.replace(taken, extra=extra))

    async def handoff_checkpoint(
        self, lease: Lease, owner: str, checkpoint: ExtendedSequenceNumber | None
    ) -> Lease | None:
        if checkpoint is not None:
            check_position(checkpoint, what="checkpoint")
        await asyncio.sleep(0)
        stored = self._items.get(lease.lease_key)
        if (
            stored is None
            or checkpoint_owner(stored) != owner
            or stored.lease_owner != lease.lease_owner
        ):
            return None
        extra = {k: v for k, v in stored.extra.items() if k != CHECKPOINT_OWNER}
        if checkpoint is None:
            return self._store(dataclasses.replace(stored, extra=extra))
        extra.pop(PENDING_CHECKPOINT_STATE, None)
        return self._store(
            dataclasses.replace(
                stored,
                checkpoint=checkpoint,
                owner_switches_since_checkpoint=0,
                pending_checkpoint=None,
                extra=extra,
            )
        )

    async def end_handoff(self, lease: Lease, owner: str) -> Lease | None:
        await asyncio.sleep(0)
        stored = self._items.get(lease.lease_key)
        if (
            stored is None
            or stored.lease_counter != lease.lease_counter
            or stored.lease_owner != owner
        ):
            return None
        extra = {k: v for k, v in stored.extra.items() if k != CHECKPOINT_OWNER}
        return self._store(
            dataclasses.replace(stored, lease_counter=stored.lease_counter + 1, extra=extra)
        )

    async def delete_lease(self, lease: Lease) -> bool:
        await asyncio.sleep(0)
        stored = self._items.get(lease.lease_key)
        if stored is None or stored.lease_counter != lease.lease_counter:
            return False
        del self._items[lease.lease_key]
        return True

    async def aclose(self) -> None:
        """Nothing to release; the leases stay readable."""

    def _store(self, lease: Lease) -> Lease:
        stored = _copy(lease)
        self._items[lease.lease_key] = stored
        return _copy(stored)


def _copy(lease: Lease) -> Lease:
    return dataclasses.replace(lease, extra=copy.deepcopy(lease.extra))


def _without_checkpoint_owner(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k != CHECKPOINT_OWNER}
