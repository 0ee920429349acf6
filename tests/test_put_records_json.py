"""PutRecords written and read as JSON by kinesio: the same request botocore would send, the
same answer botocore would parse, and everything of another shape left to botocore."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import given
from hypothesis import strategies as st

from _streams import stored_raw
from kinesio._aws import AioKinesis
from kinesio._models import PutRecordsEntry
from kinesio._put_records_json import _PutRecordsSerializer, parse_put_records
from kinesio.local import LocalEndpoint

_MODEL = botocore.session.get_session().get_service_model("kinesis")
_PUT = _MODEL.operation_model("PutRecords")


def _botocore() -> Any:
    return create_serializer("json", include_validation=True)


_records = st.lists(
    st.builds(
        lambda data, key, ehk: (
            {"Data": data, "PartitionKey": key}
            | ({} if ehk is None else {"ExplicitHashKey": str(ehk)})
        ),
        st.binary(max_size=64),
        st.text(min_size=1, max_size=256),
        st.none() | st.integers(0, 2**128 - 1),
    ),
    min_size=1,
    max_size=40,
)


@given(_records, st.sampled_from(["StreamName", "StreamARN"]))
def test_the_request_is_the_one_botocore_builds(records: list[dict[str, Any]], by: str) -> None:
    stream = "s" if by == "StreamName" else "arn:aws:kinesis:us-east-1:123456789012:stream/s"
    params = {by: stream, "Records": records}
    ours = _PutRecordsSerializer(_botocore()).serialize_to_request(params, _PUT)
    theirs = _botocore().serialize_to_request(params, _PUT)
    assert json.loads(ours.pop("body")) == json.loads(theirs.pop("body"))
    assert ours == theirs  # headers, method, URL, host prefix


def _outcome(serializer: Any, params: dict[str, Any]) -> Any:
    try:
        return serializer.serialize_to_request(params, _PUT)
    except ParamValidationError as exc:
        return ("rejected", str(exc))


@pytest.mark.parametrize(
    "records",
    [
        [],  # too few: botocore's validation rejects it
        [{"Data": "a str", "PartitionKey": "k"}],  # botocore encodes a str blob
        [{"Data": b"x", "PartitionKey": ""}],
        [{"Data": b"x"}],
        [{"Data": b"x", "PartitionKey": "k", "Unknown": 1}],
        [{"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": 5}],
        [{"Data": b"x" * (1024 * 1024 + 1), "PartitionKey": "k"}],  # over the bounds
    ],
)
def test_other_shapes_go_through_botocore_whatever_it_makes_of_them(records: list[Any]) -> None:
    params = {"StreamName": "s", "Records": records}
    ours = _outcome(_PutRecordsSerializer(_botocore()), params)
    assert ours == _outcome(_botocore(), params)


def test_the_empty_request_is_still_rejected() -> None:
    with pytest.raises(ParamValidationError):
        _PutRecordsSerializer(_botocore()).serialize_to_request(
            {"StreamName": "s", "Records": []}, _PUT
        )


def _parse(body: bytes, status: int = 200) -> tuple[dict[str, Any], dict[str, Any]]:
    """(botocore's parse of the untouched answer, botocore's parse after the hook)."""
    shape = _PUT.output_shape
    plain = create_parser("json").parse({"status_code": status, "headers": {}, "body": body}, shape)
    response = {"status_code": status, "headers": {}, "body": body}
    customized: dict[str, Any] = {}
    parse_put_records(response_dict=response, customized_response_dict=customized)
    hooked = create_parser("json").parse(response, shape)
    hooked.update(customized)
    return plain, hooked


_answers = st.lists(
    st.one_of(
        st.fixed_dictionaries({"ShardId": st.text(max_size=20), "SequenceNumber": st.text()}),
        st.fixed_dictionaries({"ErrorCode": st.text(max_size=40), "ErrorMessage": st.text()}),
    ),
    max_size=30,
)


@given(_answers, st.none() | st.sampled_from(["NONE", "KMS"]))
def test_the_answer_is_the_one_botocore_parses(records: list[Any], encryption: str | None) -> None:
    doc: dict[str, Any] = {"FailedRecordCount": 0, "Records": records}
    if encryption is not None:
        doc["EncryptionType"] = encryption
    plain, hooked = _parse(json.dumps(doc).encode())
    assert hooked == plain


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"__type": "ProvisionedThroughputExceededException", "message": "slow"}', 400),
        (b"not json", 200),
        (b'{"FailedRecordCount": "1", "Records": []}', 200),
        (b'{"FailedRecordCount": 0, "Records": [{"ShardId": 5}]}', 200),
    ],
)
def test_answers_it_does_not_expect_are_left_to_botocore(body: bytes, status: int) -> None:
    response = {"status_code": status, "headers": {}, "body": body}
    customized: dict[str, Any] = {}
    parse_put_records(response_dict=response, customized_response_dict=customized)
    assert response["body"] == body
    assert customized == {}


async def test_kinesios_clients_take_the_json_path_and_deliver(
    moto_endpoint: LocalEndpoint, moto_stream: Callable[[str, int], str]
) -> None:
    """With the botocore installed here the path is in place (a botocore that renamed what it
    wraps would silently fall back), and records sent through it arrive as sent."""
    stream = moto_stream("json-path", 1)
    kinesis = await AioKinesis.create(moto_endpoint.aws_config())
    try:
        assert isinstance(kinesis._client._serializer, _PutRecordsSerializer)
        entries = [PutRecordsEntry(b"\x00\xffdata", "k\u00e9y"), PutRecordsEntry(b"", "k", "7")]
        results = await kinesis.put_records(stream, entries)
        assert [r.error_code for r in results] == [None, None]
        assert all(r.sequence_number for r in results)
    finally:
        await kinesis.aclose()
    stored = [(r["Data"], r["PartitionKey"]) for _, r in stored_raw(moto_endpoint, stream)]
    assert stored == [(b"\x00\xffdata", "k\u00e9y"), (b"", "k")]
