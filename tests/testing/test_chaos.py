"""The chaos checks: the verdicts catch what they claim to, the producer keeps every record
under fire (InMemoryKinesis and moto), and the harness's smoke run passes on the emulators."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _streams import all_user_records, moto_stream, stored_data
from kinesio import AsyncProducer, ProducerSettings
from kinesio._models import ExtendedSequenceNumber, Lease
from kinesio.events import CheckpointWritten, LeaseAcquired, LeaseLostEvent
from kinesio.local import LocalEndpoint
from kinesio.producer._producer import ErrorHook
from kinesio.testing import CONNECTION_CLOSED, BotocoreFaults, Fault, InMemoryKinesis
from kinesio.testing.chaos import (
    Disruption,
    LeaseSnapshot,
    LeaseWrite,
    WorkerLog,
    WorkerRecords,
    consumer_verdict,
    parse_payload,
    producer_under_fire,
    read_worker_log,
)

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
PTE = "ProvisionedThroughputExceededException"
SEQ = [ExtendedSequenceNumber(str(100 + i)) for i in range(10)]


class Logs:
    """Worker logs written with WorkerLog at chosen times, read back with read_worker_log."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.files: dict[str, Any] = {}

    def log(self, worker: str) -> WorkerLog:
        if worker not in self.files:
            self.files[worker] = (self.tmp / f"{worker}.log").open("w", encoding="utf-8")
        return WorkerLog(self.files[worker], worker)

    def handled(self, worker: str, shard: str, i: int, key: str, n: int) -> None:
        self.log(worker).handled(shard, SEQ[i], f"{key}:{n}".encode())

    def take(self, worker: str, shard: str, counter: int) -> None:
        self.log(worker).event(
            LeaseAcquired(lease_key=shard, previous_owner=None, stolen=False, lease_counter=counter)
        )

    def checkpoint(self, worker: str, shard: str, counter: int, i: int) -> None:
        self.log(worker).event(
            CheckpointWritten(
                shard_id=shard,
                sequence_number=SEQ[i].sequence_number,
                sub_sequence_number=0,
                lease_counter=counter,
            )
        )

    def read(self) -> list[WorkerRecords]:
        for f in self.files.values():
            f.close()
        return [read_worker_log(self.tmp / f"{w}.log", w) for w in sorted(self.files)]


