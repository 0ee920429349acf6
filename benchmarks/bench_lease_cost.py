"""What the lease table costs: DynamoDB read and write units per worker per minute.

Run: .venv/bin/python benchmarks/bench_lease_cost.py        (about 9 min)

A fleet of ``LeaseCoordinator``s (kinesio's lease loop: renew, watch, take, steal; no record
fetching) runs in one process on a ``MemoryLeaseStore`` over a ``kinesio.testing``
``InMemoryKinesis`` stream, each worker through its own metering view of the store. The
views bill every call the way DynamoDB bills it (on-demand), from the size of the items the
call reads or writes (``lease_to_item`` of the DynamoDB store, sized as DynamoDB sizes items:
attribute names + values, numbers at one byte per two digits + 1):

* Scan: total bytes of the items read, in 4 KB units, 1 read unit each when strongly
  consistent, 0.5 when eventually consistent (one page per MB);
* GetItem: the item in 4 KB units, strongly consistent;
* UpdateItem / PutItem / DeleteItem: the larger of the item before and after, in 1 KB units;
  a write whose condition fails is billed too.

The leases are created before the workers start, with a 56-digit checkpoint as on a real
stream, and the workers get ``max_leases`` = the fair share so that they balance at once (the
first worker would otherwise take every lease and the others would steal one per round).
After a warm-up (``--warmup`` s) the units are counted over a window (``--window`` s) and
scaled to a minute. Two designs with the default settings (``failover_time`` 10 s):

* "KCL 2.x timing": the lease loop before the watch (one strongly consistent scan per worker
  every take interval, 20 s), i.e. ``LeaseCoordinator(..., watch=False)``;
* "watch": the current loop (eventually consistent watch scans every
  ``max(1 s, workers x failover / 60)``, the strongly consistent take-and-steal round every
  20 s).

Renewal writes are the same in both designs: every lease, every failover / 3. Checkpoints are
not part of this (with ``consume_with``'s defaults: one write unit per shard per minute). The
question the table answers: do the fleet's lease-table reads cost less than its renewal writes
(a write unit costs five read units on demand), and how far below one partition's 3000 read
units per second do they stay.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from kinesio import ConsumerSettings, ExtendedSequenceNumber
from kinesio._models import Lease
from kinesio.consumer._coordinator import LeaseCoordinator
from kinesio.leases import MemoryLeaseStore
from kinesio.leases.dynamodb import lease_to_item
from kinesio.testing import InMemoryKinesis

STREAM = "cost"
#: A sequence number of the service's shape (56 digits).
CHECKPOINT = "49590338271490256608559692538361571095921575989136588898"


def number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def value_size(value: Mapping[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(str(v).encode())
    if kind == "N":
        return number_size(str(v))
    if kind == "B":
        return len(v)
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum(number_size(x) for x in v)
    return len(repr(v).encode())


def item_size(lease: Lease) -> int:
    """DynamoDB's size of the lease item: attribute names plus values, in bytes."""
    return sum(len(name.encode()) + value_size(v) for name, v in lease_to_item(lease).items())


@dataclass
class Bill:
    rcu: float = 0.0
    wcu: float = 0.0
    scans: int = 0
    writes: Counter[str] = field(default_factory=Counter)


class MeteredStore:
    """One worker's view of the shared store; bills its calls to ``bill``."""

    def __init__(self, store: MemoryLeaseStore, sizes: dict[str, int]) -> None:
        self._store = store
        self._sizes = sizes  # the size of each stored item, as last written
        self.bill = Bill()
        self.counting = False

    def _write(self, what: str, before: str, after: Lease | None) -> None:
        size = self._sizes.get(before, 0)
        if after is not None:
            new = item_size(after)
            self._sizes[after.lease_key] = new
            size = max(size, new)
        if self.counting:
            self.bill.wcu += max(1, math.ceil(size / 1024))
            self.bill.writes[what] += 1

    async def create_table_if_missing(self) -> None:
        await self._store.create_table_if_missing()

    async def list_leases(self, *, consistent: bool = True) -> list[Lease]:
        leases = await self._store.list_leases(consistent=consistent)
        if self.counting:
            total = sum(self._sizes.get(lease.lease_key, 0) for lease in leases)
            pages = max(1, math.ceil(total / 1_000_000))
            units = sum(math.ceil(part / 4096) for part in [total / pages] * pages)
            self.bill.rcu += units * (1.0 if consistent else 0.5)
            self.bill.scans += 1
        return leases

    async def get_lease(self, lease_key: str) -> Lease | None:
        lease = await self._store.get_lease(lease_key)
        if self.counting:
            self.bill.rcu += max(1, math.ceil(self._sizes.get(lease_key, 0) / 4096))
        return lease

    async def create_lease(self, lease: Lease) -> Lease | None:
        created = await self._store.create_lease(lease)
        self._write("create", lease.lease_key, created)
        return created

    async def renew(self, lease: Lease) -> Lease | None:
        renewed = await self._store.renew(lease)
        self._write("renew", lease.lease_key, renewed)
        return renewed

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        taken = await self._store.take(lease, owner)
        self._write("take", lease.lease_key, taken)
        return taken

    async def checkpoint(
        self,
        lease: Lease,
        owner: str,
        checkpoint: ExtendedSequenceNumber,
        *,
        child_shard_ids: Collection[str] | None = None,
        pending: ExtendedSequenceNumber | None = None,
    ) -> Lease | None:
        written = await self._store.checkpoint(
            lease, owner, checkpoint, child_shard_ids=child_shard_ids, pending=pending
        )
        self._write("checkpoint", lease.lease_key, written)
        return written

    async def release(self, lease: Lease, owner: str) -> Lease | None:
        released = await self._store.release(lease, owner)
        self._write("release", lease.lease_key, released)
        return released

    async def delete_lease(self, lease: Lease) -> bool:
        deleted = await self._store.delete_lease(lease)
        self._write("delete", lease.lease_key, None)
        return deleted

    async def aclose(self) -> None:
        pass


