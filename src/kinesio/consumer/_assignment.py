"""Lease taking and stealing: which leases this worker should try to own next (SPEC §2).

The KCL 2.x taking rules as one pure function. The caller reads the lease table, decides on its
own monotonic clock which leases have expired (the counter has not moved for the failover time),
calls :func:`plan` and applies the result with conditional writes; a write that loses a race is
an expected outcome, and the next round plans again from a fresh read. Nothing here does I/O,
reads a clock or keeps state between rounds, so every decision can be property-tested.

Finished leases (checkpoint ``SHARD_END``) are left out of the balancing: they are not counted
towards anybody's share and are never taken or stolen. Such a lease carries no work, it only
waits for its children to progress before it is deleted (see ``_shards.parents_to_delete``),
and counting it would let a worker that holds a few finished leases look busier than it is.
Their owners still count as live workers while the leases are being renewed.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from kinesio._models import SHARD_END, Lease

__all__ = ["Plan", "fair_target", "is_finished", "plan", "shed", "watch_interval"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one worker should try this round.

    ``take`` holds keys of unowned or expired leases, ``steal`` keys of live leases of the single
    worker ``steal_from``; at most one of the two lists is non-empty. ``target`` is the share this
    worker aims for (for logs and diagnostics).
    """

    take: list[str] = field(default_factory=list)
    steal: list[str] = field(default_factory=list)
    target: int = 0
    steal_from: str | None = None

    @property
    def empty(self) -> bool:
        return not self.take and not self.steal


def is_finished(lease: Lease) -> bool:
    """True for a lease whose shard has been read to its end (checkpoint ``SHARD_END``)."""
    return lease.checkpoint.sequence_number == SHARD_END


def fair_target(leases: int, workers: int, max_leases: int | None = None) -> int:
    """The KCL's share per worker: ``ceil(leases / workers)``, 1 when there are at least as many
    workers as leases (0 when there are no leases), capped by ``max_leases``."""
    if leases <= 0:
        return 0
    target = 1 if workers >= leases else math.ceil(leases / workers)
    if max_leases is not None:
        target = min(target, max_leases)
    return target


def plan(
    leases: Sequence[Lease],
    expired: AbstractSet[str],
    me: str,
    *,
    max_leases: int | None = None,
    max_leases_to_steal: int = 1,
    rng: random.Random,
    peers: AbstractSet[str] = frozenset(),
) -> Plan:
    """Decide which leases worker ``me`` should take or steal this round (KCL 2.x rules).

    ``leases`` is the whole lease table as last read; ``expired`` holds the keys of the leases
    whose counter has not moved for the failover time on the caller's clock. Finished leases
    (``SHARD_END``) are ignored, see the module docstring.

    Guarantees:

    * Workers are the owners of non-expired leases plus ``me`` plus ``peers`` (workers known
      to be alive without holding a lease, e.g. KCL 3 workers with fresh WorkerMetricStats,
      see :mod:`kinesio.leases._worker_metrics`); the target is
      :func:`fair_target` over the unfinished leases.
    * Nothing is planned when ``me`` already holds the target (live, unfinished leases).
    * ``take`` holds only unowned or expired unfinished leases, chosen at random (so that
      workers starting together rarely race for the same lease), and never brings ``me``
      above the target.
    * ``steal`` is planned only when nothing can be taken. It holds live leases of one most
      loaded worker (ties broken at random), at most ``max_leases_to_steal`` of them, and
      never brings ``me`` above the target. That worker holds more than the target, or exactly
      the target while ``me`` is at least two short; in the latter case a single lease moves.
      Either way the victim keeps at least as many leases as ``me`` then holds, so a steal
      never just moves the imbalance over.
    * Once the live workers' counts differ by at most one and no lease is left unowned or
      expired (or every worker is at ``max_leases`` or above), every worker's plan is empty:
      no thrash.

    The second steal rule is the KCL's: without it a table such as 2/2/2/0 (six leases, four
    workers, target 2) would never even out, since no worker is above the target.

    The result depends only on the arguments (the input order does not matter), so a seeded
    ``rng`` replays a decision exactly.
    """
    if max_leases is not None and max_leases < 1:
        raise ValueError(f"max_leases must be at least 1, got {max_leases}")
    if max_leases_to_steal < 0:
        raise ValueError(f"max_leases_to_steal must not be negative, got {max_leases_to_steal}")

    # Sorted so that the random choices below depend on the rng alone, not on how the table
    # happened to be read.
    ordered = sorted(leases, key=lambda lease: lease.lease_key)
    active = [lease for lease in ordered if not is_finished(lease)]

    def live_owner(lease: Lease) -> str | None:
        return None if lease.lease_key in expired else lease.lease_owner

    def live(lease: Lease) -> bool:
        return live_owner(lease) is not None

    workers = {owner for lease in ordered if (owner := live_owner(lease)) is not None}
    workers |= {me} | set(peers)
    counts = Counter(owner for lease in active if (owner := live_owner(lease)) is not None)
    target = fair_target(len(active), len(workers), max_leases)
    needed = target - counts[me]
    if needed <= 0:
        return Plan(target=target)

    # Unowned leases are free for anybody; an expired lease is free even when it names an
    # owner, that owner has stopped renewing it (possibly ``me`` after a stall).
    available = [lease.lease_key for lease in active if not live(lease)]
    if available:
        rng.shuffle(available)
        return Plan(take=available[:needed], target=target)

    others = {worker: count for worker, count in counts.items() if worker != me}
    if not others:
        return Plan(target=target)
    most = max(others.values())
    if most > target:
        count = min(needed, most - target)
    elif most == target and needed >= 2:
        count = 1
    else:
        count = 0
    count = min(count, max_leases_to_steal)
    if count == 0:
        return Plan(target=target)
    # Random among equally loaded victims, so that two thieves in the same round are less
    # likely to fight over one worker's leases.
    victim = rng.choice(sorted(worker for worker, n in others.items() if n == most))
    victim_leases = [
        lease.lease_key for lease in active if live(lease) and lease.lease_owner == victim
    ]
    return Plan(steal=rng.sample(victim_leases, count), target=target, steal_from=victim)


