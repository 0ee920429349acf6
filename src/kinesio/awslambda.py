"""AWS Lambda functions reading a Kinesis stream: deaggregated records and partial batch responses.

A Lambda event source mapping hands a function up to ``BatchSize`` Kinesis records of one shard;
records a KPL-style producer aggregated arrive still packed. :func:`records` unpacks them into
kinesio :class:`~kinesio.Record` s, and :func:`process` / :func:`aprocess` call a handler per user
record (:func:`process_batches` per Kinesis record) and build the
``{"batchItemFailures": [...]}`` answer that an event source mapping with
``FunctionResponseTypes=["ReportBatchItemFailures"]`` reads.

This module makes no AWS calls and imports nothing beyond kinesio itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from kinesio import aggregation
from kinesio._errors import AggregationError, ConfigurationError, ValidationError
from kinesio._models import ProducerRecord, Record

__all__ = [
    "BatchResponse",
    "LambdaRecord",
    "aprocess",
    "aprocess_batches",
    "process",
    "process_batches",
    "records",
]

logger = logging.getLogger("kinesio.awslambda")

BatchResponse: TypeAlias = dict[str, list[dict[str, str]]]
"""``{"batchItemFailures": [{"itemIdentifier": "<sequence number>"}]}``."""


@dataclass(frozen=True, slots=True)
class LambdaRecord(Record):
    """A user record of a Lambda Kinesis event: a :class:`~kinesio.Record` plus where it came from.

    ``shard_id`` comes from ``eventID`` (``"<shard id>:<sequence number>"``), ``stream_arn``
    from ``eventSourceARN`` and ``stream_name`` is its last path segment. Lambda events do not
    carry the explicit hash key of a plain record, so ``explicit_hash_key`` is only known for
    records that came inside an aggregate (as with GetRecords).
    """

    stream_arn: str = ""
    stream_name: str = ""
    event_id: str = ""


Handler: TypeAlias = Callable[[LambdaRecord], object]
AsyncHandler: TypeAlias = Callable[[LambdaRecord], Awaitable[object]]
BatchHandler: TypeAlias = Callable[[list[LambdaRecord]], object]
AsyncBatchHandler: TypeAlias = Callable[[list[LambdaRecord]], Awaitable[object]]


def records(event: Mapping[str, Any]) -> list[LambdaRecord]:
    """The user records of a Lambda Kinesis event, in order.

    Aggregated Kinesis records are deaggregated (``sub_sequence_number`` 0..n-1,
    ``aggregated=True``); plain ones are passed through (``sub_sequence_number`` 0). An aggregate
    that does not decode (wrong MD5, malformed protobuf) is passed through as ONE plain record,
    as the KCL does, so nothing is dropped. Unlike the KCL consumer no hash-range filter is
    applied: a Lambda function is not told its shard's hash range, and after a reshard the
    producer's re-sent copies arrive on the new shard anyway.

    Pure computation, never blocks. Raises :class:`~kinesio.ValidationError` (a
    :class:`~kinesio.KinesioError`) naming the offending ``Records[i]`` when the event is not a
    Kinesis event (no ``Records`` list, another ``eventSource``, missing or non-base64 ``data``,
    ...); nothing is returned then, so no half batch is ever processed.
    """
    out: list[LambdaRecord] = []
    for kinesis_record in _parse(event):
        out.extend(kinesis_record)
    return out


def process(event: Mapping[str, Any], handler: Handler | AsyncHandler) -> BatchResponse:
    """Call ``handler(record)`` per user record of ``event``, in order; the partial batch response.

    ``handler`` may be a plain function or an ``async def`` (then the whole batch runs in one
    ``asyncio.run``; from code that already runs an event loop, await :func:`aprocess`
    instead). At the first exception processing stops, the exception is logged (logger
    ``kinesio.awslambda``, with its traceback) and the answer names the sequence number of the
    Kinesis record that held the failing user record:
    ``{"batchItemFailures": [{"itemIdentifier": "<sequence number>"}]}``. Lambda then retries
    the shard from that Kinesis record, so **an aggregate is retried whole**: the user records
    of the failing aggregate that came before the failing one are handed to the handler again.
    Handlers must therefore be idempotent (as with any Kinesis consumer). When every record
    succeeded the answer is ``{"batchItemFailures": []}``.

    Blocks for as long as the handler calls take. A bad event raises
    :class:`~kinesio.ValidationError` before any handler call (see :func:`records`);
    ``BaseException`` s that are not ``Exception`` s (``KeyboardInterrupt``, ...) propagate. A
    plain function that returns an awaitable raises :class:`~kinesio.ConfigurationError`: pass
    the ``async def`` itself so the awaitable is not left un-awaited.
    """
    return _run(_units(_parse(event), per_record=True), handler, "process")


async def aprocess(event: Mapping[str, Any], handler: Handler | AsyncHandler) -> BatchResponse:
    """:func:`process` for code that already runs an event loop: awaits awaitable results.

    Same order, failure and retry behaviour as :func:`process` (an aggregate is retried whole).
    """
    return await _arun(_units(_parse(event), per_record=True), handler)


def process_batches(
    event: Mapping[str, Any], handler: BatchHandler | AsyncBatchHandler
) -> BatchResponse:
    """Call ``handler(records)`` once per Kinesis record of ``event``, in order.

    ``records`` are the user records that one Kinesis record held: all of an aggregate's, or
    the one plain record (an aggregate of no user records is skipped). This suits handlers
    that write a whole aggregate at once (one database transaction, one HTTP request), since
    Lambda retries an aggregate whole anyway. When the handler raises, the sequence number of
    that Kinesis record is reported; everything else (sync or async handler, logging, bad
    events, blocking) is as in :func:`process`.
    """
    return _run(_units(_parse(event), per_record=False), handler, "process_batches")


async def aprocess_batches(
    event: Mapping[str, Any], handler: BatchHandler | AsyncBatchHandler
) -> BatchResponse:
    """:func:`process_batches` for code that already runs an event loop."""
    return await _arun(_units(_parse(event), per_record=False), handler)


# (the record a failure is reported for, what the handler is called with)
_Unit: TypeAlias = tuple[LambdaRecord, Any]


def _units(batches: list[list[LambdaRecord]], *, per_record: bool) -> list[_Unit]:
    if per_record:
        return [(record, record) for batch in batches for record in batch]
    return [(batch[0], batch) for batch in batches if batch]


def _run(units: list[_Unit], handler: Callable[[Any], object], name: str) -> BatchResponse:
    if _is_async(handler):
        return asyncio.run(_arun(units, handler))
    for where, argument in units:
        try:
            result = handler(argument)
        except Exception:
            return _failed(where)
        if inspect.isawaitable(result):
            _close(result)
            raise ConfigurationError(
                f"the handler returned an awaitable: pass an async def function to {name}(), "
                f"or await a{name}() from async code"
            )
    return {"batchItemFailures": []}


async def _arun(units: list[_Unit], handler: Callable[[Any], object]) -> BatchResponse:
    for where, argument in units:
        try:
            result = handler(argument)
            if inspect.isawaitable(result):
                await result
        except Exception:
            return _failed(where)
    return {"batchItemFailures": []}


def _failed(record: LambdaRecord) -> BatchResponse:
    logger.exception(
        "handler failed on %s sequence %s sub-sequence %d; reporting sequence %s for retry",
        record.shard_id,
        record.sequence_number,
        record.sub_sequence_number,
        record.sequence_number,
    )
    return {"batchItemFailures": [{"itemIdentifier": record.sequence_number}]}


def _is_async(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - async callable instances
    return call is not None and inspect.iscoroutinefunction(call)


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def _parse(event: Mapping[str, Any]) -> list[list[LambdaRecord]]:
    """One list of user records per Kinesis record of the event (all parsed before any use)."""
    if not isinstance(event, Mapping):
        raise ValidationError(f"a Lambda event is a dict, not {type(event).__name__}")
    entries = event.get("Records")
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise ValidationError("not a Lambda Kinesis event: no 'Records' list")
    return [_parse_entry(i, entry) for i, entry in enumerate(entries)]


def _parse_entry(index: int, entry: object) -> list[LambdaRecord]:
    where = f"Records[{index}]"
    if not isinstance(entry, Mapping):
        raise ValidationError(f"{where} is not an object")
    source = entry.get("eventSource")
    if source != "aws:kinesis":
        raise ValidationError(f"{where}: eventSource is {source!r}, not 'aws:kinesis'")
    kinesis = entry.get("kinesis")
    if not isinstance(kinesis, Mapping):
        raise ValidationError(f"{where}: no 'kinesis' object")
    sequence_number = _string(kinesis, "sequenceNumber", where)
    partition_key = _string(kinesis, "partitionKey", where)
    encoded = _string(kinesis, "data", where)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(f"{where}: kinesis.data is not base64 ({exc})") from exc
    arrival = _arrival(kinesis.get("approximateArrivalTimestamp"), where)
    event_id = entry.get("eventID", "")
    stream_arn = entry.get("eventSourceARN", "")
    if not isinstance(event_id, str) or not isinstance(stream_arn, str):
        raise ValidationError(f"{where}: eventID and eventSourceARN must be strings")
    # eventID is "<shard id>:<sequence number>"; shard ids never contain ':'.
    shard_id = event_id.partition(":")[0]
    stream_name = stream_arn.rpartition("/")[2] if "/" in stream_arn else ""
    common: dict[str, Any] = {
        "sequence_number": sequence_number,
        "approximate_arrival_timestamp": arrival,
        "shard_id": shard_id,
        "stream_arn": stream_arn,
        "stream_name": stream_name,
        "event_id": event_id,
    }
    users: list[ProducerRecord] | None = None
    if aggregation.is_aggregate(data):
        try:
            users = aggregation.decode(data)
        except AggregationError:
            users = None
    if users is None:
        return [LambdaRecord(data=data, partition_key=partition_key, **common)]
    return [
        LambdaRecord(
            data=user.data,
            partition_key=user.partition_key,
            sub_sequence_number=i,
            explicit_hash_key=user.explicit_hash_key,
            aggregated=True,
            **common,
        )
        for i, user in enumerate(users)
    ]


def _string(kinesis: Mapping[str, Any], key: str, where: str) -> str:
    value = kinesis.get(key)
    if not isinstance(value, str):
        raise ValidationError(f"{where}: kinesis.{key} is missing or not a string")
    return value


def _arrival(value: object, where: str) -> dt.datetime | None:
    """Lambda gives the arrival time as float seconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{where}: kinesis.approximateArrivalTimestamp is not a number")
    try:
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValidationError(
            f"{where}: kinesis.approximateArrivalTimestamp {value!r} is out of range"
        ) from exc
