"""The KPL aggregation codec: wire format, validation, fuzzing, and interop with aws_kinesis_agg."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# The aggregator module puts its folder on sys.path, which its messages_pb2 needs to import.
from aws_kinesis_agg.aggregator import RecordAggregator, messages_pb2
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinesio import AggregationError, ProducerRecord, ValidationError
from kinesio.aggregation import MAGIC, AggregateBuilder, decode, encode, hash_key, is_aggregate

MAX_HASH_KEY = 2**128 - 1
UNICODE_KEY = "ключ-🔑"

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_fuzzer() -> ModuleType:
    """benchmarks/fuzz_aggregation.py: its long run is recorded in benchmarks/RESULTS.md, and
    its checks and a short run are part of the suite."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_aggregation.py"
    spec = importlib.util.spec_from_file_location("fuzz_aggregation", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fuzzer = _load_fuzzer()


def check_deaggregation(data: bytes) -> None:
    """The consumer's path never raises: rejected bytes come out once, unchanged (the KCL's
    pass-through), decodable ones as their in-range user records (see the fuzzer's check)."""
    for shard in fuzzer._SHARDS:
        tally = fuzzer.Tally()
        fuzzer.check(data, tally, shard)
        assert tally.broken == 0, tally.failures


# -- helpers ----------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One protobuf field; ``payload`` is already encoded (LEN payloads get their length)."""
    prefix = varint(number << 3 | wire_type)
    if wire_type == 2:
        return prefix + varint(len(payload)) + payload
    return prefix + payload


def wrap(body: bytes) -> bytes:
    """An aggregate around any protobuf body: magic, body, correct MD5."""
    return MAGIC + body + hashlib.md5(body).digest()


def body_of(aggregate: bytes) -> bytes:
    return aggregate[4:-16]


def record_msg(pk_index: int | None, data: bytes | None, ehk_index: int | None = None) -> bytes:
    out = b""
    if pk_index is not None:
        out += field(1, 0, varint(pk_index))
    if ehk_index is not None:
        out += field(2, 0, varint(ehk_index))
    if data is not None:
        out += field(3, 2, data)
    return out


def theirs_encode(records: Sequence[ProducerRecord]) -> bytes:
    """Aggregate with aws_kinesis_agg (explicit hash keys as decimal strings, as it takes them)."""
    aggregator = RecordAggregator()
    for r in records:
        ehk = None if r.explicit_hash_key is None else str(r.explicit_hash_key)
        assert aggregator.add_user_record(r.partition_key, r.data, ehk) is None
    agg_record = aggregator.clear_and_get()
    _pk, _ehk, data = agg_record.get_contents()
    assert isinstance(data, bytes)
    return data


def theirs_decode(data: bytes) -> list[dict[str, Any]]:
    """Deaggregate with aws_kinesis_agg: the 'kinesis' part of each user record it yields."""
    raw = {
        "Data": data,
        "PartitionKey": "outer",
        "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "ApproximateArrivalTimestamp": 0,
    }
    return [r["kinesis"] for r in iter_deaggregate_records([raw], data_format="Boto3")]


def parse_with_protobuf(data: bytes) -> Any:
    msg = messages_pb2.AggregatedRecord()
    msg.ParseFromString(body_of(data))
    return msg


# -- strategies -------------------------------------------------------------------------------

partition_keys = st.one_of(
    st.sampled_from(["a", "b", "user-42", UNICODE_KEY, "日本", ""]),
    st.text(min_size=1, max_size=40),
)
hash_keys = st.one_of(
    st.none(),
    st.sampled_from([0, 1, MAX_HASH_KEY, 2**127]),
    st.integers(min_value=0, max_value=MAX_HASH_KEY),
)
records = st.builds(
    ProducerRecord,
    data=st.binary(max_size=300),
    partition_key=partition_keys,
    explicit_hash_key=hash_keys,
)
record_lists = st.lists(records, min_size=1, max_size=40)


# -- encode -----------------------------------------------------------------------------------


def test_magic() -> None:
    assert MAGIC == b"\xf3\x89\x9a\xc2"


def test_encode_exact_bytes_of_one_record() -> None:
    body = b"\x0a\x01k" + b"\x1a\x05\x08\x00\x1a\x01d"
    assert encode([ProducerRecord(b"d", "k")]) == MAGIC + body + hashlib.md5(body).digest()


def test_encode_tables_are_deduplicated_in_first_seen_order() -> None:
    recs = [
        ProducerRecord(b"1", "b", 7),
        ProducerRecord(b"2", "a"),
        ProducerRecord(b"3", "b", 2**100),
        ProducerRecord(b"4", UNICODE_KEY, 7),
        ProducerRecord(b"5", "a", 0),
    ]
    msg = parse_with_protobuf(encode(recs))
    assert list(msg.partition_key_table) == ["b", "a", UNICODE_KEY]
    assert list(msg.explicit_hash_key_table) == ["7", str(2**100), "0"]
    assert [r.partition_key_index for r in msg.records] == [0, 1, 0, 2, 1]
    assert [r.data for r in msg.records] == [b"1", b"2", b"3", b"4", b"5"]
    has_ehk = [r.HasField("explicit_hash_key_index") for r in msg.records]
    assert has_ehk == [True, False, True, True, True]
    assert [msg.records[i].explicit_hash_key_index for i in (0, 2, 3, 4)] == [0, 1, 0, 2]


def test_encode_without_explicit_hash_keys_has_no_table_and_no_index() -> None:
    msg = parse_with_protobuf(encode([ProducerRecord(b"x", "a"), ProducerRecord(b"y", "b")]))
    assert list(msg.explicit_hash_key_table) == []
    assert not any(r.HasField("explicit_hash_key_index") for r in msg.records)


def test_encode_many_keys_uses_multibyte_indexes() -> None:
    recs = [ProducerRecord(bytes([i % 256]) * (i % 200), f"k{i}", i) for i in range(300)]
    assert decode(encode(recs)) == recs


def test_encode_large_record() -> None:
    recs = [ProducerRecord(b"\x00" * 1_100_000, "big"), ProducerRecord(b"", "small")]
    assert decode(encode(recs)) == recs


def test_encode_empty_sequence_is_rejected() -> None:
    with pytest.raises(ValidationError):
        encode([])


@pytest.mark.parametrize("ehk", [-1, 2**128, 2**200, True])
def test_encode_rejects_bad_explicit_hash_key(ehk: int) -> None:
    with pytest.raises(ValidationError):
        encode([ProducerRecord(b"x", "k", ehk)])


def test_encode_rejects_unencodable_partition_key() -> None:
    with pytest.raises(ValidationError, match="UTF-8"):
        encode([ProducerRecord(b"x", "\ud800")])


def test_encode_rejects_non_bytes_data_and_non_str_key() -> None:
    with pytest.raises(ValidationError, match="bytes"):
        encode([ProducerRecord("text", "k")])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="str"):
        encode([ProducerRecord(b"x", b"k")])  # type: ignore[arg-type]