@dataclass(frozen=True)
class Row:
    design: str
    shards: int
    workers: int
    item_bytes: float
    rcu: float  # per worker per minute
    wcu: float
    renew_wcu: float
    scans: float
    fleet_rcu_s: float


async def measure(shards: int, workers: int, *, watch: bool, warmup: float, window: float) -> Row:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream(STREAM, shards)
    store = MemoryLeaseStore()
    sizes: dict[str, int] = {}
    for shard in await kinesis.list_shards(STREAM):
        lease = Lease(
            lease_key=shard.shard_id,
            checkpoint=ExtendedSequenceNumber(CHECKPOINT),
            starting_hash_key=shard.starting_hash_key,
            ending_hash_key=shard.ending_hash_key,
        )
        await store.create_lease(lease)
        sizes[lease.lease_key] = item_size(lease)
    coordinators: list[LeaseCoordinator] = []
    views: list[MeteredStore] = []
    rng = random.Random(7)
    for i in range(workers):
        view = MeteredStore(store, sizes)
        worker_id = (
            f"ip-10-0-{i // 250}-{i % 250}.ec2.internal:{1000 + i}:{rng.getrandbits(32):08x}"
        )
        settings = ConsumerSettings(worker_id=worker_id, max_leases=math.ceil(shards / workers))
        coordinator = LeaseCoordinator(
            view,
            kinesis,
            STREAM,
            worker_id,
            settings,
            rng=random.Random(i),
            watch=watch,
        )
        coordinators.append(coordinator)
        views.append(view)
    # started a little apart, as a fleet's processes are
    for coordinator in coordinators:
        await coordinator.start()
        await asyncio.sleep(0.05)
    await asyncio.sleep(warmup)
    for view in views:
        view.counting = True
    started = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - started
    for view in views:
        view.counting = False
    owners = Counter(lease.lease_owner for lease in await store.list_leases())
    for coordinator in coordinators:
        coordinator._taking = False
        for task in coordinator._tasks:
            task.cancel()
        await asyncio.gather(*coordinator._tasks, return_exceptions=True)
    if None in owners:
        raise RuntimeError(f"{owners[None]} leases unowned after the warm-up: not a steady state")
    per_minute = 60.0 / elapsed / workers
    rcu = sum(v.bill.rcu for v in views)
    wcu = sum(v.bill.wcu for v in views)
    renew = sum(v.bill.writes["renew"] for v in views)
    scans = sum(v.bill.scans for v in views)
    return Row(
        design="watch" if watch else "KCL 2.x timing",
        shards=shards,
        workers=workers,
        item_bytes=sum(sizes.values()) / len(sizes),
        rcu=rcu * per_minute,
        wcu=wcu * per_minute,
        renew_wcu=renew * per_minute,  # each renewal: one unit (items < 1 KB)
        scans=scans * per_minute,
        fleet_rcu_s=rcu / elapsed,
    )


async def main_async(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for shards, workers in args.fleets:
        for watch in (False, True):
            row = await measure(
                shards, workers, watch=watch, warmup=args.warmup, window=args.window
            )
            print(
                f"  {row.design}: {shards} shards, {workers} workers: "
                f"{row.rcu:.1f} RCU, {row.wcu:.1f} WCU per worker per minute",
                flush=True,
            )
            rows.append(row)
    return rows


def fleet(text: str) -> tuple[int, int]:
    shards, workers = text.split("x")
    return int(shards), int(workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--warmup", type=float, default=12.0, help="seconds before counting")
    parser.add_argument("--window", type=float, default=40.0, help="seconds counted")
    parser.add_argument(
        "--fleets",
        type=fleet,
        nargs="+",
        default=[(10, 3), (10, 10), (200, 4), (1000, 10), (1000, 50)],
        help="SHARDSxWORKERS ...",
    )
    args = parser.parse_args()
    cpu = time.process_time()
    rows = asyncio.run(main_async(args))
    print()
    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, "
        f"{platform.machine()}; warm-up {args.warmup:.0f} s, window {args.window:.0f} s per "
        f"fleet; CPU {time.process_time() - cpu:.0f} s; load average "
        f"{os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)"
    )
    print()
    print(
        "| shards | workers | item, B | design | scans | RCU | WCU (renewals) "
        "| fleet reads / (renewal writes x 5) | fleet RCU/s (of 3000 per partition) |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r.rcu / (5 * r.renew_wcu) if r.renew_wcu else math.inf
        print(
            f"| {r.shards} | {r.workers} | {r.item_bytes:.0f} | {r.design} | {r.scans:.1f} "
            f"| {r.rcu:.1f} | {r.wcu:.0f} ({r.renew_wcu:.0f}) | {ratio:.2f} "
            f"| {r.fleet_rcu_s:.1f} |"
        )
    print()
    print("Per worker per minute (fleet total / workers), except the last two columns.")


if __name__ == "__main__":
    main()
