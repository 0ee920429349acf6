"""The producer's upkeep: its shard map kept current and its metrics reported.

Both run beside the send path as background loops; both read and replace state that the
accumulator owns (``Accumulator.map``, ``Accumulator.metrics``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from kinesio._errors import KinesioError, ResourceNotFoundError
from kinesio._kinesis import KinesisAPI
from kinesio.events import Emitter, ShardMapRefreshed
from kinesio.metrics import ProducerMetrics, ProducerMetricsRecorder
from kinesio.producer._accumulator import Accumulator, await_hook
from kinesio.producer._shard_map import ShardMap

__all__ = ["MetricsHook", "MetricsReporter", "ShardMapKeeper"]

logger = logging.getLogger("kinesio.producer")

MetricsHook = Callable[[ProducerMetrics], object]


class ShardMapKeeper:
    """Loads the stream's open shards into the accumulator; refreshes them on demand (a
    request answered "wrong shard", a split) and every ``interval`` seconds."""

    def __init__(
        self,
        stream_name: str,
        acc: Accumulator,
        events: Emitter,
        kinesis: Callable[[], KinesisAPI],
    ) -> None:
        self._stream_name = stream_name
        self._acc = acc
        self._events = events
        self._kinesis = kinesis
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """ListShards into a new map; raises ``ResourceNotFoundError`` if no shard is open."""
        shards = await self._kinesis().list_shards(self._stream_name)
        new = ShardMap(shards)
        if not len(new):
            raise ResourceNotFoundError(
                f"stream {self._stream_name!r} has no open shard",
                code="ResourceNotFoundException",
                operation="ListShards",
            )
        self._acc.set_map(new)
        self._events.emit(ShardMapRefreshed(open_shards=len(new)))

    async def refresh(self, *, seen_epoch: int | None = None) -> None:
        """Reload, unless the map was replaced since ``seen_epoch`` (one reload per change)."""
        async with self._lock:
            if seen_epoch is not None and self._acc.map_epoch > seen_epoch:
                return  # refreshed by someone else since that request was sent
            await self.load()
        self._acc.wake.set()

    async def run(self, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled; a failed refresh is logged and
        the old map kept."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except KinesioError as exc:
                logger.warning("periodic shard map refresh failed: %s", exc)


class MetricsReporter:
    """Cuts the accumulator's metrics into snapshots every ``interval`` seconds and hands each
    to ``on_metrics`` (sync or async; an exception it raises is logged, never propagated)."""

    def __init__(
        self,
        acc: Accumulator,
        on_metrics: MetricsHook | None,
        clock: Callable[[], float],
        spawn: Callable[[Awaitable[None]], None],
    ) -> None:
        self._acc = acc
        self._on_metrics = on_metrics
        self._clock = clock
        self._spawn = spawn
        self._past = ProducerMetrics()

    def total(self) -> ProducerMetrics:
        """Cumulative metrics since the producer was created."""
        return self._past + self._acc.metrics.snapshot(self._clock())

    def emit(self) -> None:
        now = self._clock()
        snapshot = self._acc.metrics.snapshot(now)
        self._past = self._past + snapshot
        self._acc.metrics = ProducerMetricsRecorder(now)
        if self._on_metrics is not None:
            try:
                result = self._on_metrics(snapshot)
                if inspect.isawaitable(result):
                    self._spawn(await_hook(result))
            except Exception:
                logger.exception("on_metrics hook raised")

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.emit()
