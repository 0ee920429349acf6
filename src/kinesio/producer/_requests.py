"""Building PutRecords requests from the accumulator's queues, under the per-shard limiters.

A request takes, shard by shard in turn, the records each shard's limiter admits now —
aggregates packed from the front of the queue, or lone records — up to ``max_batch_records``
and ``max_batch_bytes``. Without aggregation a request waits while the limiters hold records
back until their tokens cover a full one (``_hold_for_a_full_request``).
"""

from __future__ import annotations

from dataclasses import dataclass

from kinesio._models import PutRecordsEntry
from kinesio.producer._accumulator import Accumulator, Packed
from kinesio.producer._pending import _Pending, _ShardQueue


@dataclass(slots=True)
class _Entry:
    """One Kinesis record of a request: an aggregate or a lone user record."""

    shard: _ShardQueue
    users: list[_Pending]
    entry: PutRecordsEntry


def _entry(users: list[_Pending], packed: Packed) -> PutRecordsEntry:
    head = users[0]
    if packed is not None:
        return PutRecordsEntry(packed.build(), head.partition_key, str(head.hash_key))
    ehk = head.explicit_hash_key
    return PutRecordsEntry(head.data, head.partition_key, None if ehk is None else str(ehk))


class RequestBuilder:
    """Builds one request at a time from ``acc``; ``building`` is the request being filled
    (its records are already out of their queues: a crash must not lose them)."""

    def __init__(self, acc: Accumulator) -> None:
        self.acc = acc
        self.settings = acc.settings
        self.building: list[_Entry] = []
        self._rr = 0

    def build(self, now: float) -> tuple[list[_Entry], float | None]:
        acc = self.acc
        ready = acc.ready(now)
        if ready is None or ready > 0:
            return [], ready
        s = self.settings
        if not (s.aggregate or s.ordered):
            hold = self._hold_for_a_full_request(now)
            if hold is not None:
                return [], hold
        entries: list[_Entry] = []
        self.building = entries
        request_bytes = 0
        wait: float | None = None
        queues = list(acc.queues.values())
        n = len(queues)
        start = self._rr
        self._rr = (self._rr + 1) % max(1, n)
        for i in range(n):
            q = queues[(start + i) % n]
            if not q.queue:
                continue
            acc.expire_heads(q, now)
            if not q.queue or (s.ordered and q.in_flight):
                continue
            if q.not_before > now:
                hint = q.not_before - now
                wait = hint if wait is None else min(wait, hint)
                continue
            while q.queue and len(entries) < s.max_batch_records:
                users, packed, nbytes = acc.pack(q)
                if request_bytes + nbytes > s.max_batch_bytes:
                    return entries, 0.0  # this request is full; the next one takes the rest
                if not q.limiter.try_acquire(nbytes, now):
                    # Wait until the shard's tokens cover its queue (or a linger passes), not
                    # just the next record: a request per token would be tiny and costly.
                    hint = max(
                        q.limiter.wait_time(nbytes, now),
                        min(s.linger, q.limiter.wait_time(q.queued_bytes, now, len(q.queue))),
                    )
                    wait = hint if wait is None else min(wait, hint)
                    break
                entry = _entry(users, packed)
                acc.take(q, users)
                entries.append(_Entry(q, users, entry))
                request_bytes += nbytes
                if s.ordered:
                    break
            if len(entries) >= s.max_batch_records:
                break
        return entries, wait

    def _hold_for_a_full_request(self, now: float) -> float | None:
        """Seconds to wait for a full request while the limiters hold records back; None to
        build one now.

        Without this, every answer woke the sender to a backlog over ``max_batch_records``, and
        each shard gave the next request only the tokens it had gained during the last round
        trip: many small requests (one costs ~2.8 ms of client CPU) paced by the sink's latency.
        A request goes once the shards' tokens cover a full one, or when waiting longer would
        not fill it: nothing is held back, or a held-back shard's bucket is nearly full (its
        tokens would go to waste). Records wait at most what the limiter makes them wait anyway.
        """
        s = self.settings
        acc = self.acc
        sendable = sendable_bytes = 0.0
        gaining = 0.0  # records per second the held-back shards add to the next request
        held_back = False
        for q in acc.queues.values():
            if not q.queue:
                continue
            acc.expire_heads(q, now)
            n = len(q.queue)
            if not n or q.not_before > now:
                continue
            size = q.queued_bytes / n
            count, rate, bucket_full = q.limiter.admissible(size, now)
            if count < n:
                if bucket_full:
                    return None
                held_back = True
                gaining += rate
            else:
                count = n
            sendable += count
            sendable_bytes += count * size
        if (
            not held_back
            or sendable >= s.max_batch_records
            or sendable_bytes >= s.max_batch_bytes
            or gaining <= 0
        ):
            return None
        return min(1.0, max(0.001, (s.max_batch_records - sendable) / gaining))
