"""``kinesio multilang``: amazon_kclpy applications, unchanged, on kinesio with no JVM — the
sample application and v2 / v3 processors of our own, against moto's server; a broken child
gives a clear error and loses nothing."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import kinesio
from _kclpy import ensure_kclpy
from kinesio._errors import ConfigurationError
from kinesio.local import LocalEndpoint
from kinesio.multilang import load_config, parse_properties

pytestmark = pytest.mark.integration
APPS = Path(__file__).resolve().parent / "apps"


# -- the properties file -----------------------------------------------------------------


def test_the_java_properties_format() -> None:
    text = "\n".join(
        [
            "# a comment",
            "! another",
            "executableName = python3 app.py",
            "streamName:orders",
            "applicationName   billing",
            "long = one \\",
            "       two",
            "escaped = a\\=b\\u0041\\tz",
            "empty =",
            "streamName = replaced",
        ]
    )
    props = parse_properties(text)
    assert props == {
        "executableName": "python3 app.py",
        "streamName": "replaced",
        "applicationName": "billing",
        "long": "one two",
        "escaped": "a=bA\tz",
        "empty": "",
    }


def test_the_daemons_keys_become_settings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "app.properties"
    path.write_text(
        "executableName = python3 -u my app.py\n"
        "streamArn = arn:aws:kinesis:eu-west-1:123456789012:stream/orders\n"
        "applicationName = billing\n"
        "initialPositionInStream = TRIM_HORIZON\n"
        "failoverTimeMillis = 4000\n"
        "maxRecords = 500\n"
        "idleTimeBetweenReadsInMillis = 250\n"
        "workerId = w-1\n"
        "maxLeasesForWorker = 7\n"
        "regionName = eu-west-1\n"
        "kinesisEndpoint = http://127.0.0.1:1\n"
        "processingLanguage = python/3.11\n"
        "someFutureKey = 1\n"
    )
    with caplog.at_level(logging.WARNING, "kinesio.multilang"):
        config = load_config(path)
    assert config.executable == ["python3", "-u", "my", "app.py"]
    assert config.stream_name == "orders"
    assert config.application_name == "billing"
    assert config.settings.failover_time == 4.0
    assert config.settings.worker_id == "w-1"
    assert config.settings.max_leases == 7
    assert config.settings.initial_position == kinesio.InitialPosition.TRIM_HORIZON
    assert isinstance(config.settings.retrieval, kinesio.Polling)
    assert config.settings.retrieval.max_records == 500
    assert config.settings.retrieval.idle_time == 0.25
    assert config.region_name == "eu-west-1"
    assert config.kinesis_endpoint == "http://127.0.0.1:1"
    assert config.ignored == ("someFutureKey",)
    assert "someFutureKey is not used" in caplog.text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("streamName = s\napplicationName = a\n", "executableName is required"),
        ("executableName = x\napplicationName = a\n", "streamName or streamArn"),
        (
            "executableName = x\nstreamName = s\napplicationName = a\nfailoverTimeMillis = soon\n",
            "failoverTimeMillis must be a whole number",
        ),
        (
            "executableName = x\nstreamName = s\napplicationName = a\n"
            "initialPositionInStream = MIDDLE\n",
            "initialPositionInStream must be",
        ),
    ],
)
def test_a_bad_properties_file_is_a_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.properties"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=problem):
        load_config(path)


# -- running applications ----------------------------------------------------------------


class Daemon:
    """``kinesio multilang`` in its own process, as a user runs it."""

    def __init__(self, properties: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._err = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kinesio", "multilang", str(properties)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._err.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


class App:
    """A stream on moto's server, a properties file for it, and what the children logged."""

    def __init__(self, endpoint: LocalEndpoint, tmp: Path) -> None:
        self.endpoint = endpoint
        self.tmp = tmp
        self.stream = f"multilang-{uuid.uuid4().hex[:8]}"
        self.app = f"app-{self.stream}"
        self.records = tmp / "records.log"
        self.kinesis: Any = boto3.client("kinesis", endpoint_url=endpoint.endpoint_url)
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=2)
        self.kinesis.get_waiter("stream_exists").wait(
            StreamName=self.stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
        )
        self.daemons: list[Daemon] = []

    def put(self, start: int, end: int, *, aggregate: bool) -> dict[str, str]:
        """Records ``key:n``; returns each shard's last sequence number."""
        last: dict[str, str] = {}
        settings = kinesio.ProducerSettings(linger=0.02, aggregate=aggregate, ordered=True)
        with kinesio.Producer(
            self.stream, endpoint_url=self.endpoint.endpoint_url, settings=settings
        ) as producer:
            futures = [
                producer.put(f"k{i % 7}:{i}".encode(), partition_key=f"k{i % 7}")
                for i in range(start, end)
            ]
            for future in futures:
                result = future.result()
                if int(result.sequence_number) > int(last.get(result.shard_id, "0")):
                    last[result.shard_id] = result.sequence_number
        return last

    def properties(self, executable: str, **extra: str) -> Path:
        lines = {
            "executableName": executable,
            "streamName": self.stream,
            "applicationName": self.app,
            "initialPositionInStream": "TRIM_HORIZON",
            "regionName": "us-east-1",
            "kinesisEndpoint": self.endpoint.endpoint_url,
            "dynamoDBEndpoint": self.endpoint.endpoint_url,
            "idleTimeBetweenReadsInMillis": "100",
            "failoverTimeMillis": "3000",
            "processingLanguage": "python/3",
            **extra,
        }
        path = self.tmp / f"app-{len(self.daemons)}.properties"
        path.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        return path

    def start(self, properties: Path, **env: str) -> Daemon:
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ensure_kclpy()), str(APPS)]),
            "RECORD_LOG": str(self.records),
            **env,
        }
        daemon = Daemon(properties, full_env, self.tmp / f"daemon-{len(self.daemons)}.log")
        self.daemons.append(daemon)
        return daemon

    def run_to_exit(self, properties: Path, timeout: float, **env: str) -> tuple[int, str]:
        """Start a daemon and wait (``timeout`` seconds at most) for it to exit on its own:
        its exit code and its log."""
        daemon = self.start(properties, **env)
        code = daemon.proc.wait(timeout)
        daemon.kill()
        return code, daemon.log.read_text(errors="replace")

    def logged(self) -> list[list[str]]:
        if not self.records.exists():
            return []
        return [line.split(" ") for line in self.records.read_text().splitlines()]

    def handled(self) -> list[tuple[str, str, int, str, str]]:
        return [
            (shard, seq, int(sub), key, data)
            for kind, shard, seq, sub, key, data in (
                parts for parts in self.logged() if parts[0] == "record"
            )
            if kind == "record"
        ]

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        ddb: Any = boto3.client("dynamodb", endpoint_url=self.endpoint.endpoint_url)
        items = ddb.scan(TableName=self.app, ConsistentRead=True)["Items"]
        return {i["leaseKey"]["S"]: i for i in items}

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        self.kinesis.delete_stream(StreamName=self.stream)


