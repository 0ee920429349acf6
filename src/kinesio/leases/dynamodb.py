"""The KCL-compatible lease table on DynamoDB (SPEC §2), over an aiobotocore client.

The items are laid out exactly as the Java KCL writes them (``kinesio.leases._items``), the
table is created and checked by ``kinesio.leases._table``; every
write to an existing item is a conditional UpdateItem that SETs and REMOVEs only the attributes
it owns, so attributes kinesio does not model survive.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

from kinesio._aws import AWSConfig, create_client, map_aws_errors
from kinesio._errors import AWSError, ConfigurationError
from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.leases._items import (
    CHECKPOINT,
    CHECKPOINT_SUB,
    CHILD_SHARD_IDS,
    KNOWN_ATTRIBUTES,
    LEASE_COUNTER,
    LEASE_KEY,
    LEASE_OWNER,
    OWNER_SWITCHES,
    PENDING_CHECKPOINT,
    PENDING_CHECKPOINT_SUB,
    _n,
    lease_from_item,
    lease_to_item,
)
from kinesio.leases._table import ensure_lease_table, scan_items
from kinesio.leases.base import (
    CHECKPOINT_OWNER,
    PENDING_CHECKPOINT_STATE,
    check_new_lease,
    check_position,
    is_lease_item,
)

logger = logging.getLogger("kinesio.leases")

__all__ = [
    "KNOWN_ATTRIBUTES",
    "LEASE_KEY",
    "DynamoDBLeaseStore",
    "lease_from_item",
    "lease_to_item",
]

_CONDITION_FAILED = "ConditionalCheckFailedException"
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


# -- the store -----------------------------------------------------------------------------


class DynamoDBLeaseStore:
    """The KCL lease table in DynamoDB: a :class:`~kinesio.leases.LeaseStore`.

    ``table_name`` is the table (the KCL's default is the application name). ``aws`` says
    where and as whom to call (default: boto3's own resolution, including
    ``AWS_ENDPOINT_URL_DYNAMODB``). With ``create_if_missing`` (the default)
    :meth:`create_table_if_missing` creates a PAY_PER_REQUEST table with hash key
    ``leaseKey`` (S) and waits up to ``table_wait_timeout`` seconds for it to become ACTIVE.
    ``scan_page_size`` caps the items per Scan request of :meth:`list_leases` (None: DynamoDB's
    own 1 MB pages).

    Every call is one DynamoDB request, retried by botocore up to ``max_attempts`` times in
    all on throttling and transient errors; what still fails is raised as a
    :class:`kinesio.AWSError`. A failed write condition is never retried: it is the ``None``
    (or ``False``) outcome. Note that a write retried after a lost response can report
    ``None`` although the first attempt was applied; that is the safe direction (the worker
    stops processing a lease it still holds, which then expires and is taken again).

    The client is created on first use; close it with :meth:`aclose` or ``async with``
    (which also runs :meth:`create_table_if_missing`).
    """

    def __init__(
        self,
        table_name: str,
        *,
        aws: AWSConfig | None = None,
        create_if_missing: bool = True,
        max_attempts: int = 3,
        table_wait_timeout: float = 300.0,
        scan_page_size: int | None = None,
    ) -> None:
        if not _TABLE_NAME.fullmatch(table_name):
            raise ConfigurationError(
                f"invalid DynamoDB table name {table_name!r}: 3-255 characters among "
                "A-Z a-z 0-9 _ . -"
            )
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, not {max_attempts}")
        if scan_page_size is not None and scan_page_size < 1:
            raise ConfigurationError(f"scan_page_size must be >= 1, not {scan_page_size}")
        if table_wait_timeout <= 0:
            raise ConfigurationError(
                f"table_wait_timeout must be > 0 seconds, not {table_wait_timeout}"
            )
        self.table_name = table_name
        self._aws = aws if aws is not None else AWSConfig()
        self._create_if_missing = create_if_missing
        self._max_attempts = max_attempts
        self._table_wait_timeout = table_wait_timeout
        self._scan_page_size = scan_page_size
        self._stack: AsyncExitStack | None = None
        self._client_obj: Any = None
        self._client_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"DynamoDBLeaseStore(table_name={self.table_name!r}, aws={self._aws!r})"

    async def __aenter__(self) -> DynamoDBLeaseStore:
        try:
            await self.create_table_if_missing()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the DynamoDB client. Idempotent; a later call opens a new one."""
        async with self._client_lock:
            stack, self._stack, self._client_obj = self._stack, None, None
            if stack is not None:
                await stack.aclose()

    async def dynamodb_client(self) -> Any:
        """The store's DynamoDB client (created on first use, closed by :meth:`aclose`), for the
        KCL 3 side tables that live beside the lease table. Never blocks beyond creating it."""
        return await self._client()

    async def _client(self) -> Any:
        if self._client_obj is not None:
            return self._client_obj
        async with self._client_lock:
            if self._client_obj is None:
                stack = AsyncExitStack()
                try:
                    client = await create_client(
                        "dynamodb", self._aws, stack, max_attempts=self._max_attempts
                    )
                except BaseException:
                    await stack.aclose()
                    raise
                self._stack, self._client_obj = stack, client
            return self._client_obj

    # -- table ---------------------------------------------------------------------------

    async def create_table_if_missing(self) -> None:
        """Check the table (create it if allowed and missing) and wait until it is ACTIVE.

        Raises :class:`kinesio.ResourceNotFoundError` if it is missing and
        ``create_if_missing`` is False, :class:`kinesio.ConfigurationError` if its key schema
        is not the KCL's (hash key ``leaseKey`` of type S, no range key), and
        :class:`kinesio.ResourceInUseError` if it is not ACTIVE within ``table_wait_timeout``.
        """
        await ensure_lease_table(
            await self._client(),
            self.table_name,
            create_if_missing=self._create_if_missing,
            wait_timeout=self._table_wait_timeout,
        )

    # -- reads ---------------------------------------------------------------------------

    async def list_leases(self, *, consistent: bool = True) -> list[Lease]:
        """Every lease: a paginated Scan, strongly consistent unless ``consistent=False``
        (eventually consistent: half the read units, possibly a few seconds stale). Non-lease
        items are skipped.

        Raises :class:`MalformedLeaseError` if a lease item cannot be read.
        """
        client = await self._client()
        args: dict[str, Any] = {"ConsistentRead": consistent}
        if self._scan_page_size is not None:
            args["Limit"] = self._scan_page_size
        return [
            lease_from_item(item)
            async for item in scan_items(client, self.table_name, **args)
            if is_lease_item(item)
        ]

    async def get_lease(self, lease_key: str) -> Lease | None:
        """The lease under ``lease_key`` (strongly consistent GetItem), or None."""
        client = await self._client()
        with map_aws_errors("GetItem"):
            resp = await client.get_item(
                TableName=self.table_name,
                Key={LEASE_KEY: {"S": lease_key}},
                ConsistentRead=True,
            )
        item = resp.get("Item")
        if not item or not is_lease_item(item):
            return None
        return lease_from_item(item)

    # -- conditional writes ----------------------------------------------------------------

    async def create_lease(self, lease: Lease) -> Lease | None:
        """PutItem of the whole lease if ``leaseKey`` does not exist yet; None if it does."""
        check_new_lease(lease)
        item = lease_to_item(lease)
        client = await self._client()
        with self._conditional("PutItem", lease.lease_key) as outcome:
            await client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": LEASE_KEY},
            )
        if outcome.failed:
            return None
        return lease_from_item(item)

    async def renew(self, lease: Lease) -> Lease | None:
        names = {"#c": LEASE_COUNTER, "#o": LEASE_OWNER}
        values: dict[str, Any] = {
            ":seen": _n(lease.lease_counter),
            ":next": _n(lease.lease_counter + 1),
        }
        if lease.lease_owner is None:
            condition = "#c = :seen AND attribute_not_exists(#o)"
        else:
            condition = "#c = :seen AND #o = :owner"
            values[":owner"] = {"S": lease.lease_owner}
        return await self._update(lease.lease_key, "SET #c = :next", condition, names, values)

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        names = {"#c": LEASE_COUNTER, "#o": LEASE_OWNER, "#cpo": CHECKPOINT_OWNER}
        values: dict[str, Any] = {
            ":seen": _n(lease.lease_counter),
            ":next": _n(lease.lease_counter + 1),
            ":owner": {"S": owner},
        }
        update = "SET #o = :owner, #c = :next REMOVE #cpo"
        # Decided from the lease as the taker saw it, like the KCL (equal counters mean the
        # same owner, since every owner change bumps the counter). ADD so a missing
        # attribute counts as 0.
        if lease.lease_owner is not None and lease.lease_owner != owner:
            names["#sw"] = OWNER_SWITCHES
            values[":one"] = _n(1)
            update += " ADD #sw :one"
        return await self._update(lease.lease_key, update, "#c = :seen", names, values)

    async def checkpoint(
        self,
        lease: Lease,
        owner: str,
        checkpoint: ExtendedSequenceNumber,
        *,
        child_shard_ids: Collection[str] | None = None,
        pending: ExtendedSequenceNumber | None = None,
    ) -> Lease | None:
        check_position(checkpoint, what="checkpoint")
        if pending is not None:
            check_position(pending, what="pending checkpoint")
        names = {
            "#c": LEASE_COUNTER,
            "#o": LEASE_OWNER,
            "#cp": CHECKPOINT,
            "#cpsub": CHECKPOINT_SUB,
            "#sw": OWNER_SWITCHES,
            "#pcp": PENDING_CHECKPOINT,
            "#pcpsub": PENDING_CHECKPOINT_SUB,
            "#pcs": PENDING_CHECKPOINT_STATE,
        }
        values: dict[str, Any] = {
            ":seen": _n(lease.lease_counter),
            ":next": _n(lease.lease_counter + 1),
            ":owner": {"S": owner},
            ":cp": {"S": checkpoint.sequence_number},
            ":cpsub": _n(checkpoint.sub_sequence_number),
            ":zero": _n(0),
        }
        sets = ["#c = :next", "#cp = :cp", "#cpsub = :cpsub", "#sw = :zero"]
        removes = ["#pcs"]
        if child_shard_ids:
            names["#child"] = CHILD_SHARD_IDS
            values[":child"] = {"SS": sorted(set(child_shard_ids))}
            sets.append("#child = :child")
        if pending is not None:
            values[":pcp"] = {"S": pending.sequence_number}
            values[":pcpsub"] = _n(pending.sub_sequence_number)
            sets += ["#pcp = :pcp", "#pcpsub = :pcpsub"]
        else:
            removes += ["#pcp", "#pcpsub"]
        update = f"SET {', '.join(sets)} REMOVE {', '.join(removes)}"
        return await self._update(
            lease.lease_key, update, "#c = :seen AND #o = :owner", names, values
        )

    async def release(self, lease: Lease, owner: str) -> Lease | None:
        return await self._update(
            lease.lease_key,
            "REMOVE #o, #cpo SET #c = #c + :one",
            "#o = :owner",
            {"#c": LEASE_COUNTER, "#o": LEASE_OWNER, "#cpo": CHECKPOINT_OWNER},
            {":owner": {"S": owner}, ":one": _n(1)},
        )

    async def take_for_handoff(self, lease: Lease, owner: str) -> Lease | None:
        """A steal (see :meth:`take`) that also sets ``checkpointOwner`` to the previous owner."""
        previous = lease.lease_owner
        if previous is None or previous == owner:
            return await self.take(lease, owner)
        names = {"#c": LEASE_COUNTER, "#o": LEASE_OWNER, "#sw": OWNER_SWITCHES}
        names["#cpo"] = CHECKPOINT_OWNER
        values: dict[str, Any] = {
            ":seen": _n(lease.lease_counter),
            ":next": _n(lease.lease_counter + 1),
            ":owner": {"S": owner},
            ":previous": {"S": previous},
            ":one": _n(1),
        }
        update = "SET #o = :owner, #c = :next, #cpo = :previous ADD #sw :one"
        return await self._update(lease.lease_key, update, "#c = :seen", names, values)

    async def handoff_checkpoint(
        self, lease: Lease, owner: str, checkpoint: ExtendedSequenceNumber | None
    ) -> Lease | None:
        """The previous owner's last checkpoint; removes ``checkpointOwner``, counter unchanged."""
        names = {"#o": LEASE_OWNER, "#cpo": CHECKPOINT_OWNER}
        values: dict[str, Any] = {":me": {"S": owner}}
        if lease.lease_owner is None:
            condition = "#cpo = :me AND attribute_not_exists(#o)"
        else:
            condition = "#cpo = :me AND #o = :new"
            values[":new"] = {"S": lease.lease_owner}
        update = "REMOVE #cpo"
        if checkpoint is not None:
            check_position(checkpoint, what="checkpoint")
            names.update(
                {
                    "#cp": CHECKPOINT,
                    "#cpsub": CHECKPOINT_SUB,
                    "#sw": OWNER_SWITCHES,
                    "#pcp": PENDING_CHECKPOINT,
                    "#pcpsub": PENDING_CHECKPOINT_SUB,
                    "#pcs": PENDING_CHECKPOINT_STATE,
                }
            )
            values.update(
                {
                    ":cp": {"S": checkpoint.sequence_number},
                    ":cpsub": _n(checkpoint.sub_sequence_number),
                    ":zero": _n(0),
                }
            )
            update = "SET #cp = :cp, #cpsub = :cpsub, #sw = :zero REMOVE #cpo, #pcp, #pcpsub, #pcs"
        return await self._update(lease.lease_key, update, condition, names, values)

    async def end_handoff(self, lease: Lease, owner: str) -> Lease | None:
        """The new owner stops waiting: remove ``checkpointOwner``, bump the counter."""
        return await self._update(
            lease.lease_key,
            "SET #c = :next REMOVE #cpo",
            "#c = :seen AND #o = :owner",
            {"#c": LEASE_COUNTER, "#o": LEASE_OWNER, "#cpo": CHECKPOINT_OWNER},
            {
                ":seen": _n(lease.lease_counter),
                ":next": _n(lease.lease_counter + 1),
                ":owner": {"S": owner},
            },
        )

    async def delete_lease(self, lease: Lease) -> bool:
        client = await self._client()
        with self._conditional("DeleteItem", lease.lease_key) as outcome:
            await client.delete_item(
                TableName=self.table_name,
                Key={LEASE_KEY: {"S": lease.lease_key}},
                ConditionExpression="#c = :seen",
                ExpressionAttributeNames={"#c": LEASE_COUNTER},
                ExpressionAttributeValues={":seen": _n(lease.lease_counter)},
            )
        return not outcome.failed

    async def _update(
        self,
        lease_key: str,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> Lease | None:
        client = await self._client()
        with self._conditional("UpdateItem", lease_key) as outcome:
            resp = await client.update_item(
                TableName=self.table_name,
                Key={LEASE_KEY: {"S": lease_key}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        if outcome.failed:
            return None
        return lease_from_item(resp["Attributes"])

    @contextmanager
    def _conditional(self, operation: str, lease_key: str) -> Iterator[_Outcome]:
        outcome = _Outcome()
        try:
            with map_aws_errors(operation):
                yield outcome
        except AWSError as exc:
            if exc.code != _CONDITION_FAILED:
                raise
            outcome.failed = True
            logger.debug(
                "%s of lease %s in %s: condition failed", operation, lease_key, self.table_name
            )


class _Outcome:
    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed = False
