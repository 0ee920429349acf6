"""Batch handlers: a shard's records handed over as lists of up to N records or T seconds, each
checkpointed after the handler returns from it (``AsyncConsumer.consume_batches_with``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

from kinesio._errors import LeaseLost, ValidationError
from kinesio._models import Record
from kinesio.consumer._concurrency import (
    DeadLetterHook,
    HandlerPolicy,
    checkpoint_staged,
    dead_lettered,
    retried,
    with_retries,
)
from kinesio.events import Emitter

if TYPE_CHECKING:
    from kinesio.consumer._stream import ShardStream

logger = logging.getLogger("kinesio.consumer")

BatchHandler = Callable[[list[Record]], object]


async def _batches(
    stream: ShardStream, max_records: int, max_wait: float
) -> AsyncGenerator[list[Record], None]:
    """The shard's records regrouped: a list once ``max_records`` are buffered, or once the
    oldest buffered record has waited ``max_wait`` seconds (also while the shard is idle).

    Before the shard end is checkpointed, everything buffered is handed over and the
    generator is resumed (the consumer has handled and checkpointed it) first.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[Record] | asyncio.Future[None] | None] = asyncio.Queue(maxsize=1)
    waiting: list[asyncio.Future[None]] = []

    async def before_shard_end() -> None:
        handed_over = loop.create_future()
        waiting.append(handed_over)
        await queue.put(handed_over)
        await handed_over

    failure: list[BaseException] = []

    async def pump() -> None:
        try:
            async with contextlib.aclosing(stream.records()) as records:
                async for batch in records:
                    await queue.put(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            failure.append(exc)
        await queue.put(None)

    stream._before_shard_end = before_shard_end
    reader = asyncio.create_task(pump(), name=f"batches-{stream.shard_id}")
    buffered: list[Record] = []
    since = 0.0
    try:
        while True:
            timeout = None if not buffered else max(0.0, since + max_wait - time.monotonic())
            try:
                got = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                got = []
            if got is None:
                if failure:
                    raise failure[0]
                break
            if isinstance(got, asyncio.Future):
                if buffered:
                    yield buffered
                    buffered = []
                got.set_result(None)
                continue
            if got and not buffered:
                since = time.monotonic()
            buffered.extend(got)
            while len(buffered) >= max_records:
                yield buffered[:max_records]
                del buffered[:max_records]
                since = time.monotonic()
            if buffered and time.monotonic() - since >= max_wait:
                yield buffered
                buffered = []
        # records() ended (shutdown, or the lease is gone): hand over what is left unless
        # another worker may already be reading it
        if buffered and not stream.lost:
            yield buffered
    finally:
        for handed_over in waiting:
            handed_over.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def consume_shard_batches(
    stream: ShardStream,
    handler: BatchHandler,
    *,
    max_records: int,
    max_wait: float,
    retries: int,
    retry_backoff: float,
    max_retry_backoff: float,
    dead_letter: DeadLetterHook | None,
    in_thread: bool,
    events: Emitter,
) -> None:
    """``consume_batches_with``'s loop for one shard: every list the handler returns from is
    checkpointed (its last record) before the next list is handed over."""
    cp = stream.checkpointer
    sync = not inspect.iscoroutinefunction(handler)

    async def call(batch: list[Record]) -> None:
        if sync and in_thread:
            await asyncio.to_thread(handler, batch)
            return
        result = handler(batch)
        if inspect.isawaitable(result):
            await result

    policy = HandlerPolicy(
        retries=retries, retry_backoff=retry_backoff, max_retry_backoff=max_retry_backoff
    )

    async def attempt(batch: list[Record]) -> None:
        def on_retry(attempt: int, exc: Exception, backoff: float) -> None:
            events.emit(retried(batch[0], attempt, exc))
            logger.warning(
                "batch handler failed on %d records of %s (attempt %d of %d): %s",
                len(batch),
                stream.shard_id,
                attempt,
                retries + 1,
                exc,
            )

        error, attempts = await with_retries(lambda: call(batch), policy, on_retry)
        if error is None:
            return
        if dead_letter is None:
            raise error
        for record in batch:
            result = dead_letter(record, error, attempts)
            if inspect.isawaitable(result):
                await result
            events.emit(dead_lettered(record, attempts, error))

    batches = _batches(stream, max_records, max_wait)
    try:
        async for batch in batches:
            if stream.lost:
                raise LeaseLost(f"lease {stream.shard_id} lost")
            await attempt(batch)
            cp.stage(batch[-1])
            await checkpoint_staged(cp, stream.shard_id)
    except LeaseLost:
        logger.info("lease %s lost while processing; stopping that shard", stream.shard_id)
    finally:
        await batches.aclose()


def check_batch_arguments(max_records: int, max_wait: float) -> None:
    if max_records < 1 or max_wait <= 0:
        raise ValidationError("max_records must be >= 1 and max_wait > 0 seconds")