# -- decode: valid input ----------------------------------------------------------------------


def test_decode_round_trip_keeps_order_and_keys() -> None:
    recs = [
        ProducerRecord(b"", "a"),
        ProducerRecord(b"\x00\xff" * 100, UNICODE_KEY, MAX_HASH_KEY),
        ProducerRecord(b"z", "a", 0),
    ]
    assert decode(encode(recs)) == recs


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode([ProducerRecord(b"x", "k", 5)])
    assert decode(bytearray(data)) == decode(memoryview(data)) == decode(data)  # type: ignore[arg-type]


def test_decode_skips_unknown_fields_everywhere() -> None:
    unknown = (
        field(9, 0, varint(300))
        + field(10, 1, b"\x01" * 8)
        + field(11, 5, b"\x02" * 4)
        + field(12, 2, b"whatever")
        + field(2000, 2, b"")  # a multi-byte tag
        + field(
            13, 3, field(1, 0, b"\x05") + field(14, 3, field(2, 2, b"in")) + varint(14 << 3 | 4)
        )
        + varint(13 << 3 | 4)
    )
    tag = field(1, 2, b"key") + field(2, 2, b"value") + unknown
    rec = record_msg(0, b"payload") + field(4, 2, tag) + unknown + field(4, 2, field(1, 2, b"k"))
    body = unknown + field(1, 2, b"pk") + unknown + field(3, 2, rec) + unknown
    assert decode(wrap(body)) == [ProducerRecord(b"payload", "pk")]
    assert len(parse_with_protobuf(wrap(body)).records) == 1  # protobuf agrees it is valid


