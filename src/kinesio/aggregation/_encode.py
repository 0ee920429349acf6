"""Encoding: AggregateBuilder, the producer's way in, and encode(), the whole batch at once.

Each record's bytes are written once, when it is added: its length fields are looked up in
tables (see ``_wire``), so that adding a record costs little more than the size arithmetic the
limit needs anyway, and build() is one join and the MD5.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence

from kinesio._errors import ValidationError
from kinesio._models import ProducerRecord
from kinesio.aggregation._keys import check_ehk_int
from kinesio.aggregation._wire import (
    HASH_KEY_LIMIT,
    MAGIC,
    OVERHEAD,
    TAGGED_0A,
    TAGGED_08,
    TAGGED_1A,
    VARINTS,
    varint,
)


def encode(records: Sequence[ProducerRecord]) -> bytes:
    """Pack user records into one KPL aggregated record, in order.

    Partition keys and explicit hash keys go into their tables once each, in first-seen order;
    a record without an explicit hash key carries no explicit hash key index. No size limit
    is applied here (see :class:`AggregateBuilder`); the bytes are the builder's. Never blocks.

    Raises :class:`~kinesio.ValidationError` if ``records`` is empty, or a record has data that
    is not bytes, a partition key that is not a UTF-8-encodable str, or an explicit hash key
    outside ``[0, 2**128)``.
    """
    if not records:
        raise ValidationError("cannot aggregate an empty sequence of records")
    builder = AggregateBuilder(sys.maxsize)
    add = builder.try_add
    for record in records:
        add(record)  # always True: there is no limit
    return builder.build()


class AggregateBuilder:
    """Packs user records bound for one shard into one aggregate, one record at a time.

    ``max_size`` bounds ``len(build()) + len(outer partition key in UTF-8)`` — what Kinesis
    counts against its record size limit — where the outer partition key is the first record's.
    Each record is encoded once, when it is added; :attr:`size` is kept up to date in O(1) and
    :meth:`build` only joins the pieces and appends the MD5. Never blocks. Not thread-safe.
    """

    __slots__ = (
        "_body_limit",
        "_body_size",
        "_count",
        "_ehk_fields",
        "_ehk_table",
        "_max_size",
        "_parts",
        "_pk_index",
        "_pk_table",
        "_records",
    )

    def __init__(self, max_size: int = 51_200) -> None:
        """Raises :class:`~kinesio.ValidationError` if ``max_size`` is not a positive int."""
        if type(max_size) is not int or max_size <= 0:
            raise ValidationError(f"max_size must be a positive int, got {max_size!r}")
        self._max_size = max_size
        self._pk_index: dict[str, int] = {}
        self._pk_table: list[bytes] = []
        self._ehk_fields: dict[int, bytes] = {}
        self._ehk_table: list[bytes] = []
        self._parts: list[bytes] = []
        self._records: list[ProducerRecord] = []  # those added by try_add
        self._count = 0
        self._body_size = 0
        # What the body may grow to; unbounded while empty (the first record always fits).
        self._body_limit = sys.maxsize

    def try_add(self, record: ProducerRecord) -> bool:
        """Add ``record`` if the aggregate stays within ``max_size``; say whether it was added.

        An empty builder accepts any record, however large (the caller decides whether a lone
        record is too big to send). When False is returned the builder is unchanged.

        Raises :class:`~kinesio.ValidationError` (and stays unchanged) for a record that cannot
        be encoded: data that is not bytes, a partition key that is not a UTF-8-encodable str,
        an explicit hash key outside ``[0, 2**128)``.
        """
        data = record.data
        if type(data) is not bytes and not isinstance(data, bytes):
            raise ValidationError(f"record data must be bytes, got {type(data).__name__}")
        if self._add_fields(data, record.partition_key, record.explicit_hash_key):
            self._records.append(record)
            return True
        return False

    def _add_fields(self, data: bytes, pk: str, ehk: int | None) -> bool:
        """``try_add`` for a record given as its fields, whose data the caller has checked to
        be bytes (the producer's, which checks at put(): it packs its records this way without
        making a ``ProducerRecord`` for each). The record is not kept for :attr:`records`."""
        # Runs once per user record in the producer. A table entry is 0x0A len key; a record
        # 0x1A len (0x08 index [0x10 index] 0x1A len data). Nothing is stored until the size
        # check has passed. The IndexErrors are numbers past the tables: rare, and free to
        # guard against until they happen.
        try:
            index = self._pk_index.get(pk)
        except TypeError as exc:  # not hashable, so not a str
            raise _bad_partition_key(pk, exc) from exc
        entry = None
        if index is None:
            try:
                raw = pk.encode()
            except (AttributeError, UnicodeEncodeError) as exc:
                raise _bad_partition_key(pk, exc) from exc
            try:
                entry = TAGGED_0A[len(raw)] + raw
            except IndexError:
                entry = b"\x0a" + varint(len(raw)) + raw
            index = len(self._pk_table)
            added = len(entry)
        else:
            added = 0
        try:
            key_field = TAGGED_08[index]
        except IndexError:
            key_field = b"\x08" + varint(index)
        new_ehk = None
        if ehk is not None:
            # The type is checked every time: True == 1 and 1.0 == 1 as dict keys.
            ehk_field = self._ehk_fields.get(ehk) if type(ehk) is int else None
            if ehk_field is None:
                ehk_entry = _ehk_entry(ehk)
                ehk_field = b"\x10" + varint(len(self._ehk_table))
                new_ehk = (ehk, ehk_field, ehk_entry)
                added += len(ehk_entry)
            key_field += ehk_field
        size = len(data)
        try:
            data_field = TAGGED_1A[size]
        except IndexError:
            data_field = b"\x1a" + varint(size)
        size += len(key_field) + len(data_field)
        try:
            record_field = TAGGED_1A[size]
        except IndexError:
            record_field = b"\x1a" + varint(size)
        added += len(record_field) + size
        if self._body_size + added > self._body_limit:
            return False
        if entry is not None:
            if not self._pk_table:  # the first record: its key is the outer partition key
                self._body_limit = self._max_size - OVERHEAD - len(raw)
            self._pk_index[pk] = index
            self._pk_table.append(entry)
        if new_ehk is not None:
            self._ehk_fields[new_ehk[0]] = new_ehk[1]
            self._ehk_table.append(new_ehk[2])
        self._parts += (record_field, key_field, data_field, data)
        self._count += 1
        self._body_size += added
        return True

    @property
    def max_size(self) -> int:
        """The size limit in bytes, partition key included (see the class docstring)."""
        return self._max_size

    @property
    def size(self) -> int:
        """Exact length in bytes of what :meth:`build` returns now; 0 while empty."""
        return OVERHEAD + self._body_size if self._body_size else 0

    @property
    def records(self) -> list[ProducerRecord]:
        """The records added so far by :meth:`try_add`, in order (a new list)."""
        return list(self._records)

    def __len__(self) -> int:
        return self._count

    def build(self) -> bytes:
        """The aggregate of the records added so far; the builder is left as it was.

        Raises :class:`~kinesio.ValidationError` if no record was added.
        """
        if not self._count:
            raise ValidationError("cannot build an aggregate of no records")
        body = b"".join(self._pk_table + self._ehk_table + self._parts)
        return b"".join((MAGIC, body, hashlib.md5(body).digest()))

    def reset(self) -> None:
        """Forget every record: the builder is as new (same ``max_size``). Never raises."""
        self._pk_index.clear()
        self._pk_table.clear()
        self._ehk_fields.clear()
        self._ehk_table.clear()
        self._parts.clear()
        self._records.clear()
        self._count = 0
        self._body_size = 0
        self._body_limit = sys.maxsize


def _bad_partition_key(pk: object, exc: Exception) -> ValidationError:
    if isinstance(pk, str) and isinstance(exc, UnicodeEncodeError):
        return ValidationError(f"partition key cannot be encoded as UTF-8: {exc}")
    return ValidationError(f"partition key must be a str, got {type(pk).__name__}")


def _ehk_entry(ehk: object) -> bytes:
    if type(ehk) is not int or not 0 <= ehk < HASH_KEY_LIMIT:
        check_ehk_int(ehk)
    raw = b"%d" % ehk  # type: ignore[str-format]  # an int, checked above
    # At most 39 digits: the length is always a one-byte varint.
    return b"\x12" + VARINTS[len(raw)] + raw
