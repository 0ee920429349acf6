"""kinesio.awslambda.records against Lambda Kinesis events of plain records, kinesio's KPL
aggregates and aws_kinesis_agg's, corrupt aggregates and malformed events; the event builder."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _lambda_events import EHK, mixed_event, theirs_encode, users
from kinesio import KinesioError, ProducerRecord, Record, ValidationError
from kinesio.aggregation import MAGIC, encode
from kinesio.awslambda import LambdaRecord, process, records
from kinesio.testing import LambdaEventBuilder, lambda_event


def test_records_of_a_mixed_event_in_order_with_every_field() -> None:
    event, seqs = mixed_event()
    got = records(event)
    assert [(r.data, r.partition_key, r.explicit_hash_key) for r in got] == [
        (b"first", "p0", None),
        (b"a0", "ka", None),
        (b"a1", "kb", EHK),
        (b"a2", "ka", None),
        (b"t0", "kt", EHK),
        (b"t1", "ku", None),
        (b"last", "p1", None),
    ]
    assert [(r.sequence_number, r.sub_sequence_number, r.aggregated) for r in got] == [
        (seqs[0], 0, False),
        (seqs[1], 0, True),
        (seqs[1], 1, True),
        (seqs[1], 2, True),
        (seqs[2], 0, True),
        (seqs[2], 1, True),
        (seqs[3], 0, False),
    ]
    assert all(isinstance(r, Record) and isinstance(r, LambdaRecord) for r in got)
    assert {r.shard_id for r in got} == {"shardId-000000000007"}
    assert {r.stream_name for r in got} == {"orders"}
    assert {r.stream_arn for r in got} == {"arn:aws:kinesis:eu-west-1:123456789012:stream/orders"}
    assert got[0].event_id == f"shardId-000000000007:{seqs[0]}"
    arrivals = [r.approximate_arrival_timestamp for r in got]
    assert all(a is not None and a.tzinfo is dt.UTC for a in arrivals)
    assert arrivals[0] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert got[5].position.sub_sequence_number == 1


def test_an_unset_explicit_hash_key_is_none_when_the_table_is_not_empty() -> None:
    # aws_kinesis_agg's deaggregator reports the first table entry here; the KPL format says unset.
    data = theirs_encode([ProducerRecord(b"x", "k", EHK), ProducerRecord(b"y", "k")])
    b = LambdaEventBuilder()
    b.add_raw(data, "k")
    assert [r.explicit_hash_key for r in records(b.build())] == [EHK, None]


@pytest.mark.parametrize(
    "data",
    [
        MAGIC + b"\x1a\x02\x08\x00" + b"\x00" * 16,  # wrong MD5
        MAGIC + b"\xff" * 30,  # not protobuf
        MAGIC,  # magic only
    ],
)
def test_a_corrupt_aggregate_is_passed_through_as_one_plain_record(data: bytes) -> None:
    b = LambdaEventBuilder()
    before = b.add(b"before", "k")
    corrupt = b.add_raw(data, "outer")
    after = b.add(b"after", "k")
    got = records(b.build())
    assert [(r.data, r.sequence_number, r.aggregated) for r in got] == [
        (b"before", before, False),
        (data, corrupt, False),
        (b"after", after, False),
    ]
    assert got[1].partition_key == "outer"


def test_lambda_event_aggregated_or_not_round_trips_the_user_records() -> None:
    sent = [*users(5), ProducerRecord(b"ehk", "k", explicit_hash_key=7)]
    plain = records(lambda_event(sent))
    assert [(r.data, r.partition_key) for r in plain] == [(r.data, r.partition_key) for r in sent]
    assert len({r.sequence_number for r in plain}) == len(sent)
    assert all(r.explicit_hash_key is None for r in plain)  # Lambda events carry none
    packed = records(lambda_event(sent, aggregate=True))
    assert [ProducerRecord(r.data, r.partition_key, r.explicit_hash_key) for r in packed] == sent
    assert [r.sub_sequence_number for r in packed] == list(range(len(sent)))
    assert len({r.sequence_number for r in packed}) == 1


def test_lambda_event_splits_aggregates_at_one_mebibyte() -> None:
    big = [ProducerRecord(bytes([i]) * 400_000, f"k{i}") for i in range(5)]
    event = lambda_event(big, aggregate=True)
    assert len(event["Records"]) == 3  # 2 + 2 + 1 records of 400 kB each
    got = records(event)
    assert [r.data for r in got] == [r.data for r in big]
    assert [r.sub_sequence_number for r in got] == [0, 1, 0, 1, 0]


def test_add_aggregate_refuses_what_does_not_fit_or_is_empty() -> None:
    b = LambdaEventBuilder()
    with pytest.raises(ValidationError, match="1 MiB"):
        b.add_aggregate([ProducerRecord(b"x" * 600_000, "a"), ProducerRecord(b"y" * 600_000, "b")])
    with pytest.raises(ValidationError):
        b.add_aggregate([])
    assert b.build() == {"Records": []}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(
            st.builds(
                ProducerRecord,
                st.binary(max_size=40),
                st.text(min_size=1, max_size=8),
                st.one_of(st.none(), st.integers(0, 2**128 - 1)),
            ),
            min_size=1,
            max_size=5,
        ),
        max_size=5,
    ),
    st.data(),
)
def test_round_trip_of_any_mix_of_kinesio_aws_agg_and_plain(
    groups: list[list[ProducerRecord]], data: st.DataObject
) -> None:
    b = LambdaEventBuilder()
    expected: list[tuple[bytes, str, int | None, str, int]] = []
    for group in groups:
        how = data.draw(st.sampled_from(["ours", "theirs", "plain"]))
        if how == "plain":
            for r in group:
                seq = b.add(r.data, r.partition_key)
                # Plain data that starts with the magic would be read as a (corrupt) aggregate:
                # still delivered whole, as one record.
                expected.append((r.data, r.partition_key, None, seq, 0))
            continue
        seq = b.add_aggregate(group) if how == "ours" else b.add_raw(theirs_encode(group), "o")
        expected += [
            (r.data, r.partition_key, r.explicit_hash_key, seq, i) for i, r in enumerate(group)
        ]
    got = [
        (r.data, r.partition_key, r.explicit_hash_key, r.sequence_number, r.sub_sequence_number)
        for r in records(b.build())
    ]
    assert got == expected


def _entry(**kinesis: Any) -> dict[str, Any]:
    b = LambdaEventBuilder()
    b.add(b"x", "k")
    entry: dict[str, Any] = b.build()["Records"][0]
    entry["kinesis"].update(kinesis)
    return entry


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "is a dict"),
        ({}, "no 'Records' list"),
        ({"Records": "x"}, "no 'Records' list"),
        ({"Records": [1]}, r"Records\[0\] is not an object"),
        ({"Records": [{**_entry(), "eventSource": "aws:sqs"}]}, "not 'aws:kinesis'"),
        ({"Records": [{**_entry(), "kinesis": None}]}, "no 'kinesis' object"),
        ({"Records": [_entry(data="not base64!")]}, "not base64"),
        ({"Records": [_entry(data=None)]}, "kinesis.data is missing"),
        ({"Records": [_entry(sequenceNumber=5)]}, "kinesis.sequenceNumber"),
        ({"Records": [_entry(partitionKey=None)]}, "kinesis.partitionKey"),
        ({"Records": [_entry(approximateArrivalTimestamp="now")]}, "not a number"),
        ({"Records": [_entry(approximateArrivalTimestamp=1e300)]}, "out of range"),
        ({"Records": [{**_entry(), "eventID": 3}]}, "must be strings"),
        ({"Records": [_entry(), _entry(data="!!")]}, r"Records\[1\]"),
    ],
)
def test_bad_events_raise_a_typed_error_before_any_handler_call(event: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        records(event)
    assert isinstance(info.value, KinesioError)
    calls: list[LambdaRecord] = []
    with pytest.raises(ValidationError, match=message):
        process(event, calls.append)
    assert calls == []


def test_an_empty_batch_succeeds() -> None:
    assert records({"Records": []}) == []
    assert process({"Records": []}, lambda r: 1 / 0) == {"batchItemFailures": []}


def test_a_real_shaped_event_from_the_lambda_documentation() -> None:
    # The sample event of the Lambda developer guide ("Using Lambda with Kinesis").
    event = {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                    "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                    "approximateArrivalTimestamp": 1545084650.987,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000006:"
                "49590338271490256608559692538361571095921575989136588898",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-2",
                "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
            }
        ]
    }
    [r] = records(event)
    assert r.data == b"Hello, this is a test."
    assert r.shard_id == "shardId-000000000006"
    assert r.stream_name == "lambda-stream"
    assert r.approximate_arrival_timestamp == dt.datetime(
        2018, 12, 17, 22, 10, 50, 987000, tzinfo=dt.UTC
    )
    assert not r.aggregated
    # kinesio's encoder output inside such an event is the same aggregate the KPL writes.
    assert records(lambda_event([ProducerRecord(b"k", "1")], aggregate=True))[0].aggregated
    assert encode([ProducerRecord(b"k", "1")]).startswith(MAGIC)


def test_the_lambda_page_examples_run_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "lambda.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) == 2
    namespace: dict[str, Any] = {}
    exec(compile("".join(blocks), "docs/lambda.md", "exec"), namespace)
    namespace["test_the_function_reports_the_failing_aggregate"]()
    assert "shardId-000000000000" in capsys.readouterr().out  # the first record was handled
