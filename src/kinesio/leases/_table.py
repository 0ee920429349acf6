"""The lease table itself (SPEC §2): created if missing, waited for until ACTIVE, and its key
schema checked, over an aiobotocore DynamoDB client; and a table's items read by paginated
Scan (``scan_items``: the lease store, the CLI's lease listing and the KCL 3 worker-metrics
table read through it).

Kept apart from the store's item writes: the table checks run once per store, before any
lease is read, and are the only place that calls DescribeTable or CreateTable for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kinesio._aws import map_aws_errors
from kinesio._errors import ConfigurationError, ResourceInUseError, ResourceNotFoundError
from kinesio.leases._items import LEASE_KEY

logger = logging.getLogger("kinesio.leases")


async def ensure_lease_table(
    client: Any, table_name: str, *, create_if_missing: bool, wait_timeout: float
) -> None:
    """Check ``table_name`` (create it if allowed and missing) and wait until it is ACTIVE.

    Blocks (awaits) up to ``wait_timeout`` seconds. Raises :class:`kinesio.ResourceNotFoundError`
    if the table is missing and ``create_if_missing`` is False,
    :class:`kinesio.ConfigurationError` if its key schema is not the KCL's, and
    :class:`kinesio.ResourceInUseError` if it is not ACTIVE in time.
    """
    table = await _describe_table(client, table_name)
    if table is None:
        if not create_if_missing:
            raise ResourceNotFoundError(
                f"lease table {table_name!r} does not exist and create_if_missing is "
                "False: create it (PAY_PER_REQUEST, hash key 'leaseKey' of type S) or let "
                "kinesio create it",
                code="ResourceNotFoundException",
                operation="DescribeTable",
            )
        await _create_table(client, table_name)
        table = await _describe_table(client, table_name)
        if table is None:  # eventual consistency of DescribeTable right after creation
            table = {"TableStatus": "CREATING"}
    if table.get("TableStatus") != "ACTIVE":
        table = await _wait_active(client, table_name, wait_timeout)
    _check_schema(table_name, table)


async def _describe_table(client: Any, table_name: str) -> dict[str, Any] | None:
    try:
        with map_aws_errors("DescribeTable"):
            resp = await client.describe_table(TableName=table_name)
    except ResourceNotFoundError:
        return None
    table: dict[str, Any] = resp["Table"]
    return table


async def _create_table(client: Any, table_name: str) -> None:
    try:
        with map_aws_errors("CreateTable"):
            await client.create_table(
                TableName=table_name,
                KeySchema=[{"AttributeName": LEASE_KEY, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": LEASE_KEY, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
    except ResourceInUseError:
        # Another worker created it at the same moment: the schema check decides.
        pass
    logger.info("created lease table %s", table_name)


async def _wait_active(client: Any, table_name: str, wait_timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_timeout
    delay = 0.1
    status = "missing"
    while time.monotonic() < deadline:
        table = await _describe_table(client, table_name)
        if table is not None:
            status = str(table.get("TableStatus"))
            if status == "ACTIVE":
                return table
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
    raise ResourceInUseError(
        f"lease table {table_name!r} is still {status} after {wait_timeout:.0f} s",
        code="ResourceInUseException",
        operation="DescribeTable",
    )


def _check_schema(table_name: str, table: Mapping[str, Any]) -> None:
    keys = [(k.get("AttributeName"), k.get("KeyType")) for k in table.get("KeySchema", [])]
    types = {
        a.get("AttributeName"): a.get("AttributeType")
        for a in table.get("AttributeDefinitions", [])
    }
    if keys != [(LEASE_KEY, "HASH")] or types.get(LEASE_KEY) != "S":
        found = ", ".join(f"{name} {kind} ({types.get(name)})" for name, kind in keys)
        raise ConfigurationError(
            f"table {table_name!r} is not a lease table: its key is [{found}], a "
            "lease table has the single hash key 'leaseKey' of type S; use another "
            "table name"
        )


async def scan_items(client: Any, table: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
    """Every item of ``table``, page after page of Scan (``args``: ``ConsistentRead``,
    ``Limit`` per page...). Raises :class:`kinesio.AWSError` for a failed page."""
    args["TableName"] = table
    while True:
        with map_aws_errors("Scan"):
            page = await client.scan(**args)
        for item in page.get("Items", []):
            yield item
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        args["ExclusiveStartKey"] = last
