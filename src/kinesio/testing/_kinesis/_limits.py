"""The service limits the in-memory Kinesis enforces (SPEC §1) and the shapes it validates."""

from __future__ import annotations

import re

from kinesio._models import MAX_HASH_KEY

MiB = 1024 * 1024
HASH_SPACE = MAX_HASH_KEY + 1

#: Service limits (SPEC §1).
MAX_PUT_RECORDS = 500
MAX_PUT_RECORDS_BYTES = 10 * MiB
MAX_PARTITION_KEY_CHARS = 256
MAX_GET_RECORDS = 10_000
MAX_GET_RECORDS_BYTES = 10 * MiB
WRITE_RECORDS_PER_SECOND = 1000
WRITE_BYTES_PER_SECOND = 1 * MiB
READ_CALLS_PER_SECOND = 5
READ_BYTES_PER_SECOND = 2 * MiB
FANOUT_BYTES_PER_SECOND = 2 * MiB
MAX_CONSUMERS_PER_STREAM = 20
MAX_SHARDS_PER_STREAM = 10_000
#: A second SubscribeToShard for the same consumer and shard within this many seconds of the
#: first is refused; later, it takes the subscription over (the first one then fails).
SUBSCRIPTION_TAKEOVER_AFTER = 5.0

# What the service's request validation accepts.
HASH_KEY_RE = re.compile(r"0|[1-9]\d{0,38}")
SEQ_RE = re.compile(r"0|[1-9]\d{0,128}")
NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
ITERATOR_TYPES = frozenset(
    {"TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP"}
)
