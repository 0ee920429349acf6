"""Encoding: user records to the bytes of one aggregate, the per-record work done in bulk.

The body is assembled from lists that C-level ``map`` calls fill (lengths, varints looked up
in a table, table indexes) and one ``bytes.join``: no Python-level step runs per user record
here. AggregateBuilder and encode() differ only in how they collect and validate the records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import count, repeat
from operator import add, attrgetter

from kinesio._errors import ValidationError
from kinesio._models import ProducerRecord
from kinesio.aggregation._keys import check_ehk_int
from kinesio.aggregation._wire import HASH_KEY_LIMIT, MAGIC, VARINTS, varint

DATA = attrgetter("data")
PARTITION_KEY = attrgetter("partition_key")
EXPLICIT_HASH_KEY = attrgetter("explicit_hash_key")

# The tag byte plus the varint, for every number in the varint table.
_TAGGED_LEN = [len(v) + 1 for v in VARINTS]
_LOOKUP = VARINTS.__getitem__
_TAGGED_LOOKUP = _TAGGED_LEN.__getitem__


def _varints(numbers: list[int]) -> list[bytes]:
    try:
        return list(map(_LOOKUP, numbers))
    except IndexError:  # a number past the table: rare (over 16 KiB), so per number is fine
        return list(map(varint, numbers))


def _tagged_lens(numbers: list[int]) -> list[int]:
    try:
        return list(map(_TAGGED_LOOKUP, numbers))
    except IndexError:
        return [len(varint(n)) + 1 for n in numbers]


def tagged_len(n: int) -> int:
    """Bytes of a one-byte tag and the varint ``n``."""
    return 2 if n < 0x80 else 3 if n < 0x4000 else len(varint(n)) + 1


def ehk_entry(ehk: int) -> bytes:
    """The explicit_hash_key_table entry for ``ehk``; ValidationError unless a valid int."""
    if type(ehk) is not int or not 0 <= ehk < HASH_KEY_LIMIT:
        check_ehk_int(ehk)
    raw = b"%d" % ehk
    # At most 39 digits: the length is always a one-byte varint.
    return b"\x12" + VARINTS[len(raw)] + raw


def bad_partition_key(pk: object, exc: Exception) -> ValidationError:
    if isinstance(pk, str) and isinstance(exc, UnicodeEncodeError):
        return ValidationError(f"partition key cannot be encoded as UTF-8: {exc}")
    return ValidationError(f"partition key must be a str, got {type(pk).__name__}")


def bad_data(data: object) -> ValidationError:
    return ValidationError(f"record data must be bytes, got {type(data).__name__}")


def assemble(
    pk_raws: list[bytes],
    ehk_entries: list[bytes],
    records: Sequence[ProducerRecord],
    pk_index: dict[str, int],
    ehk_fields: dict[int | None, bytes] | None,
) -> bytes:
    """MAGIC || body || MD5(body) for validated records (at least one).

    ``pk_raws`` are the UTF-8 partition keys in table order and ``pk_index`` maps each key to
    its index; ``ehk_entries`` are encoded explicit_hash_key_table entries and ``ehk_fields``
    maps each explicit hash key to its encoded index field (None to b""), or is None when no
    record has one.
    """
    n = len(records)
    datas = list(map(DATA, records))
    dlens = list(map(len, datas))
    nkeys = len(pk_raws)
    pk_fields = list(map(add, repeat(b"\x08", nkeys), _varints(list(range(nkeys)))))
    prefixes = list(
        map(pk_fields.__getitem__, map(pk_index.__getitem__, map(PARTITION_KEY, records)))
    )
    if ehk_fields is not None:
        prefixes = list(
            map(add, prefixes, map(ehk_fields.__getitem__, map(EXPLICIT_HASH_KEY, records)))
        )
    # Record = prefix (key index fields) || 0x1A varint(len(data)) || data
    sizes = list(map(add, map(add, dlens, _tagged_lens(dlens)), map(len, prefixes)))
    parts: list[bytes] = [b"\x0a"] * (3 * nkeys)
    parts[1::3] = _varints(list(map(len, pk_raws)))
    parts[2::3] = pk_raws
    parts += ehk_entries
    records_at = len(parts)
    parts += [b"\x1a"] * (6 * n)
    parts[records_at + 1 :: 6] = _varints(sizes)
    parts[records_at + 2 :: 6] = prefixes
    parts[records_at + 4 :: 6] = _varints(dlens)
    parts[records_at + 5 :: 6] = datas
    body = b"".join(parts)
    return b"".join((MAGIC, body, hashlib.md5(body).digest()))


def encode(records: Sequence[ProducerRecord]) -> bytes:
    """Pack user records into one KPL aggregated record, in order.

    Partition keys and explicit hash keys go into their tables once each, in first-seen order;
    a record without an explicit hash key carries no explicit hash key index. No size limit
    is applied here (see :class:`AggregateBuilder`). Never blocks.

    Raises :class:`~kinesio.ValidationError` if ``records`` is empty, or a record has data that
    is not bytes, a partition key that is not a UTF-8-encodable str, or an explicit hash key
    outside ``[0, 2**128)``.
    """
    if not records:
        raise ValidationError("cannot aggregate an empty sequence of records")
    datas = list(map(DATA, records))
    if not all(map(isinstance, datas, repeat(bytes))):
        raise bad_data(next(d for d in datas if not isinstance(d, bytes)))
    pks = list(map(PARTITION_KEY, records))
    try:
        pk_index = dict(zip(dict.fromkeys(pks), count()))
        pk_raws = list(map(str.encode, pk_index))
    except (TypeError, UnicodeEncodeError) as exc:
        # A key that is not a str (or not hashable), or a lone surrogate: find it for the message.
        for pk in pks:
            if not isinstance(pk, str):
                raise bad_partition_key(pk, exc) from exc
            try:
                pk.encode()
            except UnicodeEncodeError as inner:
                raise bad_partition_key(pk, inner) from exc
        raise ValidationError(f"invalid partition key: {exc}") from exc
    ehks = list(map(EXPLICIT_HASH_KEY, records))
    ehk_fields: dict[int | None, bytes] | None = None
    ehk_entries: list[bytes] = []
    if ehks.count(None) != len(ehks):
        ehk_fields = {None: b""}
        for ehk in ehks:
            # The type is checked on every record, not once per distinct key: True == 1 and
            # 1.0 == 1 as dict keys, and neither is a valid explicit hash key.
            if ehk is None or (type(ehk) is int and ehk in ehk_fields):
                continue
            ehk_entries.append(ehk_entry(ehk))  # raises unless a valid int
            ehk_fields[ehk] = b"\x10" + varint(len(ehk_entries) - 1)
    return assemble(pk_raws, ehk_entries, records, pk_index, ehk_fields)
