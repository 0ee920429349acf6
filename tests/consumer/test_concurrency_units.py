"""The pieces of concurrency inside a shard: the finished-prefix rule (properties) and the keyed
runner (order per key, bounds, retries, dead letters, failures)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinesio._errors import ValidationError
from kinesio._models import Record
from kinesio.consumer._concurrency import Frontier, HandlerPolicy, KeyedRunner
from kinesio.events import DiagnosticEvent, Emitter, HandlerRetried, RecordDeadLettered


def rec(n: int, key: str = "k", sub: int = 0) -> Record:
    return Record(
        data=str(n).encode(),
        partition_key=key,
        sequence_number=str(1000 + n),
        sub_sequence_number=sub,
        shard_id="shardId-000000000000",
    )


# -- the finished-prefix rule -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=60))
def test_the_frontier_never_passes_an_unfinished_record(data: st.DataObject, n: int) -> None:
    frontier = Frontier()
    slots = [frontier.add(rec(i)) for i in range(n)]
    order = data.draw(st.permutations(range(n)))
    stop = data.draw(st.integers(min_value=0, max_value=n))  # records that never finish
    finished: set[int] = set()
    reached = -1
    grown = 0
    for i in order[:stop]:
        frontier.finish(slots[i])
        finished.add(i)
        if data.draw(st.booleans()):
            last, count = frontier.advance()
            grown += count
            if last is not None:
                reached = int(last.data)
        # everything up to the reported record has finished
        assert all(j in finished for j in range(reached + 1))
    last, count = frontier.advance()
    grown += count
    if last is not None:
        reached = int(last.data)
    prefix = 0
    while prefix in finished:
        prefix += 1
    # the frontier reaches exactly the end of the finished prefix, counting each record once
    assert reached == prefix - 1
    assert grown == prefix
    assert len(frontier) == n - prefix


def test_the_frontier_keeps_aggregated_positions() -> None:
    frontier = Frontier()
    a, b = frontier.add(rec(1, sub=0)), frontier.add(rec(1, sub=1))
    frontier.finish(a)
    last, count = frontier.advance()
    assert last is not None
    assert (last.sequence_number, last.sub_sequence_number) == ("1001", 0)
    assert count == 1
    frontier.finish(b)
    last, _ = frontier.advance()
    assert last is not None
    assert last.sub_sequence_number == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrency": 0},
        {"max_in_flight_records": 0},
        {"max_in_flight_bytes": 0},
        {"retries": -1},
        {"retry_backoff": -0.1},
        {"retry_backoff": 2.0, "max_retry_backoff": 1.0},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        HandlerPolicy(**kwargs)  # type: ignore[arg-type]


# -- the keyed runner ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[DiagnosticEvent] = []

    def __call__(self, event: DiagnosticEvent) -> None:
        self.events.append(event)


async def run_all(runner: KeyedRunner, records: list[Record]) -> None:
    for r in records:
        await runner.submit(r)
    await runner.drain()


async def test_records_of_one_key_run_in_order_and_keys_run_concurrently() -> None:
    rng = random.Random(7)
    running = 0
    peak = 0
    order: dict[str, list[int]] = defaultdict(list)

    async def handler(record: Record) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(rng.random() * 0.004)
        order[record.partition_key].append(int(record.data))
        running -= 1

    records = [rec(i, key=f"k{rng.randrange(20)}") for i in range(400)]
    runner = KeyedRunner(
        handler, HandlerPolicy(max_concurrency=8), executor=None, events=Emitter(None)
    )
    await run_all(runner, records)
    expected: dict[str, list[int]] = defaultdict(list)
    for r in records:
        expected[r.partition_key].append(int(r.data))
    assert order == expected
    assert 1 < peak <= 8
    last, count = runner.frontier.advance()
    assert last is records[-1]
    assert count == 400


async def test_a_concurrency_of_one_keeps_shard_order_across_keys() -> None:
    seen: list[int] = []

    async def handler(record: Record) -> None:
        await asyncio.sleep(0)
        seen.append(int(record.data))

    records = [rec(i, key=f"k{i % 5}") for i in range(50)]
    runner = KeyedRunner(handler, HandlerPolicy(retries=1), executor=None, events=Emitter(None))
    await run_all(runner, records)
    assert seen == list(range(50))


async def test_admission_waits_for_room() -> None:
    release = asyncio.Event()

    async def handler(record: Record) -> None:
        await release.wait()

    policy = HandlerPolicy(max_concurrency=4, max_in_flight_records=3)
    runner = KeyedRunner(handler, policy, executor=None, events=Emitter(None))
    for i in range(3):
        await runner.submit(rec(i, key=str(i)))
    fourth = asyncio.create_task(runner.submit(rec(3, key="3")))
    await asyncio.sleep(0.02)
    assert not fourth.done()
    assert runner.in_flight == 3
    release.set()
    await fourth
    await runner.drain()
    assert runner.in_flight == 0


async def test_a_record_bigger_than_the_byte_bound_is_admitted_alone() -> None:
    handled: list[int] = []

    async def handler(record: Record) -> None:
        handled.append(len(record.data))

    policy = HandlerPolicy(max_concurrency=2, max_in_flight_bytes=4)
    runner = KeyedRunner(handler, policy, executor=None, events=Emitter(None))
    big = Record(data=b"x" * 100, partition_key="a", sequence_number="1", shard_id="s")
    await runner.submit(big)
    await runner.drain()
    assert handled == [100]


async def test_retries_then_success_emit_events_and_keep_order() -> None:
    calls: dict[int, int] = defaultdict(int)
    seen: list[int] = []

    async def handler(record: Record) -> None:
        n = int(record.data)
        calls[n] += 1
        if n == 3 and calls[n] < 3:
            raise ConnectionError("flaky")
        seen.append(n)

    events = Recorder()
    policy = HandlerPolicy(retries=2, retry_backoff=0.001)
    runner = KeyedRunner(handler, policy, executor=None, events=Emitter(events))
    await run_all(runner, [rec(i) for i in range(6)])
    assert seen == list(range(6))
    retried = [e for e in events.events if isinstance(e, HandlerRetried)]
    assert [(e.sequence_number, e.attempt, e.error_type) for e in retried] == [
        ("1003", 1, "ConnectionError"),
        ("1003", 2, "ConnectionError"),
    ]


async def test_a_record_that_still_fails_goes_to_the_dead_letter_hook_and_counts_done() -> None:
    dead: list[tuple[int, str, int]] = []
    seen: list[int] = []

    def handler(record: Record) -> None:
        if int(record.data) == 2:
            raise ValueError("poison")
        seen.append(int(record.data))

    async def dead_letter(record: Record, error: BaseException, attempts: int) -> None:
        dead.append((int(record.data), str(error), attempts))

    events = Recorder()
    policy = HandlerPolicy(retries=1, retry_backoff=0.0, dead_letter=dead_letter)
    runner = KeyedRunner(handler, policy, executor=None, events=Emitter(events))
    records = [rec(i) for i in range(5)]
    await run_all(runner, records)
    assert seen == [0, 1, 3, 4]
    assert dead == [(2, "poison", 2)]
    assert [e.attempts for e in events.events if isinstance(e, RecordDeadLettered)] == [2]
    last, _ = runner.frontier.advance()
    assert last is records[-1]


async def test_without_a_hook_a_failure_stops_new_work_and_the_prefix_stops_before_it() -> None:
    started: list[int] = []

    async def handler(record: Record) -> None:
        n = int(record.data)
        started.append(n)
        await asyncio.sleep(0.001 * (n % 3))
        if n == 5:
            raise RuntimeError("poison")

    policy = HandlerPolicy(max_concurrency=4)
    runner = KeyedRunner(handler, policy, executor=None, events=Emitter(None))
    records = [rec(i, key=f"k{i % 4}") for i in range(40)]
    with pytest.raises(RuntimeError, match="poison"):
        await run_all(runner, records)
    assert runner.error is not None
    last, _ = runner.frontier.advance()
    assert last is None or int(last.data) < 5
    # nothing of record 5's key ran after it
    assert not [n for n in started if n % 4 == 1 and n > 5]


async def test_a_dead_letter_hook_that_raises_is_the_failure() -> None:
    def handler(record: Record) -> None:
        raise ValueError("poison")

    def dead_letter(record: Record, error: BaseException, attempts: int) -> None:
        raise OSError("the dead-letter stream is down")

    policy = HandlerPolicy(dead_letter=dead_letter)
    runner = KeyedRunner(handler, policy, executor=None, events=Emitter(None))
    with pytest.raises(OSError, match="dead-letter stream"):
        await run_all(runner, [rec(0), rec(1)])
    assert runner.frontier.advance() == (None, 0)


async def test_cancel_stops_running_handlers_and_finishes_nothing() -> None:
    async def handler(record: Record) -> None:
        await asyncio.sleep(10)

    runner = KeyedRunner(
        handler, HandlerPolicy(max_concurrency=3), executor=None, events=Emitter(None)
    )
    for i in range(3):
        await runner.submit(rec(i, key=str(i)))
    await asyncio.sleep(0)
    await runner.cancel()
    assert runner.frontier.advance() == (None, 0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.booleans()), min_size=1, max_size=40
    ),
    st.integers(1, 6),
    st.booleans(),
)
def test_any_completion_order_with_failures_keeps_key_order_and_an_exact_prefix(
    plan: list[tuple[int, int, bool]], concurrency: int, with_hook: bool
) -> None:
    """Records (key, delay in ms, fails): whatever finishes when, each key's records run in
    order, the frontier covers exactly the finished prefix, and a failure without a hook stops
    new work at it."""

    async def scenario() -> None:
        records = [rec(i, key=f"k{key}") for i, (key, _, _) in enumerate(plan)]
        completed: list[int] = []  # finished or dead-lettered, in the order it happened
        dead: list[int] = []

        def dead_letter(record: Record, error: BaseException, attempts: int) -> None:
            dead.append(int(record.data))
            completed.append(int(record.data))

        async def handler(record: Record) -> None:
            i = int(record.data)
            await asyncio.sleep(plan[i][1] / 1000)
            if plan[i][2]:
                raise ValueError(f"record {i}")
            completed.append(i)

        policy = HandlerPolicy(
            max_concurrency=concurrency,
            max_in_flight_records=8,
            dead_letter=dead_letter if with_hook else None,
        )
        runner = KeyedRunner(handler, policy, executor=None, events=Emitter(None))
        try:
            await run_all(runner, records)
        except ValueError:
            assert not with_hook
        done = set(completed)
        assert set(dead) <= done
        by_key: dict[str, list[int]] = defaultdict(list)
        for i in completed:
            by_key[records[i].partition_key].append(i)
        # records of one key complete in their shard order
        assert all(ns == sorted(ns) for ns in by_key.values())
        last, count = runner.frontier.advance()
        prefix = 0
        while prefix in done:
            prefix += 1
        assert count == prefix
        assert (last is None and prefix == 0) or (last is not None and int(last.data) == prefix - 1)
        if with_hook:
            assert done == set(range(len(plan)))
        else:
            first_failure = next((i for i, (_, _, fails) in enumerate(plan) if fails), None)
            if first_failure is None:
                assert done == set(range(len(plan)))
            else:
                assert prefix <= first_failure

    asyncio.run(scenario())
