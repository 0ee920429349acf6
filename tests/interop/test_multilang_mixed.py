"""``kinesio multilang`` and the Java MultiLangDaemon (KCL 2.5.8) in one application, running
the same amazon_kclpy processor from the same properties file (only ``workerId`` differs), on
kinesis-mock + dynalite: they share the shards, and each takes the leases the other released
on a graceful shutdown and resumes exactly after its checkpoints.

Where ``java`` is missing the test fails saying so; it is never skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from _emulators import dynalite, kinesis_mock
from interop import _kcl
from interop._scenario import KCL2, Mixed, in_stream_order, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def endpoints() -> Iterator[_kcl.Endpoints]:
    try:
        _kcl.java()
    except _kcl.JavaMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with dynalite() as dynamodb, kinesis_mock() as kinesis:
        yield _kcl.Endpoints(kinesis=kinesis, dynamodb=dynamodb)


@pytest.fixture
async def mixed(endpoints: _kcl.Endpoints, tmp_path: Path) -> AsyncIterator[Mixed]:
    env = Mixed(KCL2, endpoints, tmp_path, f"multilang-{os.getpid()}")
    try:
        yield env
    finally:
        await env.aclose()


class MultiLangWorker:
    """``kinesio multilang`` on the properties a Java worker would get, with its processor."""

    def __init__(self, like: _kcl.JavaWorker) -> None:
        self.java_twin = like
        self.worker_id = like.worker_id
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        twin = self.java_twin
        twin.log_dir.mkdir(parents=True, exist_ok=True)
        props = twin.workdir / f"{self.worker_id}.properties"
        props.write_text(twin.properties_text())
        env = {
            **os.environ,
            "PYTHONPATH": str(twin.dist.python),
            "INTEROP_WORKER": self.worker_id,
            "INTEROP_LOG_DIR": str(twin.log_dir),
        }
        with twin.output.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kinesio", "multilang", str(props)],
                cwd=twin.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def tail(self) -> str:
        return self.java_twin.tail()


async def test_kinesio_multilang_and_the_java_daemon_share_one_application(mixed: Mixed) -> None:
    await mixed.create(shards=4)
    first = mixed.put_batch("b1")
    java = mixed.start_java("java-1")
    await mixed.until_checkpointed(first, timeout=120)
    assert set(mixed.owners().values()) == {"java-1"}

    twin = replace(java, worker_id="multilang-1", proc=None)
    multilang = MultiLangWorker(twin)
    multilang.start()

    def two_each() -> bool:
        return Counter(mixed.owners().values()) == Counter({"java-1": 2, "multilang-1": 2})

    def diagnose() -> str:
        return mixed.diagnose() + "\n-- kinesio multilang --\n" + multilang.tail()

    await wait_for("2 leases each", two_each, timeout=90, diagnose=diagnose)
    stolen = sorted(k for k, o in mixed.owners().items() if o == "multilang-1")

    def java_noticed() -> bool:
        events = _kcl.java_events(mixed.workdir / "records")
        lost = {s for w, s, e in events if w == "java-1" and e["event"] == "lease-lost"}
        return lost == set(stolen)

    await wait_for("Java seeing the steals", java_noticed, timeout=30, diagnose=diagnose)
    second = mixed.put_batch("b2")
    await mixed.until_checkpointed(second, timeout=60)

    # a graceful shutdown of kinesio multilang: its children checkpoint, the leases go back
    assert multilang.stop() == 0
    await wait_for(
        "Java taking the released leases",
        lambda: set(mixed.owners().values()) == {"java-1"},
        timeout=60,
        diagnose=diagnose,
    )
    third = mixed.put_batch("b3")
    await mixed.until_checkpointed(third, timeout=60)
    java.stop()

    handled = mixed.handled()
    counts = Counter((h.shard, h.data) for h in handled)
    assert counts == Counter((p.shard, p.data) for p in mixed.puts), diagnose()
    # in stream order within every tenure of a lease (one processor process each)
    sessions: dict[tuple[str, str], list[_kcl.Handled]] = defaultdict(list)
    for h in handled:
        sessions[(h.session, h.shard)].append(h)
    assert all(in_stream_order(rows) for rows in sessions.values())
    for put in mixed.puts:
        by = {h.worker for h in handled if (h.shard, h.data) == (put.shard, put.data)}
        stolen_b2 = put.data.startswith("b2") and put.shard in stolen
        assert by == {"multilang-1" if stolen_b2 else "java-1"}, (put, by)
