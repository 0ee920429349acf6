"""Lambda Kinesis events shared by the kinesio.awslambda tests: a mixed event of plain records,
kinesio aggregates and aws_kinesis_agg aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The aggregator module puts its folder on sys.path, which its messages_pb2 needs to import.
from aws_kinesis_agg.aggregator import RecordAggregator

from kinesio import ProducerRecord
from kinesio.testing import LambdaEventBuilder

EHK = 2**127 + 12345


def theirs_encode(users: Sequence[ProducerRecord]) -> bytes:
    """An aggregate made by aws_kinesis_agg (explicit hash keys as decimal strings)."""
    aggregator = RecordAggregator()
    for r in users:
        ehk = None if r.explicit_hash_key is None else str(r.explicit_hash_key)
        assert aggregator.add_user_record(r.partition_key, r.data, ehk) is None
    _pk, _ehk, data = aggregator.clear_and_get().get_contents()
    assert isinstance(data, bytes)
    return data


def users(n: int, prefix: str = "u") -> list[ProducerRecord]:
    return [ProducerRecord(f"{prefix}{i}".encode(), f"pk-{i % 3}") for i in range(n)]


def mixed_event() -> tuple[dict[str, Any], list[str]]:
    """plain, kinesio aggregate of 3 (one with an explicit hash key), aws_kinesis_agg aggregate
    of 2, plain: 7 user records in 4 Kinesis records."""
    b = LambdaEventBuilder("orders", shard_id="shardId-000000000007", region="eu-west-1")
    seqs = [
        b.add(b"first", "p0"),
        b.add_aggregate(
            [
                ProducerRecord(b"a0", "ka"),
                ProducerRecord(b"a1", "kb", explicit_hash_key=EHK),
                ProducerRecord(b"a2", "ka"),
            ]
        ),
        b.add_raw(
            theirs_encode([ProducerRecord(b"t0", "kt", EHK), ProducerRecord(b"t1", "ku")]), "kt"
        ),
        b.add(b"last", "p1"),
    ]
    return b.build(), seqs