@pytest.fixture
def app(moto_endpoint: LocalEndpoint, tmp_path: Path) -> Iterator[App]:
    a = App(moto_endpoint, tmp_path)
    yield a
    a.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, daemon: Daemon) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if daemon.proc.poll() is not None:
            raise AssertionError(
                f"kinesio multilang exited ({daemon.proc.returncode}) before {what}:\n"
                + daemon.log.read_text()[-3000:]
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}:\n" + daemon.log.read_text()[-3000:]
            )
        time.sleep(0.2)


def numbers(handled: list[tuple[str, str, int, str, str]]) -> list[int]:
    return [int(data.split(":")[1]) for *_, data in handled]


def test_amazon_kclpys_sample_application_runs_unchanged(app: App) -> None:
    last = app.put(0, 60, aggregate=True)
    sample = ensure_kclpy() / "samples" / "sample_kclpy_app.py"
    daemon = app.start(app.properties(f"{sys.executable} {sample}"))

    def both_checkpointed() -> bool:
        try:
            items = app.checkpoints()
        except Exception:  # the table is not there yet
            return False
        return len(items) == 2 and all(
            i["checkpoint"]["S"] != "TRIM_HORIZON" for i in items.values()
        )

    # the sample checkpoints its first batch at once, then every 30 s, and at shutdown
    wait_until(both_checkpointed, 60, "the sample's first checkpoints", daemon)
    time.sleep(1.0)
    assert daemon.stop() == 0
    text = daemon.log.read_text(errors="replace")
    # the sample logs to stderr (with no newline: one line per child, at its exit), which
    # reaches kinesio's log with the shard id
    assert "[shardId-000000000000]" in text or "[shardId-000000000001]" in text
    assert text.count("Record (Partition Key") == 60
    assert "Shutdown has been requested, checkpointing." in text
    # its checkpoint() at shutdown: the last record of each shard, from the aggregates
    items = app.checkpoints()
    assert {k: i["checkpoint"]["S"] for k, i in items.items()} == last
    assert all("leaseOwner" not in i for i in items.values())  # released on SIGTERM


