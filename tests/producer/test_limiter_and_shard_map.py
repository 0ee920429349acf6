"""Pure parts of the producer: shard prediction and the per-shard rate limiter."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kinesio._models import MAX_HASH_KEY, Shard
from kinesio.producer import ShardMap
from kinesio.producer._limiter import ShardLimiter, TokenBucket


def even_shards(n: int) -> list[Shard]:
    step = (MAX_HASH_KEY + 1) // n
    return [
        Shard(
            f"shardId-{i:012d}",
            i * step,
            MAX_HASH_KEY if i == n - 1 else (i + 1) * step - 1,
        )
        for i in range(n)
    ]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 64),
    keys=st.lists(st.integers(0, MAX_HASH_KEY), min_size=1, max_size=20),
    closed=st.sets(st.integers(0, 63), max_size=5),
)
def test_prediction_agrees_with_a_linear_scan_of_open_shards(
    n: int, keys: list[int], closed: set[int]
) -> None:
    shards = even_shards(n)
    # closed shards share ranges with open ones; they must never be predicted
    ghosts = [
        Shard(f"closed-{i}", s.starting_hash_key, s.ending_hash_key, ending_sequence_number="9")
        for i, s in enumerate(shards)
        if i in closed
    ]
    shard_map = ShardMap([*ghosts, *shards])
    assert len(shard_map) == n
    for key in [*keys, 0, MAX_HASH_KEY, *(s.ending_hash_key for s in shards)]:
        predicted = shard_map.shard_for(key)
        expected = [s for s in shards if s.starting_hash_key <= key <= s.ending_hash_key]
        assert predicted == expected[0]
    for ghost in ghosts:
        assert shard_map.get(ghost.shard_id) == ghost


def test_a_map_with_a_gap_predicts_nothing_there() -> None:
    shard_map = ShardMap([Shard("a", 0, 9), Shard("b", 20, 29)])
    assert shard_map.shard_for(15) is None
    assert shard_map.shard_for(30) is None
    a = shard_map.shard_for(9)
    assert a is not None
    assert a.shard_id == "a"


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(10, 5000),
    steps=st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 50)), min_size=1, max_size=60),
)
def test_a_bucket_never_admits_more_than_its_rate_plus_one_bucket(
    rate: float, steps: list[tuple[float, int]]
) -> None:
    now = 0.0
    bucket = TokenBucket(rate, now)
    admitted = 0.0
    for dt, cost in steps:
        now += dt
        if bucket.can_take(cost, now):
            bucket.take(cost)
            admitted += cost
    # capacity (one second's worth) + refill; a single oversize cost may go into debt once
    assert admitted <= rate * (1 + now) + max(cost for _, cost in steps)


def test_an_oversize_cost_waits_for_a_full_bucket_instead_of_never() -> None:
    bucket = TokenBucket(100, 0.0)
    assert bucket.can_take(1000, 0.0)  # full bucket: admitted, leaves debt
    bucket.take(1000)
    assert not bucket.can_take(1, 1.0)
    assert bucket.wait_time(1, 1.0) > 0
    assert bucket.can_take(1000, 11.0)


def test_adaptive_limiter_halves_on_throttle_and_recovers_on_success() -> None:
    limiter = ShardLimiter(1000, 1_000_000, 0.0, adaptive=True)
    limiter.on_throttled()
    assert limiter.factor == 0.5
    for _ in range(10):
        limiter.on_throttled()
    assert limiter.factor == ShardLimiter.MIN_FACTOR
    for _ in range(1000):
        limiter.on_success()
    assert limiter.factor == 1.0
    # at the reduced rate the limiter admits proportionally fewer records per second
    slow = ShardLimiter(1000, 1_000_000, 0.0, adaptive=True)
    slow.on_throttled()
    admitted = sum(slow.try_acquire(10, 1.0 + i / 10_000) for i in range(10_000))
    assert admitted <= 500 + 500 + 2  # bucket of 500 + 1 s of refill at 500/s


def test_a_limiter_that_is_not_adaptive_keeps_its_rate() -> None:
    limiter = ShardLimiter(1000, 1_000_000, 0.0, adaptive=False)
    limiter.on_throttled()
    assert limiter.factor == 1.0


def test_admissible_counts_records_the_binding_bucket_allows() -> None:
    limiter = ShardLimiter(1000, 100_000, now=0.0, adaptive=False)
    count, rate, full = limiter.admissible(10, 0.0)
    assert (count, rate, full) == (1000, 1000, True)  # records bind: 1000 of 10 bytes
    count, rate, full = limiter.admissible(1000, 0.0)
    assert (count, rate, full) == (100, 100, True)  # bytes bind: 100 000 / 1000
    assert limiter.try_acquire(10, 0.0)
    for _ in range(899):
        limiter.try_acquire(10, 0.0)
    count, rate, full = limiter.admissible(10, 0.0)
    assert count == 100
    assert not full  # the records bucket binds and is nearly empty, the bytes one is not
    count, _, full = limiter.admissible(10, 0.9)  # 0.9 s later: 100 + 900 tokens
    assert count == 1000
    assert full
    assert limiter.records_per_second == 1000
    assert limiter.bytes_per_second == 100_000
