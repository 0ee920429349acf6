"""The sender: PutRecords requests sent, their results read, failed records retried.

One task (``run``) turns the accumulator's queues into requests (built by ``_requests.py``
under the per-shard limiters) and starts a task per request, up to ``max_in_flight``. A
request's answer resolves futures, or puts the failed records back at the front of their
shard's queue with a backoff, until their TTL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from kinesio._errors import KinesioError, ProducerClosedError
from kinesio._kinesis import KinesisAPI
from kinesio._models import PutRecordsResultEntry, PutResult
from kinesio.events import Emitter, PutRecordsSent, Throttled
from kinesio.producer._accumulator import Accumulator
from kinesio.producer._autosplit import AutoSplitter
from kinesio.producer._pending import RELEASED, _Pending, _ShardQueue
from kinesio.producer._requests import RequestBuilder, _Entry
from kinesio.producer._tally import Tally, tally_of

logger = logging.getLogger("kinesio.producer")

THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"}
)


class Sender:
    """Sends what the accumulator holds; owns the request tasks (cancelled by the producer)."""

    def __init__(
        self,
        acc: Accumulator,
        stream_name: str,
        events: Emitter,
        kinesis: Callable[[], KinesisAPI],
        refresh_shard_map: Callable[..., Awaitable[None]],
    ) -> None:
        self.acc = acc
        self.settings = acc.settings
        self.stream_name = stream_name
        self.events = events
        self.kinesis = kinesis
        self.refresh_shard_map = refresh_shard_map
        self.autosplit: AutoSplitter | None = None
        self.max_in_flight = 1
        self.in_flight = 0
        self.in_flight_by_epoch: Counter[int] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        # Requests whose task was cancelled or crashed: their records may be neither resolved
        # nor queued again, and aclose() fails whatever of them is still unresolved.
        self.orphans: list[list[_Entry]] = []
        self.requests = RequestBuilder(acc)
        self._rng = random.Random()

    async def run(self) -> None:
        acc = self.acc
        while True:
            acc.wake.clear()
            timeout = self.dispatch(acc.clock())
            if timeout is None:
                await acc.wake.wait()
            elif timeout > 0:
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await acc.wake.wait()

    def dispatch(self, now: float) -> float | None:
        """Start as many requests as allowed; return seconds until it is worth looking again."""
        wait: float | None = None
        acc = self.acc
        while self.in_flight < self.max_in_flight:
            if self.settings.ordered and any(
                n for epoch, n in self.in_flight_by_epoch.items() if epoch < acc.map_epoch
            ):
                break  # records sent under the old shard map must land before newer ones go
            try:
                entries, hint = self.requests.build(now)
            except BaseException:
                # A bug, not an AWS error: the records already taken for this request are in
                # no queue and no request; keep them for the producer to fail, never to lose.
                self.orphans.append(self.requests.building)
                raise
            if hint is not None:
                wait = hint if wait is None else min(wait, hint)
            if not entries:
                break
            self.in_flight += 1
            self.in_flight_by_epoch[acc.map_epoch] += 1
            for e in entries:
                e.shard.in_flight += 1
            task = asyncio.create_task(self._send(entries, acc.map_epoch))
            self.tasks.add(task)
            task.add_done_callback(functools.partial(self._request_done, entries))
        return wait

    def _request_done(self, entries: list[_Entry], task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            self.orphans.append(entries)

    def orphaned(self) -> list[_Pending]:
        """The records of cancelled or crashed requests that have no result yet."""
        return [
            p
            for entries in self.orphans
            for e in entries
            for p in e.users
            if p.generation != RELEASED
        ]

    async def _send(self, entries: list[_Entry], epoch: int) -> None:
        acc = self.acc
        m = acc.metrics
        m.put_records_calls += 1
        m.batch_size.record_value(len(entries))
        tallies: dict[str, Tally] | None = {} if self.events.enabled else None
        error: str | None = None
        sent = answered = acc.clock()
        try:
            try:
                try:
                    results = await self.kinesis().put_records(
                        self.stream_name, [e.entry for e in entries]
                    )
                finally:
                    answered = acc.clock()
            except KinesioError as exc:
                error = getattr(exc, "code", "") or type(exc).__name__
                _tally_failed(tallies, entries, error)
                if exc.retriable:
                    logger.debug("PutRecords failed (%s); retrying %d records", exc, len(entries))
                    if error in THROTTLE_CODES:
                        self._emit_whole_call_throttle(entries)
                    now = acc.clock()
                    for e in entries:
                        self._backoff(e.shard, now)
                        self._retry(e.users, error, now)
                else:
                    for e in entries:
                        acc.fail_many(e.users, exc)
                return
            except asyncio.CancelledError:
                tallies = None  # closing: the records' fate is reported through their futures
                closed = ProducerClosedError(
                    "the producer was closed while this record's PutRecords call was in flight; "
                    "it may or may not have been written"
                )
                for e in entries:
                    acc.fail_many(e.users, closed)
                raise
            except Exception as exc:
                logger.exception("unexpected error from PutRecords")
                error = type(exc).__name__
                _tally_failed(tallies, entries, error)
                err = KinesioError(f"unexpected error from PutRecords: {exc!r}")
                err.__cause__ = exc
                for e in entries:
                    acc.fail_many(e.users, err)
                return
            if len(results) != len(entries):
                error = "MissingResult"
                _tally_failed(tallies, entries, error)
                err = KinesioError(
                    f"PutRecords answered {len(results)} results for {len(entries)} records"
                )
                for e in entries:
                    acc.fail_many(e.users, err)
                return
            await self._handle_results(entries, results, epoch, tallies, sent)
        finally:
            self.in_flight -= 1
            self.in_flight_by_epoch[epoch] -= 1
            if not self.in_flight_by_epoch[epoch]:
                del self.in_flight_by_epoch[epoch]
            for e in entries:
                e.shard.in_flight -= 1
            acc.wake.set()
            if tallies is not None:
                self.events.emit(
                    PutRecordsSent(
                        duration_ms=(answered - sent) * 1000.0,
                        error=error,
                        shards=tuple(t.freeze() for t in tallies.values()),
                    )
                )

    def _emit_whole_call_throttle(self, entries: list[_Entry]) -> None:
        per_shard = Counter(e.shard.shard_id for e in entries)
        for shard_id, records in per_shard.items():
            self.events.emit(Throttled(operation="PutRecords", shard_id=shard_id, records=records))

    async def _handle_results(
        self,
        entries: list[_Entry],
        results: list[PutRecordsResultEntry],
        epoch: int,
        tallies: dict[str, Tally] | None = None,
        sent: float = 0.0,
    ) -> None:
        acc = self.acc
        now = acc.clock()
        m = acc.metrics
        throttled: Counter[_ShardQueue] = Counter()
        failed: set[_ShardQueue] = set()
        misplaced: list[tuple[_Entry, PutRecordsResultEntry]] = []
        delivered: list[list[_Pending]] = []
        stale_map = False
        for e, r in zip(entries, results, strict=True):
            shard_id, sequence_number = r.shard_id, r.sequence_number
            if r.error_code is None and shard_id is not None and sequence_number is not None:
                m.kinesis_records_put += 1
                users = e.users
                if shard_id != e.shard.shard_id:
                    stale_map = True
                    if len(users) > 1:
                        # The aggregate was routed by its first record's hash key to a shard we
                        # did not predict: its other records may lie outside that shard's range,
                        # and consumers drop those. Decide per record once the map is fresh.
                        misplaced.append((e, r))
                        if tallies is not None:
                            tally = tally_of(tallies, shard_id)
                            tally.kinesis_records_put += 1
                            tally.kinesis_bytes_put += len(e.entry.data)
                        continue
                if len(users) == 1:
                    f = users[0].future
                    if f is not None and not f.done():
                        f.set_result(PutResult(shard_id, sequence_number, 0, users[0].attempts))
                else:
                    for i, p in enumerate(users):
                        f = p.future
                        if f is not None and not f.done():
                            f.set_result(PutResult(shard_id, sequence_number, i, p.attempts))
                delivered.append(users)
                if tallies is not None:
                    tally = tally_of(tallies, shard_id)
                    tally.kinesis_records_put += 1
                    tally.kinesis_bytes_put += len(e.entry.data)
                    for p in users:
                        tally.delivered(p, sent, now)
            else:
                code = r.error_code or "MissingResult"
                throttle = code in THROTTLE_CODES
                if throttle:
                    m.throttled += 1
                    throttled[e.shard] += 1
                failed.add(e.shard)
                if tallies is not None:
                    tally_of(tallies, e.shard.shard_id).failed(len(e.users), code, throttle)
                self._retry(e.users, code, now)
        # Results first, then the backlog: the futures' callbacks are scheduled ahead of a
        # flush() that the release may wake.
        self._delivered(delivered, now)
        if self.autosplit is not None:
            self._count_for_autosplit(entries, results)
        for q in failed:
            if q in throttled:
                q.limiter.on_throttled()
                q.rate_changed()
                self.events.emit(
                    Throttled(operation="PutRecords", shard_id=q.shard_id, records=throttled[q])
                )
            self._backoff(q, now)
        for e in entries:
            if e.shard not in failed:
                e.shard.backoff_level = 0
                e.shard.limiter.on_success()
        if stale_map:
            logger.debug("records landed on unexpected shards: refreshing the shard map")
            try:
                await self.refresh_shard_map(seen_epoch=epoch)
            except KinesioError as exc:
                logger.warning("shard map refresh failed: %s", exc)
        if misplaced:
            self._settle_misplaced(misplaced, tallies, sent)

    def _settle_misplaced(
        self,
        misplaced: list[tuple[_Entry, PutRecordsResultEntry]],
        tallies: dict[str, Tally] | None,
        sent: float,
    ) -> None:
        """Per record of aggregates that landed on an unexpected shard: delivered if the
        (refreshed) shard's range holds its hash key, else sent again."""
        now = self.acc.clock()
        delivered: list[list[_Pending]] = []
        for e, r in misplaced:
            assert r.shard_id is not None
            assert r.sequence_number is not None
            actual = self.acc.map.get(r.shard_id)
            landed: list[_Pending] = []
            retry: list[_Pending] = []
            for i, p in enumerate(e.users):
                if actual is not None and actual.contains(p.hash_key):
                    f = p.future
                    if f is not None and not f.done():
                        f.set_result(PutResult(r.shard_id, r.sequence_number, i, p.attempts))
                    landed.append(p)
                    if tallies is not None:
                        tally_of(tallies, r.shard_id).delivered(p, sent, now)
                else:
                    retry.append(p)
            delivered.append(landed)
            if tallies is not None:
                tally_of(tallies, r.shard_id).user_records_failed += len(retry)
            if retry:
                self._retry(retry, "WrongShard", now)
        self._delivered(delivered, now)

    def _delivered(self, delivered: list[list[_Pending]], now: float) -> None:
        """Count delivered records (their futures already resolved) and release them."""
        m = self.acc.metrics
        latency, attempts = m.latency_counts, m.attempts_counts
        records = nbytes = 0
        for users in delivered:
            records += len(users)
            for p in users:
                ms = int((now - p.created) * 1000.0) or 1
                latency[ms] = latency.get(ms, 0) + 1
                n = p.attempts
                attempts[n] = attempts.get(n, 0) + 1
                nbytes += len(p.data)
        m.user_records_put += records
        m.user_bytes_put += nbytes
        release = self.acc.release
        for users in delivered:
            release(users)

    def _count_for_autosplit(
        self, entries: list[_Entry], results: list[PutRecordsResultEntry]
    ) -> None:
        """Feed the auto-split window: one call per Kinesis record, never per user record."""
        assert self.autosplit is not None
        add = self.autosplit.counts.add
        for e, r in zip(entries, results, strict=True):
            if r.error_code is None:
                entry = e.entry
                nbytes = len(entry.data) + len(entry.partition_key)
                add(e.shard.shard_id, e.users[0].hash_key, len(e.users), nbytes, throttled=False)
            elif r.error_code in THROTTLE_CODES:
                add(e.shard.shard_id, e.users[0].hash_key, len(e.users), 0, throttled=True)

    def _retry(self, users: Sequence[_Pending], code: str, now: float) -> None:
        """Put failed records back at the front of their (re-predicted) shard queues."""
        acc = self.acc
        max_attempts, ttl = self.settings.max_attempts, self.settings.record_ttl
        for p in reversed(users):
            p.last_error = code
            if now >= p.created + ttl or (max_attempts is not None and p.attempts >= max_attempts):
                acc.fail_many([p], acc.expired(p))
            elif acc.closed:
                acc.fail_many([p], ProducerClosedError("the producer is closed"))
            else:
                acc.metrics.retries += 1
                acc.enqueue(p, front=True)

    def _backoff(self, q: _ShardQueue, now: float) -> None:
        s = self.settings
        delay = min(s.max_retry_backoff, s.retry_backoff * (2**q.backoff_level))
        q.backoff_level = min(q.backoff_level + 1, 16)
        q.not_before = now + delay * (0.5 + self._rng.random() / 2)


def _tally_failed(tallies: dict[str, Tally] | None, entries: list[_Entry], code: str) -> None:
    if tallies is not None:
        throttle = code in THROTTLE_CODES
        for e in entries:
            tally_of(tallies, e.shard.shard_id).failed(len(e.users), code, throttle)
