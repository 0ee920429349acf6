"""An in-memory Kinesis Data Streams, faithful to the service's limits (SPEC §1).

:class:`InMemoryKinesis` implements :class:`kinesio._kinesis.KinesisAPI` and
:class:`kinesio._kinesis.KinesisAdminAPI` in plain Python, so producer and consumer tests run in
milliseconds and see what the real service would do: per-shard write and read throttling,
validation errors, expiring shard iterators, resharding with ``ChildShards`` at the end of a
closed shard, enhanced fan-out subscriptions, and injected faults. Errors are the kinesio errors
:class:`kinesio._aws.AioKinesis` raises for the same AWS error codes.

Time comes from ``clock`` (seconds, monotonic): pass a callable you advance by hand to test
throttling, iterator expiry and subscription renewal without sleeping::

    now = [0.0]
    kinesis = InMemoryKinesis(clock=lambda: now[0])
    await kinesis.create_stream("orders", 2)
    ...
    now[0] += 1.0  # one second later: the write buckets are full again

Its files name its parts: ``_limits`` (the service limits and request shapes), ``_shards``
(streams, shards, sequence numbers and token buckets), ``_faults`` (injected faults), ``_core``
(configuration, fault plumbing and lookups), ``_positions`` (starting positions, iterators and
taking records), then one file per group of calls: ``_streams``, ``_reads``, ``_writes``,
``_fanout`` and ``_resharding``. :class:`InMemoryKinesis` is the sum of those groups.
"""

from __future__ import annotations

from kinesio.testing._kinesis._fanout import FanOut
from kinesio.testing._kinesis._faults import CONNECTION_ERROR, Fault
from kinesio.testing._kinesis._reads import Reads
from kinesio.testing._kinesis._resharding import Resharding
from kinesio.testing._kinesis._shards import ShardStats
from kinesio.testing._kinesis._streams import Streams
from kinesio.testing._kinesis._writes import Writes

__all__ = ["CONNECTION_ERROR", "Fault", "InMemoryKinesis", "ShardStats"]


class InMemoryKinesis(Streams, Reads, Writes, FanOut, Resharding):
    """An asyncio fake of Kinesis Data Streams holding everything in memory.

    Implements every call of ``KinesisAPI`` and ``KinesisAdminAPI`` with the same signatures,
    results and kinesio errors as :class:`kinesio._aws.AioKinesis`, plus helpers for tests
    (:meth:`records`, :meth:`stats`, :attr:`calls`, :meth:`inject`, :meth:`trim`, ...).

    Arguments (times in seconds of ``clock``):

    - ``enforce_limits``: per-shard write limits (1000 records/s and 1 MiB/s, token buckets
      holding one second's worth), read limits (5 GetRecords calls/s and 2 MiB/s per shard),
      the fan-out rate (2 MiB/s per consumer and shard) and the UpdateShardCount scaling
      rules. Validation (sizes, counts, hash keys) is always on.
    - ``clock``: monotonic time source; arrival timestamps are wall time at construction plus
      the clock's progress.
    - ``region``, ``account_id``: used in ARNs and error messages.
    - ``iterator_ttl``: shard iterators older than this raise ``ExpiredIteratorError``.
    - ``creating_delay``: a new stream stays CREATING this long (data calls then raise
      ``ResourceNotFoundError``, ListShards and resharding ``ResourceInUseError``).
    - ``updating_delay``: a stream stays UPDATING this long after a reshard (resharding again
      meanwhile raises ``ResourceInUseError``; reads and writes go on).
    - ``consumer_creating_delay``: a registered fan-out consumer stays CREATING this long
      (SubscribeToShard raises ``ResourceInUseError`` meanwhile).
    - ``child_shards_at_end``: ``False`` imitates moto: a drained closed shard keeps returning an
      iterator and no records, and never announces its children.
    - ``subscription_ttl``: how long a SubscribeToShard subscription lasts before it ends.
    - ``heartbeat_interval``: a subscription sends an empty event after this long without
      records (``None``: never).
    - ``poll_interval``: real seconds a waiting subscription sleeps between looks at the clock
      (new records wake it at once).
    - ``seed``: seed of the random generator deciding :class:`Fault` probabilities.
    """

    async def aclose(self) -> None:
        """Nothing to release: streams and records stay for inspection."""
