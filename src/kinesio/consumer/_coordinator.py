"""The lease loop: take, renew, watch, steal and release leases in the lease table.

All coordination between workers goes through the lease table: there is no other channel.
A lease's expiry is judged by its counter not moving for ``failover_time`` on this worker's own
monotonic clock — wall clocks of different hosts are never compared.

The table, the item layout and the expiry rule are the KCL 2.x ones; only the timing differs.
The KCL reads the table every ``2 × failover_time`` and takes a lease at the first read that
finds its counter unchanged for ``failover_time``, so a dead worker's shards wait 17-40 s
with the defaults. Here a cheap watch (an eventually consistent scan every
``settings.effective_watch_interval``, growing with the fleet) notes when each counter was
first seen, takes free leases at once, and wakes at each lease's own deadline (first sight +
``failover_time``) to take it with a write conditional on the counter it saw: the write
succeeding is itself the proof that the counter did not move for ``failover_time``. An
eventually consistent read may be stale, which is safe in this direction: a stale counter is a
change (it restarts the count) and a take on it fails its condition. For the same reason a
watch scan never marks one of this worker's own leases lost; only the strongly consistent
round every ``take_interval``, which also steals from live workers (the KCL's rules), does.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from kinesio._config import ConsumerSettings
from kinesio._errors import KinesioError
from kinesio._kinesis import KinesisAPI
from kinesio._models import (
    ExtendedSequenceNumber,
    Lease,
    Shard,
)
from kinesio.consumer import _assignment, _kcl3_share, _shards
from kinesio.consumer._lease_handle import LeaseHandle as LeaseHandle
from kinesio.consumer._shard_steps import ShardSteps
from kinesio.events import (
    Emitter,
    LeaseAcquired,
)
from kinesio.leases._worker_metrics import WorkerMetricsTable
from kinesio.leases.base import HandoffLeaseStore, LeaseStore, checkpoint_owner
from kinesio.leases.dynamodb import DynamoDBLeaseStore

logger = logging.getLogger("kinesio.leases")

#: Plans per round after lost races (each without another read of the table).
_REPLANS = 3
#: Seconds between reads of a stolen lease while its previous owner finishes its batch.
_HANDOFF_POLL = 0.2
#: Seconds past a lease's deadline to wake at, so the expiry check cannot run a hair early.
_DEADLINE_SLACK = 0.01


def _reads_eventually(store: LeaseStore) -> bool:
    """Whether the store's ``list_leases`` takes ``consistent`` (stores written before it was
    added only read strongly consistently, which is correct, only dearer)."""
    try:
        return "consistent" in inspect.signature(store.list_leases).parameters
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class _Seen:
    owner: str | None
    counter: int
    since: float


class LeaseCoordinator(ShardSteps):
    """Keeps this worker's fair share of leases. Newly acquired leases appear on ``acquired``."""

    def __init__(
        self,
        store: LeaseStore,
        kinesis: KinesisAPI,
        stream_name: str,
        worker_id: str,
        settings: ConsumerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        events: Emitter | None = None,
        watch: bool = True,
    ) -> None:
        self.events = events or Emitter(None)
        self.store = store
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.worker_id = worker_id
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self.held: dict[str, LeaseHandle] = {}
        self.acquired: asyncio.Queue[LeaseHandle | None] = asyncio.Queue()
        self.table: dict[str, Lease] = {}
        self.shards: dict[str, Shard] = {}
        self._seen: dict[str, _Seen] = {}
        self._take_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._taking = True
        # False: the KCL 2.x timing alone (one strongly consistent round per take interval)
        self._watch = watch
        self._eventual_reads = _reads_eventually(store)
        self._handoffs: set[asyncio.Task[None]] = set()
        # KCL 3 workers known only from the worker-metrics table (the table exists only
        # beside a KCL 3 fleet; without it both stay empty and nothing else is read).
        self.metrics_table = (
            WorkerMetricsTable(store.dynamodb_client, store.table_name, worker_id)
            if isinstance(store, DynamoDBLeaseStore)
            else None
        )
        self._peers: frozenset[str] = frozenset()
        self._dead: dict[str, float] = {}  # KCL 3 workers seen dead, at their item's lut

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the table if allowed, sync shards to leases once, start the loops."""
        await self.store.create_table_if_missing()
        await self.sync_shards()
        self._tasks = [
            asyncio.create_task(self._loop(self.renew_round, self._renew_interval), name="renew"),
            asyncio.create_task(self._take_loop(), name="take"),
            asyncio.create_task(
                self._loop(self.sync_shards, lambda: self.settings.shard_sync_interval),
                name="shard-sync",
            ),
        ]
        if self.metrics_table is not None:
            publish = self.metrics_table.publish
            try:  # at once, so that a KCL 3 leader counts this worker from its next round on
                await publish()
            except KinesioError as exc:
                logger.warning("publishing worker metrics failed, will retry: %s", exc)
            self._tasks.append(asyncio.create_task(self._loop(publish, lambda: 30.0), name="wms"))

    def stop_taking(self) -> None:
        self._taking = False
        self.acquired.put_nowait(None)

    async def stop(self) -> None:
        """Release every lease still held and stop the loops."""
        self._taking = False
        if self.metrics_table is not None:
            # First, so that the KCL 3 leader does not assign the released leases back here.
            try:
                await self.metrics_table.withdraw()
            except KinesioError as exc:
                logger.warning("withdrawing worker metrics failed (stale in 60 s): %s", exc)
        await asyncio.gather(*(h.release() for h in list(self.held.values())))
        self.held.clear()
        tasks = self._tasks + list(self._handoffs)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []

    def _renew_interval(self) -> float:
        return self.settings.effective_renew_interval

    async def _loop(self, step: Callable[[], object], interval: Callable[[], float]) -> None:
        while True:
            await asyncio.sleep(interval())
            try:
                await step()  # type: ignore[misc]
            except KinesioError as exc:
                logger.warning("%s failed, will retry: %s", getattr(step, "__name__", step), exc)

    async def _take_loop(self) -> None:
        s = self.settings
        next_full = self._clock()
        next_watch = next_full
        while self._taking:
            now = self._clock()
            try:
                if self._take_now.is_set() or now >= next_full:
                    self._take_now.clear()
                    next_full = now + s.effective_take_interval
                    next_watch = now + self._watch_every()
                    await self.take_round()
                elif self._watch and now >= next_watch:
                    next_watch = now + self._watch_every()
                    await self.watch_round()
                elif self._watch:
                    await self._take_from_table(steal=False)  # a lease's deadline is due
            except KinesioError as exc:
                logger.warning("taking leases failed, will retry: %s", exc)
            wake = next_full
            if self._watch:
                wake = min(wake, next_watch, self._next_deadline())
            try:
                async with asyncio.timeout(max(0.0, wake - self._clock())):
                    await self._take_now.wait()
            except TimeoutError:
                pass

    def _watch_every(self) -> float:
        owners = {lease.lease_owner for lease in self.table.values() if lease.lease_owner}
        return _assignment.watch_interval(
            len(owners | {self.worker_id}),
            self.settings.failover_time,
            self.settings.effective_watch_interval,
        )

    def _next_deadline(self) -> float:
        """When the next lease of another worker expires on this clock, unless it moves first
        (a little later: the loop's timer may fire a hair early)."""
        now = self._clock()
        failover = self.settings.failover_time
        deadlines = [
            seen.since + failover + _DEADLINE_SLACK
            for key, seen in self._seen.items()
            if seen.owner is not None
            and key not in self.held
            and seen.since + failover + _DEADLINE_SLACK > now
        ]
        return min(deadlines, default=float("inf"))

    def take_soon(self) -> None:
        """Run a take round now (a shard ended; its children may be free)."""
        self._take_now.set()

    # -- rounds ----------------------------------------------------------------------------

    async def renew_round(self) -> None:
        handles = list(self.held.values())
        await asyncio.gather(*(h.renew(self.settings.failover_time) for h in handles))
        for h in handles:
            if not h.active:
                self.held.pop(h.key, None)

    async def refresh_table(self, *, consistent: bool = True) -> list[Lease]:
        if consistent or not self._eventual_reads:
            leases = await self.store.list_leases()
        else:
            leases = await self.store.list_leases(consistent=False)
        now = self._clock()
        seen: dict[str, _Seen] = {}
        for lease in leases:
            prev = self._seen.get(lease.lease_key)
            # any difference restarts the count, a counter going backwards (a stale read) too
            if prev is None or (prev.owner, prev.counter) != (
                lease.lease_owner,
                lease.lease_counter,
            ):
                seen[lease.lease_key] = _Seen(lease.lease_owner, lease.lease_counter, now)
            else:
                seen[lease.lease_key] = prev
        self._seen = seen
        self.table = {lease.lease_key: lease for lease in leases}
        return leases

    def expired(self) -> set[str]:
        """Leases that are unowned, or whose counter has not moved for the failover time."""
        now = self._clock()
        out: set[str] = set()
        for key, lease in self.table.items():
            if key in self.held:
                continue
            s = self._seen[key]
            if lease.lease_owner is None or now - s.since >= self.settings.failover_time:
                out.add(key)
        return out

    async def take_round(self) -> None:
        """A strongly consistent read: drop leases another worker holds now, take free and
        expired leases, or steal (the KCL's taker round)."""
        if not self._taking:
            return
        await self.refresh_table()
        for key, handle in list(self.held.items()):
            stored = self.table.get(key)
            if stored is None or stored.lease_owner != self.worker_id:
                if stored is not None and checkpoint_owner(stored) == self.worker_id:
                    handle.begin_handoff(stored)
                else:
                    handle.mark_lost("the lease table shows another owner")
                self.held.pop(key, None)
        if self.metrics_table is not None and await self.metrics_table.exists():
            # Only non-kinesio workers count from the table: kinesio workers count through
            # their leases (a dead one's fresh item would otherwise hold back its leases).
            fresh = await self.metrics_table.live_peers()
            expired = self.expired()
            self._peers = _kcl3_share.counted_peers(fresh, self.table, expired, self._dead)
            await _kcl3_share.shed_excess(
                self.store,
                self.held,
                self.table,
                expired,
                self.worker_id,
                peers=self._peers,
                max_leases=self.settings.max_leases,
                rng=self._rng,
            )
        await self._take_from_table(steal=True)

    async def watch_round(self) -> None:
        """An eventually consistent read, then take free and expired leases (never steal)."""
        if not self._taking:
            return
        await self.refresh_table(consistent=False)
        await self._take_from_table(steal=False)

    def _plan(self, *, steal: bool, skip: set[str]) -> _assignment.Plan:
        # The handles know this worker's own leases better than a (possibly stale) scan.
        leases = [
            self.held[key].lease if key in self.held else lease
            for key, lease in self.table.items()
            if key not in skip and (key in self.held or lease.lease_owner != self.worker_id)
        ]
        return _assignment.plan(
            leases,
            self.expired() - skip,
            self.worker_id,
            max_leases=self.settings.max_leases,
            max_leases_to_steal=self.settings.max_leases_to_steal if steal else 0,
            rng=self._rng,
            peers=self._peers,
        )

    async def _take_from_table(self, *, steal: bool) -> None:
        """Apply a plan made from the table as last read. A take that loses its race (the
        counter moved) is planned again at once among the other candidates, a few times,
        instead of waiting for the next read."""
        skip: set[str] = set()
        for _ in range(_REPLANS):
            plan = self._plan(steal=steal, skip=skip)
            lost = False
            for key in plan.take + plan.steal:
                if not self._taking:
                    return
                if not await self._take_one(key, stolen=key in plan.steal, target=plan.target):
                    skip.add(key)
                    lost = True
            if not lost or plan.steal:
                return

    async def _take_one(self, key: str, *, stolen: bool, target: int) -> bool:
        lease = self.table[key]
        started = self._clock()
        handoff = (
            stolen and self.settings.graceful_handoff and isinstance(self.store, HandoffLeaseStore)
        )
        if handoff:
            assert isinstance(self.store, HandoffLeaseStore)
            taken = await self.store.take_for_handoff(lease, self.worker_id)
        else:
            taken = await self.store.take(lease, self.worker_id)
        if taken is None:
            return False  # another worker was quicker, or the owner renewed after all
        verb = "stole" if stolen else "took"
        logger.info("%s lease %s (from %s; target %d)", verb, key, lease.lease_owner, target)
        self.events.emit(
            LeaseAcquired(
                lease_key=key,
                previous_owner=lease.lease_owner,
                stolen=stolen,
                lease_counter=taken.lease_counter,
            )
        )
        handle = LeaseHandle(
            taken,
            self.store,
            self.worker_id,
            self._clock,
            self.events,
            failover_time=self.settings.failover_time,
            written_at=started,
        )
        self.held[key] = handle
        self.table[key] = taken
        if handoff:
            task = asyncio.create_task(self._after_handoff(handle), name=f"handoff-{key}")
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)
        else:
            await self.acquired.put(handle)
        return True

    async def _after_handoff(self, handle: LeaseHandle) -> None:
        """Hand a stolen lease to the consumer once its previous owner has written its last
        checkpoint (``checkpointOwner`` gone), or after ``handoff_timeout`` (then the previous
        owner's late checkpoint is refused, and reading resumes at the last one written)."""
        deadline = self._clock() + self.settings.handoff_timeout
        while handle.active:
            try:
                stored = await self.store.get_lease(handle.key)
            except KinesioError as exc:
                logger.warning("reading lease %s during its hand-off failed: %s", handle.key, exc)
                stored = handle.lease
            if stored is None or stored.lease_owner != self.worker_id:
                handle.mark_lost("another worker holds it now (during the hand-off)")
                return
            if checkpoint_owner(stored) is None:
                handle.adopt_handoff(stored)
                break
            if self._clock() >= deadline:
                logger.warning(
                    "lease %s: %s did not hand off within %.0f s; resuming at the last checkpoint",
                    handle.key,
                    checkpoint_owner(stored),
                    self.settings.handoff_timeout,
                )
                try:
                    await handle.end_handoff()
                    break
                except KinesioError as exc:
                    logger.warning("ending the hand-off of %s failed: %s", handle.key, exc)
            try:
                async with asyncio.timeout(_HANDOFF_POLL):
                    await handle.lost.wait()
            except TimeoutError:
                pass
        if handle.active:
            logger.info("lease %s handed off at %s", handle.key, handle.lease.checkpoint)
            await self.acquired.put(handle)

    async def sync_shards(self) -> None:
        """Create leases for shards nobody has read yet; delete finished parents' leases."""
        shards = await self.kinesis.list_shards(self.stream_name)
        self.shards = {s.shard_id: s for s in shards}
        leases = await self.refresh_table()
        start = self.settings.initial_position
        created = _shards.initial_leases(
            shards, set(self.table), ExtendedSequenceNumber(start.kind)
        )
        for lease in created:
            if await self.store.create_lease(lease) is not None:
                logger.info("created lease %s at %s", lease.lease_key, start.kind)
        for key in _shards.parents_to_delete(leases):
            if await self.store.delete_lease(self.table[key]):
                logger.info("deleted finished parent lease %s", key)
        if created:
            self.take_soon()
