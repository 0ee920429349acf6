"""Lease stores: where a consumer group records which worker owns which shard, and how far
each shard has been processed (the KCL lease table, SPEC §2).

* :class:`LeaseStore` - the protocol the consumer uses; lost races are ``None`` results.
* :class:`MemoryLeaseStore` - in-process, for tests.
* :class:`DynamoDBLeaseStore` - the DynamoDB table the Java KCL uses, item for item.
"""

from kinesio._errors import MalformedLeaseError
from kinesio.leases.base import LeaseStore
from kinesio.leases.dynamodb import DynamoDBLeaseStore
from kinesio.leases.memory import MemoryLeaseStore

__all__ = ["DynamoDBLeaseStore", "LeaseStore", "MalformedLeaseError", "MemoryLeaseStore"]
