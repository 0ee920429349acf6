"""GetRecords answers parsed from their JSON: the same records botocore's own parser gives,
and every answer the hook does not expect left to botocore untouched."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser
from hypothesis import given
from hypothesis import strategies as st

from kinesio._aws._shapes import records_from as _records
from kinesio._models import KinesisRecord
from kinesio._records_json import PARSED_RECORDS, epoch_timestamp, parse_get_records

_OUTPUT = botocore.session.get_session().get_service_model("kinesis")
_SHAPE = _OUTPUT.operation_model("GetRecords").output_shape


def _botocore(body: bytes, status: int = 200) -> dict[str, Any]:
    """What botocore's JSON parser makes of ``body``, with kinesio's timestamp parser."""
    parser = create_parser("json")
    parser._timestamp_parser = epoch_timestamp  # what tuned_session() sets
    parsed: dict[str, Any] = parser.parse(
        {"status_code": status, "headers": {}, "body": body}, _SHAPE
    )
    return parsed


def _hooked(body: bytes, status: int = 200) -> tuple[dict[str, Any], dict[str, Any]]:
    response = {"status_code": status, "headers": {}, "body": body}
    customized: dict[str, Any] = {}
    parse_get_records(response_dict=response, customized_response_dict=customized)
    return response, customized


def _answer(records: list[Any], **rest: Any) -> bytes:
    doc = {"Records": records, "NextShardIterator": "AAAA", "MillisBehindLatest": 0, **rest}
    return json.dumps(doc).encode()


def _record(data: bytes, key: str, seq: str, ts: float | None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "SequenceNumber": seq,
        "Data": base64.b64encode(data).decode(),
        "PartitionKey": key,
    }
    if ts is not None:
        r["ApproximateArrivalTimestamp"] = ts
    return r


@given(
    st.lists(
        st.tuples(
            st.binary(max_size=64),
            st.text(min_size=1, max_size=16),
            st.integers(min_value=0, max_value=10**56).map(str),
            st.one_of(
                st.none(),
                st.floats(min_value=0, max_value=4e9, allow_nan=False),
                st.integers(min_value=0, max_value=4 * 10**9),
            ),
        ),
        max_size=20,
    )
)
def test_the_same_records_as_botocore(rows: list[tuple[bytes, str, str, float | None]]) -> None:
    body = _answer([_record(*row) for row in rows], ChildShards=[])
    expected = _botocore(body)
    response, customized = _hooked(body)
    assert customized[PARSED_RECORDS] == _records(expected["Records"])
    rest = _botocore(response["body"])
    assert "Records" not in json.loads(response["body"])
    for key in ("NextShardIterator", "MillisBehindLatest", "ChildShards"):
        assert rest[key] == expected[key]


def test_timestamps_are_aware_utc() -> None:
    _, customized = _hooked(_answer([_record(b"x", "k", "1", 1700000000.25)]))
    (record,) = customized[PARSED_RECORDS]
    assert record == KinesisRecord(
        sequence_number="1",
        data=b"x",
        partition_key="k",
        approximate_arrival_timestamp=dt.datetime(2023, 11, 14, 22, 13, 20, 250000, dt.UTC),
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (_answer([_record(b"x", "k", "1", 1.0)]), 400),  # an error answer
        (b"not json", 200),
        (b"[1, 2]", 200),  # JSON, not an object
        (json.dumps({"NextShardIterator": "A"}).encode(), 200),  # no Records
        (_answer([{"SequenceNumber": "1", "PartitionKey": "k"}]), 200),  # no Data
        (_answer([{**_record(b"x", "k", "1", 1.0), "Data": "abc"}]), 200),  # bad base64 padding
        (_answer([{**_record(b"x", "k", "1", 1.0), "Data": 7}]), 200),  # Data not a string
        (_answer([_record(b"x", "k", "1", 1e30)]), 200),  # timestamp out of range
        (_answer([{**_record(b"x", "k", "1", 1.0), "SequenceNumber": 1}]), 200),
        (_answer([{**_record(b"x", "k", "1", 1.0), "PartitionKey": None}]), 200),
        (_answer(["a record?"]), 200),
    ],
)
def test_unexpected_answers_are_left_to_botocore(body: bytes, status: int) -> None:
    response, customized = _hooked(body, status)
    assert customized == {}
    assert response["body"] == body


def test_a_body_that_is_not_bytes_is_left_alone() -> None:
    stream = object()
    response = {"status_code": 200, "headers": {}, "body": stream}
    customized: dict[str, Any] = {}
    parse_get_records(response_dict=response, customized_response_dict=customized)
    assert customized == {}
    assert response["body"] is stream
