"""Hash keys: which shard a user record belongs to, and the checks on explicit hash keys."""

from __future__ import annotations

import hashlib
import re

from kinesio._errors import ValidationError
from kinesio.aggregation._wire import HASH_KEY_LIMIT

# Kinesis' own pattern, spelled with [0-9]: Python's \d also matches non-ASCII digits.
_EHK_STR = re.compile(r"0|[1-9][0-9]{0,38}")


def check_ehk_int(value: object) -> None:
    """Raises :class:`~kinesio.ValidationError` unless ``value`` is an int in [0, 2**128)."""
    if type(value) is not int or not 0 <= value < HASH_KEY_LIMIT:
        raise ValidationError(f"explicit hash key must be an int in [0, 2**128), got {value!r}")


def hash_key(partition_key: str, explicit_hash_key: int | str | None = None) -> int:
    """The 128-bit hash key that decides a record's shard.

    The explicit hash key when one is given (an int, or a decimal string as Kinesis takes it);
    otherwise MD5 of the UTF-8 partition key read as a big-endian unsigned integer.

    Raises :class:`~kinesio.ValidationError` if the explicit hash key is not an int in
    ``[0, 2**128)`` or a string matching ``0|([1-9]\\d{0,38})`` below ``2**128`` (ASCII digits
    only), or if the partition key cannot be encoded as UTF-8 (a lone surrogate).
    """
    if explicit_hash_key is None:
        try:
            digest = hashlib.md5(partition_key.encode()).digest()
        except (UnicodeEncodeError, AttributeError) as exc:
            raise ValidationError(f"partition key is not a valid string: {exc}") from exc
        return int.from_bytes(digest, "big")
    if isinstance(explicit_hash_key, str):
        if _EHK_STR.fullmatch(explicit_hash_key) is None:
            raise ValidationError(
                f"explicit hash key must be a decimal integer without leading zeros, "
                f"got {explicit_hash_key!r}"
            )
        value = int(explicit_hash_key)
        if value >= HASH_KEY_LIMIT:
            raise ValidationError(f"explicit hash key must be below 2**128, got {value}")
        return value
    check_ehk_int(explicit_hash_key)
    return explicit_hash_key
