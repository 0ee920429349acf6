"""The KCL 3 worker-metrics item format and the share it gives to lease-less workers."""

from __future__ import annotations

import random

import pytest

from kinesio import KinesioError
from kinesio._models import Lease
from kinesio.consumer import _assignment
from kinesio.consumer._kcl3_share import counted_peers
from kinesio.leases._worker_metrics import WorkerMetricsError, live_workers, metrics_item

from ._lease_harness import DynamoHarness, dynamo

__all__ = ["dynamo"]  # the fixture, parametrized over moto and dynalite

pytestmark = pytest.mark.timeout(60)


def test_round_trip_of_own_item_counts_as_live() -> None:
    item = metrics_item("kinesio-1", 1_000.7, [12.5, 30.0])
    assert item["wid"] == {"S": "kinesio-1"}
    assert item["lut"] == {"N": "1000"}
    assert item["sts"]["M"]["C"]["L"] == [{"N": "12.5"}, {"N": "30.0"}]
    # The KCL reads opr as a list of longs: a whole number, first the maximum.
    assert item["opr"] == {"M": {"C": {"L": [{"N": "100"}]}}}
    assert len(metrics_item("w", 1.0, [1.0] * 25)["sts"]["M"]["C"]["L"]) == 10
    assert live_workers([item], 1_050.0) == frozenset({"kinesio-1"})
    assert live_workers([item], 1_061.0) == frozenset()


def test_malformed_items_raise_typed_errors() -> None:
    with pytest.raises(WorkerMetricsError):
        live_workers([{"lut": {"N": "1"}}], 2.0)
    with pytest.raises(KinesioError):
        metrics_item("w", 1.0, [101.0])
    with pytest.raises(WorkerMetricsError):
        metrics_item("w", 1.0, [1.0], cpu_max_percent=0)


def test_items_the_kcl3_leader_ignores_are_not_live() -> None:
    good = metrics_item("w", 100.0, [1.0])
    no_lut = {k: v for k, v in good.items() if k != "lut"}
    text_lut = {**good, "lut": {"S": "soon"}}
    no_range = {**good, "opr": {"M": {}}}
    zero_max = {**good, "opr": {"M": {"C": {"L": [{"N": "0"}]}}}}
    failing = {**good, "sts": {"M": {"C": {"L": [{"N": "3.0"}, {"N": "-1"}]}}}}
    bare = {"wid": {"S": "bare"}, "lut": {"N": "100"}}  # the KCL's default metric: valid
    items = [no_lut, text_lut, no_range, zero_max, failing, bare]
    assert live_workers(items, 110.0) == frozenset({"bare"})
    assert live_workers([good, bare], 110.0, foreign_only=True) == frozenset({"bare"})


def _lease(key: str, owner: str | None) -> Lease:
    return Lease(lease_key=key, lease_owner=owner)


def test_idle_peer_from_worker_metrics_lowers_the_share() -> None:
    leases = [_lease(f"shardId-{i:012d}", "kinesio-1") for i in range(4)]
    rng = random.Random(1)
    alone = _assignment.plan(leases, set(), "kinesio-1", rng=rng)
    with_peer = _assignment.plan(leases, set(), "kinesio-1", rng=rng, peers={"kcl3-worker"})
    assert alone.target == 4
    assert with_peer.target == 2
    # The idle KCL 3 worker itself, planned as kinesio would plan for it, steals toward 2.
    joining = _assignment.plan(leases, set(), "kcl3-worker", rng=rng, max_leases_to_steal=2)
    assert joining.target == 2
    assert len(joining.steal) == 2


async def test_items_survive_a_worker_metrics_table(dynamo: DynamoHarness) -> None:
    # The table as KCL 3.1.3 creates it, with a fresh item and a stale one.
    table = await dynamo.worker_metrics_table(
        metrics_item("kinesio-1", 500.0, [40.0]), metrics_item("kcl3-old", 100.0, [1.0])
    )
    items = (await dynamo.client.scan(TableName=table, ConsistentRead=True))["Items"]
    assert live_workers(items, 520.0) == frozenset({"kinesio-1"})
    await dynamo.client.delete_table(TableName=table)


def test_a_kcl3_worker_seen_owning_an_expired_lease_counts_again_once_it_reports() -> None:
    table = {"s-0": _lease("s-0", "kcl3-dead"), "s-1": _lease("s-1", "kinesio-1")}
    suspects: dict[str, float] = {}
    fresh = {"kcl3-dead": 100.0, "kcl3-idle": 100.0}
    # Killed: its item is still fresh, but its lease expired; only the idle worker counts.
    assert counted_peers(fresh, table, {"s-0"}, suspects) == frozenset({"kcl3-idle"})
    # Its lease taken over (no longer expired, no longer its): still not counted ...
    table["s-0"] = _lease("s-0", "kinesio-1")
    assert counted_peers(fresh, table, set(), suspects) == frozenset({"kcl3-idle"})
    # ... until it reports again (a restart, or it had only stalled).
    fresh["kcl3-dead"] = 130.0
    assert counted_peers(fresh, table, set(), suspects) == frozenset(fresh)
