"""One held lease: fenced renewals and checkpoints, and its local expiry on this worker's clock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Collection

from kinesio._errors import KinesioError, LeaseLost
from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.events import (
    CheckpointWritten,
    Emitter,
    LeaseHandedOff,
    LeaseLostEvent,
    LeaseReleased,
    LeaseRenewed,
)
from kinesio.leases.base import HandoffLeaseStore, LeaseStore, checkpoint_owner

logger = logging.getLogger("kinesio.leases")


def _never() -> bool:
    return False


def _always() -> bool:
    return True


class LeaseHandle:
    """A lease this worker holds: the version it last wrote, and a lock that serialises writes
    (renewals and checkpoints both bump the counter, so they must not race each other).

    With ``failover_time`` (seconds) the lease also expires locally: once no renewal, take or
    checkpoint has succeeded for that long on ``clock`` — counted from the start of the last
    successful write, since other workers start counting no later than it landed — the lease is
    marked lost, even while a renewal call is still hanging. By then another worker may have
    taken it. A lost handle stays lost; the shard comes back only through a new take.

    Graceful hand-off (KCL 3.x, ``checkpointOwner``): when a live worker steals the lease and
    names this worker as the one that must still checkpoint, the handle is *handing off*: no
    longer ``active`` (reading stops after the batch in hand), but still ``writable`` for one
    last checkpoint, written by :meth:`checkpoint` or :meth:`finish_handoff`; after it the
    lease is lost here and the new owner resumes exactly there.
    """

    def __init__(
        self,
        lease: Lease,
        store: LeaseStore,
        owner: str,
        clock: Callable[[], float],
        events: Emitter | None = None,
        *,
        failover_time: float | None = None,
        written_at: float | None = None,
    ) -> None:
        self.lease = lease
        self._events = events or Emitter(None)
        self.key = lease.lease_key
        self._store = store
        self._owner = owner
        self._clock = clock
        self._lock = asyncio.Lock()
        self.lost = asyncio.Event()
        self.released = False
        self.last_renewed = clock() if written_at is None else written_at
        self.lost_reason = ""
        self._failover_time = failover_time
        self._timer: asyncio.TimerHandle | None = None
        #: Set when another worker took the lease for a graceful hand-off (see the class doc).
        self.handoff = asyncio.Event()
        self.handoff_to: str | None = None
        self._arm()

    @property
    def active(self) -> bool:
        """True while held: not lost, not released, and not expired on this worker's clock
        (an expired lease is marked lost here, so the check cannot lag behind a late timer)."""
        if self.lost.is_set() or self.released or self.handoff.is_set():
            return False
        if self._failover_time is not None and self.expires_in() <= 0:
            self._expire()
            return False
        return True

    def held_check(self) -> Callable[[], bool]:
        """A cheaper :attr:`active` for code that does not yield to the event loop between
        checks: every other way to lose the lease (a refused write, a release, a hand-off, a
        renewal's result) runs on the loop, so until the caller awaits only this worker's
        clock can end it. The check is stale after an await; take a new one then."""
        if not self.active:
            return _never
        if self._failover_time is None:
            return _always
        deadline = self.last_renewed + self._failover_time
        clock = self._clock
        return lambda: clock() < deadline

    @property
    def writable(self) -> bool:
        """True while a checkpoint may still be written: held, or handing off."""
        return self.active or (self.handoff.is_set() and not self.lost.is_set())

    def begin_handoff(self, stored: Lease) -> None:
        """Another worker took the lease and waits for this worker's last checkpoint
        (``stored`` names this worker as ``checkpointOwner``)."""
        if self.lost.is_set() or self.released or self.handoff.is_set():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.lease = stored
        self.handoff_to = stored.lease_owner
        logger.info("lease %s: handing off to %s after this batch", self.key, stored.lease_owner)
        self.handoff.set()

    async def finish_handoff(self) -> None:
        """Let go of a lease being handed off, keeping the checkpoint written so far (the new
        owner resumes there). Does nothing unless a hand-off is in progress."""
        if not self.handoff.is_set() or self.lost.is_set():
            return
        async with self._lock:
            await self._write_handoff(None)

    async def _write_handoff(self, position: ExtendedSequenceNumber | None) -> None:
        store = self._store
        assert isinstance(store, HandoffLeaseStore)
        try:
            written = await store.handoff_checkpoint(self.lease, self._owner, position)
        except KinesioError as exc:
            # the new owner stops waiting after its timeout and resumes at the last checkpoint
            self.mark_lost(f"hand-off to {self.handoff_to} failed ({exc})")
            raise
        if written is None:
            self.mark_lost(f"{self.handoff_to} stopped waiting for the hand-off")
            raise LeaseLost(f"lease {self.key} was taken over before the hand-off checkpoint")
        self.lease = written
        self._events.emit(
            LeaseHandedOff(
                lease_key=self.key,
                to=self.handoff_to,
                sequence_number=written.checkpoint.sequence_number,
                sub_sequence_number=written.checkpoint.sub_sequence_number,
            )
        )
        self.mark_lost(f"handed off to {self.handoff_to}")

    async def _refused(self, what: str) -> None:
        """A conditional write was refused: a hand-off if the new owner says so, else lost."""
        if isinstance(self._store, HandoffLeaseStore):
            try:
                stored = await self._store.get_lease(self.key)
            except KinesioError:
                stored = None
            if (
                stored is not None
                and stored.lease_owner != self._owner
                and checkpoint_owner(stored) == self._owner
            ):
                self.begin_handoff(stored)
                return
        self.mark_lost(f"another worker holds it now ({what} refused)")

    def adopt_handoff(self, stored: Lease) -> None:
        """New owner: the previous owner wrote its last checkpoint; resume from it."""
        self.lease = dataclasses.replace(
            self.lease,
            checkpoint=stored.checkpoint,
            pending_checkpoint=stored.pending_checkpoint,
            owner_switches_since_checkpoint=stored.owner_switches_since_checkpoint,
            extra=stored.extra,
        )

    async def end_handoff(self) -> None:
        """New owner: stop waiting for the previous owner (its late checkpoint is refused)."""
        store = self._store
        assert isinstance(store, HandoffLeaseStore)
        if not await self._acquire():
            return
        try:
            if not self.active:
                return
            started = self._clock()
            written = await store.end_handoff(self.lease, self._owner)
            if written is None:
                self.mark_lost("another worker holds it now (hand-off refused)")
                return
            self.lease = written
            if not self.lost.is_set():
                self.last_renewed = started
        finally:
            self._lock.release()

    def expires_in(self) -> float:
        """Seconds until the lease expires on this worker's clock (infinite without a
        ``failover_time``); zero or less once it has."""
        if self._failover_time is None:
            return float("inf")
        return self.last_renewed + self._failover_time - self._clock()

    def _arm(self) -> None:
        # One timer per failover period: on firing it re-arms for whatever a renewal meanwhile
        # added, so successful renewals cost nothing here.
        if self._failover_time is None or not self.active:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, self.expires_in()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.active:
            self._arm()

    def _expire(self) -> None:
        self.mark_lost(
            f"not renewed for {self._failover_time:.1f} s on this worker's clock "
            "(another worker may hold it now)"
        )

    def mark_lost(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.lost.is_set():
            self.lost_reason = reason
            logger.info("lease %s lost: %s", self.key, reason)
            self._events.emit(LeaseLostEvent(lease_key=self.key, reason=reason))
            self.lost.set()

    async def _acquire(self) -> bool:
        """Take the write lock; False (lock not held) if the lease is lost first — a hanging
        renewal holds the lock, and a checkpoint must not wait behind it forever."""
        if self.lost.is_set():
            return False
        if not self._lock.locked():
            await self._lock.acquire()  # uncontended: no task, no extra turn of the loop
            return True
        acquire = asyncio.ensure_future(self._lock.acquire())
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({acquire, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
        if acquire.cancelled():
            return False
        if self.lost.is_set():
            self._lock.release()
            return False
        return True

    async def renew(self, failover_time: float) -> None:
        """Renew; mark the lease lost if another worker wrote it, or if it could not be renewed
        for ``failover_time`` (others may have taken it by now). A renewal still pending when
        the lease expires locally is abandoned (the lease is lost then anyway)."""
        if not await self._acquire():
            return
        try:
            if not self.active:
                return
            started = self._clock()
            try:
                async with asyncio.timeout(max(0.0, min(self.expires_in(), 1e9))):
                    renewed = await self._store.renew(self.lease)
            except TimeoutError:
                self._expire()
                return
            except KinesioError as exc:
                if self._clock() - self.last_renewed > failover_time:
                    self.mark_lost(f"not renewed for {failover_time:.1f} s ({exc})")
                else:
                    logger.warning("renewing lease %s failed, will retry: %s", self.key, exc)
                return
            if renewed is None:
                await self._refused("renewal")
                return
            self.lease = renewed
            if self.lost.is_set():
                return  # expired while the write was in flight: it stays lost
            self.last_renewed = started
            self._events.emit(LeaseRenewed(lease_key=self.key, lease_counter=renewed.lease_counter))
        finally:
            self._lock.release()

    async def checkpoint(
        self,
        position: ExtendedSequenceNumber,
        *,
        child_shard_ids: Collection[str] | None = None,
        pending: ExtendedSequenceNumber | None = None,
    ) -> None:
        """Write ``position`` as this shard's checkpoint, fenced by the lease counter, and
        ``pending`` as its pending (two-phase) checkpoint (None clears it).

        Raises :class:`LeaseLost` (and marks the lease lost) if this worker no longer holds the
        lease, or it has expired on this worker's clock; nothing is written then. Waits for a
        renewal in flight, but not past the lease's local expiry. AWS errors propagate (the
        write may be retried).
        """
        if not await self._acquire():
            raise LeaseLost(f"lease {self.key} is no longer held: {self.lost_reason}")
        try:
            if self.handoff.is_set() and not self.lost.is_set() and not child_shard_ids:
                await self._write_handoff(position)
                return
            if not self.active:
                raise LeaseLost(f"lease {self.key} is no longer held: {self.lost_reason}")
            started = self._clock()
            written = await self._store.checkpoint(
                self.lease, self._owner, position, child_shard_ids=child_shard_ids, pending=pending
            )
            if written is None:
                await self._refused("checkpoint")
                if self.handoff.is_set() and not self.lost.is_set() and not child_shard_ids:
                    await self._write_handoff(position)  # stolen for a hand-off meanwhile
                    return
                raise LeaseLost(f"lease {self.key} was taken by another worker; not checkpointed")
            self.lease = written
            if not self.lost.is_set():
                self.last_renewed = started
            self._events.emit(
                CheckpointWritten(
                    shard_id=self.key,
                    sequence_number=position.sequence_number,
                    sub_sequence_number=position.sub_sequence_number,
                    lease_counter=written.lease_counter,
                )
            )
        finally:
            self._lock.release()

    async def release(self) -> None:
        """Give the lease up so another worker can take it at once (graceful shutdown)."""
        if not await self._acquire():
            return
        try:
            if not self.active:
                return
            self.released = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            try:
                await self._store.release(self.lease, self._owner)
            except KinesioError as exc:
                logger.warning("releasing lease %s failed (it will expire): %s", self.key, exc)
                return
            self._events.emit(LeaseReleased(lease_key=self.key))
        finally:
            self._lock.release()
