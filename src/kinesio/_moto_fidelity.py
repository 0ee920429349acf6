"""Fidelity fixes to moto's in-process models (moto 5.x), applied once per process.

moto is the embedded emulator of the playground and of the test suite. Where its models
differ from the services in a way any client would trip over, the difference is fixed here,
before its server starts (see :func:`kinesio.local.moto_server`).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from typing import Any

_patched = False
_patch_lock = threading.Lock()


def _patch_moto_kinesis() -> None:
    """Fidelity fixes to moto's in-process Kinesis model (moto 5.x), applied once.

    1. moto routes a record to the first shard whose range holds its hash key, closed or not,
       and treats EndingHashKey as exclusive: after a split every write still lands in the
       closed parent, and a key equal to a shard's ending key gets HTTP 500. Kinesis writes
       only to open shards, ranges inclusive.
    2. moto numbers a shard's records "highest + 1" without a lock, so two concurrent
       PutRecords on one shard can get the same sequence number and one record is lost.
    3. moto's SplitShard moves the parent's records (re-numbered) out of the parent, and its
       MergeShards copies both parents' records into the child. In Kinesis a parent keeps its
       records and a child starts empty.
    4. moto's GetRecords (and its sequence-number look-ups) iterate a shard's records while
       other requests append to them: under load that answers HTTP 500 ("mutated during
       iteration"). Reads take the same lock as writes.
    Without these, no client (kinesio, the KCL) can reshard or write concurrently on moto.
    """
    global _patched
    with _patch_lock:
        if _patched:
            return
        from moto.kinesis import models

        original_lookup = models.Stream.get_shard_for_key
        original_put = models.Shard.put_record
        original_split = models.Stream.split_shard
        original_merge = models.Stream.merge_shards
        original_reads = {
            name: getattr(models.Shard, name)
            for name in (
                "get_records",
                "get_min_sequence_number",
                "get_max_sequence_number",
                "get_sequence_number_at",
            )
        }
        shard_lock = threading.RLock()

        def get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
            shard = original_lookup(self, partition_key, explicit_hash_key)
            if shard is not None and shard.is_open:
                return shard
            if explicit_hash_key:
                key = int(explicit_hash_key)
            else:
                key = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
            for candidate in self.shards.values():
                if candidate.is_open and candidate.starting_hash <= key <= candidate.ending_hash:
                    return candidate
            return shard

        def locked(original: Any) -> Any:
            def read(self: Any, *args: Any) -> Any:
                with shard_lock:
                    return original(self, *args)

            return read

        def keeping_records(original: Any, *shard_args: int) -> Any:
            def reshard(self: Any, *args: str) -> None:
                with shard_lock:
                    shards = [self.shards[args[i]] for i in shard_args if args[i] in self.shards]
                    kept = [(s, s.records) for s in shards]
                    for s in shards:
                        s.records = type(s.records)()  # nothing for moto to move or copy
                    try:
                        original(self, *args)
                    finally:
                        for s, records in kept:
                            s.records = records

            return reshard

        setattr(models.Stream, "get_shard_for_key", get_shard_for_key)  # noqa: B010
        setattr(models.Shard, "put_record", locked(original_put))  # noqa: B010
        for name, original in original_reads.items():
            setattr(models.Shard, name, locked(original))
        setattr(models.Stream, "split_shard", keeping_records(original_split, 0))  # noqa: B010
        setattr(models.Stream, "merge_shards", keeping_records(original_merge, 0, 1))  # noqa: B010
        _patched = True


#: The DynamoDB backend methods that read or write items or tables.
_DYNAMODB_OPERATIONS = (
    "create_table",
    "delete_table",
    "update_table",
    "describe_table",
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
)
_dynamodb_patched = False


def _patch_moto_dynamodb() -> None:
    """DynamoDB applies each write atomically: a conditional write checks its condition and
    writes with no other write in between. moto's server runs each request on its own thread
    and its backend has no lock, so two concurrent ``UpdateItem`` calls with the same condition
    (two workers taking one lease at the same counter) can both succeed, and a lease table
    on moto then breaks the fencing every client relies on. All item and table operations
    take one lock here."""
    global _dynamodb_patched
    with _patch_lock:
        if _dynamodb_patched:
            return
        from moto.dynamodb.models import DynamoDBBackend

        lock = threading.RLock()

        def locked(original: Any) -> Any:
            @functools.wraps(original)
            def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                with lock:
                    return original(self, *args, **kwargs)

            return call

        for name in _DYNAMODB_OPERATIONS:
            setattr(DynamoDBBackend, name, locked(getattr(DynamoDBBackend, name)))
        _dynamodb_patched = True


def patch_moto() -> None:
    """Apply every fix in this module (idempotent, thread-safe)."""
    _patch_moto_kinesis()
    _patch_moto_dynamodb()