def test_decode_tables_after_records() -> None:
    body = (
        field(3, 2, record_msg(1, b"x", 0))
        + field(3, 2, record_msg(0, b"y"))
        + field(1, 2, b"first")
        + field(2, 2, b"12345")
        + field(1, 2, b"second")
    )
    assert decode(wrap(body)) == [
        ProducerRecord(b"x", "second", 12345),
        ProducerRecord(b"y", "first"),
    ]


def test_decode_follows_protobuf_on_odd_but_valid_encodings() -> None:
    # Last value wins; a known field with another wire type is an unknown field; varints may
    # be overlong; a 10-byte varint keeps its low 64 bits.
    rec = (
        field(1, 0, varint(5))
        + field(1, 0, b"\x80\x80\x00")  # partition_key_index = 0, overlong
        + field(1, 5, b"\x07\x00\x00\x00")  # wrong wire type: skipped
        + field(3, 2, b"old")
        + field(3, 2, b"new")
    )
    wide_index = field(1, 0, b"\x80" * 9 + b"\x02")  # 2**64 → 0 after truncation
    body = field(1, 2, b"p") + field(3, 2, rec) + field(3, 2, wide_index + field(3, 2, b"w"))
    ours = decode(wrap(body))
    assert ours == [ProducerRecord(b"new", "p"), ProducerRecord(b"w", "p")]
    msg = parse_with_protobuf(wrap(body))
    assert [(r.partition_key_index, r.data) for r in msg.records] == [(0, b"new"), (0, b"w")]


def test_decode_aggregate_of_tables_only_has_no_records() -> None:
    assert decode(wrap(field(1, 2, b"unused"))) == []


def test_unreferenced_bad_explicit_hash_key_is_ignored() -> None:
    body = field(1, 2, b"k") + field(2, 2, b"not a number") + field(3, 2, record_msg(0, b"x"))
    assert decode(wrap(body)) == [ProducerRecord(b"x", "k")]


# -- decode: invalid input --------------------------------------------------------------------

VALID = encode([ProducerRecord(b"data", "key", 42)])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(MAGIC, id="magic-only"),
        pytest.param(MAGIC + hashlib.md5(b"").digest(), id="empty-body"),
        pytest.param(VALID[:-1], id="truncated"),
        pytest.param(b"\xf3\x89\x9a\xc3" + VALID[4:], id="wrong-magic"),
        pytest.param(VALID[:10] + bytes([VALID[10] ^ 1]) + VALID[11:], id="md5-mismatch"),
        pytest.param(VALID[:-16] + b"\x00" * 16, id="zero-digest"),
        pytest.param(b"plain user data that is not an aggregate", id="raw-record"),
    ],
)
def test_decode_rejects_non_aggregates(data: bytes) -> None:
    with pytest.raises(AggregationError):
        decode(data)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(AggregationError):
        decode(12345)  # type: ignore[arg-type]


