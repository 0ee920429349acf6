"""A kinesio worker process beside Java KCL workers (``benchmarks/interop_kcl.py``).

Usage: python kinesio_worker.py STREAM APP WORKER_ID LOG_DIR
Endpoints and credentials come from the AWS_* environment. Each handled record is appended
to ``LOG_DIR/<WORKER_ID>.<shard>.kinesio.jsonl`` as the Java processor logs it (plus the wall
time ``t``), checkpointing after every record. SIGTERM / SIGINT shut it down gracefully
(final checkpoints, leases released); SIGKILL is a lost host.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO

import kinesio


def main() -> int:
    stream, app, worker_id, log_dir = sys.argv[1:5]
    settings = kinesio.ConsumerSettings(
        worker_id=worker_id,
        failover_time=4.0,
        take_interval=2.0,
        shard_sync_interval=5.0,
        initial_position=kinesio.InitialPosition.TRIM_HORIZON,
        retrieval=kinesio.Polling(idle_time=0.25, catch_up_interval=0.05),
        shutdown_timeout=10.0,
        create_lease_table=False,
    )
    files: dict[str, IO[str]] = {}

    def handle(record: kinesio.Record) -> None:
        out = files.get(record.shard_id)
        if out is None:
            path = Path(log_dir) / f"{worker_id}.{record.shard_id}.kinesio.jsonl"
            out = files[record.shard_id] = path.open("a", buffering=1, encoding="utf-8")
        entry = {
            "seq": record.sequence_number,
            "sub": record.sub_sequence_number,
            "data": record.data.decode(),
            "t": time.time(),
        }
        out.write(json.dumps(entry) + "\n")

    consumer = kinesio.Consumer(stream, application_name=app, settings=settings)
    consumer.consume_with(handle, checkpoint_every=1, checkpoint_interval=0.2)
    for out in files.values():
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
