"""kinesio.awslambda.process and process_batches: the partial batch response with sync and
async handlers, failures inside an aggregate, and what propagates."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import pytest

from _lambda_events import mixed_event
from kinesio import ConfigurationError
from kinesio.aggregation import MAGIC
from kinesio.awslambda import (
    LambdaRecord,
    aprocess,
    aprocess_batches,
    process,
    process_batches,
    records,
)
from kinesio.testing import LambdaEventBuilder


def test_process_all_succeed_sync_in_order() -> None:
    event, _ = mixed_event()
    seen: list[bytes] = []
    assert process(event, lambda r: seen.append(r.data)) == {"batchItemFailures": []}
    assert seen == [b"first", b"a0", b"a1", b"a2", b"t0", b"t1", b"last"]


def test_process_stops_in_the_middle_of_an_aggregate_and_reports_that_kinesis_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event, seqs = mixed_event()
    seen: list[bytes] = []

    def handler(record: LambdaRecord) -> None:
        seen.append(record.data)
        if record.data == b"a1":
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="kinesio.awslambda"):
        response = process(event, handler)
    assert response == {"batchItemFailures": [{"itemIdentifier": seqs[1]}]}
    assert seen == [b"first", b"a0", b"a1"]  # nothing after the failure
    assert "boom" in caplog.text  # logged with its traceback, not swallowed


def test_process_async_handler() -> None:
    event, seqs = mixed_event()
    seen: list[bytes] = []

    async def handler(record: LambdaRecord) -> None:
        await asyncio.sleep(0)
        seen.append(record.data)
        if record.data == b"t1":
            raise ValueError("bad")

    assert process(event, handler) == {"batchItemFailures": [{"itemIdentifier": seqs[2]}]}
    assert seen == [b"first", b"a0", b"a1", b"a2", b"t0", b"t1"]


def test_process_async_callable_instance() -> None:
    event, _ = mixed_event()

    class Handler:
        def __init__(self) -> None:
            self.count = 0

        async def __call__(self, record: LambdaRecord) -> None:
            self.count += 1

    handler = Handler()
    assert process(event, handler) == {"batchItemFailures": []}
    assert handler.count == 7


def test_process_a_failing_plain_record_and_the_last_one() -> None:
    event, seqs = mixed_event()
    first = process(event, lambda r: 1 / 0)
    assert first == {"batchItemFailures": [{"itemIdentifier": seqs[0]}]}

    def fail_last(r: LambdaRecord) -> None:
        if r.data == b"last":
            raise KeyError(r.data)

    assert process(event, fail_last) == {"batchItemFailures": [{"itemIdentifier": seqs[3]}]}


async def test_aprocess_in_a_running_loop_sync_and_async_handlers() -> None:
    event, seqs = mixed_event()
    seen: list[bytes] = []

    async def handler(record: LambdaRecord) -> None:
        seen.append(record.data)
        if record.data == b"a2":
            raise RuntimeError("x")

    assert await aprocess(event, handler) == {"batchItemFailures": [{"itemIdentifier": seqs[1]}]}
    assert seen == [b"first", b"a0", b"a1", b"a2"]
    assert await aprocess(event, lambda r: None) == {"batchItemFailures": []}


def test_a_plain_function_returning_an_awaitable_is_a_configuration_error() -> None:
    event, _ = mixed_event()

    async def work(record: LambdaRecord) -> None:
        pass

    with pytest.raises(ConfigurationError, match="async def"):
        process(event, lambda r: work(r))


def test_process_batches_hands_over_one_kinesis_record_at_a_time() -> None:
    event, seqs = mixed_event()
    seen: list[list[bytes]] = []
    assert process_batches(event, lambda rs: seen.append([r.data for r in rs])) == {
        "batchItemFailures": []
    }
    assert seen == [[b"first"], [b"a0", b"a1", b"a2"], [b"t0", b"t1"], [b"last"]]

    def fail_theirs(rs: list[LambdaRecord]) -> None:
        if rs[0].data == b"t0":
            raise RuntimeError("db down")

    assert process_batches(event, fail_theirs) == {
        "batchItemFailures": [{"itemIdentifier": seqs[2]}]
    }


async def test_aprocess_batches_and_async_process_batches() -> None:
    event, seqs = mixed_event()
    sizes: list[int] = []

    async def handler(rs: list[LambdaRecord]) -> None:
        sizes.append(len(rs))
        if len(rs) == 3:
            raise RuntimeError("x")

    assert await aprocess_batches(event, handler) == {
        "batchItemFailures": [{"itemIdentifier": seqs[1]}]
    }
    assert sizes == [1, 3]


def test_process_batches_runs_an_async_handler_in_its_own_loop() -> None:
    event, _ = mixed_event()
    sizes: list[int] = []

    async def handler(rs: list[LambdaRecord]) -> None:
        sizes.append(len(rs))

    assert process_batches(event, handler) == {"batchItemFailures": []}
    assert sizes == [1, 3, 2, 1]


def test_an_aggregate_of_no_user_records_is_skipped() -> None:
    body = b"\x0a\x01k"  # a partition key table and no records: valid, and empty
    b = LambdaEventBuilder()
    b.add_raw(MAGIC + body + hashlib.md5(body).digest(), "empty")
    last = b.add(b"x", "k")
    event = b.build()
    assert [r.sequence_number for r in records(event)] == [last]
    batches: list[list[LambdaRecord]] = []
    assert process_batches(event, batches.append) == {"batchItemFailures": []}
    assert [[r.data for r in rs] for rs in batches] == [[b"x"]]


def test_base_exceptions_propagate() -> None:
    event, _ = mixed_event()

    def handler(record: LambdaRecord) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process(event, handler)
