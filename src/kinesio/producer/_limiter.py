"""Per-shard write rate limiting: two token buckets (records, bytes) with adaptive slow-down."""

from __future__ import annotations


class TokenBucket:
    """Tokens refill continuously at ``rate`` per second up to ``capacity`` (one second's worth).

    A cost larger than the capacity is admitted when the bucket is full and leaves it in debt,
    so that a record bigger than the bucket is delayed, never refused forever.
    """

    __slots__ = ("_last", "capacity", "rate", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = rate
        self.tokens = rate
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
            self._last = now

    def can_take(self, cost: float, now: float) -> bool:
        self._refill(now)
        return self.tokens >= min(cost, self.capacity)

    def take(self, cost: float) -> None:
        self.tokens -= cost

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` can be taken (0 if it can now)."""
        self._refill(now)
        need = min(cost, self.capacity) - self.tokens
        return max(0.0, need / self.rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.capacity = rate
        self.tokens = min(self.tokens, rate)


class ShardLimiter:
    """Admits Kinesis records for one shard at ``factor`` × the shard's write limits.

    ``on_throttled`` halves the factor (down to 5 % of the configured rate); every successful
    write then recovers it additively (AIMD), so a producer sharing a shard with others backs
    off when throttled and climbs back when the others go quiet.
    """

    __slots__ = ("_bps", "_bytes", "_records", "_rps", "adaptive", "factor", "max_factor")

    MIN_FACTOR = 0.05
    RECOVERY_STEP = 0.02

    def __init__(
        self, records_per_second: float, bytes_per_second: float, now: float, *, adaptive: bool
    ) -> None:
        self._rps = records_per_second
        self._bps = bytes_per_second
        self.factor = 1.0
        self.max_factor = 1.0
        self.adaptive = adaptive
        self._records = TokenBucket(records_per_second, now)
        self._bytes = TokenBucket(bytes_per_second, now)

    def try_acquire(self, nbytes: int, now: float) -> bool:
        """Take one record's and ``nbytes``' tokens if both buckets allow it now."""
        if self._records.can_take(1, now) and self._bytes.can_take(nbytes, now):
            self._records.take(1)
            self._bytes.take(nbytes)
            return True
        return False

    def admissible(self, record_bytes: float, now: float) -> tuple[float, float, bool]:
        """What the buckets allow now for records of ``record_bytes`` bytes each: how many
        records, how many more per second, and whether a bucket is (nearly) full — waiting
        longer would waste tokens."""
        records, nbytes = self._records, self._bytes
        records._refill(now)
        nbytes._refill(now)
        per_record = max(1.0, record_bytes)
        count = min(records.tokens, nbytes.tokens / per_record)
        rate = min(records.rate, nbytes.rate / per_record)
        # Full means the bucket that binds (records or bytes) is: the other may well be full
        # while the binding one is empty, and waiting then wastes nothing.
        full = count >= 0.9 * min(records.capacity, nbytes.capacity / per_record)
        return count, rate, full

    def wait_time(self, nbytes: int, now: float, records: int = 1) -> float:
        """Seconds until ``records`` records of ``nbytes`` bytes in all can be admitted."""
        return max(self._records.wait_time(records, now), self._bytes.wait_time(nbytes, now))

    @property
    def records_per_second(self) -> float:
        """The Kinesis records per second admitted now (after any adaptive slow-down)."""
        return self._records.rate

    @property
    def bytes_per_second(self) -> float:
        return self._bytes.rate

    def _apply(self) -> None:
        self._records.set_rate(self._rps * self.factor)
        self._bytes.set_rate(self._bps * self.factor)

    def on_throttled(self) -> None:
        if self.adaptive and self.factor > self.MIN_FACTOR:
            self.factor = max(self.MIN_FACTOR, self.factor / 2)
            self._apply()

    def on_success(self) -> None:
        if self.adaptive and self.factor < self.max_factor:
            self.factor = min(self.max_factor, self.factor + self.RECOVERY_STEP)
            self._apply()
