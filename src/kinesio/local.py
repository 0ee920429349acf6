"""Local AWS emulators for the playground, examples and integration tests.

``moto_server()`` starts moto's server (Kinesis, DynamoDB, CloudWatch) inside this process,
bound to 127.0.0.1 on a free port, and stops it when the block ends. Needs ``kinesio[local]``.

``kinesis_mock()`` runs kinesis-mock (npm ``kinesis-local``, on Node.js) the same way, for a
Kinesis closer to the service: closed shards end with ``ChildShards``, ListShards filters,
SubscribeToShard. It needs ``node`` and ``npm install kinesis-local``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kinesio._aws import AWSConfig, tuned_session
from kinesio._errors import ConfigurationError
from kinesio._moto_fidelity import patch_moto

#: Credentials the emulators accept; they are not secrets and reach no real account.
LOCAL_ACCESS_KEY = "testing"
LOCAL_SECRET_KEY = "testing"
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """A running emulator: its URL and an :class:`AWSConfig` that talks to it."""

    endpoint_url: str
    region_name: str = LOCAL_REGION

    def aws_config(self) -> AWSConfig:
        from aiobotocore.session import AioSession

        session = tuned_session(AioSession())
        session.set_credentials(LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY)
        return AWSConfig(
            region_name=self.region_name, endpoint_url=self.endpoint_url, session=session
        )


@contextmanager
def moto_server() -> Iterator[LocalEndpoint]:
    """Run moto's server in-process on 127.0.0.1 (free port) for the duration of the block.

    moto's models get fidelity fixes first (Kinesis writes go to open shards only and are
    numbered under a lock; DynamoDB conditional writes are atomic): see
    :mod:`kinesio._moto_fidelity`.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "the embedded emulator needs moto: pip install 'kinesio[local]'"
        ) from exc
    patch_moto()
    # werkzeug logs every request at INFO even with verbose=False: keep the terminal readable
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield LocalEndpoint(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


# -- kinesis-mock (npm kinesis-local): a higher-fidelity Kinesis --------------------------------

#: Environment variable naming the kinesis-local package folder (the one holding main.js).
KINESIS_MOCK_ENV = "KINESIO_KINESIS_MOCK"
KINESIS_MOCK_PACKAGE = "kinesis-local"
_HOST = "127.0.0.1"
_LOOPBACK_JS = Path(__file__).resolve().parent / "_loopback.js"
_KINESIS_MOCK_HINT = (
    "npm install kinesis-local (in this folder, or -g), or point --kinesis-mock-path / "
    f"{KINESIS_MOCK_ENV} at its package folder"
)


class EmulatorError(ConfigurationError):
    """A local emulator is not installed or did not start. ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def find_node() -> str:
    """The ``node`` executable on PATH; raises :class:`EmulatorError` if there is none."""
    node = shutil.which("node")
    if node is None:
        raise EmulatorError(
            "node (Node.js) is not on PATH: kinesis-mock runs on it",
            hint="install Node.js 18+ (e.g. apt-get install nodejs npm), then "
            "npm install kinesis-local",
        )
    return node


def _npm_roots() -> list[Path]:
    npm = shutil.which("npm")
    if npm is None:
        return []
    roots = []
    for args in ([npm, "root"], [npm, "root", "-g"]):
        try:
            out = subprocess.run(
                args, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip():
            roots.append(Path(out.stdout.strip()))
    return roots


def find_node_package(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The folder of npm package ``name``.

    Looked for in ``path`` if given (the package folder itself, or a node_modules folder
    holding it), else in ``./node_modules``, then in ``npm root`` and ``npm root -g``. Raises
    :class:`EmulatorError` naming where it looked, with an install hint.
    """
    if path is not None:
        candidates = [Path(path), Path(path) / name, Path(path) / "node_modules" / name]
    else:
        candidates = [Path.cwd() / "node_modules" / name]
        candidates += [root / name for root in _npm_roots()]
        candidates = list(dict.fromkeys(candidates))  # `npm root` is often ./node_modules
    for candidate in candidates:
        if (candidate / "package.json").is_file():
            return candidate.resolve()
    where = ", ".join(str(c) for c in candidates)
    hint = f"npm install {name}"
    if name == KINESIS_MOCK_PACKAGE:
        hint = _KINESIS_MOCK_HINT
    raise EmulatorError(f"npm package {name} not found (looked in {where})", hint=hint)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(
                f"emulator exited with status {proc.returncode} before listening on port "
                f"{port}:\n{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            with socket.create_connection((_HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise EmulatorError(
        f"emulator did not listen on {_HOST}:{port} within {timeout:.0f} s:\n"
        f"{log.read_text(errors='replace')[-4000:]}"
    )


@contextmanager
def run_server(
    args: list[str],
    *,
    cwd: Path,
    port: int,
    env: dict[str, str] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Run a server process that listens on 127.0.0.1:``port``; yield its URL.

    Waits (up to ``timeout`` seconds) until it accepts connections — raising
    :class:`EmulatorError` with the end of its output if it exits or never listens — and stops
    it with ``stop_signal`` (then SIGKILL after 5 s) when the block ends.
    """
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
                yield f"http://{_HOST}:{port}"
            finally:
                if proc.poll() is None:
                    proc.send_signal(stop_signal)
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)


_KINESIS_MOCK_OPERATIONS = (
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


@contextmanager
def kinesis_mock(
    path: str | os.PathLike[str] | None = None,
    *,
    transition_delay: float = 0.1,
    timeout: float = 60.0,
) -> Iterator[LocalEndpoint]:
    """Run kinesis-mock (npm ``kinesis-local``) on 127.0.0.1 and a free port.

    The package is found with :func:`find_node_package` in ``path``, else in the folder named by
    ``$KINESIO_KINESIS_MOCK``, else ``./node_modules`` or ``npm root`` (``-g``); node must be on
    PATH. Raises :class:`EmulatorError` (with a hint) if either is missing or the server does
    not listen within ``timeout`` seconds.

    kinesis-mock listens on 0.0.0.0 by itself, so a small preload script forces 127.0.0.1; its
    TLS port is moved to a free port too, so that parallel runs do not collide; it ignores
    SIGTERM, hence SIGKILL at the end. Plain HTTP only. Stream operations (create, delete,
    split, merge, consumer registration...) keep the stream or consumer in a transitional
    status for ``transition_delay`` seconds (kinesis-mock's own default: 0.5).
    """
    node = find_node()
    if path is None:
        path = os.environ.get(KINESIS_MOCK_ENV) or None
    package = find_node_package(KINESIS_MOCK_PACKAGE, path)
    if not (package / "main.js").is_file():
        raise EmulatorError(
            f"{package} holds no main.js: not a kinesis-local package", hint=_KINESIS_MOCK_HINT
        )
    port, tls_port = free_port(), free_port()
    delay = f"{max(0, round(transition_delay * 1000))}ms"
    with run_server(
        [node, "-r", str(_LOOPBACK_JS), "main.js"],
        cwd=package,  # it reads server.json from its working directory
        port=port,
        env={
            "KINESIS_MOCK_PLAIN_PORT": str(port),
            "KINESIS_MOCK_TLS_PORT": str(tls_port),
            **{f"{operation}_DURATION": delay for operation in _KINESIS_MOCK_OPERATIONS},
        },
        stop_signal=signal.SIGKILL,
        timeout=timeout,
    ) as url:
        yield LocalEndpoint(endpoint_url=url)
