"""GetRecords polling: one shard read with shared throughput (see :mod:`._fetcher`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from kinesio._errors import ExpiredIteratorError, KinesioError, ResourceNotFoundError
from kinesio.consumer import _fetcher
from kinesio.consumer._fetcher import Backoff, FetcherBase, FetchOptions

if TYPE_CHECKING:
    from typing import Unpack

    from kinesio._config import Polling
    from kinesio._kinesis import KinesisAPI
    from kinesio._models import ExtendedSequenceNumber, Shard

__all__ = ["PollingFetcher"]


class PollingFetcher(FetcherBase):
    """Reads one shard with GetRecords (shared throughput: 5 calls/s and 2 MiB/s per shard).

    Calls GetRecords for up to ``polling.max_records`` records; after a call it waits
    ``polling.idle_time`` seconds if it found the shard caught up (no records, or
    ``MillisBehindLatest`` 0), else ``polling.catch_up_interval``. Throttled and failed calls
    (throttling, service and connection errors) are retried after an exponential backoff
    with jitter (0.5 s doubling to 10 s); an expired iterator is replaced by one after the
    last record read. Non-retriable errors stop the fetcher; next_batch() then raises them.

    At most ``max_prefetch_records`` user records and ``max_prefetch_bytes`` bytes of user
    data wait in the queue before the next GetRecords (one response may exceed the bytes
    bound; KPL aggregates may exceed the records bound by one response).

    ``start``, ``initial_timestamp``, ``clock`` and the bounds are as for
    :class:`~kinesio.consumer._fetcher.FetcherBase`. ``events`` receives a ``RecordsFetched``
    per GetRecords answer and a ``Throttled`` per throttled call.
    """

    def __init__(
        self,
        kinesis: KinesisAPI,
        stream_name: str,
        shard: Shard,
        start: ExtendedSequenceNumber,
        *,
        polling: Polling,
        **options: Unpack[FetchOptions],
    ) -> None:
        super().__init__(kinesis, stream_name, shard, start, **options)
        self._polling = polling
        # An idle poll finds nothing for idle_time seconds: wait no longer than that.
        self._heartbeat = min(max(polling.idle_time, 0.05), self._heartbeat)

    async def _run(self) -> None:
        backoff = Backoff()
        iterator: str | None = None
        issued = 0.0
        expired_in_a_row = 0
        while True:
            await self._queue.wait_for_room()
            if iterator is None or self._clock() - issued >= _fetcher.ITERATOR_REFRESH_AGE:
                try:
                    iterator = await self._kinesis.get_shard_iterator(
                        self._stream_name, self.shard_id, self._resume_position()
                    )
                except ResourceNotFoundError as exc:
                    await self._end_if_gone(exc)
                    return
                except KinesioError as exc:
                    if not exc.retriable:
                        raise
                    self._throttled(exc, "GetShardIterator")
                    await self._back_off(backoff, exc)
                    continue
                issued = self._clock()
            # Closure must be known before the read that is to prove the shard drained.
            known_closed = self._known_closed
            limit = min(self._polling.max_records, self._queue.room_records())
            try:
                out = await self._kinesis.get_records(iterator, limit=limit)
            except ExpiredIteratorError as exc:
                iterator = None
                expired_in_a_row += 1
                if expired_in_a_row > 1:
                    await self._back_off(backoff, exc)
                continue
            except ResourceNotFoundError as exc:
                await self._end_if_gone(exc)
                return
            except KinesioError as exc:
                if not exc.retriable:
                    raise
                self._throttled(exc, "GetRecords")
                await self._back_off(backoff, exc)
                continue
            backoff.reset()
            expired_in_a_row = 0
            records = self._user_records(out.records)
            self._fetched("GetRecords", len(out.records), records, out.millis_behind_latest)
            if out.next_shard_iterator is None:
                await self._finish(records, out.millis_behind_latest, out.child_shards)
                return
            iterator, issued = out.next_shard_iterator, self._clock()
            self._deliver(records, out.millis_behind_latest)
            drained = not out.records and not out.millis_behind_latest
            if drained:
                if known_closed:
                    await self._finish([], out.millis_behind_latest, [])
                    return
                await self._check_closed()
            # A full response means more is waiting, whatever MillisBehindLatest says (it
            # counts milliseconds: records younger than one can read as 0 behind).
            caught_up = not out.records or (
                out.millis_behind_latest == 0 and len(out.records) < limit
            )
            await asyncio.sleep(
                self._polling.idle_time if caught_up else self._polling.catch_up_interval
            )
