"""The KCL 3 worker-metrics table (``<app>-WorkerMetricStats``): who is alive without a lease.

KCL 3.x workers publish one item each, keyed by worker id (``wid``), with ``lut`` (last update,
epoch seconds, a number), ``sts`` (metric name to a list of recent values in percent) and
``opr`` (metric name to its operating range, a list of numbers). The KCL 3 leader balances
leases only among workers with a fresh item, and a KCL 3 worker that holds no lease appears
nowhere else, so kinesio reads this table to count such workers in its fair share.

Nothing here does I/O: the caller scans the table and passes the raw DynamoDB items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kinesio._errors import KinesioError

__all__ = ["WorkerMetricsError", "live_workers", "metrics_item"]

# How old an item may be before its worker is no longer counted. Not yet checked against the
# KCL 3 leader's own staleness rule; a longer window only makes kinesio leave a share for a
# worker that has just gone, which the expiry of that share's leases then corrects.
DEFAULT_STALE_AFTER_S = 60.0


class WorkerMetricsError(KinesioError):
    """A worker-metrics item that is not in the KCL 3 format (missing or mistyped field)."""


def _number(item: Mapping[str, Any], name: str) -> float:
    value = item.get(name)
    if not isinstance(value, Mapping) or "N" not in value:
        raise WorkerMetricsError(f"worker-metrics item field {name!r} is not a number: {value!r}")
    try:
        return float(value["N"])
    except ValueError as exc:
        raise WorkerMetricsError(f"worker-metrics field {name!r} is not a number") from exc


def live_workers(
    items: Iterable[Mapping[str, Any]],
    now: float,
    *,
    stale_after: float = DEFAULT_STALE_AFTER_S,
) -> frozenset[str]:
    """Worker ids whose item was updated at most ``stale_after`` seconds before ``now``.

    ``items`` are raw DynamoDB items (attribute-value maps) from a scan of the table; ``now``
    is epoch seconds (the items carry wall-clock times). Raises :class:`WorkerMetricsError`
    for an item without a string ``wid`` or a numeric ``lut``; never blocks.
    """
    live: set[str] = set()
    for item in items:
        wid = item.get("wid")
        if not isinstance(wid, Mapping) or not isinstance(wid.get("S"), str):
            raise WorkerMetricsError(f"worker-metrics item without a string wid: {item!r}")
        if now - _number(item, "lut") <= stale_after:
            live.add(wid["S"])
    return frozenset(live)


def metrics_item(
    worker_id: str,
    now: float,
    cpu_percent: Sequence[float],
    *,
    cpu_max_percent: float = 100.0,
) -> dict[str, Any]:
    """kinesio's own item in the KCL 3 format: ``wid``, ``lut`` (whole epoch seconds), ``sts``
    with the recent CPU utilisation values (percent) and ``opr`` with the CPU operating range.

    Raises :class:`WorkerMetricsError` for a value outside 0-100 percent.
    """
    for value in (*cpu_percent, cpu_max_percent):
        if not 0.0 <= value <= 100.0:
            raise WorkerMetricsError(f"CPU utilisation must be 0-100 percent, got {value}")
    return {
        "wid": {"S": worker_id},
        "lut": {"N": str(int(now))},
        "sts": {"M": {"C": {"L": [{"N": repr(float(v))} for v in cpu_percent]}}},
        "opr": {"M": {"C": {"L": [{"N": repr(float(cpu_max_percent))}]}}},
    }
