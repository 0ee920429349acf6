"""The lease store seam: where a consumer group keeps one lease per shard (SPEC §2).

A :class:`LeaseStore` is a small async protocol. Every write is conditional on what the
writer last saw (the lease's ``lease_counter`` is the fencing token), and losing a race is a
normal outcome, not an exception: each write returns the lease *as written* (its counter
bumped), or ``None`` when the condition failed, which means "the lease was lost (or changed
under you): stop working on that shard and do not retry the write".

Exceptions are kept for real failures: an unreachable or throttling backend
(:class:`kinesio.AWSError` and its subclasses), a table that is missing or has the wrong key
schema (:class:`kinesio.ResourceNotFoundError`, :class:`kinesio.ConfigurationError`), and an
item that cannot be read as a lease (:class:`MalformedLeaseError`).

Two implementations ship with kinesio: :class:`kinesio.leases.MemoryLeaseStore` (one process,
for tests) and :class:`kinesio.leases.DynamoDBLeaseStore` (the KCL-compatible DynamoDB table).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, runtime_checkable

from kinesio._errors import ValidationError
from kinesio._models import ExtendedSequenceNumber, Lease

#: ``entityType`` value of a lease item (KCL 3.5). Items with another value are not leases.
LEASE_ENTITY_TYPE = "LEASE"

#: Not modelled by :class:`Lease` (it stays in ``Lease.extra``), but every checkpoint clears it
#: as the KCL does: it is the application state of the two-phase checkpoint being replaced.
PENDING_CHECKPOINT_STATE = "pendingCheckpointState"

#: KCL 3.x graceful hand-off: the previous owner that must still checkpoint before the new
#: owner (``leaseOwner``) reads the shard. Kept in ``Lease.extra``; KCL 2.x ignores it. A hand-off
#: take sets it; every plain take and every release removes it, as KCL 3 does: KCL 3's
#: ``Lease.actualOwner()`` prefers it over ``leaseOwner``, so a stale one would attribute the
#: lease to the old owner.
CHECKPOINT_OWNER = "checkpointOwner"

_SENTINELS = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "SHARD_END"})


@runtime_checkable
class LeaseStore(Protocol):
    """Where the leases of one consumer group live.

    Writes take the lease the caller last saw and succeed only if the stored lease still
    matches it (see each method). They return the lease as now stored, with
    ``lease_counter`` one higher, or ``None`` when the condition failed. A ``None`` is never
    worth retrying with the same input: re-read with :meth:`get_lease` or :meth:`list_leases`.

    Attributes the store does not model (``Lease.extra``, e.g. KCL 3.x ``throughputKBps``)
    survive every write. Reads raise :class:`MalformedLeaseError` for an item that cannot be
    read as a lease; any call may raise :class:`kinesio.AWSError` when the backend fails.
    """

    async def create_table_if_missing(self) -> None:
        """Make sure the backing table exists and is usable; wait until it is.

        Raises :class:`kinesio.ResourceNotFoundError` if it is missing and the store may not
        create it, :class:`kinesio.ConfigurationError` if it exists with the wrong key schema.
        """
        ...

    async def list_leases(self, *, consistent: bool = True) -> list[Lease]:
        """Every lease. Items that are not leases are skipped.

        ``consistent=True`` is a strongly consistent read. ``consistent=False`` may return
        leases up to a few seconds old (DynamoDB: an eventually consistent Scan, at half the
        read units); the consumer uses it only to watch for expiry, where every decision is
        confirmed by a conditional write. A store that cannot read more cheaply may ignore it.
        """
        ...

    async def get_lease(self, lease_key: str) -> Lease | None:
        """The lease stored under ``lease_key`` (strongly consistent), or None if there is none."""
        ...

    async def create_lease(self, lease: Lease) -> Lease | None:
        """Write ``lease`` as a new item; None if an item with its key already exists.

        Raises :class:`kinesio.ValidationError` (nothing written) for an empty key, a
        checkpoint that is neither a decimal sequence number nor a KCL sentinel, or a hash key
        outside ``[0, 2**128)``.
        """
        ...

    async def renew(self, lease: Lease) -> Lease | None:
        """Bump the counter of a lease still held as seen.

        Succeeds only if the stored counter equals ``lease.lease_counter`` and the stored owner
        equals ``lease.lease_owner`` (absent when that is None). None means the lease was lost.
        """
        ...

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """Take (or steal) a lease for ``owner``: set the owner, bump the counter.

        Succeeds only if the stored counter equals ``lease.lease_counter``.
        ``owner_switches_since_checkpoint`` grows by one when the lease had another owner
        (taking an unowned lease, or re-taking one's own, does not count, as in the KCL).
        None means another worker wrote the lease first.
        """
        ...

    async def checkpoint(
        self,
        lease: Lease,
        owner: str,
        checkpoint: ExtendedSequenceNumber,
        *,
        child_shard_ids: Collection[str] | None = None,
        pending: ExtendedSequenceNumber | None = None,
    ) -> Lease | None:
        """Record progress: only the holder, with the counter it last saw, may do this.

        Succeeds only if the stored counter equals ``lease.lease_counter`` and the stored owner
        is ``owner`` (so a worker that lost the lease - a "zombie" - can never overwrite a live
        worker's checkpoint). Sets ``checkpoint``, resets ``owner_switches_since_checkpoint``
        to 0, bumps the counter, sets ``child_shard_ids`` when given and non-empty (None or
        empty leaves them as they are), sets the pending (two-phase) checkpoint to ``pending``
        (None clears it) and clears any pending application state (``pendingCheckpointState``),
        as the KCL does. None means the lease was lost.

        Raises :class:`kinesio.ValidationError` (nothing written) for a position that is
        neither a decimal sequence number nor a KCL sentinel.
        """
        ...

    async def release(self, lease: Lease, owner: str) -> Lease | None:
        """Give a lease up: remove its owner and bump the counter.

        Succeeds only if the stored owner is ``owner`` (whatever the counter). None means
        ``owner`` did not hold it any more.
        """
        ...

    async def delete_lease(self, lease: Lease) -> bool:
        """Delete the lease if its stored counter still equals ``lease.lease_counter``.

        False if the lease changed since it was read, or is already gone.
        """
        ...

    async def aclose(self) -> None:
        """Release the store's connections. Idempotent."""
        ...


@runtime_checkable
class HandoffLeaseStore(LeaseStore, Protocol):
    """A lease store that can hand a lease over between two live workers (KCL 3.x's graceful
    lease hand-off, through the ``checkpointOwner`` attribute).

    The thief takes the lease with :meth:`take_for_handoff`; the previous owner, seeing its
    own id in ``checkpointOwner``, finishes its batch and writes its last checkpoint with
    :meth:`handoff_checkpoint`, which removes ``checkpointOwner``; the new owner starts reading
    once it is gone, or removes it itself with :meth:`end_handoff` after a timeout. Java KCL
    2.x workers ignore the attribute: for them this is an ordinary steal.
    """

    async def take_for_handoff(self, lease: Lease, owner: str) -> Lease | None:
        """Steal ``lease`` for ``owner`` as :meth:`LeaseStore.take` does, and set
        ``checkpointOwner`` to the owner it had (``lease.lease_owner``). None if the stored
        counter is no longer ``lease.lease_counter``."""
        ...

    async def handoff_checkpoint(
        self, lease: Lease, owner: str, checkpoint: ExtendedSequenceNumber | None
    ) -> Lease | None:
        """The previous owner's last write: set ``checkpoint`` (None: keep the stored one) and
        remove ``checkpointOwner``, without bumping the counter (the new owner's renewals stay
        valid).

        Succeeds only if the stored ``checkpointOwner`` is ``owner`` and the stored owner is
        still ``lease.lease_owner`` (the new owner, as ``owner`` read it): once the new owner
        has given up waiting, or a third worker took the lease, nothing is written. Raises
        :class:`kinesio.ValidationError` (nothing written) for an invalid position.
        """
        ...

    async def end_handoff(self, lease: Lease, owner: str) -> Lease | None:
        """The new owner stops waiting: remove ``checkpointOwner`` and bump the counter, if the
        stored counter is ``lease.lease_counter`` and the stored owner is ``owner``."""
        ...


def checkpoint_owner(lease: Lease) -> str | None:
    """The ``checkpointOwner`` of a lease (KCL 3.x hand-off in progress), or None."""
    value = lease.extra.get(CHECKPOINT_OWNER)
    if isinstance(value, Mapping) and isinstance(value.get("S"), str):
        return str(value["S"])
    return None


def is_lease_item(attributes: Mapping[str, Any]) -> bool:
    """Whether an item (or a lease's ``extra``) is a lease: no ``entityType`` or ``"LEASE"``."""
    entity = attributes.get("entityType")
    if entity is None:
        return True
    return isinstance(entity, Mapping) and entity.get("S") == LEASE_ENTITY_TYPE


def check_new_lease(lease: Lease) -> None:
    """Refuse a lease that could not be stored or read back (ValidationError, nothing written)."""
    if not lease.lease_key:
        raise ValidationError("a lease key must be a non-empty string")
    check_position(lease.checkpoint, what="checkpoint")
    if lease.pending_checkpoint is not None:
        check_position(lease.pending_checkpoint, what="pending checkpoint")
    for what, key in (("starting", lease.starting_hash_key), ("ending", lease.ending_hash_key)):
        if key is not None and not 0 <= key < 2**128:
            raise ValidationError(f"{what} hash key must be in [0, 2**128), not {key}")


def check_position(position: ExtendedSequenceNumber, *, what: str) -> None:
    """Refuse a checkpoint that could not be read back (ValidationError, nothing written)."""
    seq = position.sequence_number
    if not (seq in _SENTINELS or (seq.isascii() and seq.isdigit())):
        raise ValidationError(
            f"{what} must be a decimal sequence number or one of {sorted(_SENTINELS)}, not {seq!r}"
        )
    if position.sub_sequence_number < 0:
        raise ValidationError(
            f"{what} sub-sequence number must be >= 0, not {position.sub_sequence_number}"
        )
