"""Several consumer worker processes against moto's server: the lease table is the only link."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import pytest

import kinesio
from kinesio import Producer, ProducerSettings
from kinesio.local import LocalEndpoint
from kinesio.testing.chaos import read_worker_log

pytestmark = pytest.mark.integration
#: The worker program the playground and the chaos harness run, with test-speed settings.
WORKER = ["-m", "kinesio.cli._worker"]
WORKER_OPTIONS = ["--failover", "2", "--take-interval", "0.5", "--shard-sync", "1",
                  "--idle-time", "0.1", "--checkpoint-every", "10"]  # fmt: skip


class Workers:
    def __init__(self, endpoint: LocalEndpoint, stream: str, app: str, tmp: Path) -> None:
        self.endpoint, self.stream, self.app, self.tmp = endpoint, stream, app, tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.files: list[IO[bytes]] = []

    def start(self, name: str) -> None:
        env = dict(os.environ)
        env["AWS_ENDPOINT_URL"] = self.endpoint.endpoint_url
        stderr = open(self.tmp / f"{name}.err", "wb")  # noqa: SIM115 - closed in stop_all
        self.files.append(stderr)
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                *WORKER,
                self.stream,
                self.app,
                str(self.tmp / f"{name}.log"),
                *WORKER_OPTIONS,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

    def lines(self) -> list[tuple[str, str, str, int, str]]:
        """(worker, shard, sequence number, sub-sequence number, data) per handled record."""
        out = []
        for log in self.tmp.glob("*.log"):
            for h in read_worker_log(log, log.stem).handled:
                position = h.position
                data = f"{h.key}:{h.n}"
                out.append(
                    (
                        log.stem,
                        h.shard,
                        position.sequence_number,
                        position.sub_sequence_number,
                        data,
                    )
                )
        return out

    def handled(self) -> set[str]:
        return {data for *_, data in self.lines()}

    def stop_all(self) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {}
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait()
        for f in self.files:
            f.close()
        return codes

    def errors(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")[-3000:]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def workers(moto_endpoint: LocalEndpoint, tmp_path: Path) -> Iterator[Workers]:
    stream = f"workers-{os.getpid()}-{time.monotonic_ns()}"
    client: Any = boto3.client("kinesis", endpoint_url=moto_endpoint.endpoint_url)
    client.create_stream(StreamName=stream, ShardCount=4)
    client.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    w = Workers(moto_endpoint, stream, f"app-{stream}", tmp_path)
    yield w
    w.stop_all()


def produce(w: Workers, start: int, end: int) -> set[str]:
    sent = set()
    # ordered: per-key order must hold from put() to the handler, across failovers
    settings = ProducerSettings(linger=0.02, ordered=True)
    with Producer(w.stream, endpoint_url=w.endpoint.endpoint_url, settings=settings) as p:
        for i in range(start, end):
            data = f"{i % 50}:{i}"
            p.put(data.encode(), partition_key=f"key-{i % 50}")
            sent.add(data)
    return sent


def lease_owners(w: Workers) -> dict[str, str | None]:
    ddb: Any = boto3.client("dynamodb", endpoint_url=w.endpoint.endpoint_url)
    items = ddb.scan(TableName=w.app, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S") for i in items}


def test_workers_share_fail_over_join_and_release_on_sigterm(workers: Workers) -> None:
    for name in ("w1", "w2", "w3"):
        workers.start(name)
    sent = produce(workers, 0, 1000)
    wait_until(lambda: workers.handled() >= sent, 60, "the first 1000 records")
    assert len(lease_owners(workers)) == 4
    wait_until(
        lambda: len({o for o in lease_owners(workers).values() if o}) == 3,
        30,
        "three workers to share the four shards",
    )

    workers.procs["w1"].kill()  # kill -9: nothing released
    workers.procs["w1"].wait()
    sent |= produce(workers, 1000, 2000)
    wait_until(lambda: workers.handled() >= sent, 60, "records after the kill")

    workers.start("w4")  # a joining worker gets its share
    wait_until(
        lambda: len({o for o in lease_owners(workers).values() if o}) == 3,
        30,
        "the joining worker to take a lease",
    )
    sent |= produce(workers, 2000, 2500)
    wait_until(lambda: workers.handled() >= sent, 60, "records after the join")

    codes = workers.stop_all()
    assert codes["w1"] == -signal.SIGKILL
    for name in ("w2", "w3", "w4"):
        assert codes[name] == 0, workers.errors(name)
    assert all(owner is None for owner in lease_owners(workers).values())

    # per shard, each worker saw records in sequence order; per key, in put order
    per_worker_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for worker, _shard, _seq, _sub, data in workers.lines():
        key, n = data.split(":")
        per_worker_key[(worker, key)].append(int(n))
    for (worker, key), numbers in per_worker_key.items():
        # a shard re-taken by the same worker replays from its checkpoint: duplicates are
        # allowed (at least once), going backwards to a new record is not
        first_seen = list(dict.fromkeys(numbers))
        assert first_seen == sorted(first_seen), (worker, key)


class BlockingProcessor:
    """A KCL-style processor with sync methods, as code ported from amazon_kclpy has."""

    seen: list[str] = []  # noqa: RUF012 - shared across the instances of one test

    def initialize(self, input: kinesio.InitializationInput) -> None:
        self.shard = input.shard_id

    def process_records(
        self, input: kinesio.ProcessRecordsInput[kinesio.BlockingCheckpointer]
    ) -> None:
        self.seen.extend(r.data.decode() for r in input.records)
        input.checkpointer.checkpoint()  # nothing staged: a no-op
        input.checkpointer.checkpoint(input.records[-1])

    def lease_lost(self, input: kinesio.LeaseLostInput) -> None:
        pass

    def shard_ended(self, input: kinesio.ShardEndedInput[kinesio.BlockingCheckpointer]) -> None:
        pass

    def shutdown_requested(
        self, input: kinesio.ShutdownRequestedInput[kinesio.BlockingCheckpointer]
    ) -> None:
        pass


def test_blocking_consumer_runs_a_kcl_style_processor(workers: Workers) -> None:
    sent = produce(workers, 0, 300)
    BlockingProcessor.seen = []
    settings = kinesio.ConsumerSettings(
        initial_position=kinesio.InitialPosition.TRIM_HORIZON,
        retrieval=kinesio.Polling(idle_time=0.05),
    )
    consumer = kinesio.Consumer(
        workers.stream,
        application_name=workers.app,
        settings=settings,
        endpoint_url=workers.endpoint.endpoint_url,
    )

    def stop_when_done() -> None:
        wait_until(lambda: set(BlockingProcessor.seen) >= sent, 60, "the processor to see all")
        consumer.request_shutdown()

    stopper = threading.Thread(target=stop_when_done)
    stopper.start()
    consumer.run(BlockingProcessor)
    stopper.join()
    ddb: Any = boto3.client("dynamodb", endpoint_url=workers.endpoint.endpoint_url)
    items = ddb.scan(TableName=workers.app, ConsistentRead=True)["Items"]
    assert len(items) == 4
    assert all("leaseOwner" not in i for i in items)
    assert all(i["checkpoint"]["S"].isdigit() for i in items)
