"""Node-based emulators for integration tests: dynalite (DynamoDB) and kinesis-mock (Kinesis).

Both are installed by ``./dev test`` into tests/emulators/node_modules (see package.json
there). Each context manager starts one server bound to 127.0.0.1 on a free port, waits until
it accepts connections, yields its URL, and stops it when the block ends. The launcher is
``kinesio.local``'s (the playground's too); this module only points it at tests/emulators.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kinesio import local

EMULATORS_DIR = Path(__file__).resolve().parent / "emulators"
NODE_MODULES = EMULATORS_DIR / "node_modules"
HOST = "127.0.0.1"
EmulatorError = local.EmulatorError


@contextmanager
def dynalite() -> Iterator[str]:
    """Run dynalite (in memory) on 127.0.0.1 and a free port; yield its endpoint URL.

    Tables stay CREATING/DELETING for 50 ms rather than dynalite's 500 ms: long enough that
    the wait-until-ACTIVE path is exercised, short enough for a table per test.
    """
    node = local.find_node()
    package = local.find_node_package("dynalite", NODE_MODULES)
    port = local.free_port()
    delays = ["--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"]
    with local.run_server(
        [node, str(package / "cli.js"), "--host", HOST, "--port", str(port), *delays],
        cwd=EMULATORS_DIR,
        port=port,
        timeout=30.0,
    ) as url:
        yield url


@contextmanager
def kinesis_mock() -> Iterator[str]:
    """Run kinesis-mock (npm kinesis-local) on 127.0.0.1 and a free port; yield its URL.

    Stream operations (create, delete, split, merge, consumer registration...) keep the
    stream or consumer in a transitional status for 100 ms rather than kinesis-mock's 500 ms:
    long enough that the wait-until-ACTIVE paths are exercised, short enough for tests that
    reshard several times.
    """
    with local.kinesis_mock(NODE_MODULES, transition_delay=0.1) as endpoint:
        yield endpoint.endpoint_url
