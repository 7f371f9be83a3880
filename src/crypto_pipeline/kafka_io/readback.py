"""Where a producer stands in Kafka: the newest committed position of its own records.

A restarted producer resumes from what Kafka holds, not from a local file that can lag
behind it: it reads the ends of the tick topic's partitions backwards (read_committed, so
an aborted or unfinished transaction does not count) for records with its `origin`
header and takes the newest `position` per key (per symbol). Only the partitions the
wanted symbols hash to are read, and each only until all of its symbols are found, the
start of the partition, or `max_records` back.
"""

from __future__ import annotations

import logging
from typing import Iterable

from kafka.partitioner.default import murmur2

from crypto_pipeline.core.schema import ORIGIN_HEADER, POSITION_HEADER
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.clients import client_config

log = logging.getLogger(__name__)

CHUNK_RECORDS = 20_000
MAX_RECORDS_PER_PARTITION = 2_000_000
POLL_TIMEOUT_MS = 1000
REQUEST_TIMEOUT_MS = 10_000


def partition_of(key: str, partitions: int) -> int:
    """The partition Java's default partitioner (and the producer's) gives a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def newest_positions(settings: Settings, origin: str, keys: Iterable[str] | None = None, *,
                     max_records: int = MAX_RECORDS_PER_PARTITION) -> dict[str, int]:
    """{record key: newest position} of the committed records of `origin` on INPUT_TOPIC.
    `keys` None: every partition, each until its newest record of `origin`."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.input_topic
    consumer = KafkaConsumer(**client_config(settings), group_id=None,
                             enable_auto_commit=False, isolation_level="read_committed",
                             request_timeout_ms=REQUEST_TIMEOUT_MS + 1000,
                             max_poll_records=CHUNK_RECORDS)
    try:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            return {}
        wanted: dict[int, set[str] | None] = {}
        if keys is None:
            wanted = {number: None for number in numbers}
        else:
            for key in keys:
                wanted.setdefault(partition_of(key, len(numbers)), set()).add(key)
        found: dict[str, int] = {}
        partitions = [TopicPartition(topic, number) for number in sorted(wanted)]
        starts = consumer.beginning_offsets(partitions)
        ends = consumer.end_offsets(partitions)
        for partition in partitions:
            found |= _scan_back(consumer, partition, origin.encode(), wanted[partition.partition],
                                starts[partition], ends[partition], max_records)
        return found
    finally:
        consumer.close()


def _scan_back(consumer, partition, origin: bytes, keys: set[str] | None, start: int,
               end: int, max_records: int) -> dict[str, int]:
    """The newest position per key in one partition, reading chunks from the end back."""
    found: dict[str, int] = {}
    consumer.assign([partition])
    upper = end
    while upper > start and end - upper < max_records:
        lower = max(start, upper - CHUNK_RECORDS)
        consumer.seek(partition, lower)
        for record in _records_between(consumer, partition, upper):
            position = _position(record, origin)
            if position is None:
                continue
            key = record.key.decode()
            if keys is None or key in keys:
                found[key] = max(found.get(key, position), position)
        if (keys is None and found) or (keys is not None and keys <= found.keys()):
            break
        upper = lower
    return found


def _records_between(consumer, partition, upper: int):
    """The records from the consumer's position up to `upper` (exclusive). Two empty polls
    in a row end it early: what is left below `upper` is aborted records, transaction
    markers, or an open transaction not readable yet."""
    empty = 0
    while consumer.position(partition) < upper and empty < 2:
        batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS).get(partition, [])
        empty = 0 if batch else empty + 1
        for record in batch:
            if record.offset >= upper:
                return
            yield record


def _position(record, origin: bytes) -> int | None:
    headers = dict(record.headers or ())
    if headers.get(ORIGIN_HEADER) != origin or POSITION_HEADER not in headers:
        return None
    try:
        return int(headers[POSITION_HEADER])
    except ValueError:
        return None
