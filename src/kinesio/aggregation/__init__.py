"""The KPL aggregation format: many user records packed into one Kinesis record (SPEC §3).

    MAGIC (f3 89 9a c2) || AggregatedRecord (protobuf, proto2) || MD5(AggregatedRecord)

The protobuf wire format is written and read by hand, not through the ``protobuf`` package:
AggregateBuilder knows the exact size of an aggregate as records are added (protobuf would need
the same arithmetic and then a full serialisation), decode must reject what upb lets through
(missing proto2 required fields, invalid UTF-8 in proto2 strings), and no generated code or
descriptor pool is involved (aws_kinesis_agg already takes the names aws.kinesis.protobuf.*).
benchmarks/bench_aggregation.py measures both directions against aws_kinesis_agg.

The parts: ``_wire`` (framing, varints and their tables), ``_keys`` (hash keys), ``_encode``
(AggregateBuilder and encode), ``_decode`` (decode and is_aggregate).
"""

from __future__ import annotations

from kinesio.aggregation._decode import decode, is_aggregate
from kinesio.aggregation._encode import AggregateBuilder, encode
from kinesio.aggregation._keys import hash_key
from kinesio.aggregation._wire import MAGIC

__all__ = ["MAGIC", "AggregateBuilder", "decode", "encode", "hash_key", "is_aggregate"]