BAD_BODIES = {
    "not-protobuf": b"\xff\xff\xff",
    "missing-partition-key-index": field(1, 2, b"k") + field(3, 2, record_msg(None, b"x")),
    "missing-data": field(1, 2, b"k") + field(3, 2, record_msg(0, None)),
    "partition-key-index-out-of-range": field(1, 2, b"k") + field(3, 2, record_msg(1, b"x")),
    "no-partition-key-table": field(3, 2, record_msg(0, b"x")),
    "huge-partition-key-index": field(1, 2, b"k") + field(3, 2, record_msg(2**63, b"x")),
    "ehk-index-out-of-range": field(1, 2, b"k")
    + field(2, 2, b"1")
    + field(3, 2, record_msg(0, b"x", 1)),
    "ehk-index-without-table": field(1, 2, b"k") + field(3, 2, record_msg(0, b"x", 0)),
    "pk-not-utf8": field(1, 2, b"\xff\xfe") + field(3, 2, record_msg(0, b"x")),
    "tag-without-key": field(1, 2, b"k")
    + field(3, 2, record_msg(0, b"x") + field(4, 2, field(2, 2, b"v"))),
    "record-overruns-body": field(1, 2, b"k") + b"\x1a\x10" + record_msg(0, b"x"),
    "data-overruns-record": field(1, 2, b"k") + field(3, 2, b"\x08\x00\x1a\x05ab"),
    "varint-overruns-record": field(1, 2, b"k") + field(3, 2, b"\x1a\x01x\x08\x80"),
    "varint-11-bytes": field(1, 2, b"k") + field(3, 2, b"\x08" + b"\x80" * 10 + b"\x00"),
    "field-number-zero": b"\x00\x00",
    "end-group-at-top": varint(5 << 3 | 4),
    "unterminated-group": varint(5 << 3 | 3) + field(1, 0, b"\x01"),
    "mismatched-end-group": varint(5 << 3 | 3) + varint(6 << 3 | 4),
    "wire-type-6": b"\x0e",
    "wire-type-7": b"\x0f",
    "fixed64-overruns": b"\x09\x00\x00",
    "string-overruns": b"\x0a\x05ab",
    "deep-groups": varint(5 << 3 | 3) * 200 + varint(5 << 3 | 4) * 200,
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_decode_rejects_invalid_protobuf(body: bytes) -> None:
    with pytest.raises(AggregationError):
        decode(wrap(body))


@pytest.mark.parametrize(
    "ehk",
    [
        *(b"", b"007", b"00", b"abc", b"-1", b"+1", b" 1", b"1 ", b"1.0"),
        b"1" * 40,
        "٣".encode(),  # a digit to Python's \d, not to Kinesis
        str(2**128).encode(),
        str(2**129 + 7).encode(),
    ],
)
def test_decode_rejects_bad_explicit_hash_key(ehk: bytes) -> None:
    body = field(1, 2, b"k") + field(2, 2, ehk) + field(3, 2, record_msg(0, b"x", 0))
    with pytest.raises(AggregationError):
        decode(wrap(body))


def test_decode_accepts_extreme_explicit_hash_keys() -> None:
    for ehk in (0, MAX_HASH_KEY, 10**38):
        assert decode(encode([ProducerRecord(b"x", "k", ehk)]))[0].explicit_hash_key == ehk


# -- is_aggregate -----------------------------------------------------------------------------


def test_is_aggregate() -> None:
    assert is_aggregate(VALID)
    assert not is_aggregate(b"")
    assert not is_aggregate(MAGIC)
    assert not is_aggregate(MAGIC + hashlib.md5(b"").digest())
    assert not is_aggregate(b"x" + VALID[1:])
    assert not is_aggregate(b'{"json": "user data, long enough to be an aggregate"}')


# -- hash_key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partition_key", "expected"),
    [
        ("", 0xD41D8CD98F00B204E9800998ECF8427E),
        ("a", 0x0CC175B9C0F1B6A831C399E269772661),
        ("hello", 0x5D41402ABC4B2A76B9719D911017C592),
    ],
)
def test_hash_key_known_md5_values(partition_key: str, expected: int) -> None:
    assert hash_key(partition_key) == expected


@given(st.text(max_size=256))
@FAST
def test_hash_key_is_md5_big_endian(partition_key: str) -> None:
    digest = hashlib.md5(partition_key.encode("utf-8")).digest()
    assert hash_key(partition_key) == int.from_bytes(digest, "big")
    assert hash_key(partition_key) == int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
    assert 0 <= hash_key(partition_key) <= MAX_HASH_KEY


def test_hash_key_unicode_partition_key() -> None:
    expected = int.from_bytes(hashlib.md5(UNICODE_KEY.encode("utf-8")).digest(), "big")
    assert hash_key(UNICODE_KEY) == expected


@pytest.mark.parametrize(
    ("ehk", "expected"),
    [
        (0, 0),
        (MAX_HASH_KEY, MAX_HASH_KEY),
        ("0", 0),
        ("1", 1),
        (str(MAX_HASH_KEY), MAX_HASH_KEY),
        ("9" * 38, int("9" * 38)),
    ],
)
def test_hash_key_explicit_wins(ehk: int | str, expected: int) -> None:
    assert hash_key("ignored", ehk) == expected


@pytest.mark.parametrize(
    "ehk",
    [
        -1,
        2**128,
        "-1",
        str(2**128),
        "9" * 39,
        "1" * 40,
        "007",
        "00",
        "abc",
        "",
        " 1",
        "1\n",
        "+5",
        "1e3",
        "١٢٣",  # Arabic-Indic digits match \d in Python, not in Kinesis
        True,
        1.0,
    ],
)
def test_hash_key_rejects_bad_explicit_hash_key(ehk: Any) -> None:
    with pytest.raises(ValidationError):
        hash_key("k", ehk)


def test_hash_key_rejects_unencodable_partition_key() -> None:
    with pytest.raises(ValidationError):
        hash_key("\udfff")


# -- AggregateBuilder -------------------------------------------------------------------------


