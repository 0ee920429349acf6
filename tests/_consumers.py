"""Shared by the consumer tests on the in-memory Kinesis: quick settings, waiting for a
condition, and records numbered ``key:n``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import kinesio
from kinesio._models import Record


def quick_settings(**overrides: object) -> kinesio.ConsumerSettings:
    """Lease rounds in fractions of a second, polling every 20 ms, from TRIM_HORIZON."""
    base: dict[str, object] = {
        "failover_time": 0.8,
        "take_interval": 0.2,
        "renew_interval": 0.2,
        "shard_sync_interval": 0.5,
        "initial_position": kinesio.InitialPosition.TRIM_HORIZON,
        "retrieval": kinesio.Polling(idle_time=0.02, catch_up_interval=0.0),
    }
    base.update(overrides)
    return kinesio.ConsumerSettings(**base)  # type: ignore[arg-type]


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Until ``predicate()`` holds; ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def number(record: Record) -> int:
    """``n`` of a record whose data is ``key:n`` (or just ``n``)."""
    return int(record.data.split(b":")[-1])
