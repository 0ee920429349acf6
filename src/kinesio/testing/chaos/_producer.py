"""The producer under fire: every record put is delivered, in per-key order, or failed
through its future and the error hook; none vanishes."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kinesio._errors import KinesioError, ProducerClosedError
from kinesio._models import ExtendedSequenceNumber, ProducerRecord, PutResult
from kinesio.producer import AsyncProducer
from kinesio.producer._producer import ErrorHook
from kinesio.testing.chaos._ledger import RecordId, payload

# -- the producer under fire -------------------------------------------------------------------


@dataclass
class ProducerVerdict:
    """What a producer run under fire proved: every record put was delivered or reported."""

    produced: int = 0
    delivered: int = 0
    reported_failed: int = 0
    vanished: list[str] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    #: The records whose future says delivered: compare with what the stream holds.
    delivered_records: set[RecordId] = field(default_factory=set)
    closed_mid_stream: bool = False
    ordered: bool = False

    @property
    def ok(self) -> bool:
        return not self.vanished and not self.order_violations

    def rows(self) -> list[tuple[str, str, str]]:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "-"
        return [
            ("records put (accepted)", str(self.produced), ""),
            ("delivered", str(self.delivered), ""),
            (f"reported failed (future + on_error): {failed}", str(self.reported_failed), ""),
            ("vanished", str(len(self.vanished)), "FAIL" if self.vanished else "ok"),
            (
                "order violations" + ("" if self.ordered else " (not ordered: not checked)"),
                str(len(self.order_violations)),
                "FAIL" if self.order_violations else "ok",
            ),
        ]


async def producer_under_fire(
    start_producer: Callable[[ErrorHook], Awaitable[AsyncProducer]],
    *,
    records: int,
    keys: int,
    ordered: bool,
    close_after: int | None = None,
    close_timeout: float = 0.5,
    during: Callable[[int], object] | None = None,
    size: int = 0,
    seed: int = 0,
) -> ProducerVerdict:
    """Put ``records`` records over ``keys`` keys (``(key, n)`` payloads) and check that each is
    delivered (in put order per key when ``ordered``) or failed through its future and
    reported once to the error hook.

    ``start_producer(on_error)`` returns (awaitably) a started :class:`kinesio.AsyncProducer`
    that passes failures to ``on_error``. ``during(i)`` is called before the
    i-th put (to inject faults, reset connections...; it may return an awaitable). With
    ``close_after``, the producer is closed (``aclose(close_timeout)``) concurrently with the
    puts once that many records were put; puts refused because it closed are not counted as
    produced. Otherwise it is closed after the last put, without a timeout.
    """
    v = ProducerVerdict(ordered=ordered, closed_mid_stream=close_after is not None)
    reported: Counter[bytes] = Counter()

    def on_error(record: ProducerRecord, _error: KinesioError) -> None:
        reported[record.data] += 1

    producer = await start_producer(on_error)
    rng = random.Random(seed)
    counters = [0] * keys
    futures: list[tuple[RecordId, asyncio.Future[PutResult]]] = []
    closing: asyncio.Task[None] | None = None
    for i in range(records):
        if during is not None:
            result = during(i)
            if asyncio.iscoroutine(result):
                await result
        if close_after is not None and i == close_after:
            closing = asyncio.create_task(producer.aclose(timeout=close_timeout))
            await asyncio.sleep(0)  # let it start closing while puts go on
        k = rng.randrange(keys)
        key, n = f"k{k}", counters[k]
        try:
            fut = await producer.put(payload(key, n, size), partition_key=key)
        except ProducerClosedError:
            if closing is None:
                raise
            continue
        counters[k] += 1
        futures.append(((key, n), fut))
        if i % 64 == 0:
            await asyncio.sleep(0)
    if closing is not None:
        await closing
    await producer.aclose()
    v.produced = len(futures)
    delivered: dict[str, list[tuple[int, PutResult]]] = defaultdict(list)
    for (key, n), fut in futures:
        data = payload(key, n, size)
        if not fut.done():
            v.vanished.append(f"{key}:{n}: its future is still pending after close")
        elif fut.cancelled():
            v.vanished.append(f"{key}:{n}: its future was cancelled")
        elif fut.exception() is not None:
            v.reported_failed += 1
            v.failures[type(fut.exception()).__name__] += 1
            if reported[data] != 1:
                v.vanished.append(
                    f"{key}:{n}: failed ({fut.exception()!r}) but reported to on_error "
                    f"{reported[data]} times"
                )
        else:
            v.delivered += 1
            v.delivered_records.add((key, n))
            delivered[key].append((n, fut.result()))
            if reported[data]:
                v.vanished.append(f"{key}:{n}: delivered but also reported to on_error")
    if ordered:
        for key, results in delivered.items():
            results.sort(key=lambda x: x[0])
            for (n0, r0), (n1, r1) in itertools.pairwise(results):
                p0 = ExtendedSequenceNumber(r0.sequence_number, r0.sub_sequence_number)
                p1 = ExtendedSequenceNumber(r1.sequence_number, r1.sub_sequence_number)
                if r0.shard_id == r1.shard_id and not p0 < p1:
                    v.order_violations.append(
                        f"{key}:{n1} was written at {r1.sequence_number}/"
                        f"{r1.sub_sequence_number}, not after {key}:{n0}"
                    )
    return v