def test_builder_empty() -> None:
    builder = AggregateBuilder()
    assert builder.max_size == 51_200
    assert len(builder) == 0
    assert builder.size == 0
    assert builder.records == []
    with pytest.raises(ValidationError):
        builder.build()


def test_builder_empty_accepts_an_oversized_record() -> None:
    builder = AggregateBuilder(max_size=100)
    big = ProducerRecord(b"x" * 1000, "k")
    assert builder.try_add(big)
    assert builder.size == len(builder.build()) > 100
    assert not builder.try_add(ProducerRecord(b"", "k"))
    assert builder.records == [big]


def test_builder_limit_is_exact_and_counts_the_outer_partition_key() -> None:
    first = ProducerRecord(b"a" * 50, UNICODE_KEY)  # 14 bytes of UTF-8 for 6 characters
    second = ProducerRecord(b"b" * 70, "other", 2**64)
    needed = len(encode([first, second])) + len(UNICODE_KEY.encode())
    exact = AggregateBuilder(max_size=needed)
    assert exact.try_add(first)
    assert exact.try_add(second)
    assert exact.size + len(UNICODE_KEY.encode()) == needed

    tight = AggregateBuilder(max_size=needed - 1)
    assert tight.try_add(first)
    before = (tight.size, len(tight), tight.records, tight.build())
    assert not tight.try_add(second)
    assert (tight.size, len(tight), tight.records, tight.build()) == before


def test_builder_build_matches_encode_and_leaves_the_builder_usable() -> None:
    recs = [ProducerRecord(b"1", "a", 3), ProducerRecord(b"2", "b"), ProducerRecord(b"3", "a", 3)]
    builder = AggregateBuilder()
    for r in recs:
        assert builder.try_add(r)
    assert builder.build() == builder.build() == encode(recs)
    assert builder.records == recs
    builder.records.clear()  # a copy
    assert len(builder) == 3


def test_builder_reset() -> None:
    builder = AggregateBuilder(max_size=1000)
    builder.try_add(ProducerRecord(b"x" * 100, "a", 1))
    builder.reset()
    assert (len(builder), builder.size, builder.records, builder.max_size) == (0, 0, [], 1000)
    rec = ProducerRecord(b"y", "b")
    assert builder.try_add(rec)
    assert builder.build() == encode([rec])


@pytest.mark.parametrize(
    "bad",
    [
        ProducerRecord(b"x", "k", -5),
        ProducerRecord(b"x", "k", 2**128),
        ProducerRecord(b"x", "\ud800"),
        ProducerRecord("str", "k"),  # type: ignore[arg-type]
    ],
)
def test_builder_rejects_invalid_record_and_stays_unchanged(bad: ProducerRecord) -> None:
    builder = AggregateBuilder()
    good = ProducerRecord(b"ok", "k", 1)
    builder.try_add(good)
    with pytest.raises(ValidationError):
        builder.try_add(bad)
    assert builder.records == [good]
    assert builder.build() == encode([good])
    assert builder.size == len(builder.build())


@pytest.mark.parametrize("max_size", [0, -1, 1.5, "100"])
def test_builder_rejects_bad_max_size(max_size: Any) -> None:
    with pytest.raises(ValidationError):
        AggregateBuilder(max_size=max_size)


@given(record_lists)
@FAST
def test_builder_size_is_exact(recs: list[ProducerRecord]) -> None:
    builder = AggregateBuilder(max_size=10**9)
    for r in recs:
        assert builder.try_add(r)
        assert builder.size == len(builder.build())
    assert builder.build() == encode(recs)
    assert decode(builder.build()) == recs


@given(record_lists, st.integers(min_value=1, max_value=3000))
@FAST
def test_builder_respects_max_size(recs: list[ProducerRecord], max_size: int) -> None:
    builder = AggregateBuilder(max_size=max_size)
    for r in recs:
        candidate = [*builder.records, r]
        fits = len(encode(candidate)) + len(candidate[0].partition_key.encode()) <= max_size
        expected = fits or len(builder) == 0
        assert builder.try_add(r) == expected
        assert builder.size == len(builder.build())
    if len(builder) > 1:
        assert builder.size + len(builder.records[0].partition_key.encode()) <= max_size


# -- round trips and fuzzing ------------------------------------------------------------------


