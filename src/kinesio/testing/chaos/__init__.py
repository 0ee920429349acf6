"""Checking "nothing lost, order kept" after a run under fire: the ledger and its verdicts.

Two checks, shared by ``benchmarks/chaos.py`` (the chaos harness), ``kinesio playground`` and
the test suite:

* **Consumer group** (:func:`consumer_verdict`): records are ``(key, n)`` pairs, ``n`` counting
  up per partition key. Consumer workers log every record they handle and every lease write
  they make (:class:`WorkerLog` writes, :func:`read_worker_log` reads the lines); a poller may
  add snapshots of the lease table. The verdict counts records produced and acknowledged but
  never handled (**lost**), records of a key handled for the first time after a later record of
  that key was already handled (**order violations**), records handled more than once
  (**duplicates**: *explained* when the lease of their shard changed hands between the two
  handlings, or one of the two handlers no longer held the lease — a zombie; *re-sent* when the
  stream holds two copies because the producer repeated a write whose answer was lost;
  *unexplained* otherwise), lease writes that break the fencing rules (**checkpoint
  regressions**: a checkpoint moving backwards, two writes claiming one counter, a checkpoint
  by a worker that no longer held the lease) and the **failovers** after each disruption.
* **Producer** (:func:`producer_under_fire`): every record put is delivered (in per-key order
  with ``ordered=True``) or failed through its future *and* the error hook; none vanishes.

Each verdict's ``ok`` is False on any violation, and ``rows()`` gives the table printed by the
harness. Times are wall-clock seconds (``time.time()``); the processes of one run share a host,
so their clocks agree.
"""

from kinesio.testing.chaos._consumer import (
    ConsumerVerdict,
    Failover,
    consumer_verdict,
    format_table,
)
from kinesio.testing.chaos._ledger import (
    Disruption,
    Handled,
    LeaseLeft,
    LeaseSnapshot,
    LeaseWrite,
    LogTail,
    RecordId,
    WorkerLog,
    WorkerRecords,
    parse_payload,
    payload,
    read_worker_log,
)
from kinesio.testing.chaos._producer import ProducerVerdict, producer_under_fire

__all__ = [
    "ConsumerVerdict",
    "Disruption",
    "Failover",
    "Handled",
    "LogTail",
    "LeaseSnapshot",
    "LeaseLeft",
    "LeaseWrite",
    "RecordId",
    "ProducerVerdict",
    "WorkerLog",
    "WorkerRecords",
    "consumer_verdict",
    "format_table",
    "parse_payload",
    "payload",
    "producer_under_fire",
    "read_worker_log",
]
