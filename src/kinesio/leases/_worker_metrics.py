"""The KCL 3 worker-metrics table (``<app>-WorkerMetricStats``): who is alive without a lease.

KCL 3.x workers publish one item each (``WorkerMetricStats`` in the KCL 3.1.3 source), keyed by
worker id ``wid`` (string), with ``lut`` (last update, whole epoch seconds, a number), ``sts``
(metric short name, ``C`` for CPU, to the last values in percent, at most 10, ``-1`` for a
failed reading) and ``opr`` (metric short name to its operating range, a list of whole numbers
whose first is the maximum utilisation). The KCL 3 leader balances leases only among workers
whose item is valid (``lut`` set, every ``sts`` metric has an ``opr`` entry with a non-zero
maximum), fresh (``lut`` at most 2 x 30 s old) and not failing (last value not ``-1``); a KCL 3
worker that holds no lease appears nowhere else, so kinesio reads this table to count such
workers in its fair share, and writes its own item so that the leader counts kinesio.

The pure functions do no I/O; :class:`WorkerMetricsTable` reads and writes the table.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from kinesio._aws import map_aws_errors
from kinesio._errors import AccessDeniedError, KinesioError, ResourceNotFoundError
from kinesio.leases._table import scan_items

__all__ = ["WorkerMetricsError", "WorkerMetricsTable", "live_workers", "metrics_item"]

logger = logging.getLogger("kinesio.leases")

#: The KCL 3 leader's rule: a worker whose item is older than 2 reporting periods (30 s each,
#: ``workerMetricsReporterFreqInMillis``) is dead (LeaseAssignmentManager, KCL 3.1.3).
DEFAULT_STALE_AFTER_S = 60.0
#: ``noOfPersistedMetricsPerWorkerMetrics`` in KCL 3.1.3.
MAX_VALUES = 10
#: How often a worker that found no such table looks again (one DescribeTable call).
RECHECK_ABSENT_S = 300.0
#: An extra attribute on kinesio's own item (the KCL's bean mapper ignores attributes it does
#: not map): kinesio hands leases over only to workers that wait for them, i.e. KCL 3 workers;
#: a kinesio worker takes its share itself.
KINESIO_MARK = "kinesio"
_CPU = "C"
_FAILED = -1.0


class WorkerMetricsError(KinesioError):
    """A worker-metrics item that is not in the KCL 3 format (missing or mistyped field)."""


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("L"), list):
        return None
    out: list[float] = []
    for entry in value["L"]:
        if not isinstance(entry, Mapping) or "N" not in entry:
            return None
        try:
            out.append(float(entry["N"]))
        except ValueError:
            return None
    return out


def _counted(item: Mapping[str, Any], now: float, stale_after: float) -> bool:
    """Whether the KCL 3 leader would count this worker (valid, fresh, not failing)."""
    lut = item.get("lut")
    if not isinstance(lut, Mapping) or "N" not in lut:
        return False
    try:
        if now - float(lut["N"]) > stale_after:
            return False
    except ValueError:
        return False
    sts = item.get("sts", {}).get("M", {}) if isinstance(item.get("sts"), Mapping) else {}
    opr = item.get("opr", {}).get("M", {}) if isinstance(item.get("opr"), Mapping) else {}
    if not sts and not opr:
        return True  # the KCL's "default worker metric" (no metrics at all) is valid
    for name, raw in sts.items():
        values, limits = _numbers(raw), _numbers(opr.get(name))
        if values is None or not limits or limits[0] == 0:
            return False
        if values and values[-1] == _FAILED:
            return False
    return True


def live_workers(
    items: Iterable[Mapping[str, Any]],
    now: float,
    *,
    stale_after: float = DEFAULT_STALE_AFTER_S,
    foreign_only: bool = False,
) -> frozenset[str]:
    """Worker ids the KCL 3 leader would balance onto: items valid, updated at most
    ``stale_after`` seconds before ``now`` and without a failed last reading.

    ``items`` are raw DynamoDB items (attribute-value maps) from a scan of the table; ``now``
    is epoch seconds (the items carry wall-clock times). Items the leader ignores are ignored
    here too (a foreign worker's bad item must not stop this one); an item without a string
    ``wid``, the table's key, means the table is not a worker-metrics table and raises
    :class:`WorkerMetricsError`. With ``foreign_only``, kinesio workers' items (marked
    :data:`KINESIO_MARK`) are left out. Never blocks.
    """
    live: set[str] = set()
    for item in items:
        wid = item.get("wid")
        if not isinstance(wid, Mapping) or not isinstance(wid.get("S"), str):
            raise WorkerMetricsError(f"worker-metrics item without a string wid: {item!r}")
        if foreign_only and KINESIO_MARK in item:
            continue
        if _counted(item, now, stale_after):
            live.add(wid["S"])
    return frozenset(live)


def metrics_item(
    worker_id: str,
    now: float,
    cpu_percent: Sequence[float],
    *,
    cpu_max_percent: int = 100,
) -> dict[str, Any]:
    """kinesio's own item in the KCL 3 format: ``wid``, ``lut`` (whole epoch seconds), ``sts``
    with the last (at most 10) CPU utilisation values in percent and ``opr`` with the CPU
    operating range (a whole number: the KCL reads ``opr`` as a list of longs).

    Raises :class:`WorkerMetricsError` for a value outside 0-100 percent or a zero maximum
    (the KCL 3 leader ignores an item whose maximum is 0).
    """
    for value in cpu_percent:
        if not 0.0 <= value <= 100.0:
            raise WorkerMetricsError(f"CPU utilisation must be 0-100 percent, got {value}")
    if not 0 < cpu_max_percent <= 100:
        raise WorkerMetricsError(f"CPU maximum must be 1-100 percent, got {cpu_max_percent}")
    return {
        "wid": {"S": worker_id},
        "lut": {"N": str(int(now))},
        "sts": {"M": {_CPU: {"L": [{"N": repr(float(v))} for v in cpu_percent[-MAX_VALUES:]]}}},
        "opr": {"M": {_CPU: {"L": [{"N": str(int(cpu_max_percent))}]}}},
        KINESIO_MARK: {"BOOL": True},
    }


class CpuSampler:
    """This process's CPU utilisation in percent of the host's cores since the last sample.

    The KCL measures the host (or container); kinesio measures its own process, which is the
    load its leases add. Never blocks.
    """

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()
        self.values: list[float] = []

    def sample(self) -> list[float]:
        cpu, wall = time.process_time(), time.monotonic()
        elapsed = wall - self._wall
        if elapsed > 0:
            share = (cpu - self._cpu) / elapsed / (os.cpu_count() or 1) * 100.0
            self.values = [*self.values, min(100.0, max(0.0, share))][-MAX_VALUES:]
        self._cpu, self._wall = cpu, wall
        return self.values


class WorkerMetricsTable:
    """Reads and writes ``<lease table>-WorkerMetricStats`` when, and only when, it exists.

    A fleet without the table pays one DescribeTable at start and one per
    :data:`RECHECK_ABSENT_S`; kinesio never creates the table (the KCL 3 does).
    """

    def __init__(
        self,
        client: Callable[[], Awaitable[Any]],
        lease_table: str,
        worker_id: str,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table_name = f"{lease_table}-WorkerMetricStats"
        self._client = client
        self._worker_id = worker_id
        self._wall = wall_clock
        self._clock = clock
        self._exists: bool | None = None
        self._checked = 0.0
        self._cpu = CpuSampler()
        self._withdrawn = False

    async def exists(self) -> bool:
        """Whether the table exists (cached; looked up again every :data:`RECHECK_ABSENT_S`
        while absent). A worker not allowed to describe it treats it as absent (it ran without
        it before; a warning says so). Raises :class:`kinesio.AWSError` on other failures."""
        if self._exists or (
            self._exists is False and self._clock() - self._checked < RECHECK_ABSENT_S
        ):
            return bool(self._exists)
        self._checked = self._clock()
        try:
            client = await self._client()
            with map_aws_errors("DescribeTable"):
                await client.describe_table(TableName=self.table_name)
        except ResourceNotFoundError:
            self._exists = False
        except AccessDeniedError as exc:
            logger.warning(
                "cannot describe %s, KCL 3 workers not counted: %s", self.table_name, exc
            )
            self._exists = False
        else:
            if self._exists is None or not self._exists:
                logger.info("KCL 3 worker-metrics table %s found", self.table_name)
            self._exists = True
        return self._exists

    async def live_peers(self) -> dict[str, float]:
        """Live non-kinesio workers other than this one, each with its ``lut`` (empty without
        the table). One strongly consistent scan; raises :class:`kinesio.AWSError` or
        :class:`WorkerMetricsError`."""
        if not await self.exists():
            return {}
        client = await self._client()
        items = [item async for item in scan_items(client, self.table_name, ConsistentRead=True)]
        live = live_workers(items, self._wall(), foreign_only=True) - {self._worker_id}
        return {i["wid"]["S"]: float(i["lut"]["N"]) for i in items if i["wid"]["S"] in live}

    async def withdraw(self) -> None:
        """Delete this worker's item and publish no more (a worker shutting down: the KCL 3
        leader would count it for another minute). Raises :class:`kinesio.AWSError`."""
        self._withdrawn = True
        if not self._exists:
            return
        client = await self._client()
        with map_aws_errors("DeleteItem"):
            await client.delete_item(TableName=self.table_name, Key={"wid": {"S": self._worker_id}})

    async def publish(self) -> bool:
        """Write this worker's item (False, nothing written, without the table or after
        :meth:`withdraw`). Raises :class:`kinesio.AWSError` on a DynamoDB failure."""
        if self._withdrawn or not await self.exists():
            return False
        item = metrics_item(self._worker_id, self._wall(), self._cpu.sample())
        client = await self._client()
        with map_aws_errors("PutItem"):
            await client.put_item(TableName=self.table_name, Item=item)
        return True
