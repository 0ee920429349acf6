"""Predicting the shard of a hash key from ListShards' hash ranges."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from kinesio._models import Shard


class ShardMap:
    """The open shards of a stream, searchable by hash key in O(log n).

    Closed shards are remembered by id (so that a result naming one can be understood) but
    never predicted: Kinesis only writes to open shards.
    """

    __slots__ = ("_by_id", "_ends", "_open", "_starts")

    def __init__(self, shards: Iterable[Shard]) -> None:
        self._by_id = {s.shard_id: s for s in shards}
        self._open = sorted(
            (s for s in self._by_id.values() if s.is_open), key=lambda s: s.starting_hash_key
        )
        self._starts = [s.starting_hash_key for s in self._open]
        self._ends = [s.ending_hash_key for s in self._open]

    def __len__(self) -> int:
        return len(self._open)

    @property
    def open_shards(self) -> list[Shard]:
        return list(self._open)

    def get(self, shard_id: str) -> Shard | None:
        return self._by_id.get(shard_id)

    def shard_for(self, hash_key: int) -> Shard | None:
        """The open shard whose range holds ``hash_key``; None if no open shard does."""
        i = bisect.bisect_right(self._starts, hash_key) - 1
        if i >= 0 and hash_key <= self._ends[i]:
            return self._open[i]
        return None
