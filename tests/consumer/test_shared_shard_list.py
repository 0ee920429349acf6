"""One ListShards answers every fetcher of a worker."""

from __future__ import annotations

import asyncio

import pytest

from kinesio._errors import ServiceError
from kinesio.consumer._shared import SharedShardList
from kinesio.testing import Fault, InMemoryKinesis


async def test_concurrent_callers_share_one_call_and_the_answer_is_cached() -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 3)
    now = [0.0]
    shared = SharedShardList(kinesis, max_age=5.0, clock=lambda: now[0])
    before = kinesis.calls["ListShards"]
    answers = await asyncio.gather(*(shared.list_shards("s") for _ in range(100)))
    assert all(len(a) == 3 for a in answers)
    assert kinesis.calls["ListShards"] - before == 1
    now[0] = 4.9
    await shared.list_shards("s")
    assert kinesis.calls["ListShards"] - before == 1
    now[0] = 5.1
    await shared.list_shards("s")
    assert kinesis.calls["ListShards"] - before == 2


async def test_an_error_reaches_every_waiter_and_is_not_cached() -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 1)
    kinesis.inject(Fault("ListShards", "InternalFailure", count=1, latency=0.05))
    shared = SharedShardList(kinesis)
    results = await asyncio.gather(
        *(shared.list_shards("s") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ServiceError) for r in results)
    assert len(await shared.list_shards("s")) == 1
    kinesis.inject(Fault("ListShards", "InternalFailure", count=1))
    shared.invalidate()
    with pytest.raises(ServiceError):
        await shared.list_shards("s")
