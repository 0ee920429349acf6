"""Decoding: one aggregate's bytes to its user records, with every check protobuf makes.

One pass over the body collects the table entries, each record's data slice and its key
indexes; the records are then checked and built in bulk. Records laid out as every encoder
writes them (``0x08 index [0x10 index] 0x1A len data``, one- or two-byte varints) are read
inline; anything else (other field orders, repeated fields, tags, unknown fields, long
varints) goes through :func:`_record`, which reads any valid protobuf.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat

from kinesio._errors import AggregationError
from kinesio._models import ProducerRecord
from kinesio.aggregation._wire import (
    DIGEST_SIZE,
    HASH_KEY_LIMIT,
    MAGIC,
    OVERHEAD,
    read_varint,
    skip_field,
)

# ProducerRecord is a frozen, slotted dataclass: its __init__ sets each field through
# object.__setattr__, about 0.4 us per record. Setting the slots through their descriptors in
# bulk builds the same objects (equal, hashable, frozen) in half the time.
_NEW = object.__new__


def _slot_setter(name: str) -> Callable[[ProducerRecord, object], None]:
    setter: Callable[[ProducerRecord, object], None] = vars(ProducerRecord)[name].__set__
    return setter


_SET_DATA = _slot_setter("data")
_SET_PK = _slot_setter("partition_key")
_SET_EHK = _slot_setter("explicit_hash_key")
_consume: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend


def is_aggregate(data: bytes) -> bool:
    """Whether ``data`` starts with the KPL magic and is long enough to be an aggregate.

    A cheap test (the length and the first four bytes): True does not mean :func:`decode` will
    succeed, as neither the MD5 nor the protobuf is checked. Never raises for bytes-like input.
    """
    return len(data) > OVERHEAD and data[:4] == MAGIC


def decode(data: bytes) -> list[ProducerRecord]:
    """The user records packed in a KPL aggregated record, in order (index = sub-sequence).

    Unknown protobuf fields (including groups) and ``Record.tags`` are skipped, as protobuf
    does. Never blocks. Raises :class:`~kinesio.AggregationError` — and no other exception,
    whatever the input — when ``data`` is not a valid aggregate: too short, wrong magic, MD5
    mismatch, malformed protobuf, a missing required field (``partition_key_index``, ``data``,
    ``Tag.key``), a partition key that is not UTF-8, an index outside its table, or an
    explicit hash key that is not a decimal below ``2**128``.
    """
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except TypeError as exc:
            raise AggregationError(f"expected bytes, got {type(data).__name__}") from exc
    if len(data) <= OVERHEAD:
        raise AggregationError(f"too short for an aggregated record ({len(data)} bytes)")
    if data[:4] != MAGIC:
        raise AggregationError("not an aggregated record: wrong magic bytes")
    end = len(data) - DIGEST_SIZE
    # Hashing and parsing in place: no copy of a body that can be ~1 MiB.
    if hashlib.md5(memoryview(data)[4:end]).digest() != data[end:]:
        raise AggregationError("aggregated record MD5 mismatch")
    try:
        return _parse(data, 4, end)
    except IndexError as exc:
        raise AggregationError("malformed protobuf: truncated") from exc


def _parse(buf: bytes, pos: int, end: int) -> list[ProducerRecord]:
    # Reads are not bounds-checked one by one: going past the end of buf raises IndexError,
    # and running past `end` (into the digest) or past a record is caught by the `pos != end`
    # / `> end` / `== rend` checks that follow.
    pk_raws: list[bytes] = []
    ehk_raws: list[bytes] = []
    datas: list[bytes] = []
    pk_indexes: list[int] = []
    ehk_indexes: dict[int, int] = {}  # record number -> its explicit_hash_key_index
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(buf, pos)
        if tag == 0x1A:  # records
            pos = _records(buf, pos, end, datas, pk_indexes, ehk_indexes)
        elif tag == 0x0A:  # partition_key_table
            pos = _strings(buf, pos, end, tag, pk_raws)
        elif tag == 0x12:  # explicit_hash_key_table
            pos = _strings(buf, pos, end, tag, ehk_raws)
        else:
            pos = skip_field(buf, pos, tag, end)
    if pos != end:
        raise AggregationError("malformed protobuf: last field overruns the message")
    return _build(pk_raws, ehk_raws, datas, pk_indexes, ehk_indexes)


def _strings(buf: bytes, pos: int, end: int, tag: int, out: list[bytes]) -> int:
    """Reads a run of length-delimited fields ``tag`` (one-byte tag), the first one's tag
    already read; returns the position after the run."""
    append = out.append
    while True:
        size = buf[pos]
        if size < 0x80:
            # Worth reading in bulk only if the entry _RUN_MIN - 1 further on looks alike.
            last = pos - 1 + (_RUN_MIN - 1) * (size + 2)
            if last + 1 < end and buf[last] == tag and buf[last + 1] == size:
                stop = _same_size_run(buf, pos - 1, end, tag, size, out)
                if stop is not None:
                    if stop < end and buf[stop] == tag:
                        pos = stop + 1
                        continue
                    return stop
            pos += 1
        else:
            size, pos = read_varint(buf, pos)
        stop = pos + size
        if stop > end:
            raise AggregationError("malformed protobuf: string overruns the message")
        append(buf[pos:stop])
        if stop < end and buf[stop] == tag:
            pos = stop + 1
        else:
            return stop


# Fewer entries of one length than this are read one by one; more than _RUN_MAX at a time
# are read in turns, which bounds the work a failed try costs (input can be crafted to fail
# every try).
_RUN_MIN = 8
_RUN_MAX = 512


def _same_size_run(
    buf: bytes, first: int, end: int, tag: int, size: int, out: list[bytes]
) -> int | None:
    """Reads the entries ``tag size <size bytes>`` (one-byte tag and length) that follow one
    another from ``first`` (a tag), as fixed-length partition keys (UUIDs, hashes) give, in
    bulk; returns the position after them, or None (reading nothing) if there are fewer than
    _RUN_MIN. Entry i is the i-th field a one-by-one reading finds as long as every entry
    before it is one: the count of leading tag and length bytes at the stride gives the run.
    """
    stride = size + 2
    count = min((end - first) // stride, _RUN_MAX)
    stop = first + count * stride
    same = min(
        count - len(buf[first:stop:stride].lstrip(bytes((tag,)))),
        count - len(buf[first + 1 : stop : stride].lstrip(bytes((size,)))),
    )
    if same < _RUN_MIN:
        return None
    # One struct call cuts them all out (skip the tag and length, take size bytes; repeat).
    out += struct.unpack_from(f"2x{size}s" * same, buf, first)
    return first + same * stride


def _records(
    buf: bytes,
    pos: int,
    end: int,
    datas: list[bytes],
    pk_indexes: list[int],
    ehk_indexes: dict[int, int],
) -> int:
    """Reads a run of ``records`` fields, the first one's tag already read; returns the
    position after the run. The hot loop of decode."""
    append_data = datas.append
    append_index = pk_indexes.append
    while True:
        size = buf[pos]
        if size < 0x80:
            pos += 1
        elif buf[pos + 1] < 0x80:
            size = (size & 0x7F) | (buf[pos + 1] << 7)
            pos += 2
        else:
            size, pos = read_varint(buf, pos)
        rend = pos + size
        if rend > end:
            raise AggregationError("malformed protobuf: record overruns the message")
        # Inline: 0x08 index [0x10 index] 0x1A len data, varints of one or two bytes, filling
        # the record exactly. Anything else leaves `at` at or past rend (a longer varint sets
        # it to rend; each step after adds at least 2), so that `at + size == rend` fails and
        # _record reads the record instead; those reads stay within the 16-byte digest.
        if buf[pos] == 0x08:
            pk_index = buf[pos + 1]
            at = pos + 2
            if pk_index >= 0x80:
                byte = buf[at]
                pk_index = (pk_index & 0x7F) | (byte << 7)
                at = at + 1 if byte < 0x80 else rend
            ehk_index = -1
            tag = buf[at]
            if tag == 0x10:
                ehk_index = buf[at + 1]
                at += 2
                if ehk_index >= 0x80:
                    byte = buf[at]
                    ehk_index = (ehk_index & 0x7F) | (byte << 7)
                    at = at + 1 if byte < 0x80 else rend
                tag = buf[at]
            if tag == 0x1A:
                size = buf[at + 1]
                at += 2
                if size >= 0x80:
                    byte = buf[at]
                    size = (size & 0x7F) | (byte << 7)
                    at = at + 1 if byte < 0x80 else rend
                if at + size == rend:
                    if ehk_index >= 0:
                        ehk_indexes[len(datas)] = ehk_index
                    append_data(buf[at:rend])
                    append_index(pk_index)
                    if rend < end and buf[rend] == 0x1A:
                        pos = rend + 1
                        continue
                    return rend
        pk_index, ehk_index, data = _record(buf, pos, rend)
        if ehk_index >= 0:
            ehk_indexes[len(datas)] = ehk_index
        append_data(data)
        append_index(pk_index)
        if rend < end and buf[rend] == 0x1A:
            pos = rend + 1
        else:
            return rend


def _build(
    pk_raws: list[bytes],
    ehk_raws: list[bytes],
    datas: list[bytes],
    pk_indexes: list[int],
    ehk_indexes: dict[int, int],
) -> list[ProducerRecord]:
    try:
        pks = list(map(bytes.decode, pk_raws))
    except UnicodeDecodeError as exc:
        raise AggregationError("partition key is not valid UTF-8") from exc
    n = len(datas)
    if not n:
        return []
    if max(pk_indexes) >= len(pks):
        bad = next(i for i in pk_indexes if i >= len(pks))
        raise AggregationError(
            f"partition_key_index {bad} out of range ({len(pks)} partition keys)"
        )
    out = list(map(_NEW, repeat(ProducerRecord, n)))
    _consume(map(_SET_DATA, out, datas))
    _consume(map(_SET_PK, out, map(pks.__getitem__, pk_indexes)))
    _consume(map(_SET_EHK, out, repeat(None, n)))
    if ehk_indexes:
        # Only the referenced entries are checked: an unreferenced malformed one is ignored.
        values: dict[int, int] = {}
        for i, ehk_index in ehk_indexes.items():
            value = values.get(ehk_index)
            if value is None:
                if ehk_index >= len(ehk_raws):
                    raise AggregationError(
                        f"explicit_hash_key_index {ehk_index} out of range "
                        f"({len(ehk_raws)} hash keys)"
                    )
                value = values[ehk_index] = _ehk_value(ehk_raws[ehk_index])
            _SET_EHK(out[i], value)
    return out


def _record(buf: bytes, pos: int, rend: int) -> tuple[int, int, bytes]:
    """(partition_key_index, explicit_hash_key_index or -1, data) of the record in
    ``buf[pos:rend]``, fields in any order, the last of a repeated field winning."""
    pk_index = ehk_index = -1
    data: bytes | None = None
    while pos < rend:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(buf, pos)
        if tag == 0x08:
            pk_index, pos = read_varint(buf, pos)
        elif tag == 0x10:
            ehk_index, pos = read_varint(buf, pos)
        elif tag == 0x1A:
            size, pos = read_varint(buf, pos)
            data = buf[pos : pos + size]
            pos += size
        elif tag == 0x22:
            pos = _check_tag(buf, pos, rend)
        else:
            pos = skip_field(buf, pos, tag, rend)
    if pos != rend:
        raise AggregationError("malformed protobuf: field overruns its record")
    if pk_index < 0 or data is None:
        raise AggregationError("record lacks a required field (partition_key_index/data)")
    return pk_index, ehk_index, data


def _ehk_value(raw: bytes) -> int:
    # bytes.isdigit() is ASCII-only; cheaper than the regex on the decode path.
    if not (raw.isdigit() and len(raw) <= 39 and (raw[0] != 0x30 or len(raw) == 1)):
        raise AggregationError(f"explicit hash key {raw[:64]!r} is not a canonical decimal")
    value = int(raw)
    if value >= HASH_KEY_LIMIT:
        raise AggregationError(f"explicit hash key {value} is not below 2**128")
    return value


def _check_tag(buf: bytes, pos: int, limit: int) -> int:
    # Tags are dropped, but a Tag without its required key makes the aggregate invalid for
    # protobuf (and so for the KCL); parse it to agree with them.
    size, pos = read_varint(buf, pos)
    end = pos + size
    if end > limit:
        raise AggregationError("malformed protobuf: tag overruns its record")
    has_key = False
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(buf, pos)
        if tag == 0x0A:  # key
            has_key = True
        pos = skip_field(buf, pos, tag, end)
    if pos != end:
        raise AggregationError("malformed protobuf: field overruns its tag")
    if not has_key:
        raise AggregationError("tag lacks its required key")
    return pos
