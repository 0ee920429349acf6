"""``AsyncConsumer.consume_with``'s per-shard loop when records go to the handler one at a
time (no concurrency, retries or dead letters: those are in ``_concurrency``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable

from kinesio._errors import KinesioError, LeaseLost
from kinesio._models import Record
from kinesio.consumer._concurrency import (
    checkpoint_staged,
)
from kinesio.consumer._stream import ShardStream

logger = logging.getLogger("kinesio.consumer")

RecordHandler = Callable[[Record], object]


def _handle_all(handler: RecordHandler, batch: list[Record]) -> None:
    """Run a sync handler over a batch; on error, say how far it got."""
    for i, record in enumerate(batch):
        try:
            handler(record)
        except Exception as exc:
            raise _PartialBatch(i, exc) from exc


class _PartialBatch(Exception):
    def __init__(self, done: int, error: Exception) -> None:
        super().__init__(str(error))
        self.done = done
        self.error = error


async def consume_shard_plain(
    stream: ShardStream,
    handler: RecordHandler,
    *,
    checkpoint_every: int,
    checkpoint_interval: float,
    in_thread: bool,
) -> None:
    """``consume_with``'s loop for one shard, one record at a time: checkpoints every
    ``checkpoint_every`` records or ``checkpoint_interval`` seconds, at shutdown and before the
    shard end, only up to records the handler returned from."""
    cp = stream.checkpointer
    count = 0
    last = time.monotonic()

    async def flush() -> None:
        # a transient lease-table error is logged: the next checkpoint writes this progress
        # (or, at the end, the next owner replays from the last one written)
        await checkpoint_staged(cp, stream.shard_id)

    stream._before_shard_end = flush
    try:
        async for batch in stream.records():
            if in_thread:
                try:
                    await asyncio.to_thread(_handle_all, handler, batch)
                except _PartialBatch as partial:
                    # checkpoint what the handler finished before the failing record
                    if partial.done:
                        cp.stage(batch[partial.done - 1])
                    raise partial.error from None
                cp.stage(batch[-1])
                count += len(batch)
            else:
                handled = 0
                # the lease is checked before every record; between awaits only the clock
                # can end it, which the cheap check (~0.1 µs, not ~0.4) covers
                held = stream.held_check()
                try:
                    for record in batch:
                        if not held() and stream.lost:
                            # expired mid-batch: another worker may be reading it
                            raise LeaseLost(f"lease {stream.shard_id} lost mid-batch")
                        result = handler(record)
                        # a sync handler's None needs no awaitable check (~1 µs)
                        if result is not None and inspect.isawaitable(result):
                            await result
                            held = stream.held_check()
                        handled += 1
                finally:
                    # staged once per batch, up to the last record handled
                    if handled:
                        cp.stage(batch[handled - 1])
                count += handled
            if count >= checkpoint_every or time.monotonic() - last >= checkpoint_interval:
                await flush()
                count = 0
                last = time.monotonic()
        if not stream.lost and not stream.ended:
            await flush()
    except LeaseLost:
        logger.info("lease %s lost while processing; stopping that shard", stream.shard_id)
    except BaseException:
        if not stream.lost:
            try:
                await flush()
            except (LeaseLost, KinesioError) as exc:
                logger.warning("final checkpoint of %s failed: %s", stream.shard_id, exc)
        raise
