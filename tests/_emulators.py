"""Node-based emulators for integration tests: dynalite (DynamoDB) and kinesis-mock (Kinesis).

Both are installed by ``./dev test`` into tests/emulators/node_modules (see package.json
there). Each context manager starts one server bound to 127.0.0.1 on a free port, waits until
it accepts connections, yields its URL, and stops it when the block ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EMULATORS_DIR = Path(__file__).resolve().parent / "emulators"
NODE_MODULES = EMULATORS_DIR / "node_modules"
HOST = "127.0.0.1"


class EmulatorError(RuntimeError):
    """An emulator is not installed or did not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _require(package: str) -> Path:
    path = NODE_MODULES / package
    if not path.is_dir():
        raise EmulatorError(
            f"the {package} emulator is not installed ({path} is missing): run ./dev test, "
            "or `npm install` in tests/emulators"
        )
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("node is not on PATH: the integration tests need Node.js")
    return path


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(
                f"emulator exited with status {proc.returncode} before listening on port "
                f"{port}:\n{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise EmulatorError(
        f"emulator did not listen on {HOST}:{port} within {timeout:.0f} s:\n"
        f"{log.read_text(errors='replace')[-4000:]}"
    )


@contextmanager
def _run(
    args: list[str],
    *,
    cwd: Path,
    port: int,
    env: dict[str, str] | None = None,
    stop_signal: signal.Signals,
    timeout: float,
) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="kinesio-emulator-") as tmp:
        log = Path(tmp) / "output.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_listening(proc, port, log, timeout)
                yield f"http://{HOST}:{port}"
            finally:
                if proc.poll() is None:
                    proc.send_signal(stop_signal)
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)


@contextmanager
def dynalite() -> Iterator[str]:
    """Run dynalite (in memory) on 127.0.0.1 and a free port; yield its endpoint URL.

    Tables stay CREATING/DELETING for 50 ms rather than dynalite's 500 ms: long enough that
    the wait-until-ACTIVE path is exercised, short enough for a table per test.
    """
    package = _require("dynalite")
    port = _free_port()
    delays = ["--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"]
    with _run(
        ["node", str(package / "cli.js"), "--host", HOST, "--port", str(port), *delays],
        cwd=EMULATORS_DIR,
        port=port,
        stop_signal=signal.SIGTERM,
        timeout=30.0,
    ) as url:
        yield url


@contextmanager
def kinesis_mock() -> Iterator[str]:
    """Run kinesis-mock (npm kinesis-local) on 127.0.0.1 and a free port; yield its URL.

    It listens on 0.0.0.0 by itself, so loopback.js is preloaded to force 127.0.0.1; its TLS
    port is moved to a free port too, so that parallel runs do not collide. It ignores
    SIGTERM, hence SIGKILL. Plain HTTP only.

    Stream operations (create, delete, split, merge, consumer registration...) keep the
    stream or consumer in a transitional status for 100 ms rather than kinesis-mock's 500 ms:
    long enough that the wait-until-ACTIVE paths are exercised, short enough for tests that
    reshard several times.
    """
    package = _require("kinesis-local")
    port, tls_port = _free_port(), _free_port()
    durations = {
        f"{operation}_DURATION": "100ms"
        for operation in (
            "CREATE_STREAM",
            "DELETE_STREAM",
            "REGISTER_STREAM_CONSUMER",
            "DEREGISTER_STREAM_CONSUMER",
            "MERGE_SHARDS",
            "SPLIT_SHARD",
            "UPDATE_SHARD_COUNT",
            "UPDATE_STREAM_MODE",
            "START_STREAM_ENCRYPTION",
            "STOP_STREAM_ENCRYPTION",
        )
    }
    with _run(
        ["node", "-r", str(EMULATORS_DIR / "loopback.js"), "main.js"],
        cwd=package,  # it reads server.json from its working directory
        port=port,
        env={
            "KINESIS_MOCK_PLAIN_PORT": str(port),
            "KINESIS_MOCK_TLS_PORT": str(tls_port),
            **durations,
        },
        stop_signal=signal.SIGKILL,
        timeout=60.0,
    ) as url:
        yield url
