"""The shard graph and the resharding rules of the lease table (SPEC §2).

A split closes one shard and opens two children that name it as ``ParentShardId``; a merge
closes two adjacent shards and opens one child that names them as ``ParentShardId`` and
``AdjacentParentShardId``. Shards older than the stream's retention disappear from ListShards,
so a shard may name parents that are no longer there; such a shard is a *root* here.

The rules keep each record read once and parents before children:

* a shard's lease is created either by the shard sync (:func:`initial_leases`, for the oldest
  shards nobody has read yet) or by a parent reaching its end (:func:`child_leases`);
* at a shard's end the children's leases are written *before* the parent is checkpointed at
  ``SHARD_END``, so a finished parent always has its children in the table; and they are
  written only once every parent they name has a lease (:func:`unleased_parents`): a merge
  child created while its other parent's lease does not exist yet would look ready to
  :func:`is_ready` and be read before that parent (the KCL defers the same way);
* a child is read only when every parent lease in the table is finished (:func:`is_ready`);
* leases are deleted from the top down: a finished lease goes once its parents' leases are gone
  and all its children have checkpointed past the start (:func:`parents_to_delete`).

Everything here is pure: shards and leases in, decisions out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from kinesio._models import (
    AT_TIMESTAMP,
    LATEST,
    SHARD_END,
    TRIM_HORIZON,
    ChildShard,
    ExtendedSequenceNumber,
    Lease,
    Shard,
)

__all__ = [
    "ShardGraph",
    "child_leases",
    "children_from_list_shards",
    "has_started",
    "initial_leases",
    "is_ready",
    "parents_to_delete",
    "unleased_parents",
]

_START_SENTINELS = frozenset({TRIM_HORIZON, LATEST, AT_TIMESTAMP})


@dataclass(frozen=True, slots=True)
class ShardGraph:
    """The shards of a stream as ListShards returned them, with parent and child links.

    ``parents`` only names parents present in the graph (the others are past retention);
    ``children`` is built from the children's declared parents, so it also answers for a shard
    that is no longer listed.
    """

    shards: Mapping[str, Shard]
    _children: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_shards(cls, shards: Iterable[Shard]) -> ShardGraph:
        by_id = {shard.shard_id: shard for shard in shards}
        children: dict[str, list[str]] = {}
        for shard in by_id.values():
            for parent in shard.parent_shard_ids:
                children.setdefault(parent, []).append(shard.shard_id)
        return cls(
            shards=by_id,
            _children={parent: tuple(sorted(kids)) for parent, kids in children.items()},
        )

    def __contains__(self, shard_id: object) -> bool:
        return shard_id in self.shards

    def __getitem__(self, shard_id: str) -> Shard:
        return self.shards[shard_id]

    def __len__(self) -> int:
        return len(self.shards)

    def parents(self, shard_id: str) -> tuple[str, ...]:
        """The parents of ``shard_id`` (parent, then adjacent parent) still in the stream."""
        shard = self.shards.get(shard_id)
        if shard is None:
            return ()
        return tuple(p for p in shard.parent_shard_ids if p in self.shards)

    def children(self, shard_id: str) -> tuple[str, ...]:
        """The shards naming ``shard_id`` as parent or adjacent parent, sorted by id."""
        return self._children.get(shard_id, ())

    def is_root(self, shard_id: str) -> bool:
        """True for a listed shard none of whose parents is listed: the oldest data there is."""
        return shard_id in self.shards and not self.parents(shard_id)

    def ancestors(self, shard_id: str) -> tuple[str, ...]:
        """Every listed ancestor of ``shard_id``, nearest first, each once."""
        seen: set[str] = set()
        order: list[str] = []
        frontier = list(self.parents(shard_id))
        while frontier:
            following: list[str] = []
            for parent in frontier:
                if parent in seen or parent == shard_id:
                    continue
                seen.add(parent)
                order.append(parent)
                following.extend(self.parents(parent))
            frontier = following
        return tuple(order)

    def open_shards(self) -> list[Shard]:
        """The shards still taking writes (no ending sequence number), sorted by hash range."""
        return sorted(
            (shard for shard in self.shards.values() if shard.is_open),
            key=lambda shard: (shard.starting_hash_key, shard.shard_id),
        )


def _new_lease(
    shard_id: str,
    parents: Iterable[str],
    starting_hash_key: int,
    ending_hash_key: int,
    checkpoint: ExtendedSequenceNumber,
) -> Lease:
    return Lease(
        lease_key=shard_id,
        checkpoint=checkpoint,
        parent_shard_ids=frozenset(parents),
        starting_hash_key=starting_hash_key,
        ending_hash_key=ending_hash_key,
    )


def _lease_for(shard: Shard, checkpoint: ExtendedSequenceNumber) -> Lease:
    return _new_lease(
        shard.shard_id,
        shard.parent_shard_ids,
        shard.starting_hash_key,
        shard.ending_hash_key,
        checkpoint,
    )


def _sequence_order(shard: Shard) -> tuple[int, str]:
    try:
        return (int(shard.starting_sequence_number), shard.shard_id)
    except ValueError:
        return (0, shard.shard_id)


def _coverage(
    graph: ShardGraph, leased: AbstractSet[str], combine: Callable[[Iterable[bool]], bool]
) -> Callable[[str], bool]:
    """``covered(x)``: x has a lease, or x has listed parents and ``combine`` (``any`` or
    ``all``) of their coverage holds. Memoised over the whole graph."""
    memo: dict[str, bool] = {}

    def covered(shard_id: str) -> bool:
        # Iterative post-order walk: resharding histories can be deeper than the recursion
        # limit. A shard met again while its own ancestors are being walked closes a cycle (a
        # malformed listing); it counts as uncovered there and is settled on its first visit.
        visiting: set[str] = set()
        stack = [(shard_id, False)]
        while stack:
            current, expanded = stack.pop()
            if current in memo:
                continue
            if current in leased:
                memo[current] = True
                continue
            parents = graph.parents(current)
            if expanded:
                memo[current] = bool(parents) and combine(memo.get(p, False) for p in parents)
            elif current not in visiting:
                visiting.add(current)
                stack.append((current, True))
                stack.extend((p, False) for p in parents if p not in memo)
        return memo[shard_id]

    return covered


def initial_leases(
    shards: Sequence[Shard],
    existing_lease_keys: Collection[str],
    initial_checkpoint: ExtendedSequenceNumber,
) -> list[Lease]:
    """The leases a shard sync should create (the KCL 2.x HierarchicalShardSyncer rule).

    A shard with a lease is read to its end, and its children get leases then
    (:func:`child_leases`), so every descendant of a leased shard is already on its way. For
    each open shard without a lease:

    * ``TRIM_HORIZON`` / ``AT_TIMESTAMP``: walk up the parents that are not wholly covered
      (a shard is wholly covered when it has a lease, or all its listed parents are wholly
      covered) and create leases for the roots reached: listed shards whose parents are past
      retention, or the open shard itself when it is such a root. So the whole history still
      in the stream is read once, oldest first. For a merge with one parent under a lease and
      the other not, the other side's roots are created: no half of the child's range is
      skipped, and the child's lease can be written (see :func:`unleased_parents`).
    * ``LATEST``: a lease for the open shard itself, unless some listed ancestor (on either
      side) has a lease; that one's children will reach it, and a ``LATEST`` lease written now
      would skip what the child receives until its parents end. And, as the KCL does, a
      ``LATEST`` lease for each parent of a reached merge child that nothing reaches: without
      it the reached side would wait for ever at its end for the other parent's lease. Such a
      parent is closed, so it ends at once.

    Guarantees, once the returned leases are written: every open shard has a leased
    ancestor-or-self, and from the start every hash key of it lies on a chain of shards holding
    that key from a leased shard down to it; every merge child without a lease that something
    reaches is reached on both sides, so no shard end waits for ever in
    :func:`unleased_parents` (from the start, the unreached side's roots are leased, repeated
    until nothing is stranded; this only happens on a table that lost leases). No created lease
    has a listed ancestor with a lease and none is the ancestor of another, so nothing is read
    twice; calling again with the created keys added returns nothing, and on a table kept by
    these rules the call returns nothing at all. Created leases are unowned, at
    ``initial_checkpoint``, carry the shard's declared parents and hash range, and come sorted
    by starting sequence number. ``existing_lease_keys`` are shard ids (strip the multi-stream
    prefix first).
    """
    position = initial_checkpoint.sequence_number
    if position not in _START_SENTINELS:
        raise ValueError(
            f"initial_checkpoint must be TRIM_HORIZON, LATEST or AT_TIMESTAMP, got {position}"
        )
    graph = ShardGraph.from_shards(shards)
    leased = set(existing_lease_keys)
    created: dict[str, Lease] = {}

    def create(shard_id: str) -> None:
        created[shard_id] = _lease_for(graph[shard_id], initial_checkpoint)

    if position == LATEST:
        reached = _coverage(graph, leased, any)
        for shard in graph.open_shards():
            if not reached(shard.shard_id):
                create(shard.shard_id)
        # A stranded parent's only child is the merge child, which is reached already, so
        # leasing it strands nothing else.
        for parent in _stranded(graph, leased, reached):
            create(parent)
    else:
        covering = set(leased)
        while True:
            # After the first pass the open shards are wholly covered; new roots may then reach
            # one side of a merge that nothing reached before: lease the other side's roots
            # too, until nothing is stranded.
            whole = _coverage(graph, covering, all)
            starts = [s.shard_id for s in graph.open_shards() if not whole(s.shard_id)]
            starts += _stranded(graph, covering, _coverage(graph, covering, any))
            roots = [root for root in _roots_above(graph, starts, whole) if root not in covering]
            if not roots:
                break  # done, or a cyclic (malformed) listing with no root to lease
            for root in roots:
                create(root)
                covering.add(root)
    return sorted(created.values(), key=lambda lease: _sequence_order(graph[lease.lease_key]))


def _stranded(
    graph: ShardGraph, covering: AbstractSet[str], reached: Callable[[str], bool]
) -> list[str]:
    """Parents that nothing reaches of merge children without a lease that something reaches.

    The reached side's end would wait for ever for such a parent's lease (unleased_parents).
    """
    stranded: list[str] = []
    for shard_id in sorted(graph.shards):
        parents = graph.parents(shard_id)
        if shard_id in covering or len(parents) < 2 or not reached(shard_id):
            continue
        stranded.extend(parent for parent in parents if not reached(parent))
    return stranded


def _roots_above(
    graph: ShardGraph, starts: Iterable[str], whole: Callable[[str], bool]
) -> dict[str, None]:
    """The roots reached walking up from ``starts`` through parents that are not wholly
    covered (insertion-ordered, without duplicates)."""
    roots: dict[str, None] = {}
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        parents = graph.parents(current)
        if parents:
            stack.extend(p for p in parents if not whole(p))
        else:
            roots[current] = None
    return roots


def _parents_of(child: ChildShard | Shard) -> tuple[str, ...]:
    return child.parent_shards if isinstance(child, ChildShard) else child.parent_shard_ids


def child_leases(child_shards: Sequence[ChildShard] | Sequence[Shard]) -> list[Lease]:
    """Leases for the children announced when a shard ends (``ChildShards``, or the fallback
    :func:`children_from_list_shards`): unowned, at ``TRIM_HORIZON``, with their parents and
    hash range.

    Write them only when :func:`unleased_parents` is empty, create-if-absent (a merge child is
    announced by both parents), and *before* checkpointing the parent at ``SHARD_END``.
    """
    leases: list[Lease] = []
    trim_horizon = ExtendedSequenceNumber(TRIM_HORIZON)
    for child in child_shards:
        leases.append(
            _new_lease(
                child.shard_id,
                _parents_of(child),
                child.starting_hash_key,
                child.ending_hash_key,
                trim_horizon,
            )
        )
    return leases


def unleased_parents(
    child_shards: Sequence[ChildShard] | Sequence[Shard],
    lease_keys: Collection[str],
    *,
    listed: Collection[str] | None = None,
) -> list[str]:
    """The parents named by ``child_shards`` without a lease yet (children that already have
    a lease need nothing), sorted.

    While this is not empty, a shard that has reached its end must neither write its children's
    leases nor checkpoint ``SHARD_END``: keep the lease and retry later. Only a merge child can
    name a parent other than the shard ending; that parent's lease is still to come from its
    own parent's end or from :func:`initial_leases`, both older than this shard, so the wait
    ends. A parent that has been read and deleted cannot be missing here: deletion waits for
    its children's leases. With ``listed`` (the shard ids ListShards returns), parents past
    retention are not waited for.
    """
    missing = {
        parent
        for child in child_shards
        if child.shard_id not in lease_keys
        for parent in _parents_of(child)
        if parent not in lease_keys and (listed is None or parent in listed)
    }
    return sorted(missing)


def children_from_list_shards(shard_id: str, shards: Sequence[Shard]) -> list[Shard]:
    """The shards naming ``shard_id`` as parent or adjacent parent, in listing order.

    For backends whose GetRecords does not return ``ChildShards`` at shard end (moto).
    """
    return [shard for shard in shards if shard_id in shard.parent_shard_ids]


def has_started(lease: Lease) -> bool:
    """True once the lease has checkpointed past its start: a sequence number or ``SHARD_END``
    (not ``TRIM_HORIZON``, ``LATEST`` or ``AT_TIMESTAMP``)."""
    return lease.checkpoint.sequence_number not in _START_SENTINELS


def is_ready(lease: Lease, leases_by_key: Mapping[str, Lease]) -> bool:
    """True when the shard of ``lease`` may be read: every parent lease still in the table has
    checkpoint ``SHARD_END``.

    A parent without a lease does not hold the child back: it was read and deleted, it is past
    retention, or (at ``LATEST``) it was never to be read.
    """
    for parent in lease.parent_shard_ids:
        parent_lease = leases_by_key.get(parent)
        if parent_lease is not None and parent_lease.checkpoint.sequence_number != SHARD_END:
            return False
    return True


def parents_to_delete(leases: Sequence[Lease]) -> list[str]:
    """Keys of finished leases that may be deleted now, sorted.

    A lease qualifies when its checkpoint is ``SHARD_END``, none of its own parents' leases is
    still in the table (deletion goes top-down, so a child never vanishes while its parent waits
    on it), it has at least one known child (its ``child_shard_ids`` and every lease naming it
    as parent), and every such child has a lease that :func:`has_started`. A child with no lease
    yet holds the parent back. Deleting all returned keys at once is safe: they are never
    parent and child of each other.
    """
    by_key = {lease.lease_key: lease for lease in leases}
    children: dict[str, set[str]] = {}
    for lease in leases:
        for parent in lease.parent_shard_ids:
            children.setdefault(parent, set()).add(lease.lease_key)

    deletable: list[str] = []
    for lease in leases:
        if lease.checkpoint.sequence_number != SHARD_END:
            continue
        if any(parent in by_key for parent in lease.parent_shard_ids):
            continue
        kids = set(lease.child_shard_ids) | children.get(lease.lease_key, set())
        if not kids:
            continue
        if all(kid in by_key and has_started(by_key[kid]) for kid in kids):
            deletable.append(lease.lease_key)
    return sorted(deletable)
