"""What the benchmarks share: moto's server in a process of its own on 127.0.0.1, and peer
clients installed on first use beside (not into) kinesio's environment.

Run directly (``python benchmarks/_harness.py PORT``) it is that server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kinesio.local import free_port

__all__ = ["ensure_installed", "free_port", "moto_server", "serve_moto"]


def serve_moto(port: int) -> None:
    """moto's server (as ``python -m moto.server`` runs it) with requests taken one at a time.

    moto's backends are not thread-safe: two PutRecords calls handled at once can give records
    the same sequence number, one overwriting the other, and DynamoDB's conditional writes
    check and write in separate steps. Clients that send several requests at once (kinesio
    does) would then appear to lose records. A lock around the app keeps moto's threaded
    server while its backends see one request at a time.

    There is no HTTP keep-alive here: werkzeug's server (3.1) answers every request with
    ``Connection: close``, so every client opens a new TCP connection per call. That cost lands
    on every client in a table alike, and a real endpoint (TLS, keep-alive) costs differently.

    moto's shards also find their last sequence number by copying every key into a list, once
    per record stored, so a shard gets slower as it fills (~1 200 records/s at 25 000 records);
    the same answer in O(1) keeps the emulator's pace steady across runs. Reads are moto's own.
    """
    import logging
    import threading

    from moto.kinesis.models import Shard
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    def first_key(self: Any) -> int:
        return next(iter(self.records), 0)

    def last_key(self: Any) -> int:
        return next(reversed(self.records), 0)

    setattr(Shard, "get_min_sequence_number", first_key)  # noqa: B010
    setattr(Shard, "get_max_sequence_number", last_key)  # noqa: B010
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ: Any, start_response: Any) -> list[bytes]:
        with lock:
            body = app(environ, start_response)
            try:
                return list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()

    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple("127.0.0.1", port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """:func:`serve_moto` in its own process on 127.0.0.1 (a free port); yields its URL and
    stops it at the end. ``env``: the process's environment (default: this one's)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ensure_installed(requirement: str, target: Path, marker: str) -> None:
    """pip-install ``requirement`` without its dependencies into ``target`` once (``marker``:
    a path below ``target`` that exists once it is installed). A peer's dependencies
    (aiobotocore, aws_kinesis_agg, anyio, sortedcontainers) come with kinesio's dev install."""
    if (target / marker).exists():
        return
    print(f"installing {requirement} into {target}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(target), requirement],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    serve_moto(int(sys.argv[1]))
