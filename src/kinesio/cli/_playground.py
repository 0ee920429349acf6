"""``kinesio playground``: kinesio end to end on an embedded emulator, no AWS account needed.

A producer in this process writes to a stream on moto (in-process, 127.0.0.1) or, with
``--backend kinesis-mock``, on kinesis-mock (npm kinesis-local, a node process on 127.0.0.1;
the lease table stays on the in-process moto); several
consumer worker processes share its shards through one lease table; a live table shows every
shard and worker. Mid-run one worker is killed (its shards fail over) and a shard is split
(its children wait for it: "blocked on parent"). The verdict (``kinesio.testing.chaos``, as
for the chaos harness) compares what was produced with what the workers handled, checks per-key
order and that every checkpoint was written by the lease's holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.markup import escape

from kinesio._aws import AioKinesis
from kinesio._config import ProducerSettings
from kinesio._errors import KinesioError
from kinesio._models import PutResult
from kinesio.cli._common import console, fail, run_async
from kinesio.cli._playground_board import APP, STREAM, State, Worker, read_logs, render
from kinesio.leases import DynamoDBLeaseStore
from kinesio.local import (
    KINESIS_MOCK_ENV,
    KINESIS_MOCK_PACKAGE,
    LOCAL_ACCESS_KEY,
    LOCAL_REGION,
    LOCAL_SECRET_KEY,
    EmulatorError,
    LocalEndpoint,
    find_node,
    find_node_package,
    kinesis_mock,
    moto_server,
)
from kinesio.producer import AsyncProducer
from kinesio.testing.chaos import (
    Disruption,
    consumer_verdict,
    payload,
    read_worker_log,
)


class Backend(StrEnum):
    moto = "moto"
    kinesis_mock = "kinesis-mock"


def _start_worker(name: str, tmp: Path, env: dict[str, str]) -> Worker:
    log = tmp / f"{name}.log"
    stderr = (tmp / f"{name}.err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kinesio.cli._worker", STREAM, APP, str(log)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    return Worker(name, log, proc, stderr)


@contextlib.contextmanager
def _emulators(
    backend: Backend, kinesis_mock_path: Path | None
) -> Iterator[tuple[LocalEndpoint, LocalEndpoint]]:
    """(Kinesis endpoint, DynamoDB endpoint): moto for both, or kinesis-mock + moto."""
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(moto_server())
        if backend is Backend.moto:
            console.print(f"[dim]embedded emulator (moto) on {moto.endpoint_url}[/]")
            yield moto, moto
            return
        # Resharding on kinesis-mock keeps the stream UPDATING this long (its default: 0.5 s).
        kinesis = stack.enter_context(kinesis_mock(kinesis_mock_path, transition_delay=0.2))
        console.print(
            f"[dim]Kinesis on kinesis-mock at {kinesis.endpoint_url}; lease table on embedded "
            f"moto at {moto.endpoint_url}[/]"
        )
        yield kinesis, moto


async def _run(
    shards: int,
    workers_n: int,
    rate: int,
    duration: float,
    keys: int,
    chaos: bool,
    live: bool,
    backend: Backend = Backend.moto,
    kinesis_mock_path: Path | None = None,
) -> int:
    state = State(echo=not live)
    with (
        _emulators(backend, kinesis_mock_path) as (kinesis_endpoint, dynamodb_endpoint),
        tempfile.TemporaryDirectory(prefix="kinesio-") as tmpdir,
    ):
        tmp = Path(tmpdir)
        console.print(f"[dim]logs in {escape(str(tmp))}[/]")
        aws = kinesis_endpoint.aws_config()
        env = dict(os.environ)
        env.update(
            AWS_ENDPOINT_URL_KINESIS=kinesis_endpoint.endpoint_url,
            AWS_ENDPOINT_URL_DYNAMODB=dynamodb_endpoint.endpoint_url,
            AWS_ACCESS_KEY_ID=LOCAL_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=LOCAL_SECRET_KEY,
            AWS_DEFAULT_REGION=LOCAL_REGION,
        )
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.pop(var, None)
        kinesis = await AioKinesis.create(aws)
        store = DynamoDBLeaseStore(APP, aws=dynamodb_endpoint.aws_config())
        workers: list[Worker] = []
        try:
            await kinesis.create_stream(STREAM, shards)
            await kinesis.wait_for_active(STREAM)
            await store.create_table_if_missing()
            workers = [_start_worker(f"w{i + 1}", tmp, env) for i in range(workers_n)]
            state.note(f"started {workers_n} consumer worker processes sharing one lease table")

            def on_done(rid: tuple[str, int], fut: asyncio.Future[PutResult]) -> None:
                if fut.exception() is None:
                    shard = fut.result().shard_id
                    state.produced[rid] = shard
                    state.produced_per_shard[shard] += 1
                else:
                    state.failed += 1

            # ordered: per-key order holds end to end (and moto, which numbers records without
            # a lock, never sees two concurrent writes to one shard)
            settings = ProducerSettings(linger=0.05, ordered=True)
            async with AsyncProducer(STREAM, aws=aws, settings=settings) as producer:
                kill_at = duration * 0.3 if chaos and workers_n > 1 else None
                split_at = duration * 0.5 if chaos else None
                interval = 1.0 / rate
                start = next_tick = time.monotonic()
                last_render = 0.0
                ctx = (
                    Live(render(state, workers, producer), console=console, refresh_per_second=4)
                    if live
                    else contextlib.nullcontext()
                )
                with ctx as view:

                    async def refresh(force: bool = False) -> None:
                        nonlocal last_render
                        now = time.monotonic()
                        if not force and now - last_render < 0.5:
                            return
                        last_render = now
                        read_logs(state, workers)
                        with contextlib.suppress(KinesioError):
                            state.leases = await store.list_leases()
                            state.ever_leased.update(lease.lease_key for lease in state.leases)
                        if view is not None:
                            view.update(render(state, workers, producer))

                    # exactly rate × duration records, paced at the rate (catching up in
                    # batches when the loop falls behind), so the verdict's counts are exact
                    total = max(1, round(rate * duration))
                    n = 0
                    while n < total:
                        now = time.monotonic()
                        batch = min(total - n, max(1, int((now - next_tick) / interval) + 1))
                        for _ in range(batch):
                            rid = (f"key-{n % keys}", n // keys)  # n counts up per key
                            fut = await producer.put(payload(*rid), partition_key=rid[0])
                            fut.add_done_callback(functools.partial(on_done, rid))
                            n += 1
                        next_tick += batch * interval
                        elapsed = now - start
                        if kill_at is not None and elapsed >= kill_at:
                            kill_at = None
                            victim = workers[0]
                            victim.proc.send_signal(signal.SIGKILL)
                            victim.killed = True
                            state.disruptions.append(
                                Disruption(time.time(), "kill -9", victim.name)
                            )
                            state.note(
                                f"chaos: kill -9 {victim.name}; its shards fail over after 3 s"
                            )
                        if split_at is not None and elapsed >= split_at:
                            split_at = None
                            parent = producer.shard_map.open_shards[0]
                            middle = (parent.starting_hash_key + parent.ending_hash_key) // 2
                            await kinesis.split_shard(STREAM, parent.shard_id, middle)
                            state.disruptions.append(Disruption(time.time(), "split"))
                            state.note(
                                f"chaos: split {parent.shard_id}; its children wait for it "
                                "(blocked on parent)"
                            )
                        await refresh()
                        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                    await producer.flush()
                    state.note(f"producer done: {n} records put; waiting for the consumers")
                    deadline = time.monotonic() + max(30.0, duration)
                    while time.monotonic() < deadline:
                        await refresh(force=True)
                        if all(d in state.consumed for d in state.produced):
                            break
                        await asyncio.sleep(0.5)
                    for w in workers:
                        if w.proc.poll() is None:
                            w.proc.send_signal(signal.SIGTERM)
                    state.note("SIGTERM to the workers: final checkpoints, leases released")
                    for w in workers:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            await asyncio.to_thread(w.proc.wait, 30)
                    await refresh(force=True)
        finally:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
                w.stderr.close()
            await store.aclose()
            await kinesis.aclose()
        logs = [read_worker_log(w.log, w.name) for w in workers if w.log.exists()]
    verdict = consumer_verdict(
        state.produced,
        logs,
        producer_failed=state.failed,
        disruptions=state.disruptions,
        resends_possible=True,  # a dropped connection may make the producer write twice
    )
    duplicates = verdict.duplicates_explained + verdict.duplicates_resent
    ok = verdict.ok and state.failed == 0
    word = "[bold green]OK[/]" if ok else "[bold red]FAILED[/]"
    console.print(
        f"{word} produced {verdict.produced}, consumed {verdict.handled}, "
        f"lost {len(verdict.lost)}, duplicates {duplicates}, producer failures {state.failed}, "
        f"order violations {len(verdict.order_violations)}, unexplained duplicates "
        f"{len(verdict.duplicates_unexplained)}, checkpoint regressions "
        f"{len(verdict.checkpoint_regressions)}"
    )
    per_shard = sorted(set(state.produced_per_shard) | set(state.consumed_per_shard))
    console.print(
        "per shard, produced/consumed: "
        + ", ".join(
            f"{k} {state.produced_per_shard.get(k, 0)}/{state.consumed_per_shard.get(k, 0)}"
            for k in per_shard
        ),
        soft_wrap=True,
    )
    if verdict.lost:
        where = Counter(state.produced[rid] for rid in verdict.lost)
        console.print(
            escape(f"lost records by shard: {dict(where)}; e.g. {verdict.lost[:3]}"), soft_wrap=True
        )
    for problem in verdict.problems(3):
        console.print(f"  {escape(problem)}", soft_wrap=True)
    return 0 if ok else 1


def playground(
    shards: Annotated[int, typer.Option(min=1, max=50, help="Shards of the demo stream.")] = 4,
    workers: Annotated[
        int, typer.Option(min=1, max=16, help="Consumer worker processes sharing the shards.")
    ] = 3,
    rate: Annotated[
        int, typer.Option(min=1, max=20_000, help="Records per second the producer writes.")
    ] = 500,
    duration: Annotated[
        float,
        typer.Option(
            min=2.0,
            help="Seconds of producing (RATE × DURATION records in all) before the verdict.",
        ),
    ] = 30.0,
    keys: Annotated[int, typer.Option(min=1, help="Distinct partition keys.")] = 1000,
    no_chaos: Annotated[
        bool, typer.Option("--no-chaos", help="Kill no worker and split no shard.")
    ] = False,
    live: Annotated[
        bool, typer.Option(help="Show the live dashboard (--no-live: only the verdict line).")
    ] = True,
    backend: Annotated[
        Backend,
        typer.Option(
            help="Kinesis emulator: moto (embedded) or kinesis-mock (npm kinesis-local on "
            "node; closer to the service: closed shards end with ChildShards). The lease table "
            "is on embedded moto either way.",
        ),
    ] = Backend.moto,
    kinesis_mock_path: Annotated[
        Path | None,
        typer.Option(
            envvar=KINESIS_MOCK_ENV,
            help="The kinesis-local package folder (or a node_modules holding it); default: "
            "./node_modules, then `npm root` and `npm root -g`.",
        ),
    ] = None,
) -> None:
    """Run kinesio end to end on an embedded emulator (moto, in-process; no AWS account).

    Creates a stream with SHARDS shards, produces RATE records/s for DURATION seconds (per-shard
    aggregation, rate limiting, per-key order), and runs WORKERS consumer processes that share
    the shards through one KCL-compatible lease table. The live table shows each shard's state,
    owner, lease counter, checkpoint and counts, and each worker's leases. Unless --no-chaos,
    one worker is killed with SIGKILL at 30 % (its shards fail over) and a shard is split at
    50 % (its children are "blocked on parent" until it ends). The verdict line says what was
    produced, consumed, lost (must be 0) and duplicated; the exit code is 1 if anything was
    lost, failed or handled out of order. With --backend kinesis-mock the stream lives on
    kinesis-mock (needs node and `npm install kinesis-local`), the lease table on moto.
    """
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise fail(
            "the playground needs the embedded emulator", hint="pip install 'kinesio[local]'"
        ) from None
    package: Path | None = None
    if backend is Backend.kinesis_mock:
        try:
            find_node()
            package = find_node_package(KINESIS_MOCK_PACKAGE, kinesis_mock_path)
        except EmulatorError as exc:
            raise fail(str(exc), hint=exc.hint) from None
    code = run_async(
        _run(shards, workers, rate, duration, keys, not no_chaos, live, backend, package)
    )
    raise typer.Exit(int(code))  # type: ignore[call-overload]
