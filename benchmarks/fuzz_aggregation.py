"""Fuzz KPL deaggregation: ``kinesio.aggregation.decode`` and the consumer's deaggregation path.

Run: .venv/bin/python benchmarks/fuzz_aggregation.py --inputs 1000000      (about 6 min)
     .venv/bin/python benchmarks/fuzz_aggregation.py --engine atheris --inputs 1000000
        (optional: `pip install atheris`, which has wheels for Linux x86_64 only; libFuzzer
        mutates raw bytes with coverage feedback from kinesio.aggregation and the
        deaggregation module, from a seed corpus of valid aggregate bodies; each input is
        tried as it is and as an aggregate body with a correct MD5)

Each input goes through both entry points, and each must keep its promise:

* ``decode(data)`` returns user records or raises ``kinesio.AggregationError`` — no other
  exception, whatever the bytes;
* ``deaggregate(record, shard)`` (what the consumer runs on every record GetRecords returns)
  never raises: bytes that ``decode`` rejects come out as exactly one plain record with the
  same data, sub-sequence 0, as the KCL passes them through; a decodable aggregate comes out
  as its user records inside the shard's hash range, with increasing sub-sequence numbers.

The default engine is a seeded, structured mutator: it builds valid aggregates (1-20 user
records with short unicode partition keys, or for a third of them 1-40 with UUID keys, explicit
hash keys from 0 to 2**128 - 1) and
damages them in one of the ways listed in ``KINDS`` — flipped bytes, truncation, inserted and
deleted bytes, varints blown up to 10 or 11 bytes or to huge values, a bad MD5 over a valid
body, key indexes out of range, bodies spliced from two aggregates, plain random bytes — most
of them with the MD5 recomputed so that the damage reaches the protobuf parser. Any broken
promise is printed with its input (hex) and counted; the exit status is 1 if there was one.

``run()`` is also the short fuzz run of the test suite (tests/test_aggregation.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kinesio import ProducerRecord, aggregation
from kinesio._errors import AggregationError
from kinesio._models import KinesisRecord, Shard
from kinesio.aggregation import _wire
from kinesio.consumer._deaggregate import deaggregate

MAGIC = aggregation.MAGIC
MAX_KEY = 2**128 - 1
_varint = _wire.varint  # the codec's own encoder: varints are not what is fuzzed
SEQUENCE_NUMBER = "49590338271490256608559692538361571095921575989136588898"


def wrap(body: bytes) -> bytes:
    """An aggregate around ``body`` with a correct MD5 (the parser sees the body)."""
    return MAGIC + body + hashlib.md5(body).digest()


def body_of(data: bytes) -> bytes:
    return data[len(MAGIC) : -16]


def random_key(rng: random.Random) -> str:
    alphabet = "abcXYZ019-_é✓😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def fixed_length_key(rng: random.Random) -> str:
    """A UUID-shaped key: a third of the aggregates use them, so that decode's bulk reading of
    same-length table entries is fuzzed too."""
    return str(uuid.UUID(int=rng.getrandbits(128)))


def valid_aggregate(rng: random.Random) -> bytes:
    records = []
    uuid_keys = rng.random() < 1 / 3
    for _ in range(rng.randint(1, 40 if uuid_keys else 20)):
        ehk = rng.choice([None, None, 0, MAX_KEY, rng.randint(0, MAX_KEY)])
        data = rng.randbytes(rng.choice([0, 1, 5, 30, 200]))
        key = fixed_length_key(rng) if uuid_keys else random_key(rng)
        records.append(ProducerRecord(data, key, ehk))
    return aggregation.encode(records)


# -- mutations: each takes a valid aggregate, returns the bytes to try ---------------------------


def _flip(rng: random.Random, agg: bytes) -> bytes:
    body = bytearray(body_of(agg))
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(body))
        body[i] ^= rng.randint(1, 255)
    return wrap(bytes(body))


def _truncate(rng: random.Random, agg: bytes) -> bytes:
    body = body_of(agg)
    return wrap(body[: rng.randrange(len(body))])


def _insert(rng: random.Random, agg: bytes) -> bytes:
    body = body_of(agg)
    i = rng.randint(0, len(body))
    return wrap(body[:i] + rng.randbytes(rng.randint(1, 8)) + body[i:])


def _delete(rng: random.Random, agg: bytes) -> bytes:
    body = body_of(agg)
    i = rng.randrange(len(body))
    return wrap(body[:i] + body[i + rng.randint(1, 8) :])


def _varint_blowup(rng: random.Random, agg: bytes) -> bytes:
    """Replace the byte at a random position with a varint of 10 or 11 bytes or a huge value."""
    body = body_of(agg)
    i = rng.randrange(len(body))
    blob = rng.choice(
        [
            b"\xff" * 9 + b"\x01",  # 2**64 - 1 + more: the largest 10-byte varint
            b"\xff" * 10 + b"\x01",  # 11 bytes: over protobuf's limit
            _varint(2**63),
            _varint(2**32 + rng.randint(0, 1000)),
            b"\x80" * rng.randint(1, 12),  # a varint that never ends
        ]
    )
    return wrap(body[:i] + blob + body[i + 1 :])


def _bad_md5(rng: random.Random, agg: bytes) -> bytes:
    digest = bytearray(agg[-16:])
    digest[rng.randrange(16)] ^= rng.randint(1, 255)
    return agg[:-16] + bytes(digest)


def _key_index(rng: random.Random, agg: bytes) -> bytes:
    """A record that points past the key tables (or at a huge index)."""
    index = rng.choice([1, 2, 50, 2**31, 2**64 - 1])
    field = 1 if rng.random() < 0.5 else 2
    record = _varint(field << 3) + _varint(index) + b"\x1a\x01x"
    if field == 2:
        record = b"\x08\x00" + record
    return wrap(body_of(agg) + b"\x1a" + _varint(len(record)) + record)


def _splice(rng: random.Random, agg: bytes) -> bytes:
    other = body_of(valid_aggregate(rng))
    body = body_of(agg)
    return wrap(body[: rng.randint(0, len(body))] + other[rng.randint(0, len(other)) :])


def _random_bytes(rng: random.Random, agg: bytes) -> bytes:
    junk = rng.randbytes(rng.randint(0, 64))
    return rng.choice([junk, MAGIC + junk, wrap(junk)])


def _valid(rng: random.Random, agg: bytes) -> bytes:
    return agg


KINDS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "valid aggregate": _valid,
    "flipped bytes": _flip,
    "truncated body": _truncate,
    "inserted bytes": _insert,
    "deleted bytes": _delete,
    "varint blow-up": _varint_blowup,
    "bad MD5, valid body": _bad_md5,
    "key index out of range": _key_index,
    "spliced aggregates": _splice,
    "random bytes": _random_bytes,
}


# -- the checks --------------------------------------------------------------------------------


@dataclass
class Tally:
    inputs: int = 0
    decoded: int = 0
    rejected: int = 0
    user_records: int = 0
    broken: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.inputs += other.inputs
        self.decoded += other.decoded
        self.rejected += other.rejected
        self.user_records += other.user_records
        self.broken += other.broken
        self.failures += other.failures


_SHARDS = [
    Shard("shardId-000000000000", 0, MAX_KEY),
    Shard("shardId-000000000001", 0, 2**127 - 1),
    Shard("shardId-000000000002", 2**127, MAX_KEY),
]


def check(data: bytes, tally: Tally, shard: Shard = _SHARDS[0]) -> None:
    """Run ``data`` through decode and deaggregate; record any broken promise in ``tally``."""
    tally.inputs += 1
    try:
        try:
            users: list[ProducerRecord] | None = aggregation.decode(data)
        except AggregationError:
            users = None
        record = KinesisRecord(
            "49000000000000000000000000000000000000000000000000000001", data, "pk"
        )
        out = deaggregate(record, shard)
        if users is None:
            tally.rejected += 1
            assert len(out) == 1, f"a rejected input gave {len(out)} records"
            assert out[0].data == data, "not passed through as is"
            assert not out[0].aggregated
            assert out[0].sub_sequence_number == 0
        else:
            tally.decoded += 1
            tally.user_records += len(users)
            expected = [
                (i, u.data)
                for i, u in enumerate(users)
                if shard.contains(aggregation.hash_key(u.partition_key, u.explicit_hash_key))
            ]
            got = [(r.sub_sequence_number, r.data) for r in out]
            assert got == expected, "deaggregate disagrees with decode"
            assert all(r.aggregated and r.shard_id == shard.shard_id for r in out)
    except Exception:
        tally.broken += 1
        if len(tally.failures) < 20:
            tally.failures.append(f"input {data.hex()}\n{traceback.format_exc()}")


def run(inputs: int, seed: int = 0) -> dict[str, Tally]:
    """``inputs`` structured mutations (seeded), spread over ``KINDS``; tallies by kind."""
    rng = random.Random(seed)
    names = list(KINDS)
    tallies = {kind: Tally() for kind in names}
    for n in range(inputs):
        kind = names[n % len(names)]
        data = KINDS[kind](rng, valid_aggregate(rng))
        check(data, tallies[kind], _SHARDS[n % len(_SHARDS)])
    return tallies


def run_atheris(inputs: int, started: float) -> Tally:  # pragma: no cover - optional engine
    import atheris

    tally = Tally()

    def one(data: bytes) -> None:
        before = tally.broken
        # raw bytes, and the same bytes as an aggregate body with a correct MD5
        check(data, tally)
        check(wrap(data), tally)
        if tally.broken > before:
            raise RuntimeError(tally.failures[-1])
        if tally.inputs >= inputs:
            # libFuzzer ends the process from C, past Python's own exit: report and stop here
            report({"atheris (raw bytes, and as an MD5-wrapped body)": tally}, started)
            sys.stdout.flush()
            shutil.rmtree(corpus, ignore_errors=True)
            os._exit(0)

    # Coverage feedback from the code under test only (instrument_all() takes minutes).
    from kinesio.aggregation import _decode, _wire
    from kinesio.consumer import _deaggregate

    for module in (_decode, _wire, _deaggregate):
        for value in vars(module).values():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                atheris.instrument_func(value)
    # Seed corpus: bodies of valid aggregates, so that mutation starts from real structure.
    corpus = tempfile.mkdtemp(prefix="kinesio-fuzz-corpus-")
    rng = random.Random(0)
    for n in range(50):
        with open(os.path.join(corpus, f"seed-{n}"), "wb") as f:
            f.write(body_of(valid_aggregate(rng)))
    atheris.Setup([sys.argv[0], "-max_len=4096", corpus], one)
    with contextlib.suppress(SystemExit):  # libFuzzer exits when the runs are done
        atheris.Fuzz()
    return tally


def report(
    tallies: dict[str, Tally], started: float, engine: str = "atheris", seed: int = 0
) -> int:
    """Print the results table (markdown); 1 if a promise was broken, else 0."""
    elapsed = time.perf_counter() - started
    total = Tally()
    for t in tallies.values():
        total.add(t)
    print(
        f"Python {platform.python_version()}, {platform.machine()}; engine {engine}, "
        f"seed {seed}; {total.inputs:,} inputs in {elapsed:.0f} s "
        f"({total.inputs / elapsed:,.0f}/s)\n"
    )
    print("| input kind | inputs | decoded | rejected (passed through) | user records | broken |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, t in [*tallies.items(), ("**all**", total)]:
        print(
            f"| {kind} | {t.inputs:,} | {t.decoded:,} | {t.rejected:,} | {t.user_records:,} "
            f"| {t.broken:,} |"
        )
    for failure in total.failures:
        print("\nBROKEN PROMISE:", failure, sep="\n")
    return 1 if total.broken else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="how many inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=["mutate", "atheris"], default="mutate")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.engine == "atheris":
        run_atheris(args.inputs, started)  # reports and exits by itself
        return 1
    return report(run(args.inputs, args.seed), started, args.engine, args.seed)


if __name__ == "__main__":
    sys.exit(main())
