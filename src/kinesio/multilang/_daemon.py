"""The MultiLangDaemon without Java: one child process per leased shard, driven over the
multilang protocol by a kinesio :class:`~kinesio.RecordProcessor`."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from kinesio._aws import AWSConfig
from kinesio._errors import KinesioError, LeaseLost, ThrottlingError, ValidationError
from kinesio._models import ExtendedSequenceNumber, Record
from kinesio.consumer import (
    AsyncConsumer,
    Checkpointer,
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from kinesio.consumer._processor import run_processor
from kinesio.consumer._stream import ShardStream
from kinesio.leases import DynamoDBLeaseStore
from kinesio.multilang._properties import MultiLangConfig
from kinesio.multilang._protocol import (
    CheckpointCallback,
    Child,
    ChildProcessError,
    initialize_message,
    record_message,
)

logger = logging.getLogger("kinesio.multilang")


def kcl_error_name(exc: BaseException) -> str:
    """The KCL checkpointer exception a multilang child expects for a kinesio error."""
    if isinstance(exc, LeaseLost):
        return "ShutdownException"
    if isinstance(exc, ThrottlingError):
        return "ThrottlingException"
    if isinstance(exc, ValidationError):
        return "IllegalArgumentException"
    return "KinesisClientLibDependencyException"


class MultiLangProcessor:
    """A kinesio record processor that runs ``command`` for its shard and relays every call to
    it, as the Java daemon's ``MultiLangShardRecordProcessor`` does."""

    def __init__(self, config: MultiLangConfig) -> None:
        self._config = config
        self._child: Child | None = None
        self._last: Record | None = None

    def _checkpoints(self, cp: Checkpointer, *, at_shard_end: bool = False) -> CheckpointCallback:
        async def checkpoint(sequence: str | None, sub: int | None) -> str | None:
            try:
                if sequence is None:
                    # the KCL's checkpoint(): at the last record delivered, or at the shard
                    # end (kinesio writes SHARD_END itself once shardEnded has returned)
                    if not at_shard_end and self._last is not None:
                        await cp.checkpoint(self._last)
                    elif not at_shard_end:
                        await cp.checkpoint()
                else:
                    await cp.checkpoint(ExtendedSequenceNumber(sequence, sub or 0))
            except KinesioError as exc:
                name = kcl_error_name(exc)
                logger.warning(
                    "[%s] checkpoint at %s/%s refused (%s): %s",
                    cp.shard_id,
                    sequence,
                    sub,
                    name,
                    exc,
                )
                return name
            return None

        return checkpoint

    @property
    def child(self) -> Child:
        if self._child is None:
            raise RuntimeError("the child process was not started (initialize not called)")
        return self._child

    async def initialize(self, input: InitializationInput) -> None:
        self._child = Child(self._config.executable, input.shard_id, timeout=self._config.timeout)
        await self._child.start()
        await self._child.call(initialize_message(input.shard_id, input.extended_sequence_number))

    async def process_records(self, input: ProcessRecordsInput[Checkpointer]) -> None:
        if input.records:
            self._last = input.records[-1]
        message: dict[str, Any] = {
            "action": "processRecords",
            "records": [record_message(r) for r in input.records],
            "millisBehindLatest": input.millis_behind_latest or 0,
        }
        await self.child.call(message, self._checkpoints(input.checkpointer))

    async def lease_lost(self, input: LeaseLostInput) -> None:
        try:
            await self.child.call({"action": "leaseLost"})
        finally:
            await self._close()

    async def shard_ended(self, input: ShardEndedInput[Checkpointer]) -> None:
        try:
            await self.child.call(
                {"action": "shardEnded"}, self._checkpoints(input.checkpointer, at_shard_end=True)
            )
        finally:
            await self._close()

    async def shutdown_requested(self, input: ShutdownRequestedInput[Checkpointer]) -> None:
        try:
            await self.child.call(
                {"action": "shutdownRequested"}, self._checkpoints(input.checkpointer)
            )
        finally:
            await self._close()

    async def discard(self) -> None:
        """Stop a child that failed (its stdin closed, killed if it lingers)."""
        await self._close()

    async def _close(self) -> None:
        if self._child is not None:
            code = await self._child.close()
            logger.info("[%s] child process exited with status %s", self._child.shard_id, code)


#: A shard whose child fails this many times in a row stops the worker (exit status 1).
MAX_CHILD_FAILURES = 3


def _restarting(
    config: MultiLangConfig, consumer: AsyncConsumer
) -> Callable[[ShardStream], Coroutine[Any, Any, None]]:
    """Each leased shard's driver: the processor's lifecycle, and when its child dies or breaks
    the protocol, the lease is released so that the shard starts again at its last checkpoint
    (here, with a new child, once the lease is taken again; or on another worker) — records
    after that checkpoint are delivered again, none is lost. After ``MAX_CHILD_FAILURES``
    failures in a row on one shard the error stops the worker, as the Java daemon stops."""
    failures: dict[str, int] = {}

    async def work(stream: ShardStream) -> None:
        processor = MultiLangProcessor(config)
        try:
            await run_processor(stream, lambda: processor, wrap_checkpointer=None, in_thread=False)
        except ChildProcessError as exc:
            await processor.discard()
            count = failures.get(stream.shard_id, 0) + 1
            failures[stream.shard_id] = count
            if count >= MAX_CHILD_FAILURES:
                raise
            logger.error(
                "[%s] %s; releasing the lease: the shard restarts at its last checkpoint "
                "(failure %d of %d in a row)",
                stream.shard_id,
                exc,
                count,
                MAX_CHILD_FAILURES,
            )
            await stream._handle.release()
        else:
            failures.pop(stream.shard_id, None)

    return work


def _aws(config: MultiLangConfig, endpoint: str | None) -> AWSConfig:
    return AWSConfig(region_name=config.region_name, endpoint_url=endpoint)


async def run(config: MultiLangConfig, *, install_signal_handlers: bool = True) -> None:
    """Run the daemon until SIGTERM / SIGINT (a graceful shutdown: every child is told
    ``shutdownRequested`` and may checkpoint). A child that dies or breaks the protocol is
    replaced: its lease is released and the shard starts again at its last checkpoint; after
    ``MAX_CHILD_FAILURES`` failures in a row on one shard the worker shuts down gracefully and
    the error is raised (as the Java daemon exits). Nothing is lost either way: records after
    the last checkpoint are delivered again."""
    from kinesio._aws import AioKinesis

    kinesis = await AioKinesis.create(_aws(config, config.kinesis_endpoint))
    store = DynamoDBLeaseStore(
        config.settings.lease_table_name or config.application_name,
        aws=_aws(config, config.dynamodb_endpoint),
    )
    consumer = AsyncConsumer(
        config.stream_name,
        application_name=config.application_name,
        settings=config.settings,
        kinesis=kinesis,
        lease_store=store,
    )
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, consumer.request_shutdown)
    try:
        async with consumer:
            logger.info(
                "kinesio multilang: stream %s, application %s, worker %s, child %s",
                config.stream_name,
                config.application_name,
                consumer.worker_id,
                " ".join(config.executable),
            )
            await consumer._drive(_restarting(config, consumer))
    finally:
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        await kinesis.aclose()
        await store.aclose()
