"""The pytest plugin's fixtures, used the way a user's test would use them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import kinesio
from kinesio.local import LocalEndpoint
from kinesio.testing import InMemoryKinesis


def test_the_plugin_is_registered(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("kinesio")


async def test_producer_and_consumer_fixtures_work_together(
    kinesio_kinesis: InMemoryKinesis,
    kinesio_producer: Callable[..., kinesio.AsyncProducer],
    kinesio_consumer: Callable[..., kinesio.AsyncConsumer],
) -> None:
    await kinesio_kinesis.create_stream("orders", 2)
    async with kinesio_producer("orders") as producer:
        for i in range(50):
            await producer.put(b"%d" % i, partition_key=f"k{i % 5}")
    seen: list[int] = []
    async with kinesio_consumer("orders") as consumer:

        def handle(record: kinesio.Record) -> None:
            seen.append(int(record.data))
            if len(seen) == 50:
                consumer.request_shutdown()

        await consumer.consume_with(handle)
    assert sorted(seen) == list(range(50))


def test_the_emulator_fixture_is_on_loopback(kinesio_emulator: LocalEndpoint) -> None:
    assert kinesio_emulator.endpoint_url.startswith("http://127.0.0.1:")
    assert kinesio_emulator.aws_config().region_name == "us-east-1"