@given(record_lists)
@FAST
def test_round_trip(recs: list[ProducerRecord]) -> None:
    data = encode(recs)
    assert is_aggregate(data)
    assert decode(data) == recs


@given(st.binary(max_size=200))
@FUZZ
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for candidate in (data, MAGIC + data, wrap(data)):
        with contextlib.suppress(AggregationError):
            decode(candidate)
        check_deaggregation(candidate)


def test_fuzz_short_run_of_the_structured_mutator() -> None:
    # the long run (10**6 inputs) is benchmarks/fuzz_aggregation.py, recorded in RESULTS.md
    tallies = fuzzer.run(3000, seed=7)
    assert sum(t.broken for t in tallies.values()) == 0, [
        f for t in tallies.values() for f in t.failures
    ]
    assert all(t.inputs for t in tallies.values())
    assert tallies["valid aggregate"].decoded == tallies["valid aggregate"].inputs
    assert tallies["bad MD5, valid body"].rejected == tallies["bad MD5, valid body"].inputs


def check_against_protobuf(data: bytes) -> None:
    """decode raises only AggregationError, and accepts nothing protobuf rejects."""
    try:
        ours = decode(data)
    except AggregationError:
        return
    msg = parse_with_protobuf(data)  # raises if protobuf disagrees
    pks = list(msg.partition_key_table)
    ehks = list(msg.explicit_hash_key_table)
    theirs = [
        ProducerRecord(
            r.data,
            pks[r.partition_key_index],
            int(ehks[r.explicit_hash_key_index]) if r.HasField("explicit_hash_key_index") else None,
        )
        for r in msg.records
    ]
    assert ours == theirs


@given(
    record_lists,
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "delete", "insert", "truncate"]),
            st.integers(min_value=0, max_value=10**6),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
)
@FUZZ
def test_fuzz_mutated_aggregates(
    recs: list[ProducerRecord], mutations: list[tuple[str, int, bytes]]
) -> None:
    body = bytearray(body_of(encode(recs)))
    for kind, where, junk in mutations:
        i = where % (len(body) + 1)
        if kind == "flip" and i < len(body):
            body[i] ^= junk[0]
        elif kind == "delete":
            del body[i : i + len(junk)]
        elif kind == "insert":
            body[i:i] = junk
        else:
            del body[i:]
    mutated = bytes(body)
    check_against_protobuf(wrap(mutated))
    check_deaggregation(wrap(mutated))
    # Without fixing the digest, any change is an MD5 mismatch (or too short).
    if mutated != body_of(encode(recs)):
        with pytest.raises(AggregationError):
            decode(MAGIC + mutated + encode(recs)[-16:])


small_ints = st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1), st.just(2**64))
unknown_fields = st.one_of(
    st.tuples(st.integers(5, 2**29 - 1), st.integers(0, 2**64 - 1).map(varint)).map(
        lambda t: field(t[0], 0, t[1])
    ),
    st.tuples(st.integers(5, 40), st.binary(max_size=6)).map(lambda t: field(t[0], 2, t[1])),
    st.tuples(st.integers(1, 40), st.sampled_from([1, 5])).map(
        lambda t: field(t[0], t[1], b"\x07" * (8 if t[1] == 1 else 4))
    ),
    st.tuples(st.integers(1, 40), st.integers(0, 300)).map(
        lambda t: varint(t[0] << 3 | 3) + field(1, 0, varint(t[1])) + varint(t[0] << 3 | 4)
    ),
)
tag_fields = st.one_of(
    st.text(max_size=5).map(lambda k: field(1, 2, k.encode())),
    st.text(max_size=5).map(lambda v: field(2, 2, v.encode())),
    unknown_fields,
)
record_fields = st.one_of(
    small_ints.map(lambda i: field(1, 0, varint(i))),
    small_ints.map(lambda i: field(2, 0, varint(i))),
    st.binary(max_size=20).map(lambda d: field(3, 2, d)),
    st.lists(tag_fields, max_size=3).map(lambda fs: field(4, 2, b"".join(fs))),
    unknown_fields,
)
# Mostly well-formed parts, so that many bodies are valid (and compared with protobuf's
# reading) rather than rejected at their first byte.
likely_records = st.tuples(
    st.lists(
        st.sampled_from([0, 0, 1]).map(lambda i: field(1, 0, varint(i))), min_size=1, max_size=2
    ),
    st.lists(st.binary(max_size=20).map(lambda d: field(3, 2, d)), min_size=1, max_size=2),
    st.lists(
        st.one_of(
            st.sampled_from([0, 1]).map(lambda i: field(2, 0, varint(i))),
            st.lists(tag_fields, max_size=3).map(
                lambda fs: field(4, 2, field(1, 2, b"k") + b"".join(fs))
            ),
            unknown_fields,
        ),
        max_size=3,
    ),
).flatmap(lambda t: st.permutations([*t[0], *t[1], *t[2]]))
valid_pk = partition_keys.map(lambda k: field(1, 2, k.encode()))
top_fields = st.one_of(
    valid_pk,
    valid_pk,
    st.just(field(1, 2, b"\xff")),
    likely_records.map(lambda fs: field(3, 2, b"".join(fs))),
    likely_records.map(lambda fs: field(3, 2, b"".join(fs))),
    st.lists(record_fields, max_size=4).map(lambda fs: field(3, 2, b"".join(fs))),
    st.one_of(
        st.integers(0, MAX_HASH_KEY + 10).map(lambda i: str(i).encode()),
        st.sampled_from([b"", b"007", b"x"]),
    ).map(lambda k: field(2, 2, k)),
    unknown_fields,
)