def shed(
    leases: Sequence[Lease],
    expired: AbstractSet[str],
    me: str,
    *,
    peers: AbstractSet[str],
    max_leases: int | None = None,
    limit: int = 1,
    rng: random.Random,
) -> list[tuple[str, str]]:
    """Leases ``me`` should hand over this round, as ``(lease key, new owner)`` pairs.

    For workers that never steal (KCL 3.x): the share is :func:`plan`'s target with ``peers``
    counted; ``me`` gives away only what it holds above the target (never dropping below it),
    at most ``limit`` leases, each to one of ``peers`` still below the target, the least
    loaded first. The caller writes each hand-over conditionally (the
    KCL 3 graceful hand-off: new ``leaseOwner``, ``checkpointOwner`` = ``me``); a lost race only
    means nothing moves this round.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    active = sorted(
        (lease for lease in leases if not is_finished(lease)), key=lambda lease: lease.lease_key
    )
    owners = [None if lease.lease_key in expired else lease.lease_owner for lease in active]
    workers = {owner for owner in owners if owner is not None} | {me} | set(peers)
    target = fair_target(len(active), len(workers), max_leases)
    counts = Counter(owner for owner in owners if owner is not None)
    mine = [lease.lease_key for lease, owner in zip(active, owners, strict=True) if owner == me]
    excess = min(len(mine) - target, limit)
    if excess <= 0:
        return []
    out: list[tuple[str, str]] = []
    for key in rng.sample(mine, excess):
        below = sorted((counts[w], w) for w in peers if counts[w] < target)
        if not below:
            break
        receiver = below[0][1]
        counts[receiver] += 1
        out.append((key, receiver))
    return out


def watch_interval(workers: int, failover_time: float, floor: float) -> float:
    """Seconds between two watch scans of the lease table by one of ``workers`` workers.

    ``floor`` (default ``min(1 s, failover_time / 3)``) while the fleet is small, then growing
    with the fleet so that the fleet's watch reads stay a fraction of its renewal writes
    whatever its size: every lease is renewed ``3 / failover_time`` times a second, one write
    unit each (items stay under 1 KB), i.e. five read units on demand; an eventually consistent
    scan reads at most 1/8 read unit per such item. With ``workers * failover_time / 60``
    seconds between scans, the fleet scans ``60 / failover_time`` times a second, which reads
    at most half of what the renewals write (times five), and about a fifth with the KCL's
    usual 350-450 byte items. A larger fleet also sees a dead worker's last renewal sooner
    than one worker would: its first scan after the renewal comes after a fraction
    ``1 / workers`` of the interval on average.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return max(floor, workers * failover_time / 60.0)
