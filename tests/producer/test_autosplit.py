"""Hot-shard auto-split: the pure decision (hypothesis), then end to end on the in-memory
Kinesis (which throttles an overdriven shard by itself) and through aiobotocore on moto."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinesio import AsyncProducer, AutoSplit, ConfigurationError, ProducerSettings
from kinesio import events as ev
from kinesio._models import MAX_HASH_KEY, PutResult, Shard
from kinesio.local import LocalEndpoint
from kinesio.producer._autosplit import (
    ShardWindow,
    SkipPlan,
    SplitPlan,
    WindowCounts,
    bucket_bounds,
    decide_split,
    split_point,
)
from kinesio.testing import BotocoreFaults, Fault, InMemoryKinesis

PTE = "ProvisionedThroughputExceededException"


def even_shards(n: int) -> list[Shard]:
    step = (MAX_HASH_KEY + 1) // n
    return [
        Shard(f"shardId-{i:012d}", i * step, MAX_HASH_KEY if i == n - 1 else (i + 1) * step - 1)
        for i in range(n)
    ]


# -- the pure parts ------------------------------------------------------------------------


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.integers(0, MAX_HASH_KEY - 1))
    width = draw(st.one_of(st.integers(1, 300), st.integers(1, MAX_HASH_KEY - start)))
    return start, start + width


@settings(max_examples=300, deadline=None)
@given(
    bounds=ranges(),
    histogram=st.lists(st.integers(0, 1000), min_size=2, max_size=128).filter(lambda h: sum(h)),
)
def test_split_point_is_a_valid_key_inside_the_median_bucket(
    bounds: tuple[int, int], histogram: list[int]
) -> None:
    start, end = bounds
    key = split_point(start, end, histogram)
    assert key is not None
    assert start < key <= end  # both children non-empty: a valid NewStartingHashKey
    total, before, median = sum(histogram), 0, 0
    while not (histogram[median] and 2 * (before + histogram[median]) >= total):
        before += histogram[median]
        median += 1
    lo, hi = bucket_bounds(start, end, len(histogram), median)
    assert min(end, max(start + 1, lo)) <= key <= min(end, max(start + 1, hi))


def test_split_point_of_a_single_key_or_no_keys_is_none() -> None:
    assert split_point(5, 5, [3, 0]) is None
    assert split_point(0, 100, [0, 0, 0]) is None


@settings(max_examples=200, deadline=None)
@given(
    sub=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted),
    n=st.integers(20, 400),
    seed=st.integers(0, 2**32),
)
def test_split_point_halves_the_keys_seen_not_the_range(
    sub: list[float], n: int, seed: int
) -> None:
    shard = even_shards(4)[1]
    width = shard.ending_hash_key - shard.starting_hash_key
    # float products of 128-bit widths may round past the end: clamp
    lo = min(shard.ending_hash_key, shard.starting_hash_key + int(sub[0] * width))
    hi = min(shard.ending_hash_key, max(lo, shard.starting_hash_key + int(sub[1] * width)))
    rng = random.Random(seed)
    keys = [rng.randint(lo, hi) for _ in range(n)]
    counts = WindowCounts(64, {shard.shard_id: shard}.get)
    for k in keys:
        counts.add(shard.shard_id, k, 1, 10, throttled=False)
    window = counts.close()[shard.shard_id]
    key = split_point(shard.starting_hash_key, shard.ending_hash_key, window.histogram)
    assert key is not None
    bucket = (width + 1) // 64 + 1
    # within one bucket of the keys seen, and at most one bucket's keys off an even halving
    assert lo - bucket <= key <= hi + bucket
    below = sum(k < key for k in keys)
    in_median_bucket = max(window.histogram)
    assert abs(below - (n - below)) <= 2 * in_median_bucket


def window_of(
    throttled: dict[str, int], buckets: int = 8, held: dict[str, int] | None = None
) -> dict[str, ShardWindow]:
    held = held or {}
    return {
        sid: ShardWindow(
            records=10, bytes=100, throttled=t, histogram=(1,) * buckets, held=held.get(sid, 0)
        )
        for sid, t in throttled.items()
    }


SHARDS = even_shards(4)
SHARD_IDS = [s.shard_id for s in SHARDS]
windows_st = st.lists(
    st.dictionaries(
        st.sampled_from(SHARD_IDS), st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=4
    ).map(
        lambda w: window_of(
            {sid: t for sid, (t, _) in w.items()}, held={sid: h for sid, (_, h) in w.items()}
        )
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(
    windows=windows_st,
    consecutive=st.integers(1, 4),
    threshold=st.integers(1, 60),
    in_flight=st.booleans(),
    cooling=st.booleans(),
)
def test_decision(
    windows: list[dict[str, ShardWindow]],
    consecutive: int,
    threshold: int,
    in_flight: bool,
    cooling: bool,
) -> None:
    cfg = AutoSplit(
        throttle_threshold=threshold, consecutive_windows=consecutive, histogram_buckets=8
    )
    plan = decide_split(
        windows,
        SHARDS,
        cfg,
        now=100.0,
        cooldown_until=150.0 if cooling else 50.0,
        in_flight=in_flight,
    )
    recent = windows[-consecutive:]
    # pressure: throttled by Kinesis plus held back by the producer's own limiter
    per_window = [sum(s.throttled + s.held for s in w.values()) for w in recent]
    if len(windows) < consecutive or min(per_window) < threshold:
        assert plan is None  # below the threshold, or not for long enough
        return
    assert plan is not None
    assert plan.stream_throttled == tuple(per_window)
    if in_flight:
        assert plan == SkipPlan("in-flight", None, tuple(per_window))
    elif cooling:
        assert plan == SkipPlan("cool-down", None, tuple(per_window))
    else:
        assert isinstance(plan, SplitPlan)
        heat = Counter[str]()
        for w in recent:
            for sid, s in w.items():
                heat[sid] += s.throttled + s.held
        assert heat[plan.shard.shard_id] == max(heat.values())  # the hottest shard
        shard = plan.shard
        assert shard.starting_hash_key < plan.new_starting_hash_key <= shard.ending_hash_key
        assert len(plan.windows) == consecutive


def test_records_held_back_by_the_limiter_alone_make_a_shard_hot() -> None:
    cfg = AutoSplit(throttle_threshold=50, consecutive_windows=2, histogram_buckets=8)
    calm = {SHARD_IDS[0]: 0, SHARD_IDS[1]: 0}
    windows = [window_of(calm, held={SHARD_IDS[1]: 60}) for _ in range(2)]
    plan = decide_split(windows, SHARDS, cfg, now=0.0, cooldown_until=-1.0, in_flight=False)
    assert isinstance(plan, SplitPlan)
    assert plan.shard.shard_id == SHARD_IDS[1]
    assert plan.stream_throttled == (60, 60)
    below = [window_of(calm, held={SHARD_IDS[1]: 49}) for _ in range(2)]
    assert decide_split(below, SHARDS, cfg, now=0.0, cooldown_until=-1.0, in_flight=False) is None


def test_a_window_lists_shards_that_only_held_records_back() -> None:
    counts = WindowCounts(8, {s.shard_id: s for s in SHARDS}.get)
    counts.add(SHARD_IDS[0], SHARDS[0].starting_hash_key, 3, 30, throttled=False)
    window = counts.close({SHARD_IDS[0]: 7, SHARD_IDS[2]: 5})
    assert window[SHARD_IDS[0]].records == 3
    assert window[SHARD_IDS[0]].held == 7
    assert window[SHARD_IDS[2]] == ShardWindow(held=5)
    assert counts.close() == {}  # the next window starts empty


def test_decision_ignores_shards_no_longer_open() -> None:
    cfg = AutoSplit(throttle_threshold=5, consecutive_windows=1, histogram_buckets=8)
    windows = [window_of({"shardId-closed": 50})]
    plan = decide_split(windows, SHARDS, cfg, now=0.0, cooldown_until=-1.0, in_flight=False)
    assert plan == SkipPlan("not-open", None, (50,))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"throttle_threshold": 0},
        {"consecutive_windows": 0},
        {"window": 0.0},
        {"cooldown": -1.0},
        {"histogram_buckets": 1},
        {"throttle_threshold": 2.5},
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        AutoSplit(**kwargs)


def test_auto_split_is_off_by_default() -> None:
    assert ProducerSettings().auto_split is None


# -- end to end on the in-memory Kinesis -----------------------------------------------------

# The producer admits 3x a shard's limit and does not slow down when throttled, so the
# in-memory Kinesis keeps throttling the hot shard until it is split.
OVERDRIVE = ProducerSettings(
    aggregate=False,
    rate_limit=3.0,
    adaptive=False,
    linger=0.01,
    retry_backoff=0.01,
    max_retry_backoff=0.05,
    auto_split=AutoSplit(
        throttle_threshold=20, consecutive_windows=2, window=0.3, cooldown=60.0, active_timeout=10
    ),
)
SHARD0 = even_shards(2)[0]
QUARTER = (SHARD0.ending_hash_key - SHARD0.starting_hash_key + 1) // 4


class HotWriter:
    """Puts records whose hash keys all lie in the first quarter of shard 0; keeps their
    futures and payloads."""

    def __init__(self, producer: AsyncProducer) -> None:
        self.producer = producer
        self.futures: list[asyncio.Future[PutResult]] = []
        self.sent: Counter[bytes] = Counter()
        self._rng = random.Random(1)

    async def put(self, n: int) -> list[asyncio.Future[PutResult]]:
        new = []
        for _ in range(n):
            i = len(self.futures)
            data = f"{i}".encode()
            key = self._rng.randrange(QUARTER)
            new.append(await self.producer.put(data, f"k{i}", explicit_hash_key=key))
            self.futures.append(new[-1])
            self.sent[data] += 1
        return new

    async def until(self, condition: Callable[[], bool], timeout: float = 25.0) -> None:
        """Keep shard 0's quarter written (about what two shards take; records expire after
        30 s, hence the timeout) until ``condition()`` holds."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self.put(100)
                await asyncio.sleep(0.05)


