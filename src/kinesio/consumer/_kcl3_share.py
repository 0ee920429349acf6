"""Sharing leases with KCL 3.x workers, which never steal.

A KCL 3 worker that holds no lease waits for its leader to assign it one, and the leader
assigns only expired or unowned leases, or moves leases off workers whose WorkerMetricStats
item shows them loaded. So a kinesio worker that holds every lease would keep them all: here
it counts the live workers of the worker-metrics table in its share (see
:mod:`kinesio.leases._worker_metrics`) and hands its excess over the way the KCL 3 leader
does, gracefully: ``leaseOwner`` = the receiver, ``checkpointOwner`` = this worker, which then
finishes its batch, writes its last checkpoint and clears ``checkpointOwner``; the receiver
starts from that checkpoint.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, MutableMapping
from collections.abc import Set as AbstractSet

from kinesio._models import Lease
from kinesio.consumer import _assignment
from kinesio.consumer._lease_handle import LeaseHandle
from kinesio.leases.base import HandoffLeaseStore, LeaseStore

__all__ = ["MAX_SHED_PER_ROUND", "counted_peers", "shed_excess"]

logger = logging.getLogger("kinesio.leases")

#: Leases handed over per take round: the KCL's ``maxLeasesToStealAtOneTime`` default, so that
#: a fleet moves towards balance as fast as a KCL 2.x fleet does by stealing.
MAX_SHED_PER_ROUND = 1


def counted_peers(
    fresh: Mapping[str, float],
    table: Mapping[str, Lease],
    expired: AbstractSet[str],
    suspects: MutableMapping[str, float],
) -> frozenset[str]:
    """The KCL 3 workers to count in the share: those with a fresh item (``fresh``: worker id
    to its ``lut``), except one seen owning an expired lease, until its ``lut`` moves on.

    A killed worker's item stays fresh for a minute; counting it meanwhile would hold back
    the takeover of its leases and hand it leases it never renews. ``suspects`` (kept by the
    caller between rounds) remembers the ``lut`` at which each was last seen dead.
    """
    for key in expired:
        owner = table[key].lease_owner if key in table else None
        if owner is not None and owner in fresh:
            suspects[owner] = fresh[owner]
    for worker in [w for w, lut in suspects.items() if fresh.get(w, lut) > lut or w not in fresh]:
        del suspects[worker]
    return frozenset(w for w in fresh if w not in suspects)


async def shed_excess(
    store: LeaseStore,
    held: MutableMapping[str, LeaseHandle],
    table: Mapping[str, Lease],
    expired: AbstractSet[str],
    worker_id: str,
    *,
    peers: AbstractSet[str],
    max_leases: int | None,
    rng: random.Random,
    limit: int = MAX_SHED_PER_ROUND,
) -> list[str]:
    """Hand leases above this worker's share to ``peers`` (live KCL 3 workers) below it.

    Returns the keys handed over. Each write is conditional on the lease counter this worker
    holds, so a concurrent renewal or another writer makes it fail harmlessly (nothing moves);
    a lease handed over stays with its handle until the last checkpoint is written. Without a
    store that supports hand-offs nothing is shed: releasing would let any worker take the
    lease at once and a KCL 3 worker would still not. Raises :class:`kinesio.AWSError`.
    """
    if not peers or not isinstance(store, HandoffLeaseStore):
        return []
    leases = [held[key].lease if key in held else lease for key, lease in table.items()]
    moves = _assignment.shed(
        leases,
        expired - held.keys(),
        worker_id,
        peers=peers,
        max_leases=max_leases,
        limit=limit,
        rng=rng,
    )
    done: list[str] = []
    for key, receiver in moves:
        handle = held.get(key)
        if handle is None or not handle.active:
            continue
        written = await store.take_for_handoff(handle.lease, receiver)
        if written is None:
            continue  # the counter moved (a renewal in flight): plan again next round
        logger.info("handing lease %s over to %s (above this worker's share)", key, receiver)
        handle.begin_handoff(written)
        held.pop(key, None)
        done.append(key)
    return done
