"""An embedded AWS emulator for the playground, examples and integration tests.

``moto_server()`` starts moto's server (Kinesis, DynamoDB, CloudWatch) inside this process,
bound to 127.0.0.1 on a free port, and stops it when the block ends. Needs ``kinesio[local]``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kinesio._aws import AWSConfig, tuned_session
from kinesio._errors import ConfigurationError

#: Credentials the emulators accept; they are not secrets and reach no real account.
LOCAL_ACCESS_KEY = "testing"
LOCAL_SECRET_KEY = "testing"
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """A running emulator: its URL and an :class:`AWSConfig` that talks to it."""

    endpoint_url: str
    region_name: str = LOCAL_REGION

    def aws_config(self) -> AWSConfig:
        from aiobotocore.session import AioSession

        session = tuned_session(AioSession())
        session.set_credentials(LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY)
        return AWSConfig(
            region_name=self.region_name, endpoint_url=self.endpoint_url, session=session
        )


_patched = False
_patch_lock = threading.Lock()


def _patch_moto_kinesis() -> None:
    """Two fidelity fixes to moto's in-process Kinesis model (moto 5.x), applied once.

    1. moto routes a record to the first shard whose range holds its hash key, closed or not,
       and treats EndingHashKey as exclusive: after a split every write still lands in the
       closed parent, and a key equal to a shard's ending key gets HTTP 500. Kinesis writes
       only to open shards, ranges inclusive.
    2. moto numbers a shard's records "highest + 1" without a lock, so two concurrent
       PutRecords on one shard can get the same sequence number and one record is lost.
    3. moto's SplitShard moves the parent's records (re-numbered) out of the parent, and its
       MergeShards copies both parents' records into the child. In Kinesis a parent keeps its
       records and a child starts empty.
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
        put_lock = threading.RLock()

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

        def put_record(self: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
            with put_lock:
                return str(original_put(self, partition_key, data, explicit_hash_key))

        def keeping_records(original: Any, *shard_args: int) -> Any:
            def reshard(self: Any, *args: str) -> None:
                with put_lock:
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
        setattr(models.Shard, "put_record", put_record)  # noqa: B010
        setattr(models.Stream, "split_shard", keeping_records(original_split, 0))  # noqa: B010
        setattr(models.Stream, "merge_shards", keeping_records(original_merge, 0, 1))  # noqa: B010
        _patched = True


@contextmanager
def moto_server() -> Iterator[LocalEndpoint]:
    """Run moto's server in-process on 127.0.0.1 (free port) for the duration of the block.

    moto's Kinesis model gets two fidelity fixes first (writes go to open shards only; records
    are numbered under a lock): see ``_patch_moto_kinesis``.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "the embedded emulator needs moto: pip install 'kinesio[local]'"
        ) from exc
    _patch_moto_kinesis()
    # werkzeug logs every request at INFO even with verbose=False: keep the terminal readable
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield LocalEndpoint(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