def kinds(seen: list[ev.DiagnosticEvent]) -> set[type[ev.DiagnosticEvent]]:
    return {type(e) for e in seen}


def stored(kinesis: InMemoryKinesis, stream: str) -> Counter[bytes]:
    return Counter(
        r.data for shard_id in kinesis.stats(stream) for r in kinesis.records(stream, shard_id)
    )


async def test_hot_shard_is_split_at_the_median_of_the_keys_seen() -> None:
    kinesis = InMemoryKinesis(updating_delay=0.2)
    await kinesis.create_stream("hot", 2)
    seen: list[ev.DiagnosticEvent] = []
    async with AsyncProducer(
        "hot", kinesis=kinesis, settings=OVERDRIVE, on_event=seen.append
    ) as producer:
        hot = HotWriter(producer)
        await hot.put(1000)
        await hot.until(lambda: ev.AutoSplitDone in kinds(seen))
        after = await hot.put(500)
        await producer.flush()
        shard_map = producer.shard_map
    assert all(f.result() for f in hot.futures)  # every record delivered
    assert stored(kinesis, "hot") == hot.sent

    started = [e for e in seen if isinstance(e, ev.AutoSplitStarted)]
    done = [e for e in seen if isinstance(e, ev.AutoSplitDone)]
    assert len(started) == 1  # one split, then the cool-down
    assert len(done) == 1
    split = started[0]
    assert split.shard_id == SHARD0.shard_id
    assert (split.starting_hash_key, split.ending_hash_key) == (0, SHARD0.ending_hash_key)
    assert min(split.stream_throttled) >= 20
    assert len(split.shard_records) == 2
    # the seen keys' midpoint (an eighth of the shard), not the range's (a half)
    assert abs(split.new_starting_hash_key - QUARTER // 2) < QUARTER // 8

    children = done[0].children
    assert len(children) == 2
    assert {s.shard_id for s in shard_map.open_shards} >= set(children)
    ranges = sorted(
        (shard_map.get(c).starting_hash_key, shard_map.get(c).ending_hash_key)  # type: ignore[union-attr]
        for c in children
    )
    assert ranges == [
        (0, split.new_starting_hash_key - 1),
        (split.new_starting_hash_key, SHARD0.ending_hash_key),
    ]
    # after the split the producer wrote to both children
    stats = kinesis.stats("hot")
    assert all(stats[c].records_in > 0 for c in children)
    assert {f.result().shard_id for f in after} == set(children)
    assert kinesis.calls["SplitShard"] == 1


async def test_a_lone_producer_within_its_limit_splits_the_shard_it_queues_for() -> None:
    # The default rate limit (100 %) makes the producer queue rather than be throttled: the
    # records its limiter holds back are what shows the shard is asked for too much.
    kinesis = InMemoryKinesis(updating_delay=0.2)
    await kinesis.create_stream("hot", 2)
    seen: list[ev.DiagnosticEvent] = []
    s = dataclasses.replace(OVERDRIVE, rate_limit=1.0, adaptive=True)
    async with AsyncProducer("hot", kinesis=kinesis, settings=s, on_event=seen.append) as producer:
        hot = HotWriter(producer)
        await hot.put(1000)
        await hot.until(lambda: ev.AutoSplitDone in kinds(seen))
        await producer.flush()
    assert all(f.result() for f in hot.futures)  # every record delivered
    assert stored(kinesis, "hot") == hot.sent
    split = next(e for e in seen if isinstance(e, ev.AutoSplitStarted))
    assert split.shard_id == SHARD0.shard_id
    assert min(split.shard_held) > 0  # held back in every window that led to the split
    assert min(split.stream_throttled) >= 20
    assert abs(split.new_starting_hash_key - QUARTER // 2) < QUARTER // 8


@pytest.mark.parametrize(
    "code", ["LimitExceededException", "ResourceInUseException", "AccessDeniedException"]
)
async def test_a_failed_split_is_an_event_and_a_warning_and_loses_nothing(
    code: str, caplog: pytest.LogCaptureFixture
) -> None:
    kinesis = InMemoryKinesis()
    await kinesis.create_stream("hot", 2)
    kinesis.inject(Fault("SplitShard", code, message="no split for you"))
    seen: list[ev.DiagnosticEvent] = []
    caplog.set_level(logging.WARNING, logger="kinesio.producer.autosplit")
    async with AsyncProducer(
        "hot", kinesis=kinesis, settings=OVERDRIVE, on_event=seen.append
    ) as producer:
        hot = HotWriter(producer)
        await hot.until(lambda: ev.AutoSplitFailed in kinds(seen))
        await hot.put(500)
        await producer.flush()
    assert all(f.result() for f in hot.futures)
    assert stored(kinesis, "hot") == hot.sent
    failed = [e for e in seen if isinstance(e, ev.AutoSplitFailed)]
    assert len(failed) == 1  # then the cool-down: no second try
    assert failed[0].shard_id == SHARD0.shard_id
    assert "no split for you" in failed[0].error
    assert not any(isinstance(e, ev.AutoSplitDone) for e in seen)
    assert any(
        "auto-split" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records
    )
    assert len(kinesis.stats("hot")) == 2  # no shard was split


async def test_windows_during_a_split_and_the_cool_down_are_skipped() -> None:
    kinesis = InMemoryKinesis(updating_delay=1.0)  # a slow split: windows close meanwhile
    await kinesis.create_stream("hot", 2)
    seen: list[ev.DiagnosticEvent] = []
    settings = dataclasses.replace(
        OVERDRIVE,
        auto_split=AutoSplit(
            throttle_threshold=10, consecutive_windows=1, window=0.2, cooldown=60.0
        ),
    )
    async with AsyncProducer(
        "hot", kinesis=kinesis, settings=settings, on_event=seen.append
    ) as producer:
        hot = HotWriter(producer)
        await hot.put(5000)  # a backlog: the children are overdriven while the split runs

        def reasons() -> set[str]:
            return {e.reason for e in seen if isinstance(e, ev.AutoSplitSkipped)}

        await hot.until(lambda: reasons() >= {"in-flight", "cool-down"}, timeout=25)
        await producer.flush()
    assert all(f.result() for f in hot.futures)
    assert stored(kinesis, "hot") == hot.sent
    assert ev.AutoSplitDone in kinds(seen)
    # skipped while the split was in flight, then in its cool-down
    assert next(e.reason for e in seen if isinstance(e, ev.AutoSplitSkipped)) == "in-flight"
    done_at = next(i for i, e in enumerate(seen) if isinstance(e, ev.AutoSplitDone))
    assert any(
        isinstance(e, ev.AutoSplitSkipped) and e.reason == "cool-down" for e in seen[done_at:]
    )
    assert sum(isinstance(e, ev.AutoSplitStarted) for e in seen) == 1


async def test_auto_split_needs_a_client_with_the_control_plane() -> None:
    class DataOnly:
        def __init__(self, inner: InMemoryKinesis) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name in ("split_shard", "wait_for_active"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    kinesis = InMemoryKinesis()
    await kinesis.create_stream("s", 1)
    producer = AsyncProducer("s", kinesis=DataOnly(kinesis), settings=OVERDRIVE)
    with pytest.raises(ConfigurationError, match="split_shard"):
        await producer.start()


# -- through aiobotocore on moto ------------------------------------------------------------


@pytest.fixture
def hot_stream(moto_stream: Callable[[str, int], str]) -> str:
    return moto_stream("autosplit", 2)


@pytest.mark.integration
async def test_split_goes_through_aiobotocore_and_refreshes_the_shard_map(
    moto_endpoint: LocalEndpoint, hot_stream: str
) -> None:
    # moto never throttles: half the entries of every PutRecords come back throttled
    faults = BotocoreFaults(Fault("PutRecords", PTE, per_record=True, probability=0.5), seed=7)
    settings = ProducerSettings(
        linger=0.02,
        retry_backoff=0.02,
        max_retry_backoff=0.1,
        max_in_flight=1,  # moto numbers records without a lock (see test_producer_faults_moto)
        aggregate=False,
        auto_split=AutoSplit(
            throttle_threshold=5, consecutive_windows=2, window=0.3, cooldown=60.0
        ),
    )
    seen: list[ev.DiagnosticEvent] = []
    async with AsyncProducer(
        hot_stream, aws=faults.aws_config(moto_endpoint), settings=settings, on_event=seen.append
    ) as producer:
        hot = HotWriter(producer)
        await hot.until(lambda: bool(kinds(seen) & {ev.AutoSplitDone, ev.AutoSplitFailed}))
        faults.clear_faults()
        after = await hot.put(200)
        await producer.flush()
        shard_map = producer.shard_map
    assert all(f.result() for f in hot.futures)
    done = [e for e in seen if isinstance(e, ev.AutoSplitDone)]
    assert len(done) == 1, seen
    assert faults.calls["SplitShard"] == 1
    key = done[0].new_starting_hash_key
    assert 0 < key < QUARTER  # inside the hot sub-range of shard 0, not its midpoint

    client: Any = boto3.client("kinesis", endpoint_url=moto_endpoint.endpoint_url)
    shards = client.list_shards(StreamName=hot_stream)["Shards"]
    children = [s for s in shards if s.get("ParentShardId") == SHARD0.shard_id]
    assert sorted(int(s["HashKeyRange"]["StartingHashKey"]) for s in children) == [0, key]
    assert set(done[0].children) == {s["ShardId"] for s in children}
    open_ids = {s.shard_id for s in shard_map.open_shards}
    assert set(done[0].children) <= open_ids
    assert SHARD0.shard_id not in open_ids
    assert {f.result().shard_id for f in after} == set(done[0].children)
