"""The codec's two ways through: the inline decode path and the general one, the encoder's
lookup tables and what lies past them; both checked against aws_kinesis_agg and each other."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinesio import ProducerRecord, ValidationError
from kinesio.aggregation import AggregateBuilder, _decode, _wire, decode, encode
from test_aggregation import (
    FAST,
    check_against_protobuf,
    check_deaggregation,
    parse_with_protobuf,
    record_lists,
    theirs_decode,
    theirs_encode,
    wrap,
)


def varint_padded(n: int, extra: int) -> bytes:
    """``n`` as a varint with ``extra`` redundant continuation bytes (valid, and overlong)."""
    out = bytearray(_wire.varint(n))
    if extra:
        out[-1] |= 0x80
        out += b"\x80" * (extra - 1) + b"\x00"
    return bytes(out)


def odd_body(recs: list[ProducerRecord], rng: random.Random) -> bytes:
    """The aggregate body of ``recs`` as protobuf allows but no encoder writes it: fields in
    shuffled order, overlong varints, partition keys after the records."""
    pks = list(dict.fromkeys(r.partition_key for r in recs))
    ehks = list(dict.fromkeys(r.explicit_hash_key for r in recs if r.explicit_hash_key is not None))

    def ld(tag: int, payload: bytes) -> bytes:
        return bytes((tag,)) + varint_padded(len(payload), rng.randrange(3)) + payload

    records = b""
    for r in recs:
        fields = [b"\x08" + varint_padded(pks.index(r.partition_key), rng.randrange(3))]
        if r.explicit_hash_key is not None:
            fields.append(b"\x10" + varint_padded(ehks.index(r.explicit_hash_key), 1))
        fields.append(ld(0x1A, r.data))
        rng.shuffle(fields)
        records += ld(0x1A, b"".join(fields))
    tables = b"".join(ld(0x12, str(e).encode()) for e in ehks)
    return records + tables + b"".join(ld(0x0A, k.encode()) for k in pks)


def counting_record_reader(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    general: Callable[..., Any] = _decode._record

    def counted(*args: Any) -> Any:
        calls.append(1)
        return general(*args)

    monkeypatch.setattr(_decode, "_record", counted)
    return calls


# -- decode: the inline path and the general path ---------------------------------------------


@given(record_lists, st.randoms(use_true_random=False))
@FAST
def test_general_path_reads_what_the_inline_path_reads(
    recs: list[ProducerRecord], rng: random.Random
) -> None:
    odd = wrap(odd_body(recs, rng))
    assert decode(odd) == decode(encode(recs)) == recs
    msg = parse_with_protobuf(odd)  # and protobuf reads the odd bytes the same way
    assert [r.data for r in msg.records] == [r.data for r in recs]


def test_canonical_records_take_the_inline_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # one- and two-byte indexes and lengths, with and without explicit hash keys
    recs = [ProducerRecord(bytes(i % 300), f"k{i}", i if i % 3 else None) for i in range(0, 600, 3)]
    calls = counting_record_reader(monkeypatch)
    assert decode(encode(recs)) == recs
    assert calls == []
    assert decode(wrap(odd_body(recs, random.Random(1)))) == recs
    assert len(calls) > len(recs) // 2  # most shuffles put another field first


def test_three_byte_lengths_and_indexes_take_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = [ProducerRecord(b"x" * 20_000, "big"), ProducerRecord(b"y", "small")]
    calls = counting_record_reader(monkeypatch)
    assert decode(encode(recs)) == recs
    assert len(calls) == 1


def test_decoded_records_are_ordinary_producer_records() -> None:
    # decode builds them through their slots, not __init__: they must still be the real thing,
    # and decode sets exactly these fields
    assert [f.name for f in dataclasses.fields(ProducerRecord)] == [
        "data",
        "partition_key",
        "explicit_hash_key",
    ]
    recs = [ProducerRecord(b"d", "k"), ProducerRecord(b"e", "k", 5)]
    out = decode(encode(recs))
    assert out == recs
    assert [type(r) for r in out] == [ProducerRecord, ProducerRecord]
    assert {*out} == {*recs}
    assert repr(out[1]) == repr(recs[1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        out[0].data = b"other"  # type: ignore[misc]


# -- encode: the tables and past them ---------------------------------------------------------


@given(record_lists)
@FAST
def test_encode_is_aws_kinesis_aggs_bytes(recs: list[ProducerRecord]) -> None:
    builder = AggregateBuilder(10**9)
    assert all(builder.try_add(r) for r in recs)
    assert builder.build() == encode(recs) == theirs_encode(recs)


@pytest.mark.parametrize(
    "size",
    [_wire.TABLE_SIZE - 8, _wire.TABLE_SIZE - 5, _wire.TABLE_SIZE - 1, _wire.TABLE_SIZE, 16_384],
)
def test_lengths_around_the_table_end(size: int) -> None:
    # data lengths and record lengths on both sides of the lookup table's last entry
    recs = [ProducerRecord(b"\x07" * size, "k"), ProducerRecord(b"x" * (size + 1), "k", 9)]
    data = encode(recs)
    assert data == theirs_encode(recs)
    assert decode(data) == recs
    builder = AggregateBuilder(10**9)
    assert builder.try_add(recs[0])
    assert builder.try_add(recs[1])
    assert builder.size == len(data)


def test_more_keys_than_the_table() -> None:
    recs = [ProducerRecord(b"v", f"key-{i}") for i in range(_wire.TABLE_SIZE + 100)]
    recs.append(ProducerRecord(b"long key", "k" * (_wire.TABLE_SIZE + 1)))
    data = encode(recs)
    assert data == theirs_encode(recs)
    assert decode(data) == recs
    assert len(theirs_decode(data)) == len(recs)


@pytest.mark.parametrize("twin", [True, 1.0])
def test_explicit_hash_key_equal_to_a_valid_int_is_still_rejected(twin: object) -> None:
    # True == 1 == 1.0 as dict keys: the table lookup alone would let them through
    first = ProducerRecord(b"a", "k", 1)
    second = ProducerRecord(b"b", "k", twin)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="explicit hash key"):
        encode([first, second])
    builder = AggregateBuilder()
    assert builder.try_add(first)
    size = builder.size
    with pytest.raises(ValidationError, match="explicit hash key"):
        builder.try_add(second)
    assert builder.size == size
    assert len(builder) == 1


def test_unhashable_partition_key_is_a_validation_error() -> None:
    bad = ProducerRecord(b"x", ["not", "a", "str"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="str"):
        encode([bad])
    with pytest.raises(ValidationError, match="str"):
        AggregateBuilder().try_add(bad)


# -- decode: table entries of one length, read in bulk ----------------------------------------


@pytest.mark.parametrize("keys", [7, 8, 9, 511, 512, 513, 1500])
def test_same_length_keys_in_any_number(keys: int) -> None:
    recs = [ProducerRecord(b"%d" % i, f"{i:036d}") for i in range(keys)]
    recs += [ProducerRecord(b"short", "k"), ProducerRecord(b"again", f"{0:036d}")]
    recs += [ProducerRecord(b"%d" % i, f"{i:05d}", i) for i in range(keys)]
    data = encode(recs)
    assert decode(data) == recs
    assert decode(wrap(odd_body(recs, random.Random(keys)))) == recs


@given(
    st.integers(0, 40),
    st.integers(0, 700),
    st.randoms(use_true_random=False),
    st.sampled_from([0x0A, 0x12]),
    st.sampled_from(["none", "cut", "flip", "insert"]),
)
@FAST
def test_runs_of_table_entries_read_as_protobuf_reads_them(
    size: int, entries: int, rng: random.Random, tag: int, damage: str
) -> None:
    # Entries of one length, a few of another length or with a stray byte among them, then
    # records: whatever decode makes of it, protobuf must agree (check_against_protobuf).
    table = bytearray()
    for i in range(entries):
        length = size if rng.random() < 0.97 else rng.randrange(41)
        raw = (b"%0*d" % (length, i))[-length:] if length else b""
        if tag == 0x0A and rng.random() < 0.01:
            raw = b"\xff" * length  # not UTF-8
        table += bytes((tag, length)) + raw
    pk = b"\x0a\x01k"
    records = b"".join(b"\x1a\x06\x08\x00\x1a\x02%02d" % (i % 100) for i in range(5))
    body = bytearray(pk + table + records)
    if damage == "cut":
        del body[rng.randrange(len(body) + 1) :]
    elif damage == "flip" and body:
        body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    elif damage == "insert":
        body.insert(rng.randrange(len(body) + 1), rng.randrange(256))
    check_against_protobuf(wrap(bytes(body)))
    check_deaggregation(wrap(bytes(body)))
