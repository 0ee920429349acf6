"""Validating a user record before it is accepted: the checks behind ``put()``'s errors."""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import md5

from kinesio import aggregation
from kinesio._errors import ValidationError
from kinesio._models import ProducerRecord

# data, partition key, explicit hash key (as an int, or None), hash key, size (data + key bytes)
Checked = tuple[bytes, str, int | None, int, int]


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A validated record, ready to be accepted (see ``AsyncProducer.prepare``)."""

    record: ProducerRecord
    hash_key: int
    size: int  # data + partition key bytes: what Kinesis counts


def check(
    data: bytes, partition_key: str, explicit_hash_key: int | str | None, max_record_size: int
) -> Checked:
    """The record as the producer keeps it; raises ``ValidationError`` for bad input."""
    if type(data) is not bytes:
        if isinstance(data, bytes | bytearray | memoryview):
            data = bytes(data)
        else:
            raise ValidationError(
                f"data must be bytes, got {type(data).__name__}"
                + (" (encode the str first)" if isinstance(data, str) else "")
            )
    if type(partition_key) is not str and not isinstance(partition_key, str):
        raise ValidationError(f"partition_key must be a str, got {type(partition_key).__name__}")
    n = len(partition_key)
    if not 1 <= n <= 256:
        raise ValidationError(f"partition_key must be 1 to 256 characters, got {n}")
    if explicit_hash_key is not None and isinstance(explicit_hash_key, bool):
        raise ValidationError("explicit_hash_key must be an int or a decimal str, not bool")
    try:
        raw = partition_key.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise ValidationError(f"partition key is not a valid string: {exc}") from exc
    size = len(data) + len(raw)
    if size > max_record_size:
        raise ValidationError(
            f"record of {size} bytes (data + partition key) exceeds max_record_size "
            f"{max_record_size}"
        )
    if explicit_hash_key is None:
        # aggregation.hash_key, inlined on the key's bytes already at hand: once per record.
        return data, partition_key, None, int.from_bytes(md5(raw).digest(), "big"), size
    hash_key = aggregation.hash_key(partition_key, explicit_hash_key)
    return data, partition_key, hash_key, hash_key, size
