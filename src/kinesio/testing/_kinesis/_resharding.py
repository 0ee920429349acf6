"""Resharding: SplitShard, MergeShards and UpdateShardCount, with parents and children."""

from __future__ import annotations

import itertools

from kinesio._errors import ValidationError
from kinesio.testing._kinesis._core import Core
from kinesio.testing._kinesis._limits import (
    HASH_SPACE,
    MAX_SHARDS_PER_STREAM,
)
from kinesio.testing._kinesis._shards import (
    ShardState,
    StreamState,
    even_starts,
)


class Resharding(Core):
    """Closing shards and opening their children."""

    async def update_shard_count(self, stream_name: str, target_shard_count: int) -> None:
        """UpdateShardCount with UNIFORM_SCALING: end with ``target_shard_count`` open shards.

        Done as SplitShard and MergeShards steps, so every new shard has proper parents (some
        intermediate shards are created and closed at once). The final shards split the hash
        key space evenly, like CreateStream. With ``enforce_limits`` the target may not exceed
        double, or fall below half, the open shard count (``InvalidArgumentError``). Raises
        ``ResourceNotFoundError`` for an unknown stream, ``ResourceInUseError`` when it is not
        ACTIVE.
        """
        op = "UpdateShardCount"
        lost = await self._enter(op)
        if target_shard_count < 1:
            raise ValidationError(
                f"{op}: Parameter validation failed:\nInvalid value for parameter "
                f"TargetShardCount, value: {target_shard_count}, valid min value: 1"
            )
        stream = self._active_stream(stream_name, op)
        now = self._clock()
        current = len(stream.open_shards)
        if target_shard_count > MAX_SHARDS_PER_STREAM:
            raise self._err("InvalidArgumentException", "Cannot scale beyond 10000 shards", op)
        if self.enforce_limits and target_shard_count > 2 * current:
            raise self._err(
                "InvalidArgumentException",
                f"UpdateShardCount cannot scale up over double your current open shard count. "
                f"Current open shard count: {current} Target shard count: {target_shard_count}",
                op,
            )
        if self.enforce_limits and 2 * target_shard_count < current:
            raise self._err(
                "InvalidArgumentException",
                f"UpdateShardCount cannot scale down below half your current open shard count. "
                f"Current open shard count: {current} Target shard count: {target_shard_count}",
                op,
            )
        starts = even_starts(target_shard_count)
        for shard in list(stream.open_shards):
            current_shard = shard
            for key in starts:
                if current_shard.start_key < key <= current_shard.end_key:
                    current_shard = self._split(stream, current_shard, key, now)[1]
        stream.reindex()
        bounds = [*starts, HASH_SPACE]
        for lo, hi in itertools.pairwise(bounds):
            members = [s for s in stream.open_shards if lo <= s.start_key < hi]
            merged = members[0]
            for other in members[1:]:
                merged = self._merge(stream, merged, other, now)
        stream.reindex()
        stream.updating_until = now + self.updating_delay
        self._raise_lost(lost, op)

    async def split_shard(
        self, stream_name: str, shard_id: str, new_starting_hash_key: int
    ) -> None:
        """SplitShard: close an open shard and open two children splitting its hash range at
        ``new_starting_hash_key`` (which must lie in ``(start, end]`` of the parent).

        Raises ``ResourceNotFoundError`` (unknown stream or shard), ``ResourceInUseError``
        (stream not ACTIVE) and ``InvalidArgumentError`` (closed shard, key out of range).
        """
        op = "SplitShard"
        lost = await self._enter(op)
        stream = self._active_stream(stream_name, op)
        shard = self._shard(stream, shard_id, op)
        if not shard.is_open:
            raise self._err("InvalidArgumentException", f"Shard {shard_id} is not open", op)
        if not shard.start_key < new_starting_hash_key <= shard.end_key:
            raise self._err(
                "InvalidArgumentException",
                f"NewStartingHashKey {new_starting_hash_key} must be greater than the "
                f"starting hash key {shard.start_key} of {shard_id} and at most its ending "
                f"hash key {shard.end_key}",
                op,
            )
        now = self._clock()
        self._split(stream, shard, new_starting_hash_key, now)
        stream.reindex()
        stream.updating_until = now + self.updating_delay
        self._raise_lost(lost, op)

    async def merge_shards(self, stream_name: str, shard_id: str, adjacent_shard_id: str) -> None:
        """MergeShards: close two open shards with adjacent hash ranges and open one child
        (``parent_shard_id`` = ``shard_id``, ``adjacent_parent_shard_id`` =
        ``adjacent_shard_id``) covering both.

        Raises ``ResourceNotFoundError`` (unknown stream or shard), ``ResourceInUseError``
        (stream not ACTIVE) and ``InvalidArgumentError`` (closed shards, not adjacent).
        """
        op = "MergeShards"
        lost = await self._enter(op)
        stream = self._active_stream(stream_name, op)
        first = self._shard(stream, shard_id, op)
        second = self._shard(stream, adjacent_shard_id, op)
        for s in (first, second):
            if not s.is_open:
                raise self._err("InvalidArgumentException", f"Shard {s.shard_id} is not open", op)
        if first is second or not (
            first.end_key + 1 == second.start_key or second.end_key + 1 == first.start_key
        ):
            raise self._err(
                "InvalidArgumentException",
                f"Shards {shard_id} and {adjacent_shard_id} are not adjacent",
                op,
            )
        now = self._clock()
        self._merge(stream, first, second, now)
        stream.reindex()
        stream.updating_until = now + self.updating_delay
        self._raise_lost(lost, op)

    def _close(self, stream: StreamState, shard: ShardState, now: float) -> None:
        shard.end_seq = self._next_seq(stream, shard.shard_id)
        shard.closed_at = self._wall(now)
        shard.notify()

    def _split(
        self, stream: StreamState, shard: ShardState, key: int, now: float
    ) -> tuple[ShardState, ShardState]:
        self._close(stream, shard, now)
        low = self._new_shard(stream, shard.start_key, key - 1, shard.shard_id, None, now)
        high = self._new_shard(stream, key, shard.end_key, shard.shard_id, None, now)
        shard.children = [low.shard_id, high.shard_id]
        stream.reindex()
        return low, high

    def _merge(
        self, stream: StreamState, first: ShardState, second: ShardState, now: float
    ) -> ShardState:
        self._close(stream, first, now)
        self._close(stream, second, now)
        child = self._new_shard(
            stream,
            min(first.start_key, second.start_key),
            max(first.end_key, second.end_key),
            first.shard_id,
            second.shard_id,
            now,
        )
        first.children = [child.shard_id]
        second.children = [child.shard_id]
        stream.reindex()
        return child
