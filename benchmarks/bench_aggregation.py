"""KPL aggregation throughput: kinesio.aggregation against aws_kinesis_agg, in one process.

Run: .venv/bin/python benchmarks/bench_aggregation.py        (about 30-60 s)
     .venv/bin/python benchmarks/bench_aggregation.py --profile   (cProfile of kinesio's side)

For 100-byte and 1 KiB user records, each with its own 36-character partition key (the usual
UUID keys), one aggregate as full as the KPL's 51 200-byte limit allows is
  - encoded: kinesio's AggregateBuilder (what the producer runs) / aws_kinesis_agg's
    RecordAggregator, then
  - decoded: kinesio.aggregation.decode / aws_kinesis_agg's iter_deaggregate_records on a
    boto3-shaped record (which also base64-encodes each user record's data: its API does).
Each timing is the best of 9 rounds of ~0.25 s of CPU time of this process (not wall time:
the machine may be shared), the four cases taking turns. MB/s counts user data bytes only.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import platform
import pstats
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from kinesio import ProducerRecord
from kinesio.aggregation import AggregateBuilder, decode

MAX_SIZE = 51_200


def make_records(record_size: int) -> list[ProducerRecord]:
    """As many records as fit one aggregate (outer partition key included)."""
    builder = AggregateBuilder(MAX_SIZE)
    out: list[ProducerRecord] = []
    n = 0
    while True:
        r = ProducerRecord(bytes([n % 251]) * record_size, str(uuid.UUID(int=n * 7919 + 1)))
        if not builder.try_add(r):
            return out
        out.append(r)
        n += 1


def kinesio_encode(records: list[ProducerRecord]) -> bytes:
    builder = AggregateBuilder(MAX_SIZE)
    for r in records:
        if not builder.try_add(r):
            raise AssertionError("benchmark batch does not fit one aggregate")
    return builder.build()


def kinesio_decode(data: bytes) -> list[ProducerRecord]:
    return decode(data)


def theirs_encode(records: list[ProducerRecord]) -> bytes:
    aggregator = RecordAggregator()
    for r in records:
        aggregator.add_user_record(r.partition_key, r.data)
    _pk, _ehk, data = aggregator.clear_and_get().get_contents()
    assert isinstance(data, bytes)
    return data


def theirs_decode(data: bytes) -> list[dict[str, Any]]:
    raw = {
        "Data": data,
        "PartitionKey": "outer",
        "SequenceNumber": "1",
        "ApproximateArrivalTimestamp": 0,
    }
    return list(iter_deaggregate_records([raw], data_format="Boto3"))


def best_seconds(
    cases: list[tuple[Callable[[Any], object], object]], rounds: int, budget: float
) -> list[float]:
    """Best time of one call of each ``fn(arg)``, over ``rounds`` rounds of ~``budget`` s each.

    The cases take turns round by round, so that a noisy neighbour on a shared machine slows
    them all alike rather than whichever happened to be running.
    """
    clock = time.process_time
    calls = []
    for fn, arg in cases:
        start = clock()
        for _ in range(10):
            fn(arg)
        calls.append(max(1, int(budget / max((clock() - start) / 10, 1e-7))))
    best = [float("inf")] * len(cases)
    for _ in range(rounds):
        for i, ((fn, arg), n) in enumerate(zip(cases, calls, strict=True)):
            gc.collect()
            start = clock()
            for _ in range(n):
                fn(arg)
            best[i] = min(best[i], (clock() - start) / n)
    return best


@dataclass
class Row:
    record_size: int
    records: int
    library: str
    encode_s: float
    decode_s: float

    def per_second(self, seconds: float) -> float:
        return self.records / seconds

    @property
    def total_s(self) -> float:
        return self.encode_s + self.decode_s


def profile(rounds: int) -> None:
    """``rounds`` encodes and decodes of one full aggregate of 100-byte records, profiled."""
    records = make_records(100)
    data = kinesio_encode(records)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        kinesio_encode(records)
        kinesio_decode(data)
    profiler.disable()
    print(f"{rounds} x (encode + decode) of {len(records)} records of 100 B")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--budget", type=float, default=0.25, help="seconds per round")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the table: kinesio's encode + decode of 100-byte records under "
        "cProfile, top functions by self time",
    )
    args = parser.parse_args()
    if args.profile:
        profile(rounds=300)
        return

    rows: list[Row] = []
    for record_size in (100, 1024):
        records = make_records(record_size)
        ours, theirs = kinesio_encode(records), theirs_encode(records)
        # Same input, same bytes, and each side reads the other's: the timings compare like
        # with like.
        assert ours == theirs, "kinesio and aws_kinesis_agg encode differently"
        assert kinesio_decode(theirs) == records
        assert len(theirs_decode(ours)) == len(records)
        ours_enc, ours_dec, theirs_enc, theirs_dec = best_seconds(
            [
                (kinesio_encode, records),
                (kinesio_decode, ours),
                (theirs_encode, records),
                (theirs_decode, ours),
            ],
            args.rounds,
            args.budget,
        )
        rows.append(Row(record_size, len(records), "kinesio", ours_enc, ours_dec))
        rows.append(Row(record_size, len(records), "aws_kinesis_agg", theirs_enc, theirs_dec))

    print(
        f"Python {platform.python_version()}, kinesio {version('kinesio')}, "
        f"aws_kinesis_agg {version('aws_kinesis_agg')}, protobuf {version('protobuf')}, "
        f"{platform.machine()}"
    )
    print()
    print(
        "| record | records / aggregate | library | encode rec/s | decode rec/s "
        "| encode+decode rec/s | encode+decode MB/s | kinesio speed-up |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        ref = next(
            r for r in rows if r.record_size == row.record_size and r.library == "aws_kinesis_agg"
        )
        rate = row.per_second(row.total_s)
        mb_s = rate * row.record_size / 1e6
        speedup = f"{ref.total_s / row.total_s:.1f}x" if row.library == "kinesio" else "1.0x"
        size = "1 KiB" if row.record_size == 1024 else f"{row.record_size} B"
        print(
            f"| {size} | {row.records} | {row.library} | {row.per_second(row.encode_s):,.0f} "
            f"| {row.per_second(row.decode_s):,.0f} | {rate:,.0f} | {mb_s:,.1f} | {speedup} |"
        )


if __name__ == "__main__":
    main()
