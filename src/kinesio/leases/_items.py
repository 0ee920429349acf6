"""The KCL lease table's items (SPEC §2): attribute names, and a :class:`~kinesio.Lease` to
and from an item.

Item layout (one item per shard), exactly as the Java KCL writes it::

    leaseKey                            S   hash key: shard id
    leaseOwner                          S   worker id; absent when unowned
    leaseCounter                        N   fencing token, +1 on every write
    checkpoint                          S   sequence number, or a sentinel (TRIM_HORIZON, ...)
    checkpointSubSequenceNumber         N
    ownerSwitchesSinceCheckpoint        N
    parentShardId                       SS  only when non-empty
    childShardIds                       SS  only when non-empty
    startingHashKey, endingHashKey      S   decimal, only when known
    pendingCheckpoint                   S   only when set
    pendingCheckpointSubSequenceNumber  N   only when set

Every other attribute (``pendingCheckpointState``, KCL 3.x ``throughputKBps`` and
``checkpointOwner``, ``entityType``, ...) is kept verbatim in ``Lease.extra`` and survives
every write: writes to existing items are UpdateItem calls that SET/REMOVE only the attributes
they own. Two are removed as the KCL does: ``pendingCheckpointState`` by every checkpoint,
and ``checkpointOwner`` (KCL 3's hand-off marker) by every take and release.

Reading is strict where a default would be a guess and lenient where the KCL has a default:

* ``leaseCounter`` and ``checkpoint`` missing, or any known attribute of the wrong DynamoDB
  type or with an unparsable value -> :class:`~kinesio.MalformedLeaseError` naming
  the item and the attribute (a lease table that kinesio cannot read is a stop, not a skip:
  skipping would leave a shard unprocessed without telling anyone).
* ``checkpointSubSequenceNumber``, ``ownerSwitchesSinceCheckpoint`` and
  ``pendingCheckpointSubSequenceNumber`` missing -> 0; ``parentShardId``/``childShardIds``
  missing -> empty; hash keys missing -> None.
* ``pendingCheckpointState`` may be B or N (or anything): it is not interpreted.
* an item whose ``entityType`` exists and is not ``"LEASE"`` is not a lease: it is skipped by
  ``list_leases`` and ``get_lease``, before any of the checks above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kinesio._errors import (
    MalformedLeaseError,
)
from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.leases.base import (
    check_position,
)

LEASE_KEY = "leaseKey"
LEASE_OWNER = "leaseOwner"
LEASE_COUNTER = "leaseCounter"
CHECKPOINT = "checkpoint"
CHECKPOINT_SUB = "checkpointSubSequenceNumber"
OWNER_SWITCHES = "ownerSwitchesSinceCheckpoint"
PARENT_SHARD_IDS = "parentShardId"
CHILD_SHARD_IDS = "childShardIds"
STARTING_HASH_KEY = "startingHashKey"
ENDING_HASH_KEY = "endingHashKey"
PENDING_CHECKPOINT = "pendingCheckpoint"
PENDING_CHECKPOINT_SUB = "pendingCheckpointSubSequenceNumber"

#: The attributes :class:`Lease` models; everything else goes to ``Lease.extra``.
KNOWN_ATTRIBUTES = frozenset(
    {
        LEASE_KEY,
        LEASE_OWNER,
        LEASE_COUNTER,
        CHECKPOINT,
        CHECKPOINT_SUB,
        OWNER_SWITCHES,
        PARENT_SHARD_IDS,
        CHILD_SHARD_IDS,
        STARTING_HASH_KEY,
        ENDING_HASH_KEY,
        PENDING_CHECKPOINT,
        PENDING_CHECKPOINT_SUB,
    }
)


def lease_to_item(lease: Lease) -> dict[str, Any]:
    """The DynamoDB item (typed attribute values) for ``lease``, ``extra`` included."""
    item: dict[str, Any] = {k: v for k, v in lease.extra.items() if k not in KNOWN_ATTRIBUTES}
    item[LEASE_KEY] = {"S": lease.lease_key}
    if lease.lease_owner is not None:
        item[LEASE_OWNER] = {"S": lease.lease_owner}
    item[LEASE_COUNTER] = _n(lease.lease_counter)
    item[CHECKPOINT] = {"S": lease.checkpoint.sequence_number}
    item[CHECKPOINT_SUB] = _n(lease.checkpoint.sub_sequence_number)
    item[OWNER_SWITCHES] = _n(lease.owner_switches_since_checkpoint)
    if lease.parent_shard_ids:
        item[PARENT_SHARD_IDS] = {"SS": sorted(lease.parent_shard_ids)}
    if lease.child_shard_ids:
        item[CHILD_SHARD_IDS] = {"SS": sorted(lease.child_shard_ids)}
    if lease.starting_hash_key is not None:
        item[STARTING_HASH_KEY] = {"S": str(lease.starting_hash_key)}
    if lease.ending_hash_key is not None:
        item[ENDING_HASH_KEY] = {"S": str(lease.ending_hash_key)}
    if lease.pending_checkpoint is not None:
        item[PENDING_CHECKPOINT] = {"S": lease.pending_checkpoint.sequence_number}
        item[PENDING_CHECKPOINT_SUB] = _n(lease.pending_checkpoint.sub_sequence_number)
    return item


def lease_from_item(item: Mapping[str, Any]) -> Lease:
    """Read a lease item; :class:`MalformedLeaseError` names what is missing or mistyped."""
    key_value = item.get(LEASE_KEY)
    if not isinstance(key_value, Mapping) or not isinstance(key_value.get("S"), str):
        raise MalformedLeaseError(
            f"lease table item {item!r} has no string attribute {LEASE_KEY!r}",
            lease_key="",
            attribute=LEASE_KEY,
        )
    reader = _ItemReader(str(key_value["S"]), item)
    checkpoint = reader.position(CHECKPOINT, CHECKPOINT_SUB, required=True)
    assert checkpoint is not None  # required=True never returns None
    return Lease(
        lease_key=reader.lease_key,
        lease_owner=reader.string(LEASE_OWNER),
        lease_counter=reader.integer(LEASE_COUNTER, default=None),
        checkpoint=checkpoint,
        pending_checkpoint=reader.position(
            PENDING_CHECKPOINT, PENDING_CHECKPOINT_SUB, required=False
        ),
        owner_switches_since_checkpoint=reader.integer(OWNER_SWITCHES, default=0),
        parent_shard_ids=reader.string_set(PARENT_SHARD_IDS),
        child_shard_ids=reader.string_set(CHILD_SHARD_IDS),
        starting_hash_key=reader.hash_key(STARTING_HASH_KEY),
        ending_hash_key=reader.hash_key(ENDING_HASH_KEY),
        extra={k: v for k, v in item.items() if k not in KNOWN_ATTRIBUTES},
    )


class _ItemReader:
    def __init__(self, lease_key: str, item: Mapping[str, Any]) -> None:
        self.lease_key = lease_key
        self._item = item

    def _error(self, attribute: str, problem: str) -> MalformedLeaseError:
        return MalformedLeaseError(
            f"lease table item {self.lease_key!r}: attribute {attribute!r} {problem}",
            lease_key=self.lease_key,
            attribute=attribute,
        )

    def _raw(self, attribute: str, dynamo_type: str) -> Any:
        value = self._item.get(attribute)
        if value is None:
            return None
        if not isinstance(value, Mapping) or dynamo_type not in value:
            found = "/".join(value) if isinstance(value, Mapping) else type(value).__name__
            raise self._error(attribute, f"has type {found}, expected {dynamo_type}")
        return value[dynamo_type]

    def string(self, attribute: str) -> str | None:
        value = self._raw(attribute, "S")
        if value is not None and not isinstance(value, str):
            raise self._error(attribute, f"is not a string: {value!r}")
        return value

    def integer(self, attribute: str, *, default: int | None) -> int:
        value = self._raw(attribute, "N")
        if value is None:
            if default is None:
                raise self._error(attribute, "is missing")
            return default
        try:
            return int(str(value))
        except ValueError:
            raise self._error(attribute, f"is not an integer: {value!r}") from None

    def string_set(self, attribute: str) -> frozenset[str]:
        value = self._raw(attribute, "SS")
        if value is None:
            return frozenset()
        if not isinstance(value, list | tuple | set | frozenset) or not all(
            isinstance(v, str) for v in value
        ):
            raise self._error(attribute, f"is not a string set: {value!r}")
        return frozenset(value)

    def hash_key(self, attribute: str) -> int | None:
        value = self.string(attribute)
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or int(value) >= 2**128:
            raise self._error(attribute, f"is not a decimal 128-bit hash key: {value!r}")
        return int(value)

    def position(
        self, attribute: str, sub_attribute: str, *, required: bool
    ) -> ExtendedSequenceNumber | None:
        seq = self.string(attribute)
        if seq is None:
            if required:
                raise self._error(attribute, "is missing")
            return None
        position = ExtendedSequenceNumber(seq, self.integer(sub_attribute, default=0))
        try:
            check_position(position, what=attribute)
        except ValueError as exc:
            raise self._error(attribute, f"is not a checkpoint: {exc}") from None
        return position


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}
