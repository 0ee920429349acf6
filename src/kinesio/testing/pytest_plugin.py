"""A pytest plugin (loaded automatically once kinesio is installed) with fixtures for testing
code that uses kinesio. Every fixture is synchronous, so it works with any async test runner.

* ``kinesio_kinesis`` — a fresh :class:`~kinesio.testing.InMemoryKinesis` (shard limits on).
* ``kinesio_lease_store`` — a fresh :class:`~kinesio.MemoryLeaseStore`.
* ``kinesio_producer`` — ``kinesio_producer(stream, **kwargs)`` builds an
  :class:`~kinesio.AsyncProducer` wired to ``kinesio_kinesis``; use it with ``async with``.
* ``kinesio_consumer`` — ``kinesio_consumer(stream, application_name="test", **kwargs)`` builds
  an :class:`~kinesio.AsyncConsumer` wired to ``kinesio_kinesis`` and ``kinesio_lease_store``,
  starting at TRIM_HORIZON with fast lease timings unless ``settings=`` says otherwise.
* ``kinesio_emulator`` — moto's server on 127.0.0.1 for the test session (needs
  ``kinesio[local]``): a :class:`~kinesio.local.LocalEndpoint` with ``endpoint_url`` and
  ``aws_config()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kinesio._config import ConsumerSettings, InitialPosition, Polling
from kinesio.consumer import AsyncConsumer
from kinesio.leases import MemoryLeaseStore
from kinesio.local import LocalEndpoint, moto_server
from kinesio.producer import AsyncProducer
from kinesio.testing._kinesis import InMemoryKinesis

#: Lease timings for tests: a lost worker's shards move after one second, not ten.
TEST_CONSUMER_SETTINGS = ConsumerSettings(
    failover_time=1.0,
    take_interval=0.2,
    renew_interval=0.25,
    shard_sync_interval=0.5,
    initial_position=InitialPosition.TRIM_HORIZON,
    retrieval=Polling(idle_time=0.02, catch_up_interval=0.0),
    shutdown_timeout=5.0,
)


@pytest.fixture
def kinesio_kinesis() -> InMemoryKinesis:
    """A fresh in-memory Kinesis; create streams with ``await kinesio_kinesis.create_stream``."""
    return InMemoryKinesis()


@pytest.fixture
def kinesio_lease_store() -> MemoryLeaseStore:
    """A fresh in-memory lease table."""
    return MemoryLeaseStore()


@pytest.fixture
def kinesio_producer(kinesio_kinesis: InMemoryKinesis) -> Callable[..., AsyncProducer]:
    """A factory of producers writing to ``kinesio_kinesis``."""

    def make(stream_name: str, **kwargs: Any) -> AsyncProducer:
        return AsyncProducer(stream_name, kinesis=kinesio_kinesis, **kwargs)

    return make


@pytest.fixture
def kinesio_consumer(
    kinesio_kinesis: InMemoryKinesis, kinesio_lease_store: MemoryLeaseStore
) -> Callable[..., AsyncConsumer]:
    """A factory of consumers reading ``kinesio_kinesis``, leasing in ``kinesio_lease_store``."""

    def make(stream_name: str, application_name: str = "test", **kwargs: Any) -> AsyncConsumer:
        kwargs.setdefault("settings", TEST_CONSUMER_SETTINGS)
        return AsyncConsumer(
            stream_name,
            application_name=application_name,
            kinesis=kinesio_kinesis,
            lease_store=kinesio_lease_store,
            **kwargs,
        )

    return make


@pytest.fixture(scope="session")
def kinesio_emulator() -> Iterator[LocalEndpoint]:
    """moto's server (Kinesis, DynamoDB, CloudWatch) on 127.0.0.1 for the whole session."""
    with moto_server() as endpoint:
        yield endpoint
