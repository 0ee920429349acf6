"""The bytes of the KPL format that both directions share: framing constants and varints."""

from __future__ import annotations

from kinesio._errors import AggregationError

MAGIC = b"\xf3\x89\x9a\xc2"

DIGEST_SIZE = 16
# Magic and digest: what an aggregate costs before its first byte of protobuf.
OVERHEAD = len(MAGIC) + DIGEST_SIZE
HASH_KEY_LIMIT = 2**128
UINT64_MASK = 2**64 - 1
# upb and protobuf-java both refuse deeper nesting; unknown groups are the only way to nest here.
MAX_GROUP_DEPTH = 100

# Wire tags (field number << 3 | wire type), written as literals in the hot loops:
#   AggregatedRecord: 0x0A partition_key_table, 0x12 explicit_hash_key_table, 0x1A records
#   Record: 0x08 partition_key_index, 0x10 explicit_hash_key_index, 0x1A data, 0x22 tags
#   Tag: 0x0A key, 0x12 value

# Every varint below TABLE_SIZE, alone and after each one-byte tag the encoder writes in its
# hot path, so that encoding a record looks its length fields up instead of building them
# (about 0.3 MB in all; larger numbers are built by varint()).
TABLE_SIZE = 0x800
VARINTS = [bytes((i,)) for i in range(0x80)] + [
    bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(0x80, TABLE_SIZE)
]
TAGGED_08 = [b"\x08" + v for v in VARINTS]  # Record.partition_key_index
TAGGED_0A = [b"\x0a" + v for v in VARINTS]  # a partition_key_table entry's length
TAGGED_1A = [b"\x1a" + v for v in VARINTS]  # a records entry's or Record.data's length


def varint(n: int) -> bytes:
    if n < TABLE_SIZE:
        return VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    # protobuf reads at most 10 bytes and keeps the low 64 bits; so do we, to agree on
    # which aggregates are valid. Running off the end raises IndexError (caught by decode).
    result = 0
    shift = 0
    while shift < 70:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & UINT64_MASK, pos
        shift += 7
    raise AggregationError("malformed protobuf: varint longer than 10 bytes")


def skip_field(buf: bytes, pos: int, tag: int, limit: int) -> int:
    """Position after the value of a field with ``tag`` whose value starts at ``pos``."""
    groups: list[int] = []
    while True:
        field, wire_type = tag >> 3, tag & 7
        if field == 0 or tag > 0xFFFFFFFF:
            raise AggregationError(f"malformed protobuf: invalid tag {tag}")
        if wire_type == 0:
            _, pos = read_varint(buf, pos)
        elif wire_type == 2:
            size, pos = read_varint(buf, pos)
            pos += size
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 3:
            if len(groups) >= MAX_GROUP_DEPTH:
                raise AggregationError("malformed protobuf: groups nested too deeply")
            groups.append(field)
        elif wire_type == 4 and groups and groups[-1] == field:
            groups.pop()
        else:
            raise AggregationError(f"malformed protobuf: unexpected wire type {wire_type}")
        if not groups:
            return pos
        if pos >= limit:
            raise AggregationError("malformed protobuf: unterminated group")
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(buf, pos)