def test_a_clean_run_passes_and_a_lost_record_fails(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.take("w1", "s0", 1)
    for i in range(3):
        logs.handled("w1", "s0", i, "k", i)
    logs.checkpoint("w1", "s0", 2, 2)
    records = logs.read()
    ok = consumer_verdict([("k", 0), ("k", 1), ("k", 2)], records)
    assert ok.ok, ok.problems()
    assert (ok.handled, ok.handler_calls, ok.checkpoints_checked) == (3, 3, 2)
    lost = consumer_verdict([("k", 0), ("k", 1), ("k", 2), ("k", 3)], records)
    assert not lost.ok
    assert lost.lost == [("k", 3)]


def test_a_new_record_older_than_one_handled_is_an_order_violation(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.take("w1", "s0", 1)
    logs.handled("w1", "s0", 0, "k", 0)
    logs.handled("w1", "s0", 1, "k", 2)
    logs.handled("w1", "s0", 2, "k", 1)
    v = consumer_verdict([("k", 0), ("k", 1), ("k", 2)], logs.read())
    assert not v.ok
    assert len(v.order_violations) == 1
    assert "k:1" in v.order_violations[0]


def test_duplicates_are_allowed_after_a_lease_change_and_only_then(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.take("w1", "s0", 1)
    logs.handled("w1", "s0", 0, "k", 0)
    logs.handled("w1", "s0", 1, "k", 1)
    logs.take("w2", "s0", 5)  # failover: w2 resumes from the checkpoint and replays
    logs.handled("w2", "s0", 1, "k", 1)
    logs.handled("w2", "s0", 1, "k", 1)  # but twice in a row without a change is a bug
    v = consumer_verdict(
        [("k", 0), ("k", 1)], logs.read(), disruptions=[Disruption(0.0, "kill -9", "w1")]
    )
    assert v.duplicates_explained == 1
    assert len(v.duplicates_unexplained) == 1
    assert not v.ok


def test_a_second_copy_in_the_stream_needs_a_lost_producer_answer(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.take("w1", "s0", 1)
    logs.handled("w1", "s0", 0, "k", 0)
    logs.handled("w1", "s0", 1, "k", 0)  # another position: the producer wrote it twice
    records = logs.read()
    assert consumer_verdict([("k", 0)], records, resends_possible=True).ok
    assert not consumer_verdict([("k", 0)], records, resends_possible=False).ok


def test_checkpoints_by_a_zombie_or_backwards_are_regressions(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.take("w1", "s0", 1)
    logs.checkpoint("w1", "s0", 2, 5)
    logs.take("w2", "s0", 3)
    logs.checkpoint("w1", "s0", 4, 6)  # w1 no longer holds it
    logs.checkpoint("w2", "s0", 5, 4)  # back before 5
    logs.checkpoint("w2", "s0", 5, 7)  # counter 5 claimed twice
    logs.log("w1").event(LeaseLostEvent(lease_key="s0", reason="taken"))
    v = consumer_verdict([], logs.read())
    kinds = sorted(problem.split(":")[0] for problem in v.checkpoint_regressions)
    assert kinds == ["backwards", "fencing", "zombie checkpoint"]


def test_the_table_history_must_only_move_forward() -> None:
    def snap(t: float, counter: int, i: int) -> LeaseSnapshot:
        return LeaseSnapshot(t, Lease("s0", checkpoint=SEQ[i], lease_counter=counter))

    assert consumer_verdict([], [], snapshots=[snap(1, 1, 1), snap(2, 2, 2)]).ok
    back = consumer_verdict([], [], snapshots=[snap(1, 1, 2), snap(2, 2, 1)])
    assert back.checkpoint_regressions
    assert "went back" in back.checkpoint_regressions[0]
    down = consumer_verdict([], [], snapshots=[snap(1, 3, 2), snap(2, 2, 2)])
    assert down.checkpoint_regressions
    assert "counter went" in down.checkpoint_regressions[0]


def test_failover_time_is_measured_from_the_disruption(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.take("w1", "s0", 1)
    logs.take("w1", "s1", 1)
    records = logs.read()
    t_kill = records[0].writes[-1].t + 0.5
    # w2 takes s0 two seconds after the kill; nobody takes s1
    records.append(WorkerRecords())
    records[1].writes.append(LeaseWrite(t_kill + 2.0, "w2", "s0", 2, "take"))
    v = consumer_verdict([], records, disruptions=[Disruption(t_kill, "kill -9", "w1")])
    (failover,) = v.failovers
    assert failover.shards == ("s0", "s1")
    assert failover.seconds[0] == pytest.approx(2.0)
    assert failover.seconds[1] is None
    assert failover.worst is None
    assert not v.ok  # a lease nobody took over is a stuck shard


def test_a_lease_stolen_or_finished_before_the_fault_is_not_its_failover(
    tmp_path: Path,
) -> None:
    logs = Logs(tmp_path)
    logs.take("w1", "s0", 1)
    logs.take("w1", "s1", 1)
    logs.take("w2", "s0", 3)  # stolen; w1 has not noticed yet
    logs.checkpoint("w1", "s1", 2, 9)  # s1 ends: SHARD_END below
    records = logs.read()
    ended = records[0].writes[-1]
    records[0].writes[-1] = LeaseWrite(
        ended.t, "w1", "s1", 2, "checkpoint", ExtendedSequenceNumber("SHARD_END")
    )
    v = consumer_verdict([], records, disruptions=[Disruption(ended.t + 1, "kill -9", "w1")])
    (failover,) = v.failovers
    assert failover.shards == ()
    assert v.ok


# -- the producer under fire ------------------------------------------------------------------


def fast(**kw: Any) -> ProducerSettings:
    return ProducerSettings(linger=0.01, retry_backoff=0.01, max_retry_backoff=0.1, **kw)


def check_delivered(verdict: Any, stored: Counter[bytes]) -> None:
    stored_ids = Counter(parse_payload(data) for data in stored.elements())
    assert verdict.delivered_records <= set(stored_ids), "a delivered record is not stored"


@pytest.mark.parametrize("ordered", [True, False])
async def test_producer_under_fire_in_memory_keeps_every_record(ordered: bool) -> None:
    kinesis = InMemoryKinesis(seed=5)
    await kinesis.create_stream("fire", 3)
    kinesis.inject(Fault("PutRecords", PTE, per_record=True, probability=0.2))
    kinesis.inject(Fault("PutRecords", "InternalFailure", per_record=True, probability=0.05))
    kinesis.inject(Fault("PutRecords", "InternalFailure", probability=0.05))
    kinesis.inject(Fault("PutRecords", "ConnectionError", response_lost=True, probability=0.03))

    async def start(on_error: ErrorHook) -> AsyncProducer:
        p = AsyncProducer(
            "fire", kinesis=kinesis, settings=fast(ordered=ordered), on_error=on_error
        )
        await p.start()
        return p

    async def during(i: int) -> None:
        if i == 1000:
            kinesis.inject(Fault("PutRecords", PTE, count=20))  # a storm
        if i % 100 == 0:
            await asyncio.sleep(0.005)

    v = await producer_under_fire(
        start,
        records=4000,
        keys=50,
        ordered=ordered,
        close_after=3000,
        close_timeout=0.05,
        during=during,
    )
    assert v.ok, v.vanished[:5] + v.order_violations[:5]
    assert v.produced == 3000  # puts after the close began were refused, not accepted
    assert v.delivered > 0
    assert v.reported_failed > 0  # closed under fire: what was left failed, and was reported
    assert v.delivered + v.reported_failed == v.produced
    assert set(v.failures) == {"ProducerClosedError"}
    stored = Counter(r.data for r in await all_user_records(kinesis, "fire"))
    check_delivered(v, stored)


@pytest.fixture
def fire_stream(moto_endpoint: LocalEndpoint) -> Iterator[str]:
    with moto_stream(moto_endpoint, f"fire-{os.getpid()}-{id(object())}") as name:
        yield name


@pytest.mark.integration
async def test_producer_under_fire_on_moto_keeps_every_record(
    moto_endpoint: LocalEndpoint, fire_stream: str
) -> None:
    faults = BotocoreFaults(
        Fault("PutRecords", PTE, per_record=True, probability=0.15),
        Fault("PutRecords", "InternalFailure", per_record=True, probability=0.05),
        Fault("PutRecords", "InternalFailure", probability=0.05),
        Fault("PutRecords", CONNECTION_CLOSED, response_lost=True, probability=0.03),
        seed=11,
    )

    async def start(on_error: ErrorHook) -> AsyncProducer:
        p = AsyncProducer(
            fire_stream,
            aws=faults.aws_config(moto_endpoint),
            settings=fast(ordered=True),
            on_error=on_error,
        )
        await p.start()
        return p

    async def during(i: int) -> None:
        if i == 500:
            faults.inject(Fault("PutRecords", PTE, count=10))  # a storm
        if i % 100 == 0:
            await asyncio.sleep(0.05)  # records flow while the faults hit

    v = await producer_under_fire(
        start,
        records=3000,
        keys=40,
        ordered=True,
        close_after=2000,
        close_timeout=0.05,
        during=during,
    )
    assert v.ok, v.vanished[:5] + v.order_violations[:5]
    assert v.produced == 2000
    assert v.delivered > 0
    assert v.delivered + v.reported_failed == v.produced
    assert faults.injected[PTE] > 0
    assert faults.calls["PutRecords"] > 20
    check_delivered(v, await asyncio.to_thread(stored_data, moto_endpoint, fire_stream))


# -- the harness ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_the_chaos_smoke_run_finds_nothing_lost_and_order_kept(tmp_path: Path) -> None:
    """The harness's smoke size on kinesis-mock + dynalite: every fault type, then the verdict."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HARNESS.parents[1] / "src"), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "consumer", "--size", "smoke", "--keep", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    out = proc.stdout + proc.stderr[-5000:]
    assert proc.returncode == 0, out
    assert "VERDICT: OK" in out
    faults_row = next(line for line in out.splitlines() if line.startswith("| faults injected"))
    for kind in ("kill -9", "SIGSTOP", "split", "merge", "connection reset", "throttling storm"):
        assert f"{kind} " in faults_row, (kind, faults_row)
    assert "| lost | 0 | ok |" in out
    assert "| order violations | 0 | ok |" in out