@given(st.lists(top_fields, max_size=10), st.data())
@FUZZ
def test_fuzz_protobuf_shaped_bodies(fields: list[bytes], data: st.DataObject) -> None:
    body = b"".join(fields)
    check_against_protobuf(wrap(body))
    check_deaggregation(wrap(body))
    if body:  # and once more with a cut somewhere, the commonest kind of damage
        cut = data.draw(st.integers(0, len(body) - 1))
        check_against_protobuf(wrap(body[:cut]))


# -- interop with aws_kinesis_agg -------------------------------------------------------------


def test_theirs_to_ours_fixed_case() -> None:
    recs = [
        ProducerRecord(b"first", UNICODE_KEY),
        ProducerRecord(b"second", "plain", 12345),
        ProducerRecord(b"", UNICODE_KEY, MAX_HASH_KEY),
        ProducerRecord("données".encode(), "plain", 12345),
    ]
    data = theirs_encode(recs)
    assert is_aggregate(data)
    assert decode(data) == recs
    assert data == encode(recs)  # the same bytes: same tables, same field order


def test_ours_to_theirs_fixed_case() -> None:
    recs = [
        ProducerRecord(b"first", UNICODE_KEY, 0),
        ProducerRecord(b"second", "plain", 2**127),
        ProducerRecord(b"\x00\x01", UNICODE_KEY, 0),
    ]
    out = theirs_decode(encode(recs))
    assert [(r["partitionKey"], r["explicitHashKey"], r["subSequenceNumber"]) for r in out] == [
        (UNICODE_KEY, "0", 0),
        ("plain", str(2**127), 1),
        (UNICODE_KEY, "0", 2),
    ]
    assert [base64.b64decode(r["data"]) for r in out] == [r.data for r in recs]
    assert all(r["aggregated"] for r in out)


def test_theirs_passes_our_garbage_through() -> None:
    # aws_kinesis_agg treats what we reject as a plain record; so does the KCL.
    for data in (b"not an aggregate", MAGIC + b"x" * 30):
        with pytest.raises(AggregationError):
            decode(data)
        out = theirs_decode(data)
        assert len(out) == 1
        assert "aggregated" not in out[0]


@given(record_lists)
@FAST
def test_theirs_to_ours(recs: list[ProducerRecord]) -> None:
    data = theirs_encode(recs)
    assert decode(data) == recs


@given(record_lists)
@FAST
def test_ours_to_theirs(recs: list[ProducerRecord]) -> None:
    out = theirs_decode(encode(recs))
    assert len(out) == len(recs)
    any_ehk = any(r.explicit_hash_key is not None for r in recs)
    for i, (theirs, ours) in enumerate(zip(out, recs, strict=True)):
        assert theirs["subSequenceNumber"] == i
        assert theirs["partitionKey"] == ours.partition_key
        assert base64.b64decode(theirs["data"]) == ours.data
        if ours.explicit_hash_key is not None:
            assert theirs["explicitHashKey"] == str(ours.explicit_hash_key)
        elif not any_ehk:
            assert theirs["explicitHashKey"] is None
        # else: aws_kinesis_agg reports explicit_hash_key_table[0] for a record without an
        # index (it reads the proto default 0 without HasField); the KCL and we report None.
