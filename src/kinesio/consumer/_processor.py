"""The KCL-style record processor API: the lifecycle inputs, the ``RecordProcessor`` protocol
and ``AsyncConsumer.run``'s per-shard driver."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import anyio.to_thread

from kinesio._errors import LeaseLost
from kinesio._models import ExtendedSequenceNumber, Record
from kinesio.consumer._checkpointer import Checkpointer
from kinesio.consumer._stream import ShardStream

#: The checkpointer a processor is given: :class:`Checkpointer` (asyncio API) or
#: :class:`kinesio.sync.BlockingCheckpointer` (blocking API).
C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class InitializationInput:
    """Given to ``initialize``: the shard, the checkpoint processing resumes after, and the
    pending checkpoint a previous owner prepared and did not commit (None if there is none; see
    :meth:`Checkpointer.prepare_checkpoint`), as the KCL's ``InitializationInput`` has them."""

    shard_id: str
    extended_sequence_number: ExtendedSequenceNumber
    pending_checkpoint: ExtendedSequenceNumber | None = None


@dataclass(frozen=True, slots=True)
class ProcessRecordsInput(Generic[C]):
    """Given to ``process_records``: a batch in shard order, and the shard's checkpointer."""

    records: list[Record]
    checkpointer: C
    millis_behind_latest: int | None = None


@dataclass(frozen=True, slots=True)
class LeaseLostInput:
    """Given to ``lease_lost``: another worker holds the shard now; do not checkpoint."""

    shard_id: str


@dataclass(frozen=True, slots=True)
class ShardEndedInput(Generic[C]):
    """Given to ``shard_ended``: every record was delivered; checkpoint what you processed."""

    checkpointer: C


@dataclass(frozen=True, slots=True)
class ShutdownRequestedInput(Generic[C]):
    """Given to ``shutdown_requested``: checkpoint now; the lease is released afterwards."""

    checkpointer: C


@runtime_checkable
class RecordProcessor(Protocol):
    """The KCL's ShardRecordProcessor, for code migrating from amazon_kclpy.

    One instance per shard. Each method may be sync or async. ``process_records`` gets a
    checkpointer: call ``await input.checkpointer.checkpoint()`` (or with a record) to save
    progress. At shard end kinesio checkpoints ``SHARD_END`` itself after ``shard_ended``
    returns (the KCL makes the processor do it). ``lease_lost`` has no checkpointer: another
    worker owns the shard now.
    """

    def initialize(self, input: InitializationInput, /) -> object: ...

    def process_records(self, input: ProcessRecordsInput[Any], /) -> object: ...

    def lease_lost(self, input: LeaseLostInput, /) -> object: ...

    def shard_ended(self, input: ShardEndedInput[Any], /) -> object: ...

    def shutdown_requested(self, input: ShutdownRequestedInput[Any], /) -> object: ...


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


async def _in_thread(method: Callable[[Any], object], arg: object) -> None:
    # anyio's worker thread, so that a BlockingCheckpointer can call back into the loop
    await anyio.to_thread.run_sync(method, arg)


async def run_processor(
    stream: ShardStream,
    processor_factory: Callable[[], RecordProcessor],
    *,
    wrap_checkpointer: Callable[[Checkpointer], object] | None,
    in_thread: bool,
) -> None:
    """``run``'s work for one shard: a processor from ``processor_factory`` through its
    lifecycle (initialize, process_records per batch, then shard_ended, lease_lost or
    shutdown_requested)."""

    def call(method: Callable[[Any], object], arg: object) -> Awaitable[None]:
        if in_thread and not inspect.iscoroutinefunction(method):
            return _in_thread(method, arg)
        return _maybe_await(method(arg))

    processor = processor_factory()
    cp: Any = (
        stream.checkpointer if wrap_checkpointer is None else wrap_checkpointer(stream.checkpointer)
    )

    async def ended() -> None:
        await call(processor.shard_ended, ShardEndedInput(cp))

    stream._before_shard_end = ended
    await call(
        processor.initialize,
        InitializationInput(
            stream.shard_id,
            stream.checkpointer.last_checkpoint,
            stream.checkpointer.pending_checkpoint,
        ),
    )
    try:
        async for batch in stream.records():
            await call(
                processor.process_records,
                ProcessRecordsInput(batch, cp, stream.millis_behind_latest),
            )
    except LeaseLost:
        pass
    if stream.lost:
        await call(processor.lease_lost, LeaseLostInput(stream.shard_id))
    elif not stream.ended:
        await call(processor.shutdown_requested, ShutdownRequestedInput(cp))