@pytest.mark.parametrize("processor", ["v3_logger.py", "v2_logger.py"])
def test_v2_and_v3_processors_see_every_record_in_order_and_checkpoint(
    app: App, processor: str
) -> None:
    app.put(0, 80, aggregate=processor == "v3_logger.py")
    daemon = app.start(app.properties(f"{sys.executable} {APPS / processor}"))
    wait_until(lambda: len(app.handled()) >= 80, 60, "every record", daemon)
    assert daemon.stop() == 0
    handled = app.handled()
    assert sorted(numbers(handled)) == list(range(80))
    per_key: dict[str, list[int]] = defaultdict(list)
    for *_, key, data in handled:
        per_key[key].append(int(data.split(":")[1]))
    assert all(ns == sorted(ns) for ns in per_key.values())
    kinds = [parts[0] for parts in app.logged()]
    assert kinds.count("init") == 2
    assert kinds.count("shutdown") == 2
    last = {}
    for shard, seq, sub, *_ in handled:
        last[shard] = (seq, sub)
    for shard, item in app.checkpoints().items():
        assert (
            item["checkpoint"]["S"],
            int(item.get("checkpointSubSequenceNumber", {"N": "0"})["N"]),
        ) == last[shard]


def test_a_child_that_dies_is_replaced_at_the_checkpoint_and_nothing_is_lost(app: App) -> None:
    app.put(0, 60, aggregate=False)
    v3 = f"{sys.executable} {APPS / 'v3_logger.py'}"
    daemon = app.start(
        app.properties(v3), CRASH_AFTER="20", CRASH_ONCE=str(app.tmp / "crashed-once")
    )
    wait_until(lambda: set(numbers(app.handled())) >= set(range(60)), 90, "every record", daemon)
    assert daemon.stop() == 0
    text = daemon.log.read_text(errors="replace")
    assert "crashing on purpose" in text
    assert "ended while 'processRecords' was unanswered" in text
    assert "releasing the lease: the shard restarts at its last checkpoint" in text
    kinds = [parts[0] for parts in app.logged()]
    assert kinds.count("init") == 3  # two shards, and the replacement child
    # the replacement started at the crashed child's last checkpoint: what it had handled
    # after that checkpoint came again, nothing was skipped
    assert set(numbers(app.handled())) == set(range(60))


def test_a_child_that_keeps_dying_stops_the_worker(app: App) -> None:
    app.put(0, 60, aggregate=False)
    v3 = f"{sys.executable} {APPS / 'v3_logger.py'}"
    code, text = app.run_to_exit(app.properties(v3), 120, CRASH_AFTER="5")
    assert code == 1
    assert "failure 2 of 3 in a row" in text
    assert "error:" in text
    # whatever was handled, the checkpoints never passed it: a fresh worker gets the rest
    before = set(numbers(app.handled()))
    again = app.start(app.properties(v3))
    wait_until(lambda: set(numbers(app.handled())) >= set(range(60)), 60, "the rest", again)
    assert again.stop() == 0
    assert set(numbers(app.handled())) == set(range(60))
    assert len(before) < 60


def test_a_child_that_breaks_the_protocol_is_a_clear_error(app: App) -> None:
    app.put(0, 10, aggregate=False)
    code, text = app.run_to_exit(app.properties(f"{sys.executable} {APPS / 'garbage.py'}"), 90)
    assert code == 1
    assert "not a multilang message on stdout: some debugging output" in text
    assert "sent 'explode'; expected 'status' or 'checkpoint'" in text
    # nothing was checkpointed for it
    assert all(i["checkpoint"]["S"] == "TRIM_HORIZON" for i in app.checkpoints().values())
