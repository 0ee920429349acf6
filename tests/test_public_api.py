"""The public surface: everything in __all__ exists, and nothing public is missing from it."""

from __future__ import annotations

import inspect

import kinesio
from kinesio import _errors

REQUIRED = {
    "ProducerRecord",
    "PutResult",
    "AsyncProducer",
    "Producer",
    "ProducerSettings",
    "ProducerMetrics",
    "KinesioError",
    "aggregation",
    "AsyncConsumer",
    "Consumer",
    "ConsumerSettings",
    "Record",
    "Checkpointer",
    "RecordProcessor",
    "InitialPosition",
    "Polling",
    "FanOut",
    "LeaseLost",
    "DynamoDBLeaseStore",
    "MemoryLeaseStore",
    "LeaseStore",
}


def test_all_names_exist() -> None:
    for name in kinesio.__all__:
        assert hasattr(kinesio, name), name


def test_required_names_are_exported() -> None:
    assert set(kinesio.__all__) >= REQUIRED


def test_every_error_class_is_exported() -> None:
    errors = {
        name
        for name, obj in vars(_errors).items()
        if inspect.isclass(obj) and issubclass(obj, kinesio.KinesioError)
    }
    assert errors <= set(kinesio.__all__)


def test_every_public_error_derives_from_the_root() -> None:
    for name in kinesio.__all__:
        obj = getattr(kinesio, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, kinesio.KinesioError), name


def test_all_has_no_duplicates() -> None:
    names = [n for n in kinesio.__all__ if n != "__version__"]
    assert len(set(names)) == len(names)
