"""AggregateBuilder: the producer's way in, one user record at a time under a size limit."""

from __future__ import annotations

from kinesio._errors import ValidationError
from kinesio._models import ProducerRecord
from kinesio.aggregation._encode import assemble, bad_data, bad_partition_key, ehk_entry, tagged_len
from kinesio.aggregation._wire import OVERHEAD, varint


class AggregateBuilder:
    """Packs user records bound for one shard into one aggregate, one record at a time.

    ``max_size`` bounds ``len(build()) + len(outer partition key in UTF-8)`` — what Kinesis
    counts against its record size limit — where the outer partition key is the first record's.
    Each record is validated and its exact encoded size counted when it is added, so
    :attr:`size` is kept up to date in O(1); :meth:`build` writes all the bytes in one pass
    and appends the MD5. Never blocks. Not thread-safe.
    """

    __slots__ = (
        "_body_size",
        "_ehk_entries",
        "_ehk_fields",
        "_max_size",
        "_outer_pk_size",
        "_pk_index",
        "_pk_raws",
        "_records",
    )

    def __init__(self, max_size: int = 51_200) -> None:
        """Raises :class:`~kinesio.ValidationError` if ``max_size`` is not a positive int."""
        if type(max_size) is not int or max_size <= 0:
            raise ValidationError(f"max_size must be a positive int, got {max_size!r}")
        self._max_size = max_size
        self._pk_index: dict[str, int] = {}
        self._pk_raws: list[bytes] = []
        self._ehk_fields: dict[int | None, bytes] = {None: b""}
        self._ehk_entries: list[bytes] = []
        self._records: list[ProducerRecord] = []
        self._body_size = 0
        self._outer_pk_size = 0

    def try_add(self, record: ProducerRecord) -> bool:
        """Add ``record`` if the aggregate stays within ``max_size``; say whether it was added.

        An empty builder accepts any record, however large (the caller decides whether a lone
        record is too big to send). When False is returned the builder is unchanged.

        Raises :class:`~kinesio.ValidationError` (and stays unchanged) for a record that cannot
        be encoded: data that is not bytes, a partition key that is not a UTF-8-encodable str,
        an explicit hash key outside ``[0, 2**128)``.
        """
        # Runs once per user record in the producer: only the size arithmetic happens here
        # (a table entry 0x0A len key, a record 0x1A len [0x08 index] [0x10 index] 0x1A len
        # data); nothing is stored until the size check has passed.
        data = record.data
        if type(data) is not bytes and not isinstance(data, bytes):
            raise bad_data(data)
        pk = record.partition_key
        try:
            index = self._pk_index.get(pk)
        except TypeError as exc:  # not hashable, so not a str
            raise bad_partition_key(pk, exc) from exc
        raw = None
        if index is None:
            try:
                raw = pk.encode()
            except (AttributeError, UnicodeEncodeError) as exc:
                raise bad_partition_key(pk, exc) from exc
            index = len(self._pk_raws)
            size = len(raw)
            added = size + (2 if size < 0x80 else tagged_len(size))
        else:
            added = 0
        size = len(data)
        size += (2 if size < 0x80 else tagged_len(size)) + (
            2 if index < 0x80 else tagged_len(index)
        )
        ehk = record.explicit_hash_key
        new_ehk = None
        if ehk is not None:
            # The type is checked every time: True == 1 as a dict key.
            if type(ehk) is not int or ehk not in self._ehk_fields:
                new_ehk = ehk_entry(ehk)
                added += len(new_ehk)
                size += tagged_len(len(self._ehk_entries))
            else:
                size += len(self._ehk_fields[ehk])
        added += size + (2 if size < 0x80 else tagged_len(size))
        if self._records:
            if OVERHEAD + self._body_size + added + self._outer_pk_size > self._max_size:
                return False
        else:
            self._outer_pk_size = len(raw)  # type: ignore[arg-type]  # the first key is new
        if raw is not None:
            self._pk_index[pk] = index
            self._pk_raws.append(raw)
        if new_ehk is not None:
            self._ehk_fields[ehk] = b"\x10" + varint(len(self._ehk_entries))
            self._ehk_entries.append(new_ehk)
        self._records.append(record)
        self._body_size += added
        return True

    @property
    def max_size(self) -> int:
        """The size limit in bytes, partition key included (see the class docstring)."""
        return self._max_size

    @property
    def size(self) -> int:
        """Exact length in bytes of what :meth:`build` returns now; 0 while empty."""
        return OVERHEAD + self._body_size if self._records else 0

    @property
    def records(self) -> list[ProducerRecord]:
        """The records added so far, in order (a new list)."""
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def build(self) -> bytes:
        """The aggregate of the records added so far; the builder is left as it was.

        Raises :class:`~kinesio.ValidationError` if no record was added.
        """
        if not self._records:
            raise ValidationError("cannot build an aggregate of no records")
        return assemble(
            self._pk_raws,
            self._ehk_entries,
            self._records,
            self._pk_index,
            self._ehk_fields if self._ehk_entries else None,
        )

    def reset(self) -> None:
        """Forget every record: the builder is as new (same ``max_size``). Never raises."""
        self._pk_index.clear()
        self._pk_raws.clear()
        self._ehk_fields = {None: b""}
        self._ehk_entries.clear()
        self._records.clear()
        self._body_size = 0
        self._outer_pk_size = 0
