"""Hot-shard auto-split: per-window counts, the hash keys seen, and the decision.

The decision (:func:`decide_split`) is a pure function of closed windows, the open shards and
the split state, so it can be property-tested; :class:`WindowCounts` collects one window on the
send path (per Kinesis record of a PutRecords answer, never per user record);
:class:`AutoSplitter` runs the windows, asks for the decision and carries a split out.

Hash keys seen are summarised per shard by a fixed histogram of ``AutoSplit.histogram_buckets``
equal buckets over the shard's range, weighted by user records. An exact median would need
every key; a reservoir sample needs random draws and a sort per window and still misses
weights. The histogram costs one integer division per Kinesis record, has a fixed size, adds
up across windows, and locates the median within 1/64 of the shard's range (by default),
interpolated linearly inside its bucket: plenty to split a hot sub-range near its middle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from kinesio._config import AutoSplit
from kinesio._errors import KinesioError
from kinesio._kinesis import KinesisAdminAPI
from kinesio._models import Shard
from kinesio.events import (
    AutoSplitDone,
    AutoSplitFailed,
    AutoSplitSkipped,
    AutoSplitStarted,
    Emitter,
)

logger = logging.getLogger("kinesio.producer.autosplit")


@dataclass(frozen=True, slots=True)
class ShardWindow:
    """What the producer saw of one shard in one window.

    ``records`` user records and ``bytes`` Kinesis bytes (data + partition key) put;
    ``throttled`` Kinesis records refused with a throttling error; ``histogram`` user records
    per bucket of equal width over the shard's hash key range (written or throttled), empty if
    none; ``held`` user records the producer's own rate limiter was holding back when the
    window closed (queued beyond what the shard's limit admits within ``linger``).
    """

    records: int = 0
    bytes: int = 0
    throttled: int = 0
    histogram: tuple[int, ...] = ()
    held: int = 0

    @property
    def pressure(self) -> int:
        """Demand over the shard's limit: records Kinesis throttled plus records our own
        limiter held back (a lone producer at ``rate_limit`` 1.0 queues instead of being
        throttled, so throttles alone would never show its hot shard)."""
        return self.throttled + self.held


Window = Mapping[str, ShardWindow]


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """Split ``shard`` at ``new_starting_hash_key``; the counts that led there."""

    shard: Shard
    new_starting_hash_key: int
    stream_throttled: tuple[int, ...]
    windows: tuple[ShardWindow, ...]


@dataclass(frozen=True, slots=True)
class SkipPlan:
    """Throttles call for a split, but ``reason`` prevents it (see ``AutoSplitSkipped``)."""

    reason: str
    shard_id: str | None
    stream_throttled: tuple[int, ...]


def bucket_bounds(start: int, end: int, buckets: int, i: int) -> tuple[int, int]:
    """Hash keys ``[lo, hi)`` of bucket ``i`` of ``buckets`` over ``start..end`` (inclusive)."""
    width = end - start + 1
    return start + -(-i * width // buckets), start + -(-(i + 1) * width // buckets)


def bucket_of(hash_key: int, start: int, end: int, buckets: int) -> int:
    """The bucket of ``hash_key`` (within ``start..end``) in a histogram of ``buckets``."""
    return (hash_key - start) * buckets // (end - start + 1)


def split_point(start: int, end: int, histogram: Sequence[int]) -> int | None:
    """The NewStartingHashKey splitting the weight of ``histogram`` in half.

    Linear interpolation inside the bucket holding the weighted median, clamped to
    ``start + 1 .. end`` so that both children are non-empty. None if the range holds a single
    key or the histogram is empty.
    """
    total = sum(histogram)
    if end <= start or total <= 0:
        return None
    buckets = len(histogram)
    before = 0
    for i, weight in enumerate(histogram):
        if weight and 2 * (before + weight) >= total:
            lo, hi = bucket_bounds(start, end, buckets, i)
            key = lo + (hi - lo) * (total - 2 * before) // (2 * weight)
            return min(end, max(start + 1, key))
        before += weight
    raise AssertionError("unreachable: the weights add up to total")  # pragma: no cover


def decide_split(
    windows: Sequence[Window],
    open_shards: Sequence[Shard],
    settings: AutoSplit,
    *,
    now: float,
    cooldown_until: float,
    in_flight: bool,
) -> SplitPlan | SkipPlan | None:
    """What to do after a window closed: split a shard, skip (and why), or nothing (None).

    Nothing unless the stream-wide pressure (:attr:`ShardWindow.pressure`: records throttled
    by Kinesis or held back by the producer's limiter) reached ``throttle_threshold`` in each
    of the last ``consecutive_windows`` windows. Then a split in flight or ``now`` before
    ``cooldown_until`` (same clock) means a skip; otherwise the hottest open shard — the most
    pressure over those windows, then the most bytes, records, lowest shard id — is split at
    the median of the hash keys seen on it.
    """
    n = settings.consecutive_windows
    if len(windows) < n:
        return None
    recent = windows[-n:]
    stream_throttled = tuple(sum(s.pressure for s in w.values()) for w in recent)
    if min(stream_throttled) < settings.throttle_threshold:
        return None
    if in_flight:
        return SkipPlan("in-flight", None, stream_throttled)
    if now < cooldown_until:
        return SkipPlan("cool-down", None, stream_throttled)
    by_id = {s.shard_id: s for s in open_shards}
    heat: dict[str, tuple[int, int, int]] = {}
    for w in recent:
        for shard_id, s in w.items():
            if shard_id in by_id:
                t, b, r = heat.get(shard_id, (0, 0, 0))
                heat[shard_id] = (t + s.pressure, b + s.bytes, r + s.records)
    hot = [sid for sid, h in heat.items() if h[0] > 0]
    if not hot:
        return SkipPlan("not-open", None, stream_throttled)
    hottest = min(hot, key=lambda sid: (-heat[sid][0], -heat[sid][1], -heat[sid][2], sid))
    shard = by_id[hottest]
    per_window = tuple(w.get(hottest, ShardWindow()) for w in recent)
    histogram = [0] * settings.histogram_buckets
    for s in per_window:
        for i, weight in enumerate(s.histogram):
            histogram[i] += weight
    if shard.ending_hash_key <= shard.starting_hash_key:
        return SkipPlan("too-narrow", hottest, stream_throttled)
    key = split_point(shard.starting_hash_key, shard.ending_hash_key, histogram)
    if key is None:
        return SkipPlan("no-keys", hottest, stream_throttled)
    return SplitPlan(shard, key, stream_throttled, per_window)


class _ShardCounts:
    __slots__ = ("buckets", "bytes", "end", "histogram", "records", "start", "throttled")

    def __init__(self, start: int, end: int, buckets: int) -> None:
        self.start = start
        self.end = end
        self.buckets = buckets
        self.records = 0
        self.bytes = 0
        self.throttled = 0
        self.histogram = [0] * buckets


class WindowCounts:
    """The open window: per shard counts and hash-key histogram, fed per Kinesis record."""

    __slots__ = ("_buckets", "_range_of", "_shards")

    def __init__(self, buckets: int, range_of: Callable[[str], Shard | None]) -> None:
        self._buckets = buckets
        self._range_of = range_of
        self._shards: dict[str, _ShardCounts] = {}

    def add(
        self, shard_id: str, hash_key: int, users: int, nbytes: int, *, throttled: bool
    ) -> None:
        """One Kinesis record of ``users`` user records led by ``hash_key``: put (``nbytes``
        Kinesis bytes) or throttled. Keys outside the shard's range (a stale map) are skipped.
        """
        c = self._shards.get(shard_id)
        if c is None:
            shard = self._range_of(shard_id)
            if shard is None:
                return
            c = self._shards[shard_id] = _ShardCounts(
                shard.starting_hash_key, shard.ending_hash_key, self._buckets
            )
        if throttled:
            c.throttled += 1
        else:
            c.records += users
            c.bytes += nbytes
        if c.start <= hash_key <= c.end:
            # The head's key stands for the whole aggregate: one division per Kinesis record.
            c.histogram[(hash_key - c.start) * c.buckets // (c.end - c.start + 1)] += users

    def close(self, held: Mapping[str, int] | None = None) -> dict[str, ShardWindow]:
        """The window's counts, with ``held`` (user records held back per shard now); the next
        window starts empty."""
        shards, self._shards = self._shards, {}
        held = held or {}
        window = {
            sid: ShardWindow(c.records, c.bytes, c.throttled, tuple(c.histogram), held.get(sid, 0))
            for sid, c in shards.items()
        }
        for sid, n in held.items():
            if sid not in window:
                window[sid] = ShardWindow(held=n)
        return window


class AutoSplitter:
    """Closes a window every ``settings.window`` seconds, decides, and splits.

    ``open_shards`` reads the producer's current shard map and ``refresh`` reloads it. A split
    runs in its own task (so windows go on closing and report "in-flight"); its failure is an
    event and a warning, never an exception out of here.
    """

    def __init__(
        self,
        settings: AutoSplit,
        stream_name: str,
        admin: KinesisAdminAPI,
        emitter: Emitter,
        shard_of: Callable[[str], Shard | None],
        open_shards: Callable[[], Sequence[Shard]],
        refresh: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        held_back: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.settings = settings
        self.counts = WindowCounts(settings.histogram_buckets, shard_of)
        self._stream_name = stream_name
        self._admin = admin
        self._events = emitter
        self._open_shards = open_shards
        self._refresh = refresh
        self._clock = clock
        self._held_back = held_back
        self._history: deque[dict[str, ShardWindow]] = deque(maxlen=settings.consecutive_windows)
        self._cooldown_until = float("-inf")
        self._split_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Close a window every ``window`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.settings.window)
            self.close_window()

    async def aclose(self) -> None:
        """Cancel a split still waiting (the SplitShard call itself may have been made)."""
        task = self._split_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @property
    def in_flight(self) -> bool:
        return self._split_task is not None and not self._split_task.done()

    def close_window(self) -> SplitPlan | SkipPlan | None:
        """Close the current window, decide, and start a split if decided."""
        self._history.append(self.counts.close(self._held_back()))
        plan = decide_split(
            list(self._history),
            self._open_shards(),
            self.settings,
            now=self._clock(),
            cooldown_until=self._cooldown_until,
            in_flight=self.in_flight,
        )
        if isinstance(plan, SkipPlan):
            logger.debug("auto-split skipped (%s) for %r", plan.reason, self._stream_name)
            self._events.emit(
                AutoSplitSkipped(
                    reason=plan.reason,
                    shard_id=plan.shard_id,
                    stream_throttled=plan.stream_throttled,
                )
            )
        elif isinstance(plan, SplitPlan):
            self._split_task = asyncio.create_task(
                self._split(plan), name=f"kinesio-autosplit-{plan.shard.shard_id}"
            )
        return plan

    async def _split(self, plan: SplitPlan) -> None:
        shard, key = plan.shard, plan.new_starting_hash_key
        logger.info(
            "auto-split: splitting %s of %r at %d (throttled per window: %s)",
            shard.shard_id,
            self._stream_name,
            key,
            list(plan.stream_throttled),
        )
        self._events.emit(
            AutoSplitStarted(
                shard_id=shard.shard_id,
                new_starting_hash_key=key,
                starting_hash_key=shard.starting_hash_key,
                ending_hash_key=shard.ending_hash_key,
                stream_throttled=plan.stream_throttled,
                shard_throttled=tuple(w.throttled for w in plan.windows),
                shard_records=tuple(w.records for w in plan.windows),
                shard_bytes=tuple(w.bytes for w in plan.windows),
                shard_held=tuple(w.held for w in plan.windows),
            )
        )
        started = self._clock()
        try:
            await self._admin.split_shard(self._stream_name, shard.shard_id, key)
            await self._admin.wait_for_active(
                self._stream_name, timeout=self.settings.active_timeout
            )
            await self._refresh()
        except Exception as exc:
            # Not even an unexpected error may stop the producer: it reports and goes on.
            logger.warning(
                "auto-split of %s of %r failed: %s",
                shard.shard_id,
                self._stream_name,
                exc,
                exc_info=not isinstance(exc, KinesioError),
            )
            self._events.emit(
                AutoSplitFailed(shard_id=shard.shard_id, new_starting_hash_key=key, error=str(exc))
            )
        else:
            children = tuple(
                s.shard_id for s in self._open_shards() if shard.shard_id in s.parent_shard_ids
            )
            logger.info(
                "auto-split: %s of %r split into %s",
                shard.shard_id,
                self._stream_name,
                ", ".join(children),
            )
            self._events.emit(
                AutoSplitDone(
                    shard_id=shard.shard_id,
                    new_starting_hash_key=key,
                    children=children,
                    duration=self._clock() - started,
                )
            )
        finally:
            # Counts from before the split describe shards that no longer take writes.
            self._history.clear()
            self._cooldown_until = self._clock() + self.settings.cooldown
